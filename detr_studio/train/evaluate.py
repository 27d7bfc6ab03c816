"""COCO evaluation: box (and mask) AP with pycocotools, with the 12 standard numbers and per-class AP.

Panoptic quality lives in ``panoptic_quality.py``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader

from ..data.dataset import collate_fn
from ..model.box_ops import box_xyxy_to_xywh
from ..model.family import ModelFamily
from ..model.nested import NestedTensor

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoMetrics:
    """The 12 COCO numbers (fractions, -1 when undefined) and AP per category name."""

    stats: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)

    def table(self, prefix: str = "") -> str:
        lines = [f"{prefix}{name:>6}: {value:.4f}" for name, value in self.stats.items()]
        return "\n".join(lines)


def coco_from_dict(data: dict) -> COCO:
    """An in-memory pycocotools COCO object (no file, no prints)."""
    gt = COCO()
    gt.dataset = copy.deepcopy(data)
    gt.dataset.setdefault("info", {})
    gt.dataset.setdefault("licenses", [])
    for ann in gt.dataset.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_metrics(gt: COCO, results: list[dict], iou_type: str = "bbox") -> CocoMetrics:
    """Run COCOeval on ``results`` (COCO results entries) against ``gt``."""
    names = {c["id"]: c["name"] for c in gt.dataset.get("categories", [])}
    if not results:
        return CocoMetrics({name: 0.0 for name in STAT_NAMES}, {names[c]: 0.0 for c in sorted(names)})
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names.get(cat_id, str(cat_id))] = float(p.mean()) if p.size else -1.0
    return CocoMetrics(stats, per_class)


Forward = Callable[[NestedTensor], Mapping[str, torch.Tensor]]


@torch.no_grad()
def predict_dataset(
    model: nn.Module | Forward,
    family: ModelFamily,
    dataset,
    device: torch.device,
    batch_size: int = 2,
    masks: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Run ``model`` (a network of ``family``, or any function of a padded batch returning its
    "pred_logits" and "pred_boxes", such as an ONNX Runtime session) over a dataset built with the val
    transforms.

    -> (box results, mask results) as COCO results entries in original image coordinates; every row the
    family reports is kept (no threshold), as COCO evaluation expects.
    """
    if isinstance(model, nn.Module):
        model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=0)
    boxes_out: list[dict] = []
    masks_out: list[dict] = []
    done = 0
    for samples, targets in loader:
        samples = samples.to(device)
        with autocast():
            outputs = model(samples)
        outputs = {k: v.float() for k, v in outputs.items() if isinstance(v, torch.Tensor)}
        orig = torch.stack([t["orig_size"] for t in targets]).to(device)  # [B, 2] (h, w)
        results = family.postprocess(outputs, orig)
        image_masks = None
        if masks:
            sizes = torch.stack([t["size"] for t in targets]).to(device)
            image_masks = family.instance_masks(outputs, orig, sizes)  # per image [Q, 1, H0, W0]
        for i, (target, res) in enumerate(zip(targets, results)):
            image_id = int(target["image_id"])
            xywh = box_xyxy_to_xywh(res.boxes).cpu().tolist()
            rows = zip(xywh, res.scores.tolist(), res.labels.tolist(), res.query_index.tolist())
            for box, score, label, query in rows:
                boxes_out.append(
                    {"image_id": image_id, "category_id": int(label), "bbox": box, "score": score}
                )
                if image_masks is not None:
                    m = np.asfortranarray(image_masks[i][query, 0].cpu().numpy().astype(np.uint8))
                    rle = mask_utils.encode(m)
                    rle["counts"] = rle["counts"].decode("ascii")
                    masks_out.append(
                        {"image_id": image_id, "category_id": int(label), "segmentation": rle, "score": score}
                    )
        done += len(targets)
        if progress is not None:
            progress(done, len(dataset))
    return boxes_out, masks_out


def evaluate_coco(
    model: nn.Module | Forward,
    family: ModelFamily,
    dataset,
    device: torch.device,
    batch_size: int = 2,
    masks: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, CocoMetrics]:
    """Box AP (and mask AP with ``masks``) of ``model`` on ``dataset``: {"bbox": …, "segm": …}."""
    gt = coco_from_dict(dataset.coco_dict())
    box_results, mask_results = predict_dataset(
        model, family, dataset, device, batch_size, masks, autocast, progress
    )
    metrics = {"bbox": coco_metrics(gt, box_results, "bbox")}
    if masks:
        metrics["segm"] = coco_metrics(gt, mask_results, "segm")
    return metrics


def flatten_metrics(metrics: dict[str, CocoMetrics]) -> dict[str, float]:
    """{"AP": …, "AP50": …, "segm_AP": …} for events and logs."""
    flat: dict[str, float] = {}
    for kind, m in metrics.items():
        prefix = "" if kind == "bbox" else f"{kind}_"
        flat.update({prefix + k: v for k, v in m.stats.items()})
    return flat
