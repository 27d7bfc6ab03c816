"""Export a DETR model to ONNX, and check the exported file against PyTorch.

The exported graph takes an already padded batch, ``images`` [B, 3, H, W] float32 and its padding
``mask`` [B, H, W] bool (True = padding), so batch, height and width are all dynamic: the per-image
padding loop of the reference (which bakes the batch size into the graph, detr #556) stays outside.
Outputs: ``pred_logits`` [B, Q, C+1], ``pred_boxes`` [B, Q, 4] normalised cxcywh and, for panoptic
exports, ``pred_masks`` [B, Q, H/4, W/4] mask logits of every query.

Everything a runtime needs to reproduce our results travels in the file's ``metadata_props``
(``OnnxMetadata``): class names, preprocessing, the model config, the source checkpoint and the task.

Exporters: the TorchScript exporter writes opset 17 natively in seconds and, with the batched
wrapper, gives a truly dynamic batch. The dynamo exporter implements opset 18 and up only (its
conversion down to 17 writes an invalid ``Split``), needs a sample batch of at least 2 so that the batch
is not specialised, and takes minutes; ``exporter="auto"`` therefore uses TorchScript below opset 18
and dynamo (falling back to TorchScript) from 18.

fp16 exports convert weights and activations to half precision but keep LayerNorm, GroupNorm and
Softmax in fp32 (LayerNorm and Softmax overflow in fp16, TensorRT #2564 / #4111); inputs and outputs
stay float32, so runtimes feed both kinds of file the same way. Their parity is checked against the
fp32 PyTorch model with a looser tolerance, ``FP16_ATOL``.

Panoptic files are built from two graphs joined into one: the network up to the mask head (which
also outputs what the mask head needs: the attention maps of every query, the projected features and
the three FPN feature maps) and the mask head over a dynamic number of (image, query) rows. Run whole,
the file outputs ``pred_masks`` for every query, as above; ``split_panoptic`` cuts it back into its two
parts, so that ``OnnxPredictor`` runs the mask head only for the queries post-processing keeps.

int8 exports (``int8=True``, CPUs) quantise the backbone's convolutions after the fp32 file has passed its
check (see ``quantize``); they are judged by the agreement of their detections with PyTorch fp32
(``INT8_MIN_AGREEMENT``), not by the size of their differences, and carry a ``quantization`` entry in
their metadata.

Every export writes to a temporary file beside the target, checks parity on inputs whose batch and
size differ from the export sample, and only then moves the file into place.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .. import __version__
from ..data.images import load_image
from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, prepare
from ..data.preprocess import batch as make_batch
from ..model.checkpoint import detector_of
from ..model.config import DetrConfig
from ..model.fuse import fold_frozen_batchnorm
from ..model.nested import NestedTensor

if TYPE_CHECKING:
    import onnx

INPUT_NAMES = ("images", "mask")
DETECTION_OUTPUTS = ("pred_logits", "pred_boxes")
MASK_OUTPUT = "pred_masks"
EXPORTERS = ("auto", "torchscript", "dynamo")
FP32_ATOL = 1e-4
FP16_ATOL = 2e-2  # fp16 weights and activations against the fp32 PyTorch model
INT8_MIN_AGREEMENT = 0.9  # int8 files: detections that must match PyTorch fp32 (see ParityReport)
DETECTION_SCORE = 0.5  # detections compared between the two runtimes score above this
BOX_MATCH = 0.01  # matching detections: box corners within this fraction of the image
META_PREFIX = "detr_studio."
DEFAULT_SAMPLE_SIZE = (320, 416)
PRECISIONS = ("fp32", "fp16", "int8")

# The two-part panoptic graph (see the module docstring): names at the joint, recorded as ``mask_head``.
PANOPTIC_LAYOUT = "kept-queries-v1"
FEATURE_OUTPUTS = ("mask_attention", "mask_projected", "mask_fpn1", "mask_fpn2", "mask_fpn3")
HEAD_INPUTS = ("mask_projected", "mask_rows", "mask_row_image", "mask_fpn1", "mask_fpn2", "mask_fpn3")
HEAD_OUTPUT = "mask_rows_out"
HEAD_PREFIX = "mask_head/"  # names of the mask head's nodes, initializers and inner values
JOINT_PREFIX = "mask_joint/"  # the few nodes that turn the first part's outputs into mask-head rows


class OnnxExportError(Exception):
    """An export that failed or did not match PyTorch; the message names the file."""


# --------------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class OnnxMetadata:
    """What a runtime needs beside the graph, stored as ``metadata_props`` of the ONNX file."""

    config: DetrConfig
    class_names: dict[int, str]
    task: str  # "detection" | "panoptic"
    precision: str  # "fp32" | "fp16" | "int8"
    size: int = 800
    max_size: int | None = 1333
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""
    version: str = __version__
    exporter: str = ""
    sample_shape: tuple[int, ...] = ()  # [B, 3, H, W] the graph was traced with
    quantization: str = ""  # int8 files: JSON describing what was quantised and how (see ``quantize``)
    mask_head: str = ""  # panoptic files: PANOPTIC_LAYOUT when the graph can be split for kept queries

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def splits_for_kept_queries(self) -> bool:
        return self.task == "panoptic" and self.mask_head == PANOPTIC_LAYOUT

    def to_props(self) -> dict[str, str]:
        preprocess = {
            "size": self.size,
            "max_size": self.max_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "padding": "zeros at the bottom and right; mask True on padding",
        }
        values = {
            "version": self.version,
            "task": self.task,
            "precision": self.precision,
            "num_classes": str(self.config.num_classes),
            "class_names": json.dumps({str(k): v for k, v in sorted(self.class_names.items())}),
            "preprocess": json.dumps(preprocess),
            "config": json.dumps(self.config.to_dict()),
            "source": self.source,
            "exporter": self.exporter,
            "sample_shape": json.dumps(list(self.sample_shape)),
        }
        if self.quantization:
            values["quantization"] = self.quantization
        if self.mask_head:
            values["mask_head"] = self.mask_head
        return {META_PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], origin: str | os.PathLike) -> OnnxMetadata:
        """Read back ``to_props``; a missing or malformed entry raises ValueError naming ``origin``."""
        ours = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        required = ("task", "config", "preprocess", "class_names")
        missing = [META_PREFIX + k for k in required if k not in ours]
        if missing:
            raise ValueError(
                f"{origin}: the ONNX model lacks DETR Studio metadata ({', '.join(missing)}); "
                "export it with `detr-studio export`"
            )
        try:
            config = DetrConfig.from_dict(json.loads(ours["config"]))
            names = {int(k): str(v) for k, v in json.loads(ours["class_names"]).items()}
            pre = json.loads(ours["preprocess"])
            size, max_size = int(pre["size"]), None if pre.get("max_size") is None else int(pre["max_size"])
            mean, std = tuple(float(v) for v in pre["mean"]), tuple(float(v) for v in pre["std"])
            sample = tuple(int(v) for v in json.loads(ours.get("sample_shape", "[]")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{origin}: malformed DETR Studio metadata in the ONNX model ({exc})") from None
        if ours["task"] not in ("detection", "panoptic"):
            raise ValueError(f"{origin}: unknown task {ours['task']!r} in the ONNX metadata")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"{origin}: the ONNX metadata needs 3 mean and 3 std values")
        precision = ours.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ValueError(f"{origin}: unknown precision {precision!r} in the ONNX metadata")
        return cls(
            config=config,
            class_names=names,
            task=ours["task"],
            precision=precision,
            size=size,
            max_size=max_size,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            source=ours.get("source", ""),
            version=ours.get("version", ""),
            exporter=ours.get("exporter", ""),
            sample_shape=sample,
            quantization=ours.get("quantization", ""),
            mask_head=ours.get("mask_head", ""),
        )


def read_metadata(path: str | os.PathLike) -> OnnxMetadata:
    """The DETR Studio metadata of an ONNX file (reads the file header with ``onnx``, no session)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others for a damaged file
        raise ValueError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None
    return OnnxMetadata.from_props({p.key: p.value for p in proto.metadata_props}, path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------- the graph


class ExportWrapper(nn.Module):
    """The graph that is exported: (images [B, 3, H, W] float32, mask [B, H, W] bool) -> a tuple of
    pred_logits [B, Q, C+1], pred_boxes [B, Q, 4] (and pred_masks [B, Q, H/4, W/4] when ``panoptic``).

    No Python loop over the batch and no shape read as an int, so every input dimension stays dynamic.
    With ``half`` the network runs in fp16 between float32 inputs and outputs.
    """

    def __init__(self, model: nn.Module, panoptic: bool, half: bool = False):
        super().__init__()
        self.model = model if panoptic else detector_of(model)
        self.panoptic = panoptic
        self.half = half

    def forward(self, images: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        if self.half:
            images = images.half()
        out = self.model(NestedTensor(images, mask))
        names = (*DETECTION_OUTPUTS, MASK_OUTPUT) if self.panoptic else DETECTION_OUTPUTS
        return tuple(out[name].float() for name in names)


class _Fp32Norm(nn.Module):
    """Runs a normalisation layer in fp32 inside an fp16 network."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.float()).to(x.dtype)


def _half_model(model: nn.Module) -> nn.Module:
    """A copy in fp16 whose LayerNorm and GroupNorm layers stay in fp32."""
    half = copy.deepcopy(model).half()
    for module in list(half.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.LayerNorm, nn.GroupNorm)):
                setattr(module, name, _Fp32Norm(child))
    return half


def _output_names(panoptic: bool) -> list[str]:
    return [*DETECTION_OUTPUTS, MASK_OUTPUT] if panoptic else list(DETECTION_OUTPUTS)


def _sample_inputs(batch: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    h, w = size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, h, w, generator=generator)
    mask = torch.zeros(batch, h, w, dtype=torch.bool)
    if batch > 1:  # a padded last image, so the traced graph sees a real mask
        mask[-1, h - h // 4 :, :] = True
        mask[-1, :, w - w // 4 :] = True
        images[-1][:, mask[-1]] = 0
    return images, mask


IMAGE_AXES: dict[str, dict[int, str]] = {
    "images": {0: "batch", 2: "height", 3: "width"},
    "mask": {0: "batch", 1: "height", 2: "width"},
}


def _export_torchscript(
    wrapper: nn.Module, sample: tuple[Tensor, Tensor], path: Path, opset: int, panoptic: bool
):
    names = _output_names(panoptic)
    axes = dict(IMAGE_AXES)
    for name in names:
        axes[name] = {0: "batch"}
    if panoptic:
        axes[MASK_OUTPUT] = {0: "batch", 2: "mask_height", 3: "mask_width"}
    _trace(wrapper, sample, path, opset, list(INPUT_NAMES), names, axes)


def _trace(
    module: nn.Module,
    sample: tuple[Tensor, ...],
    path: Path,
    opset: int,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    """The TorchScript exporter with named, dynamic axes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; parity is checked afterwards
        torch.onnx.export(
            module,
            sample,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _export_dynamo(wrapper: nn.Module, sample: tuple[Tensor, Tensor], path: Path, opset: int, panoptic: bool):
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1024)
    height = Dim("height", min=32, max=8192)
    width = Dim("width", min=32, max=8192)
    shapes = {"images": {0: batch, 2: height, 3: width}, "mask": {0: batch, 1: height, 2: width}}
    optimizer_log = logging.getLogger("onnxscript")
    level = optimizer_log.level
    optimizer_log.setLevel(logging.ERROR)  # one "skipping constant folding" line per attention layer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                sample,
                dynamo=True,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=_output_names(panoptic),
                dynamic_shapes=shapes,
                verbose=False,
            )
    finally:
        optimizer_log.setLevel(level)
    program.save(str(path))


def _keep_softmax_fp32(proto) -> int:
    """Wrap every fp16 Softmax in casts so that it runs in fp32. Returns how many were wrapped."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)
    }
    nodes = []
    wrapped = 0
    for original in proto.graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if node.op_type != "Softmax" or types.get(node.input[0]) != TensorProto.FLOAT16:
            nodes.append(node)
            continue
        source, target = node.input[0], node.output[0]
        wide_in, wide_out = f"{target}__fp32_in", f"{target}__fp32_out"
        nodes.append(
            helper.make_node("Cast", [source], [wide_in], to=TensorProto.FLOAT, name=f"{node.name}_to_fp32")
        )
        node.input[0], node.output[0] = wide_in, wide_out
        nodes.append(node)
        nodes.append(
            helper.make_node(
                "Cast", [wide_out], [target], to=TensorProto.FLOAT16, name=f"{node.name}_to_fp16"
            )
        )
        wrapped += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return wrapped


# ---------------------------------------------------------------------------------- two-part panoptic graph


class PanopticFeatures(nn.Module):
    """First part of a panoptic file: (images [B, 3, H, W], mask [B, H, W]) -> pred_logits [B, Q, C+1],
    pred_boxes [B, Q, 4] and the mask head's inputs: mask_attention [B, Q, heads, h, w], mask_projected
    [B, D, h, w] and the layer3 / layer2 / layer1 features mask_fpn1..3 (strides 16, 8, 4).

    The same steps as ``DETRsegm.forward``, stopped before the mask head.
    """

    def __init__(self, model: nn.Module, half: bool = False):
        super().__init__()
        self.model = model
        self.half = half

    def forward(self, images: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        if self.half:
            images = images.half()
        detr = self.model.detr
        features, pos = detr.backbone(NestedTensor(images, mask))
        src, feature_mask = features[-1].decompose()
        projected = detr.input_proj(src)  # [B, D, h, w]
        hs, memory = detr.transformer(projected, feature_mask, detr.query_embed.weight, pos[-1])
        out = detr.heads(hs)
        attention = self.model.bbox_attention(hs[-1], memory, mask=feature_mask)  # [B, Q, heads, h, w]
        values = (out["pred_logits"], out["pred_boxes"], attention, projected)
        fpns = (features[2].tensors, features[1].tensors, features[0].tensors)
        return tuple(v.float() for v in (*values, *fpns))


class MaskHeadRows(nn.Module):
    """Second part of a panoptic file: the mask head for N (image, query) rows.

    (mask_projected [B, D, h, w], mask_rows [N, heads, h, w], mask_row_image [N] int64 (the image of
    each row), mask_fpn1..3 [B, Ci, Hi, Wi]) -> mask_rows_out [N, H/4, W/4] mask logits.

    ``MaskHeadSmallConv.forward`` with one change of order: its first convolution sees the projected
    features (the same for every query of an image) beside each query's attention maps, and being linear
    it is split in two, the projected features' share computed once per image and the attention maps'
    share per row. The sum differs from the one-piece convolution by float rounding only, and the whole
    file runs this same graph for every query, so the kept rows stay bit-identical to it.
    """

    def __init__(self, model: nn.Module, half: bool = False):
        super().__init__()
        self.mask_head = model.mask_head
        self.half = half

    def forward(
        self, projected: Tensor, rows: Tensor, row_image: Tensor, fpn1: Tensor, fpn2: Tensor, fpn3: Tensor
    ) -> Tensor:
        if self.half:
            projected, rows, fpn1, fpn2, fpn3 = (t.half() for t in (projected, rows, fpn1, fpn2, fpn3))
        head = self.mask_head
        d = projected.shape[1]
        weight = head.lay1.weight  # [C, D + heads, 3, 3]
        shared = F.conv2d(projected, weight[:, :d], head.lay1.bias, padding=1)  # [B, C, h, w]
        x = shared[row_image] + F.conv2d(rows, weight[:, d:], None, padding=1)  # [N, C, h, w]
        x = F.relu(head.gn1(x))
        x = F.relu(head.gn2(head.lay2(x)))
        for adapter, lay, gn, fpn in (
            (head.adapter1, head.lay3, head.gn3, fpn1),
            (head.adapter2, head.lay4, head.gn4, fpn2),
            (head.adapter3, head.lay5, head.gn5, fpn3),
        ):
            cur = adapter(fpn)[row_image]  # [N, Ci', Hi, Wi]
            x = cur + F.interpolate(x, size=cur.shape[-2:], mode="nearest")
            x = F.relu(gn(lay(x)))
        return head.out_lay(x)[:, 0].float()  # [N, H/4, W/4]


def _export_panoptic(
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

    net = _half_model(model) if half else model
    features = PanopticFeatures(net, half).eval()
    head = MaskHeadRows(net, half).eval()
    sample = tuple(t.to(device) for t in _sample_inputs(1, sample_size))
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
            _trace(
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
            _trace(head, head_sample, second, opset, list(HEAD_INPUTS), [HEAD_OUTPUT], head_axes)
        first_proto, second_proto = onnx.load(str(first)), onnx.load(str(second))
    finally:
        first.unlink(missing_ok=True)
        second.unlink(missing_ok=True)
    if half:
        wrapped = _keep_softmax_fp32(first_proto) + _keep_softmax_fp32(second_proto)
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
            raise OnnxExportError(
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


# ------------------------------------------------------------------------------------------------ parity


@dataclass(frozen=True)
class OutputDiff:
    """One output compared: the largest absolute difference and what was allowed."""

    name: str
    max_abs_diff: float
    allowed: float
    scale: float  # the largest |value| in the PyTorch output

    @property
    def ok(self) -> bool:
        return bool(self.max_abs_diff <= self.allowed)


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime against PyTorch on the same inputs.

    fp32 and fp16 files: an output passes when its max |diff| is at most ``atol * max(1, max |PyTorch
    value|)``: the tolerance grows with the output's scale (mask logits reach tens) and is plain ``atol``
    for probabilities and boxes. Detection agreement is reported for reading, not judged.

    int8 files (``min_agreement`` set): the differences are reported, not judged; the file passes when
    at least ``min_agreement`` of the detections match (``detection_agreement``) and every output is
    finite. With no detection on either side the agreement cannot be measured and the report says so.
    """

    onnx_path: Path
    provider: str
    precision: str
    task: str
    atol: float
    sizes: tuple[tuple[int, int], ...]  # (h, w) of every image fed, before padding
    batch_size: int
    outputs: tuple[OutputDiff, ...]
    queries: int
    top_class_agree: int
    torch_detections: int
    onnx_detections: int
    matched_detections: int
    label: str = "synthetic"  # what the inputs were: "synthetic", "real", "calibration" or "given"
    sources: tuple[str, ...] = field(default=())
    kept_class_agree: int = 0  # PyTorch detections whose best class ONNX Runtime gives too
    max_kept_box_diff: float = 0.0  # largest box difference of a PyTorch detection, fraction of the image
    min_agreement: float | None = None  # set for int8 files: judged by detection agreement

    @property
    def passed(self) -> bool:
        if self.min_agreement is None:
            return all(d.ok for d in self.outputs)
        finite = all(np.isfinite(d.max_abs_diff) for d in self.outputs)
        return finite and self.detection_agreement >= self.min_agreement

    @property
    def kept_class_agreement(self) -> float:
        """Of the PyTorch detections, the fraction whose best class is the same in ONNX Runtime (1 if none)."""
        return self.kept_class_agree / self.torch_detections if self.torch_detections else 1.0

    @property
    def top_class_agreement(self) -> float:
        return self.top_class_agree / self.queries if self.queries else 1.0

    @property
    def detection_agreement(self) -> float:
        """Matching detections above ``DETECTION_SCORE`` over the larger of the two counts (1 if none)."""
        most = max(self.torch_detections, self.onnx_detections)
        return self.matched_detections / most if most else 1.0

    def max_diff(self, name: str) -> float:
        for diff in self.outputs:
            if diff.name == name:
                return diff.max_abs_diff
        raise KeyError(name)

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        sizes = ", ".join(f"{h}x{w}" for h, w in self.sizes)
        lines = [
            f"ONNX parity {verdict}: onnxruntime ({self.provider}) vs PyTorch fp32",
            f"  model:  {self.onnx_path.name} ({self.task}, {self.precision})",
            f"  inputs: {len(self.sizes)} {self.label} image(s) in batches of {self.batch_size}, sizes {sizes}",
        ]
        for d in self.outputs:
            if self.min_agreement is not None:
                limit = "reported, not judged for int8"
            else:
                limit = f"allowed {d.allowed:.1e}"
            mark = "ok" if d.ok or self.min_agreement is not None else "TOO LARGE"
            lines.append(f"  {d.name:<12} max |diff| {d.max_abs_diff:.2e}  ({limit})  {mark}")
        lines.append(
            f"  top class agrees on {self.top_class_agree}/{self.queries} queries ({100 * self.top_class_agreement:.1f}%)"
        )
        lines.append(
            f"  detections above {DETECTION_SCORE}: {self.torch_detections} in PyTorch, {self.onnx_detections} in ONNX, "
            f"{self.matched_detections} match ({100 * self.detection_agreement:.1f}%)"
            + ("" if self.min_agreement is None else f"; {100 * self.min_agreement:.0f}% needed")
        )
        if self.torch_detections:
            lines.append(
                f"  of PyTorch's detections, {self.kept_class_agree} keep their class in ONNX "
                f"({100 * self.kept_class_agreement:.1f}%); largest box difference "
                f"{100 * self.max_kept_box_diff:.2f}% of the image"
            )
        elif self.min_agreement is not None and not self.onnx_detections:
            lines.append(
                "  no detection on either side, so agreement could not be measured: check with real images "
                "and a trained model"
            )
        return "\n".join(lines)


ParityInputs = NestedTensor | Sequence[Tensor | Image.Image | str | os.PathLike]


def default_parity_sizes(sample_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Two image sizes unlike the export sample and unlike each other (not multiples of 32)."""
    h, w = sample_hw
    return [(h * 3 // 4 + 5, w + 37), (h + 21, w * 2 // 3 + 3)]


def _synthetic_batches(meta: OnnxMetadata) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[int, int]]]:
    sample = meta.sample_shape[-2:] if len(meta.sample_shape) == 4 else DEFAULT_SAMPLE_SIZE
    sizes = default_parity_sizes((int(sample[0]), int(sample[1])))
    generator = torch.Generator().manual_seed(1)
    images = [torch.randn(3, h, w, generator=generator) for h, w in sizes]
    nested = make_batch(images)
    return [(nested.tensors, nested.mask)], sizes


def _image_batches(
    items: Sequence[Tensor | Image.Image | str | os.PathLike], meta: OnnxMetadata, batch_size: int
) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[int, int]], list[str]]:
    tensors, sources = [], []
    for item in items:
        if isinstance(item, Tensor):
            if item.dim() != 3 or item.shape[0] != 3:
                raise ValueError(f"parity inputs must be [3, H, W] tensors, got shape {tuple(item.shape)}")
            tensors.append(item.float())
            sources.append("tensor")
        else:
            img = item.convert("RGB") if isinstance(item, Image.Image) else load_image(item)
            tensors.append(prepare(img, meta.size, meta.max_size))
            sources.append("" if isinstance(item, Image.Image) else str(item))
    batches = []
    for start in range(0, len(tensors), batch_size):
        nested = make_batch(tensors[start : start + batch_size])
        batches.append((nested.tensors, nested.mask))
    return batches, [(int(t.shape[1]), int(t.shape[2])) for t in tensors], sources


def check_parity(
    onnx_path: str | os.PathLike,
    model: nn.Module,
    inputs: ParityInputs | None = None,
    atol: float | None = None,
    *,
    batch_size: int = 2,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    min_agreement: float | None = None,
    label: str | None = None,
) -> ParityReport:
    """Run the ONNX file in ONNX Runtime and ``model`` (fp32) in PyTorch on the same inputs and compare.

    inputs: None for two random images of sizes unlike the export sample, padded into one batch of 2
    (so batch, size and the padding mask all differ from the traced ones); a NestedTensor; or a list of
    [3, H, W] network-ready tensors, PIL images or image files (preprocessed as the metadata says),
    run ``batch_size`` at a time. atol: None for ``FP32_ATOL`` (``FP16_ATOL`` for an fp16 file).
    min_agreement: how the file is judged, see ``ParityReport``; None gives ``INT8_MIN_AGREEMENT`` for an
    int8 file and tolerance judging otherwise. label: what to call the inputs in the report.
    """
    import onnxruntime as ort

    path = Path(onnx_path)
    meta = read_metadata(path)
    panoptic = meta.task == "panoptic"
    if atol is None:
        atol = FP16_ATOL if meta.precision == "fp16" else FP32_ATOL
    if min_agreement is None and meta.precision == "int8":
        min_agreement = INT8_MIN_AGREEMENT
    sources: tuple[str, ...] = ()
    if inputs is None:
        batches, sizes = _synthetic_batches(meta)
        batch_size, kind = 2, "synthetic"
    elif isinstance(inputs, NestedTensor):
        batches = [(inputs.tensors.float().cpu(), inputs.mask.cpu())]
        valid = ~inputs.mask
        sizes = [(int(v.any(1).sum()), int(v.any(0).sum())) for v in valid]
        batch_size, kind = len(sizes), "given"
    else:
        if len(inputs) == 0:
            raise ValueError("check_parity: no inputs given")
        batches, sizes, names = _image_batches(inputs, meta, max(1, batch_size))
        kind, sources = "real", tuple(names)

    options = ort.SessionOptions()
    options.log_severity_level = 3  # int8 files warn about their int8 constant folding on every load
    # No spin-waiting: idle ONNX Runtime threads that spin would slow the PyTorch run that follows.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=list(providers))
    reference = ExportWrapper(model, panoptic).eval()
    device = next(model.parameters()).device
    names = _output_names(panoptic)
    max_diff = dict.fromkeys(names, 0.0)
    scale = dict.fromkeys(names, 0.0)
    totals = _Agreement()
    for images, mask in batches:
        ours = session.run(names, {"images": images.numpy(), "mask": mask.numpy()})
        with torch.inference_mode():
            theirs = [t.float().cpu().numpy() for t in reference(images.to(device), mask.to(device))]
        for name, a, b in zip(names, ours, theirs):
            if a.shape != b.shape:
                raise OnnxExportError(
                    f"{path}: output {name} has shape {list(a.shape)} in ONNX Runtime but {list(b.shape)} in PyTorch"
                )
            diff = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
            max_diff[name] = max(max_diff[name], diff if np.isfinite(diff) else float("inf"))
            scale[name] = max(scale[name], float(np.abs(b).max()) if b.size else 0.0)
        totals = totals + _agreement(ours[0], ours[1], theirs[0], theirs[1])
    outputs = tuple(OutputDiff(n, max_diff[n], atol * max(1.0, scale[n]), scale[n]) for n in names)
    return ParityReport(
        onnx_path=path,
        provider=session.get_providers()[0],
        precision=meta.precision,
        task=meta.task,
        atol=atol,
        sizes=tuple(sizes),
        batch_size=batch_size,
        outputs=outputs,
        queries=totals.queries,
        top_class_agree=totals.top_class_agree,
        torch_detections=totals.torch_detections,
        onnx_detections=totals.onnx_detections,
        matched_detections=totals.matched,
        label=label or kind,
        sources=sources,
        kept_class_agree=totals.kept_class_agree,
        max_kept_box_diff=totals.max_kept_box_diff,
        min_agreement=min_agreement,
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(-1, keepdims=True)


@dataclass(frozen=True)
class _Agreement:
    """Counts of one comparison (see ``_agreement``); ``+`` adds up batches."""

    queries: int = 0
    top_class_agree: int = 0
    torch_detections: int = 0
    onnx_detections: int = 0
    matched: int = 0
    kept_class_agree: int = 0
    max_kept_box_diff: float = 0.0

    def __add__(self, other: _Agreement) -> _Agreement:
        return _Agreement(
            self.queries + other.queries,
            self.top_class_agree + other.top_class_agree,
            self.torch_detections + other.torch_detections,
            self.onnx_detections + other.onnx_detections,
            self.matched + other.matched,
            self.kept_class_agree + other.kept_class_agree,
            max(self.max_kept_box_diff, other.max_kept_box_diff),
        )


def _agreement(
    onnx_logits: np.ndarray, onnx_boxes: np.ndarray, torch_logits: np.ndarray, torch_boxes: np.ndarray
) -> _Agreement:
    """How far two runtimes' detections agree. Logits [B, Q, C+1], boxes [B, Q, 4] normalised cxcywh.

    A detection is a query whose best real class scores above ``DETECTION_SCORE``; it matches when the
    other runtime detects the same query with the same class and a box whose coordinates are within
    ``BOX_MATCH`` of the image size. Kept-detection figures are over PyTorch's detections.
    """
    top_onnx, top_torch = onnx_logits.argmax(-1), torch_logits.argmax(-1)
    p_onnx, p_torch = _softmax(onnx_logits)[..., :-1], _softmax(torch_logits)[..., :-1]
    det_onnx = p_onnx.max(-1) > DETECTION_SCORE
    det_torch = p_torch.max(-1) > DETECTION_SCORE
    same_label = p_onnx.argmax(-1) == p_torch.argmax(-1)
    box_diff = np.abs(onnx_boxes.astype(np.float64) - torch_boxes).max(-1)  # [B, Q]
    matched = det_onnx & det_torch & same_label & (box_diff < BOX_MATCH)
    return _Agreement(
        queries=int(top_torch.size),
        top_class_agree=int((top_onnx == top_torch).sum()),
        torch_detections=int(det_torch.sum()),
        onnx_detections=int(det_onnx.sum()),
        matched=int(matched.sum()),
        kept_class_agree=int((det_torch & same_label).sum()),
        max_kept_box_diff=float(box_diff[det_torch].max()) if det_torch.any() else 0.0,
    )


# ------------------------------------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportReport:
    """What ``export_onnx`` wrote and how it checked it."""

    path: Path
    exporter: str
    opset: int
    task: str
    precision: str
    seconds: float
    size_bytes: int
    parity: tuple[ParityReport, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parity)

    def __str__(self) -> str:
        lines = [
            f"exported {self.path} ({self.size_bytes / 2**20:.1f} MiB, {self.task}, {self.precision}, "
            f"opset {self.opset}, {self.exporter} exporter, {self.seconds:.1f} s)",
            *(f"note: {n}" for n in self.notes),
        ]
        lines.extend(str(p) for p in self.parity)
        return "\n".join(lines)


def export_onnx(
    model: nn.Module,
    config: DetrConfig,
    path: str | os.PathLike,
    *,
    panoptic: bool = False,
    fp16: bool = False,
    int8: bool = False,
    calibration: Sequence[Image.Image | str | os.PathLike] | None = None,
    opset: int = 17,
    sample_size: tuple[int, int] = DEFAULT_SAMPLE_SIZE,
    class_names: dict[int, str] | None = None,
    source: str | os.PathLike | None = None,
    check_inputs: ParityInputs | None = None,
    exporter: str = "auto",
    size: int = 800,
    max_size: int | None = 1333,
    atol: float | None = None,
    min_agreement: float = INT8_MIN_AGREEMENT,
    int8_transformer: bool = True,
) -> ExportReport:
    """Export ``model`` (a DETR, or a DETRsegm for ``panoptic``) to ``path`` and check it.

    The file appears at ``path`` only after the parity check (random batch of 2 at sizes unlike
    ``sample_size``, plus ``check_inputs`` when given) passes; otherwise ``OnnxExportError`` is raised
    and nothing is left behind. ``size``/``max_size`` are the preprocessing recorded for runtimes.

    int8 (detection only): the fp32 graph is checked first, then its backbone convolutions are quantised
    with ranges calibrated on ``calibration`` (images or image files; None for synthetic demo images),
    and, unless ``int8_transformer`` is False, the transformer's feed-forward layers too (see ``quantize``);
    the int8 file is checked on the calibration images and ``check_inputs``, and must keep
    ``min_agreement`` of PyTorch's detections on each.
    """
    import onnx

    target = Path(path)
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if panoptic and not config.masks:
        raise OnnxExportError(
            f"{target}: a panoptic export needs a model with a mask head (a panoptic checkpoint)"
        )
    if fp16 and int8:
        raise ValueError("choose one of fp16 (GPUs) and int8 (CPUs)")
    if int8 and panoptic:
        raise OnnxExportError(
            f"{target}: int8 export is for detection models; export panoptic models in fp32 or fp16"
        )
    if calibration is not None and not int8:
        raise ValueError("calibration images are only used by int8 exports")
    if panoptic and exporter == "dynamo":
        raise ValueError("panoptic files are written with the TorchScript exporter; use exporter 'auto'")
    if opset < 13:
        raise ValueError(f"opset {opset} is too old for DETR; use 17 (the default) or newer")
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = model.eval()
    device = next(model.parameters()).device
    traced = model
    if int8:  # quantise convolutions that already include their frozen batch norm
        traced = copy.deepcopy(model)
        fold_frozen_batchnorm(traced)
    notes: list[str] = []

    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    quantized = tmp.with_name(tmp.name + ".int8")
    try:
        if panoptic:
            proto = _export_panoptic(traced, device, tmp, opset, sample_size, fp16, notes)
            used = "torchscript"
        else:
            net = _half_model(traced) if fp16 else traced
            wrapper = ExportWrapper(net, False, half=fp16).eval()
            used = _run_exporter(wrapper, device, tmp, opset, False, sample_size, exporter, fp16, notes)
            proto = onnx.load(str(tmp))
            if fp16:
                wrapped = _keep_softmax_fp32(proto)
                notes.append(f"{wrapped} Softmax node(s) kept in fp32")
        batch = 2 if used == "dynamo" else 1
        meta = OnnxMetadata(
            config=config if panoptic else config.replace(masks=False),
            class_names=dict(class_names or {}),
            task="panoptic" if panoptic else "detection",
            precision="fp16" if fp16 else "fp32",
            size=size,
            max_size=max_size,
            source=str(source) if source is not None else "",
            exporter=used,
            sample_shape=(batch, 3, *sample_size),
            mask_head=PANOPTIC_LAYOUT if panoptic else "",
        )
        _write(proto, meta, tmp)
        written_opset = _opset_of(proto, opset)
        del proto
        reports = [check_parity(tmp, model, None, atol)]
        if check_inputs is not None and not int8:
            reports.append(check_parity(tmp, model, check_inputs, atol))
        _raise_if_failed(reports, target)
        if int8:
            checks = (check_inputs, min_agreement, target)
            reports = _quantize_and_check(
                tmp, quantized, meta, model, calibration, int8_transformer, checks, notes
            )
            os.replace(quantized, tmp)
            meta = replace(meta, precision="int8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OnnxExportError:
        _remove(tmp, quantized)
        raise
    except Exception as exc:
        _remove(tmp, quantized)
        raise OnnxExportError(f"{target}: ONNX export failed: {_first_line(exc)}") from exc
    except BaseException:
        _remove(tmp, quantized)
        raise
    reports = [_renamed(r, target) for r in reports]
    return ExportReport(
        path=target,
        exporter=used,
        opset=written_opset,
        task=meta.task,
        precision=meta.precision,
        seconds=time.perf_counter() - start,
        size_bytes=target.stat().st_size,
        parity=tuple(reports),
        notes=tuple(notes),
    )


def _write(proto: onnx.ModelProto, meta: OnnxMetadata, path: Path) -> None:
    """Save ``proto`` at ``path`` with ``meta`` as its metadata."""
    import onnx

    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "detr-studio"
    proto.producer_version = __version__
    onnx.save(proto, str(path))


def _raise_if_failed(reports: Sequence[ParityReport], target: Path) -> None:
    failed = [r for r in reports if not r.passed]
    if failed:
        raise OnnxExportError(
            f"{target}: the exported model does not match PyTorch, so it was not written.\n"
            + "\n".join(str(r) for r in failed)
        )


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _quantize_and_check(
    fp32: Path,
    out: Path,
    meta: OnnxMetadata,
    model: nn.Module,
    calibration: Sequence[Image.Image | str | os.PathLike] | None,
    transformer: bool,
    checks: tuple[ParityInputs | None, float, Path],
    notes: list[str],
) -> list[ParityReport]:
    """Quantise the checked fp32 file ``fp32`` into ``out`` and check the int8 file against ``model``.
    checks: (further inputs to check on, the agreement needed, the target named in errors)."""
    import onnx

    from .quantize import quantize_int8, synthetic_calibration_images

    check_inputs, min_agreement, target = checks
    images = list(calibration) if calibration else synthetic_calibration_images()
    what = f"{len(images)} given image(s)" if calibration else f"{len(images)} synthetic demo images"
    info = quantize_int8(
        fp32, out, images, size=meta.size, max_size=meta.max_size, transformer=transformer, described_as=what
    )
    notes.append(f"the fp32 graph matched PyTorch before quantisation; {info.summary}")
    proto = onnx.load(str(out))
    _write(proto, replace(meta, precision="int8", quantization=info.to_json()), out)
    del proto
    # Random-noise inputs fall outside the calibrated activation ranges, so the int8 file is judged on
    # real pictures only, in padded batches of 2 (the fp32 graph passed the synthetic check above).
    reports = [
        check_parity(out, model, images, batch_size=2, min_agreement=min_agreement, label="calibration")
    ]
    if check_inputs is not None:
        reports.append(check_parity(out, model, check_inputs, min_agreement=min_agreement))
    _raise_if_failed(reports, target)
    return reports


def _run_exporter(
    wrapper: nn.Module,
    device: torch.device,
    path: Path,
    opset: int,
    panoptic: bool,
    sample_size: tuple[int, int],
    exporter: str,
    fp16: bool,
    notes: list[str],
) -> str:
    """Export with the chosen exporter; returns the one that wrote the file."""
    if exporter == "auto":
        exporter = "dynamo" if opset >= 18 else "torchscript"
        fallback = exporter == "dynamo"
    else:
        fallback = False
    if exporter == "dynamo":
        sample = tuple(t.to(device) for t in _sample_inputs(2, sample_size))
        try:
            with torch.no_grad():
                _export_dynamo(wrapper, sample, path, opset, panoptic)
            return "dynamo"
        except Exception as exc:
            if not fallback:
                raise
            notes.append(f"dynamo exporter failed ({_first_line(exc)}); used the TorchScript exporter")
    sample = tuple(t.to(device) for t in _sample_inputs(1, sample_size))
    with torch.no_grad():
        _export_torchscript(wrapper, sample, path, opset, panoptic)
    return "torchscript"


def _opset_of(proto, requested: int) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return requested


def _renamed(report: ParityReport, path: Path) -> ParityReport:
    return replace(report, onnx_path=path)
