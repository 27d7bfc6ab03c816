"""int8 quantisation of an exported fp32 DETR ONNX file, for ONNX Runtime on CPUs.

What is quantised:
- the backbone's convolutions (about three quarters of DETR's CPU time), statically, in the QDQ format
  that ONNX Runtime fuses into integer convolutions: weights int8 per output channel, within 7 bits
  (``reduce_range``) so that CPUs without VNNI, whose 8-bit multiply-adds saturate, compute them exactly;
  activations uint8 per tensor with min/max ranges calibrated on a few images run through our own
  preprocessing;
- unless ``transformer=False``, the transformer's feed-forward layers (linear1 / linear2, the largest
  matrix products after the backbone), dynamically: int8 weights per column, activations quantised at run
  time from their own range, so no calibration range can be wrong for them.
The input projection, the attention layers and the heads stay fp32.

Calibration images are the user's (``--calibration``) or, without them, pictures from the synthetic demo
generator. The quantised file is judged afterwards by how many detections it shares with the fp32 model
(``onnx_export.check_parity``), which only means something for a trained model on real images.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from ..data.images import load_image
from ..data.preprocess import batch as make_batch
from ..data.preprocess import prepare
from ..data.synthetic import render_image

DEFAULT_CALIBRATION_IMAGES = 8
SYNTHETIC_SIDE = 640  # longer side of the generated calibration pictures (preprocessing resizes them)
QUANTIZED_OPS = ("Conv",)

ImageLike = Image.Image | str | os.PathLike


class QuantizationError(Exception):
    """Quantisation that could not be done; the message names the file or image and the problem."""


@dataclass(frozen=True)
class QuantizationInfo:
    """What ``quantize_int8`` did, also stored (``to_json``) in the file's metadata."""

    nodes: int  # quantised convolutions
    total_convolutions: int
    calibration: str  # e.g. "8 synthetic demo images"
    reduce_range: bool
    feed_forward: int = 0  # transformer feed-forward layers quantised dynamically

    @property
    def summary(self) -> str:
        weights = "int8 per channel" + (" (7-bit range)" if self.reduce_range else "")
        transformer = (
            f"{self.feed_forward} transformer feed-forward layers dynamic int8; attention and heads fp32"
            if self.feed_forward
            else "transformer and heads fp32"
        )
        return (
            f"int8: {self.nodes} of {self.total_convolutions} convolutions quantised (the backbone), weights "
            f"{weights}, activations uint8 calibrated on {self.calibration}; {transformer}"
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "method": "onnxruntime static QDQ (convolutions), dynamic (feed-forward)",
                "quantized": "backbone convolutions",
                "nodes": self.nodes,
                "weights": "int8 per channel",
                "reduce_range": self.reduce_range,
                "activations": "uint8 per tensor, min/max calibration",
                "calibration": self.calibration,
                "feed_forward_layers": self.feed_forward,
            }
        )


def synthetic_calibration_images(count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> list[Image.Image]:
    """``count`` pictures from the synthetic demo generator (shapes on textured backgrounds)."""
    return [
        Image.fromarray(render_image(np.random.default_rng([seed, 9, k]), SYNTHETIC_SIDE).image)
        for k in range(count)
    ]


class CalibrationImages(CalibrationDataReader):
    """Feeds ONNX Runtime's calibrator one image at a time, preprocessed as our predictors do:
    {"images": [1, 3, h, w] float32, "mask": [1, h, w] bool}."""

    def __init__(self, images: Sequence[ImageLike], size: int, max_size: int | None):
        if not images:
            raise QuantizationError("int8 calibration needs at least one image")
        self.images = list(images)
        self.size = size
        self.max_size = max_size
        self._items: Iterator[ImageLike] = iter(self.images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        if item is None:
            return None
        img = item.convert("RGB") if isinstance(item, Image.Image) else load_image(item)
        nested = make_batch([prepare(img, self.size, self.max_size)])
        return {"images": nested.tensors.numpy(), "mask": nested.mask.numpy()}

    def rewind(self) -> None:
        self._items = iter(self.images)

    def __len__(self) -> int:
        return len(self.images)


def backbone_convolutions(proto: onnx.ModelProto) -> list[str]:
    """Names of the convolutions whose weights belong to the backbone (``...backbone...weight``)."""
    return [
        node.name
        for node in proto.graph.node
        if node.op_type == "Conv" and len(node.input) > 1 and "backbone" in node.input[1]
    ]


def feed_forward_layers(proto: onnx.ModelProto) -> list[str]:
    """Names of the matrix products of the transformer's feed-forward layers (linear1 / linear2), found by
    the module scope the TorchScript exporter writes into node names; none for other exporters."""
    constants = {t.name for t in proto.graph.initializer}
    return [
        node.name
        for node in proto.graph.node
        if node.op_type == "MatMul"
        and "/transformer/" in node.name
        and ("/linear1/" in node.name or "/linear2/" in node.name)
        and node.input[1] in constants
    ]


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    images: Sequence[ImageLike],
    *,
    size: int = 800,
    max_size: int | None = 1333,
    reduce_range: bool = True,
    transformer: bool = True,
    described_as: str = "",
) -> QuantizationInfo:
    """Write an int8 copy of the fp32 ONNX file ``fp32_path`` at ``out_path`` (see the module docstring).

    images: calibration pictures or image files, preprocessed with ``size``/``max_size``. The metadata
    of the input file is not carried over; the caller writes the int8 file's own.
    """
    source = Path(fp32_path)
    reader = CalibrationImages(images, size, max_size)
    with tempfile.TemporaryDirectory(prefix="detr-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        # Constant folding and shape inference first, as ONNX Runtime's quantiser recommends: it turns
        # shared or computed conv biases into plain initializers, which the integer kernels need.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        proto = onnx.load(str(prepared), load_external_data=False)
        chosen = backbone_convolutions(proto)
        feed_forward = feed_forward_layers(proto) if transformer else []
        total = sum(node.op_type == "Conv" for node in proto.graph.node)
        del proto
        if not chosen:
            raise QuantizationError(f"{source}: no backbone convolutions found to quantise")
        static = Path(folder) / "static.onnx" if feed_forward else Path(out_path)
        quantize_static(
            str(prepared),
            str(static),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=chosen,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,  # keeps only a min and a max per tensor and image
        )
        if feed_forward:
            quantize_dynamic(
                str(static),
                str(out_path),
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=feed_forward,
                per_channel=True,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
            )
    return QuantizationInfo(
        nodes=len(chosen),
        total_convolutions=total,
        calibration=described_as or f"{len(images)} image(s)",
        reduce_range=reduce_range,
        feed_forward=len(feed_forward),
    )
