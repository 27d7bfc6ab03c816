"""The check after every export: ONNX Runtime against PyTorch on inputs unlike the export sample.

fp32 and fp16 files are judged by the size of their output differences; int8 files by how many of PyTorch's
detections they keep (``ParityReport``). Detections are the family's own (``ModelFamily.score_queries``): a row
counts when it scores above ``DETECTION_SCORE``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..data.images import load_image
from ..data.preprocess import batch as make_batch
from ..data.preprocess import prepare
from ..model.family import ModelFamily
from ..model.nested import NestedTensor
from .onnx_metadata import OnnxMetadata, read_metadata

FP32_ATOL = 1e-4
FP16_ATOL = 2e-2  # fp16 weights and activations against the fp32 PyTorch model
INT8_MIN_AGREEMENT = 0.9  # int8 files: detections that must match PyTorch fp32 (see ParityReport)
DETECTION_SCORE = 0.5  # detections compared between the two runtimes score above this
BOX_MATCH = 0.01  # matching detections: box corners within this fraction of the image
DEFAULT_SAMPLE_SIZE = (320, 416)


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
    family = meta.family
    reference = family.onnx_graph(model, panoptic=panoptic).eval()
    device = next(model.parameters()).device
    names = list(family.onnx_outputs(panoptic))
    max_diff = dict.fromkeys(names, 0.0)
    scale = dict.fromkeys(names, 0.0)
    totals = _Agreement()
    for images, mask in batches:
        ours = session.run(names, {"images": images.numpy(), "mask": mask.numpy()})
        with torch.inference_mode():
            theirs = [t.float().cpu().numpy() for t in reference(images.to(device), mask.to(device))]
        for name, a, b in zip(names, ours, theirs):
            if a.shape != b.shape:
                raise ValueError(
                    f"{path}: output {name} has shape {list(a.shape)} in ONNX Runtime but {list(b.shape)} in PyTorch"
                )
            diff = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
            max_diff[name] = max(max_diff[name], diff if np.isfinite(diff) else float("inf"))
            scale[name] = max(scale[name], float(np.abs(b).max()) if b.size else 0.0)
        totals = totals + _agreement(family, ours[0], ours[1], theirs[0], theirs[1])
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
    family: ModelFamily,
    onnx_logits: np.ndarray,
    onnx_boxes: np.ndarray,
    torch_logits: np.ndarray,
    torch_boxes: np.ndarray,
) -> _Agreement:
    """How far two runtimes' detections agree. Logits [B, Q, K], boxes [B, Q, 4] normalised cxcywh.

    A detection is a query whose best real class (``ModelFamily.class_probs``) scores above
    ``DETECTION_SCORE``; it matches when the other runtime detects the same query with the same class and a
    box whose coordinates are within ``BOX_MATCH`` of the image size. Kept-detection figures are over
    PyTorch's detections.
    """
    top_onnx, top_torch = onnx_logits.argmax(-1), torch_logits.argmax(-1)
    p_onnx = family.class_probs(torch.from_numpy(onnx_logits).float()).numpy()  # [B, Q, C]
    p_torch = family.class_probs(torch.from_numpy(torch_logits).float()).numpy()
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
