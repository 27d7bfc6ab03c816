"""Measure a loaded model on a COCO file: the one path that ``detr-studio eval`` and the window's before/after
comparison of a fine-tuning run share.

`evaluation_dataset` reads the COCO file with the validation transforms at the model's input size;
`measure` runs the model over it under ``torch.inference_mode`` and returns an `EvalReport` (box and mask AP,
or panoptic quality). Loading the model is the caller's part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import CocoDetectionDataset, CocoPanopticDataset
from ..data.transforms import make_transforms
from ..model.family import ModelFamily
from .evaluate import CocoMetrics, evaluate_coco, flatten_metrics
from .panoptic_quality import PanopticMetrics, evaluate_panoptic

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalReport:
    """What one evaluation measured: COCO ``metrics`` ({"bbox": …, "segm": …}) or ``panoptic`` quality."""

    metrics: dict[str, CocoMetrics] | None = None
    panoptic: PanopticMetrics | None = None

    def tables(self) -> dict[str, dict[str, float]]:
        """The named tables ``detr-studio eval`` prints and writes: per kind, then per class."""
        if self.panoptic is not None:
            return {"panoptic": self.panoptic.flat(), "per_class_pq": self.panoptic.per_class_pq()}
        assert self.metrics is not None
        tables = {kind: m.stats for kind, m in self.metrics.items()}
        tables["per_class_ap"] = self.metrics["bbox"].per_class
        return tables

    def flat(self) -> dict[str, float]:
        """{"AP": …, "AP50": …, "segm_AP": …} or the panoptic numbers, for events and run records."""
        if self.panoptic is not None:
            return self.panoptic.flat()
        assert self.metrics is not None
        return flatten_metrics(self.metrics)


def evaluation_dataset(
    data: str | Path,
    images: str | Path,
    size: int,
    max_size: int | None,
    *,
    masks: bool = False,
    panoptic: bool = False,
    panoptic_masks: str | Path | None = None,
) -> CocoDetectionDataset | CocoPanopticDataset:
    """The COCO file ``data`` (images under ``images``) with the validation transforms at ``size``.
    Panoptic PNGs default to the folder beside the JSON named like it. Raises `DatasetError` for bad data."""
    transforms = make_transforms("val", scales=[size], max_size=max_size)
    if panoptic:
        pan_root = panoptic_masks or str(Path(data).with_suffix(""))
        return CocoPanopticDataset(str(data), str(images), str(pan_root), transforms)
    return CocoDetectionDataset(str(data), str(images), transforms, masks=masks)


def measure(
    model: nn.Module | Callable,
    family: ModelFamily,
    dataset: CocoDetectionDataset | CocoPanopticDataset,
    device: torch.device,
    *,
    batch_size: int = 1,
    masks: bool = False,
    progress: Progress | None = None,
) -> EvalReport:
    """AP (box, and mask with ``masks``) or, on a panoptic dataset, PQ of ``model`` (a network of ``family``,
    or a forward over padded batches such as an ONNX Runtime session's) on ``dataset``."""
    if isinstance(model, nn.Module):
        model.to(device).eval()
    with torch.inference_mode():
        if isinstance(dataset, CocoPanopticDataset):
            return EvalReport(panoptic=evaluate_panoptic(model, dataset, device, progress=progress))
        metrics = evaluate_coco(model, family, dataset, device, batch_size, masks, progress=progress)
        return EvalReport(metrics=metrics)
