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

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .. import __version__
from ..data.images import load_image
from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, prepare
from ..data.preprocess import batch as make_batch
from ..model.checkpoint import detector_of
from ..model.config import DetrConfig
from ..model.nested import NestedTensor

INPUT_NAMES = ("images", "mask")
DETECTION_OUTPUTS = ("pred_logits", "pred_boxes")
MASK_OUTPUT = "pred_masks"
EXPORTERS = ("auto", "torchscript", "dynamo")
FP32_ATOL = 1e-4
FP16_ATOL = 2e-2  # fp16 weights and activations against the fp32 PyTorch model
DETECTION_SCORE = 0.5  # detections compared between the two runtimes score above this
META_PREFIX = "detr_studio."
DEFAULT_SAMPLE_SIZE = (320, 416)


class OnnxExportError(Exception):
    """An export that failed or did not match PyTorch; the message names the file."""


# --------------------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class OnnxMetadata:
    """What a runtime needs beside the graph, stored as ``metadata_props`` of the ONNX file."""

    config: DetrConfig
    class_names: dict[int, str]
    task: str  # "detection" | "panoptic"
    precision: str  # "fp32" | "fp16"
    size: int = 800
    max_size: int | None = 1333
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""
    version: str = __version__
    exporter: str = ""
    sample_shape: tuple[int, ...] = ()  # [B, 3, H, W] the graph was traced with

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

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
        return cls(
            config=config,
            class_names=names,
            task=ours["task"],
            precision=ours.get("precision", "fp32"),
            size=size,
            max_size=max_size,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            source=ours.get("source", ""),
            version=ours.get("version", ""),
            exporter=ours.get("exporter", ""),
            sample_shape=sample,
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


def _export_torchscript(
    wrapper: nn.Module, sample: tuple[Tensor, Tensor], path: Path, opset: int, panoptic: bool
):
    names = _output_names(panoptic)
    axes: dict[str, dict[int, str]] = {
        "images": {0: "batch", 2: "height", 3: "width"},
        "mask": {0: "batch", 1: "height", 2: "width"},
    }
    for name in names:
        axes[name] = {0: "batch"}
    if panoptic:
        axes[MASK_OUTPUT] = {0: "batch", 2: "mask_height", 3: "mask_width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; parity is checked afterwards
        torch.onnx.export(
            wrapper,
            sample,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=names,
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

    An output passes when its max |diff| is at most ``atol * max(1, max |PyTorch value|)``: the
    tolerance grows with the output's scale (mask logits reach tens) and is plain ``atol`` for
    probabilities and boxes. Detection agreement is reported for reading, not judged.
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
    label: str = "synthetic"  # what the inputs were: "synthetic" or "images"
    sources: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(d.ok for d in self.outputs)

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
            mark = "ok" if d.ok else "TOO LARGE"
            lines.append(f"  {d.name:<12} max |diff| {d.max_abs_diff:.2e}  (allowed {d.allowed:.1e})  {mark}")
        lines.append(
            f"  top class agrees on {self.top_class_agree}/{self.queries} queries ({100 * self.top_class_agreement:.1f}%)"
        )
        lines.append(
            f"  detections above {DETECTION_SCORE}: {self.torch_detections} in PyTorch, {self.onnx_detections} in ONNX, "
            f"{self.matched_detections} match ({100 * self.detection_agreement:.1f}%)"
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
) -> ParityReport:
    """Run the ONNX file in ONNX Runtime and ``model`` (fp32) in PyTorch on the same inputs and compare.

    inputs: None for two random images of sizes unlike the export sample, padded into one batch of 2
    (so batch, size and the padding mask all differ from the traced ones); a NestedTensor; or a list of
    [3, H, W] network-ready tensors, PIL images or image files (preprocessed as the metadata says),
    run ``batch_size`` at a time. atol: None for ``FP32_ATOL`` (``FP16_ATOL`` for an fp16 file).
    """
    import onnxruntime as ort

    path = Path(onnx_path)
    meta = read_metadata(path)
    panoptic = meta.task == "panoptic"
    if atol is None:
        atol = FP16_ATOL if meta.precision == "fp16" else FP32_ATOL
    label, sources = "synthetic", ()
    if inputs is None:
        batches, sizes = _synthetic_batches(meta)
        batch_size = 2
    elif isinstance(inputs, NestedTensor):
        batches = [(inputs.tensors.float().cpu(), inputs.mask.cpu())]
        valid = ~inputs.mask
        sizes = [(int(v.any(1).sum()), int(v.any(0).sum())) for v in valid]
        batch_size = len(sizes)
        label = "given"
    else:
        if len(inputs) == 0:
            raise ValueError("check_parity: no inputs given")
        batches, sizes, names = _image_batches(inputs, meta, max(1, batch_size))
        label, sources = "real", tuple(names)

    session = ort.InferenceSession(str(path), providers=list(providers))
    reference = ExportWrapper(model, panoptic).eval()
    device = next(model.parameters()).device
    names = _output_names(panoptic)
    max_diff = dict.fromkeys(names, 0.0)
    scale = dict.fromkeys(names, 0.0)
    queries = agree = torch_dets = onnx_dets = matched = 0
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
        stats = _agreement(ours[0], ours[1], theirs[0], theirs[1])
        queries += stats[0]
        agree += stats[1]
        torch_dets += stats[2]
        onnx_dets += stats[3]
        matched += stats[4]
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
        queries=queries,
        top_class_agree=agree,
        torch_detections=torch_dets,
        onnx_detections=onnx_dets,
        matched_detections=matched,
        label=label,
        sources=sources,
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(-1, keepdims=True)


def _agreement(
    onnx_logits: np.ndarray, onnx_boxes: np.ndarray, torch_logits: np.ndarray, torch_boxes: np.ndarray
) -> tuple[int, int, int, int, int]:
    """(queries, queries whose top class agrees, torch detections, onnx detections, matching detections).

    Logits [B, Q, C+1], boxes [B, Q, 4]. A detection is a query whose best real class scores above
    ``DETECTION_SCORE``; it matches when the other runtime detects the same query with the same class
    and a box whose corners are within 1% of the image.
    """
    top_onnx, top_torch = onnx_logits.argmax(-1), torch_logits.argmax(-1)
    p_onnx, p_torch = _softmax(onnx_logits)[..., :-1], _softmax(torch_logits)[..., :-1]
    det_onnx = p_onnx.max(-1) > DETECTION_SCORE
    det_torch = p_torch.max(-1) > DETECTION_SCORE
    same_label = p_onnx.argmax(-1) == p_torch.argmax(-1)
    close = np.abs(onnx_boxes - torch_boxes).max(-1) < 0.01
    matched = det_onnx & det_torch & same_label & close
    return (
        int(top_torch.size),
        int((top_onnx == top_torch).sum()),
        int(det_torch.sum()),
        int(det_onnx.sum()),
        int(matched.sum()),
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
    opset: int = 17,
    sample_size: tuple[int, int] = DEFAULT_SAMPLE_SIZE,
    class_names: dict[int, str] | None = None,
    source: str | os.PathLike | None = None,
    check_inputs: ParityInputs | None = None,
    exporter: str = "auto",
    size: int = 800,
    max_size: int | None = 1333,
    atol: float | None = None,
) -> ExportReport:
    """Export ``model`` (a DETR, or a DETRsegm for ``panoptic``) to ``path`` and check it.

    The file appears at ``path`` only after the parity check (random batch of 2 at sizes unlike
    ``sample_size``, plus ``check_inputs`` when given) passes; otherwise ``OnnxExportError`` is raised
    and nothing is left behind. ``size``/``max_size`` are the preprocessing recorded for runtimes.
    """
    import onnx

    target = Path(path)
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if panoptic and not config.masks:
        raise OnnxExportError(
            f"{target}: a panoptic export needs a model with a mask head (a panoptic checkpoint)"
        )
    if opset < 13:
        raise ValueError(f"opset {opset} is too old for DETR; use 17 (the default) or newer")
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = model.eval()
    device = next(model.parameters()).device
    net = _half_model(model) if fp16 else model
    wrapper = ExportWrapper(net, panoptic, half=fp16).eval()
    notes: list[str] = []

    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        used = _run_exporter(wrapper, device, tmp, opset, panoptic, sample_size, exporter, fp16, notes)
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
        )
        del proto.metadata_props[:]
        for key, value in meta.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        written_opset = _opset_of(proto, opset)
        proto.producer_name = "detr-studio"
        proto.producer_version = __version__
        onnx.save(proto, str(tmp))
        reports = [check_parity(tmp, model, None, atol)]
        if check_inputs is not None:
            reports.append(check_parity(tmp, model, check_inputs, atol))
        failed = [r for r in reports if not r.passed]
        if failed:
            raise OnnxExportError(
                f"{target}: the exported model does not match PyTorch, so it was not written.\n"
                + "\n".join(str(r) for r in failed)
            )
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OnnxExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"{target}: ONNX export failed: {_first_line(exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
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
