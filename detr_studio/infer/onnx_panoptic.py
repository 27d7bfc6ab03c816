"""Panoptic ONNX files: two graphs joined into one, and cut apart again for the kept queries.

The first part is the network up to the mask head (``model/detr/onnx.py``: ``PanopticFeatures``, which also
outputs what the mask head needs: the attention maps of every query, the projected features and the three
FPN feature maps), the second the mask head over a dynamic number of (image, query) rows (``MaskHeadRows``).
Run whole, the joined file outputs ``pred_masks`` for every query; ``split_panoptic`` cuts it back into its
two parts, so that ``OnnxPredictor`` runs the mask head only for the queries post-processing keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..model.family import ModelFamily
from .onnx_graphs import IMAGE_AXES, half_model, keep_softmax_fp32, sample_inputs, trace
from .onnx_metadata import DETECTION_OUTPUTS, INPUT_NAMES, MASK_OUTPUT

if TYPE_CHECKING:
    import onnx

FEATURE_OUTPUTS = ("mask_attention", "mask_projected", "mask_fpn1", "mask_fpn2", "mask_fpn3")
HEAD_INPUTS = ("mask_projected", "mask_rows", "mask_row_image", "mask_fpn1", "mask_fpn2", "mask_fpn3")
HEAD_OUTPUT = "mask_rows_out"
HEAD_PREFIX = "mask_head/"  # names of the mask head's nodes, initializers and inner values
JOINT_PREFIX = "mask_joint/"  # the few nodes that turn the first part's outputs into mask-head rows


class PanopticGraphError(ValueError):
    """A panoptic graph that cannot be joined or split."""


def export_panoptic(
    family: ModelFamily,
    model: nn.Module,
    device: torch.device,
    path: Path,
    opset: int,
    sample_size: tuple[int, int],
    half: bool,
    notes: list[str],
) -> onnx.ModelProto:
    """Trace both parts (TorchScript exporter) and join them into one graph. -> the ModelProto."""
    import onnx

    net = half_model(model) if half else model
    features, head = (part.eval() for part in family.onnx_panoptic_parts(net, half=half))
    sample = tuple(t.to(device) for t in sample_inputs(1, sample_size))
    feature_axes = dict(IMAGE_AXES)
    feature_axes.update({name: {0: "batch"} for name in DETECTION_OUTPUTS})
    feature_axes["mask_attention"] = {0: "batch", 3: "feature_height", 4: "feature_width"}
    head_axes: dict[str, dict[int, str]] = {
        "mask_projected": {0: "batch", 2: "feature_height", 3: "feature_width"},
        "mask_rows": {0: "rows", 2: "feature_height", 3: "feature_width"},
        "mask_row_image": {0: "rows"},
        HEAD_OUTPUT: {0: "rows", 1: "mask_height", 2: "mask_width"},
    }
    for k, stride in enumerate((16, 8, 4), start=1):
        axes = {0: "batch", 2: f"height_{stride}", 3: f"width_{stride}"}
        feature_axes[f"mask_fpn{k}"] = head_axes[f"mask_fpn{k}"] = axes
    feature_axes["mask_projected"] = head_axes["mask_projected"]
    first, second = path.with_suffix(".features.tmp"), path.with_suffix(".head.tmp")
    try:
        with torch.no_grad():
            trace(
                features,
                sample,
                first,
                opset,
                list(INPUT_NAMES),
                [*DETECTION_OUTPUTS, *FEATURE_OUTPUTS],
                feature_axes,
            )
            joint = features(*sample)  # the head's sample: (up to) two rows of the one image
            rows = joint[2][0, :2]  # [N, heads, h, w]
            row_image = torch.zeros(len(rows), dtype=torch.long, device=device)
            head_sample = (joint[3], rows, row_image, *joint[4:])
            trace(head, head_sample, second, opset, list(HEAD_INPUTS), [HEAD_OUTPUT], head_axes)
        first_proto, second_proto = onnx.load(str(first)), onnx.load(str(second))
    finally:
        first.unlink(missing_ok=True)
        second.unlink(missing_ok=True)
    if half:
        wrapped = keep_softmax_fp32(first_proto) + keep_softmax_fp32(second_proto)
        notes.append(f"{wrapped} Softmax node(s) kept in fp32")
    notes.append("two-part panoptic graph: OnnxPredictor runs the mask head for the kept queries only")
    return join_panoptic(first_proto, second_proto)


def join_panoptic(features: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """One panoptic graph from its two parts: pred_masks [B, Q, H/4, W/4] for every query.

    Nodes in order: the features part; ``JOINT_PREFIX`` nodes that turn mask_attention into one row per
    (image, query); the mask head, its names prefixed with ``HEAD_PREFIX``; a reshape of its rows back
    into [B, Q, ...]. The joint values keep their types in ``value_info``, which ``split_panoptic`` uses
    to cut the graph apart again.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = onnx.GraphProto()
    graph.CopyFrom(features.graph)
    graph.name = "detr_panoptic"
    joint_infos = {v.name: v for v in (*features.graph.output, *head.graph.input)}

    def constant(name: str, values: int | list[int]) -> str:
        tensor = numpy_helper.from_array(np.asarray(values, dtype=np.int64), JOINT_PREFIX + name)
        graph.initializer.append(tensor)
        return tensor.name

    def joint(op: str, inputs: list[str], output: str, **attrs) -> str:
        name = output if output in (*HEAD_INPUTS, MASK_OUTPUT) else JOINT_PREFIX + output
        graph.node.append(helper.make_node(op, inputs, [name], name=JOINT_PREFIX + output, **attrs))
        return name

    # mask_attention [B, Q, heads, h, w] -> mask_rows [B*Q, heads, h, w], mask_row_image [B*Q]
    zero, one, two, three, five = (constant(f"c{v}", [v]) for v in (0, 1, 2, 3, 5))
    shape = joint("Shape", ["mask_attention"], "attention_shape")
    batch_queries = joint("Slice", [shape, zero, two], "batch_queries")  # [B, Q]
    tail = joint("Slice", [shape, two, five], "row_tail")  # [heads, h, w]
    row_shape = joint("Concat", [constant("minus_one", [-1]), tail], "row_shape", axis=0)
    joint("Reshape", ["mask_attention", row_shape], "mask_rows")
    batch = joint("Squeeze", [joint("Slice", [shape, zero, one], "batch_1d")], "batch")
    images = joint("Range", [constant("zero", 0), batch, constant("one", 1)], "image_index")  # [B]
    column = joint("Unsqueeze", [images, one], "image_column")  # [B, 1]
    grid = joint("Expand", [column, batch_queries], "row_grid")  # [B, Q]
    joint("Reshape", [grid, constant("flat", [-1])], "mask_row_image")

    def renamed(name: str) -> str:
        return name if not name or name in HEAD_INPUTS else HEAD_PREFIX + name

    for k, original in enumerate(head.graph.node):
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise PanopticGraphError(
                "the mask head graph has control flow, which the panoptic joint cannot handle"
            )
        node.name = HEAD_PREFIX + (node.name or f"node_{k}")
        node.input[:] = [renamed(n) for n in node.input]
        node.output[:] = [renamed(n) for n in node.output]
        graph.node.append(node)
    for original in head.graph.initializer:
        tensor = onnx.TensorProto()
        tensor.CopyFrom(original)
        tensor.name = renamed(tensor.name)
        graph.initializer.append(tensor)
    for original in (*head.graph.value_info, *head.graph.output):
        info = onnx.ValueInfoProto()
        info.CopyFrom(original)
        info.name = renamed(info.name)
        graph.value_info.append(info)

    # mask_rows_out [B*Q, H/4, W/4] -> pred_masks [B, Q, H/4, W/4]
    rows_out = renamed(HEAD_OUTPUT)
    mask_hw = joint("Slice", [joint("Shape", [rows_out], "rows_out_shape"), one, three], "mask_hw")
    masks_shape = joint("Concat", [batch_queries, mask_hw], "masks_shape", axis=0)
    joint("Reshape", [rows_out, masks_shape], MASK_OUTPUT)

    graph.value_info.extend(joint_infos[name] for name in (*FEATURE_OUTPUTS, "mask_rows", "mask_row_image"))
    del graph.output[:]
    graph.output.extend(o for o in features.graph.output if o.name in DETECTION_OUTPUTS)
    dims = ["batch", "queries", "mask_height", "mask_width"]
    graph.output.append(helper.make_tensor_value_info(MASK_OUTPUT, TensorProto.FLOAT, dims))
    model = helper.make_model(graph, opset_imports=list(features.opset_import))
    model.ir_version = max(features.ir_version, head.ir_version)
    onnx.checker.check_model(model)
    return model


