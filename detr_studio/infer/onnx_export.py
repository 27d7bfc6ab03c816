"""Export a model of any family to ONNX, and check the exported file against PyTorch before it appears.

The exported graph (``ModelFamily.onnx_graph``) takes an already padded batch, ``images`` [B, 3, H, W] float32
and its padding ``mask`` [B, H, W] bool (True = padding), so batch, height and width are all dynamic: the
per-image padding loop of the reference (which bakes the batch size into the graph, detr #556) stays outside.
Outputs: ``pred_logits`` [B, Q, K], ``pred_boxes`` [B, Q, 4] normalised cxcywh and, for panoptic exports,
``pred_masks`` [B, Q, H/4, W/4] mask logits of every query (``onnx_panoptic``).

Everything a runtime needs travels in the file's metadata (``onnx_metadata``): the family, its config, class
names, preprocessing, the source checkpoint and the task. The exporters and fp16 graphs are in
``onnx_graphs``; fp16 files are checked against the fp32 PyTorch model with a looser tolerance.

int8 exports (``int8=True``, CPUs) quantise the backbone's convolutions after the fp32 file has passed its
check (see ``quantize``); they are judged by the agreement of their detections with PyTorch fp32
(``INT8_MIN_AGREEMENT``), not by the size of their differences, and carry a ``quantization`` entry in
their metadata.

Every export writes to a temporary file beside the target, checks parity on inputs whose batch and size
differ from the export sample (``onnx_parity``), and only then moves the file into place.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from torch import nn

from .. import __version__
from ..model.config_fields import ModelConfig
from ..model.fuse import fold_frozen_batchnorm
from ..model.registry import family_of
from .onnx_graphs import EXPORTERS, half_model, keep_softmax_fp32, opset_of, run_exporter
from .onnx_metadata import PANOPTIC_LAYOUT, OnnxMetadata, first_line
from .onnx_panoptic import export_panoptic
from .onnx_parity import DEFAULT_SAMPLE_SIZE, INT8_MIN_AGREEMENT, ParityInputs, ParityReport, check_parity

if TYPE_CHECKING:
    import onnx


class OnnxExportError(Exception):
    """An export that failed or did not match PyTorch; the message names the file."""


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
    config: ModelConfig,
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
    """Export ``model`` (of ``config``'s family; with a mask head for ``panoptic``) to ``path`` and check it.

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
    family = family_of(config.family_name)
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if panoptic and not family.has_masks(config):
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
            proto = export_panoptic(family, traced, device, tmp, opset, sample_size, fp16, notes)
            used = "torchscript"
        else:
            net = half_model(traced) if fp16 else traced
            graph = family.onnx_graph(net, half=fp16).eval()
            outputs = list(family.onnx_outputs())
            used = run_exporter(graph, outputs, device, tmp, opset, sample_size, exporter, notes)
            proto = onnx.load(str(tmp))
            if fp16:
                wrapped = keep_softmax_fp32(proto)
                notes.append(f"{wrapped} Softmax node(s) kept in fp32")
        batch = 2 if used == "dynamo" else 1
        meta = OnnxMetadata(
            config=config if panoptic else family.detector_config(config),
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
        written_opset = opset_of(proto, opset)
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
        raise OnnxExportError(f"{target}: ONNX export failed: {first_line(exc)}") from exc
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


def _renamed(report: ParityReport, path: Path) -> ParityReport:
    return replace(report, onnx_path=path)
