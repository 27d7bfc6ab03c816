"""Writing a network as an ONNX graph: the TorchScript and dynamo exporters, and fp16 graphs.

The TorchScript exporter writes opset 17 natively in seconds and, with the batched graph of
``model/export_graph.py``, gives a truly dynamic batch. The dynamo exporter implements opset 18 and up only (its
conversion down to 17 writes an invalid ``Split``), needs a sample batch of at least 2 so that the batch is not
specialised, and takes minutes; ``exporter="auto"`` therefore uses TorchScript below opset 18 and dynamo
(falling back to TorchScript) from 18.

fp16 graphs convert weights and activations to half precision but keep LayerNorm, GroupNorm and Softmax in
fp32 (LayerNorm and Softmax overflow in fp16, TensorRT #2564 / #4111); inputs and outputs stay float32.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .onnx_metadata import INPUT_NAMES, first_line

EXPORTERS = ("auto", "torchscript", "dynamo")
IMAGE_AXES: dict[str, dict[int, str]] = {
    "images": {0: "batch", 2: "height", 3: "width"},
    "mask": {0: "batch", 1: "height", 2: "width"},
}


class _Fp32Norm(nn.Module):
    """Runs a normalisation layer in fp32 inside an fp16 network."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.float()).to(x.dtype)


def half_model(model: nn.Module) -> nn.Module:
    """A copy in fp16 whose LayerNorm and GroupNorm layers stay in fp32."""
    half = copy.deepcopy(model).half()
    for module in list(half.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.LayerNorm, nn.GroupNorm)):
                setattr(module, name, _Fp32Norm(child))
    return half


def sample_inputs(batch: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """A random (images [B, 3, h, w], mask [B, h, w]) to trace with; the last of several images is padded."""
    h, w = size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, h, w, generator=generator)
    mask = torch.zeros(batch, h, w, dtype=torch.bool)
    if batch > 1:  # a padded last image, so the traced graph sees a real mask
        mask[-1, h - h // 4 :, :] = True
        mask[-1, :, w - w // 4 :] = True
        images[-1][:, mask[-1]] = 0
    return images, mask


def trace(
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


def _export_dynamo(
    graph: nn.Module, sample: tuple[Tensor, Tensor], path: Path, opset: int, outputs: list[str]
):
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
                graph,
                sample,
                dynamo=True,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=outputs,
                dynamic_shapes=shapes,
                verbose=False,
            )
    finally:
        optimizer_log.setLevel(level)
    program.save(str(path))


def keep_softmax_fp32(proto) -> int:
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


def run_exporter(
    graph: nn.Module,
    outputs: list[str],
    device: torch.device,
    path: Path,
    opset: int,
    sample_size: tuple[int, int],
    exporter: str,
    notes: list[str],
) -> str:
    """Export ``graph`` (outputs batched along their first axis) with the chosen exporter; returns the one
    that wrote the file."""
    if exporter == "auto":
        exporter = "dynamo" if opset >= 18 else "torchscript"
        fallback = exporter == "dynamo"
    else:
        fallback = False
    if exporter == "dynamo":
        sample = tuple(t.to(device) for t in sample_inputs(2, sample_size))
        try:
            with torch.no_grad():
                _export_dynamo(graph, sample, path, opset, outputs)
            return "dynamo"
        except Exception as exc:
            if not fallback:
                raise
            notes.append(f"dynamo exporter failed ({first_line(exc)}); used the TorchScript exporter")
    sample = tuple(t.to(device) for t in sample_inputs(1, sample_size))
    axes = {**IMAGE_AXES, **{name: {0: "batch"} for name in outputs}}
    with torch.no_grad():
        trace(graph, sample, path, opset, list(INPUT_NAMES), outputs, axes)
    return "torchscript"


def opset_of(proto, requested: int) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return requested