def split_panoptic(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """A panoptic graph written by ``join_panoptic`` -> (features part, mask-head part), two ModelProtos.

    features: (images, mask) -> pred_logits, pred_boxes, *FEATURE_OUTPUTS; head: HEAD_INPUTS ->
    mask_rows_out [N, H/4, W/4]. Raises ValueError when the graph does not have that layout.
    """
    import onnx
    from onnx import helper

    graph = proto.graph
    infos = {v.name: v for v in graph.value_info}
    missing = [
        n
        for n in (*FEATURE_OUTPUTS, "mask_rows", "mask_row_image", HEAD_PREFIX + HEAD_OUTPUT)
        if n not in infos
    ]
    if missing:
        raise ValueError(f"not a two-part panoptic graph (no joint values {', '.join(missing)})")
    head_nodes = [n for n in graph.node if n.name.startswith(HEAD_PREFIX)]
    feature_nodes = [n for n in graph.node if not n.name.startswith((HEAD_PREFIX, JOINT_PREFIX))]
    head_inits = [t for t in graph.initializer if t.name.startswith(HEAD_PREFIX)]
    feature_inits = [t for t in graph.initializer if not t.name.startswith((HEAD_PREFIX, JOINT_PREFIX))]
    outputs = [o for o in graph.output if o.name in DETECTION_OUTPUTS]
    first = helper.make_graph(
        feature_nodes,
        "detr_panoptic_features",
        list(graph.input),
        [*outputs, *(infos[n] for n in FEATURE_OUTPUTS)],
        feature_inits,
    )
    out = onnx.ValueInfoProto()
    out.CopyFrom(infos[HEAD_PREFIX + HEAD_OUTPUT])
    second = helper.make_graph(
        head_nodes, "detr_mask_head", [infos[n] for n in HEAD_INPUTS], [out], head_inits
    )
    parts = []
    for part in (first, second):
        model = helper.make_model(part, opset_imports=list(proto.opset_import))
        model.ir_version = proto.ir_version
        parts.append(model)
    return parts[0], parts[1]
