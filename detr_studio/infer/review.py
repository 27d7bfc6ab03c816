"""Where to look next: images ranked by how unsure the model is, and predictions that disagree with the labels.

Uncertainty is measured on a query's class distribution ``p`` ([C+1], no-object last) in one of three ways:
normalised entropy ``-sum p log p / log(C+1)``; top-2 margin, ``1 - (p1 - p2)`` over the two largest entries;
and no-object mass, ``1 - |2 p_no_object - 1|`` (1 when the model cannot tell object from background).
Entropy and margin look at queries that put at least ``CANDIDATE_MASS`` on real classes (the rest are
confident background); queries the user already accepted or rejected are left out.

Mistakes are found by greedy IoU matching at 0.5 (best-scoring prediction first, same-class labels preferred):
a label no prediction matches is a miss, a prediction that matches no label an extra box, a match of another
class a wrong class. The IoU is `model.box_ops.box_iou`; classes are compared by `data.labels.same_class`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..data.coco import Annotation, CocoDocument
from ..data.labels import label_name, same_class
from .detections import Detections

ENTROPY, MARGIN, NO_OBJECT = "entropy", "margin", "no_object"
MEASURES = {ENTROPY: "Entropy", MARGIN: "Top-2 margin", NO_OBJECT: "No-object mass"}
CANDIDATE_MASS = 0.1  # a query with less probability on real classes is confident background
MATCH_IOU = 0.5
MISS, EXTRA, WRONG_CLASS = "miss", "extra box", "wrong class"


# ------------------------------------------------------------------------------------------- uncertainty


def query_uncertainty(probs: np.ndarray, measure: str) -> np.ndarray:
    """[Q] uncertainty in [0, 1] of each row of ``probs`` [Q, C+1] (no-object last)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be [Q, C+1] with C >= 1, got shape {p.shape}")
    if measure == ENTROPY:
        logs = np.log(np.clip(p, 1e-12, 1.0))
        return -(p * logs).sum(1) / np.log(p.shape[1])
    if measure == MARGIN:
        top2 = np.sort(p, axis=1)[:, -2:]  # [Q, 2] ascending
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if measure == NO_OBJECT:
        return 1.0 - np.abs(2.0 * p[:, -1] - 1.0)
    raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")


@dataclass(frozen=True)
class UncertainImage:
    image_id: int
    score: float  # the uncertainty of its most doubtful query
    query_id: int | None  # that query (None when no query counts)


def image_uncertainty(dets: Detections, measure: str, skip: Iterable[int] = ()) -> tuple[float, int | None]:
    """(uncertainty, query id) of the most doubtful query of one image; queries in ``skip`` are left out."""
    if len(dets) == 0:
        return 0.0, None
    values = query_uncertainty(dets.probs, measure)  # [Q]
    keep = ~np.isin(dets.query_ids, np.fromiter(skip, dtype=np.int64))
    if measure != NO_OBJECT:
        keep &= (1.0 - dets.no_object) >= CANDIDATE_MASS
    if not keep.any():
        return 0.0, None
    rows = np.flatnonzero(keep)
    best = rows[int(np.argmax(values[rows]))]
    return float(values[best]), int(dets.query_ids[best])


def rank_uncertain(
    images: Iterable[tuple[int, Detections, Collection[int]]], measure: str
) -> list[UncertainImage]:
    """(image id, all its queries, query ids the user already dealt with) -> most uncertain first (ties:
    lower image id first)."""
    ranked = []
    for image_id, dets, dealt_with in images:
        score, query = image_uncertainty(dets, measure, dealt_with)
        ranked.append(UncertainImage(image_id, score, query))
    ranked.sort(key=lambda u: (-u.score, u.image_id))
    return ranked


# ------------------------------------------------------------------------------------------- mistakes


@dataclass(frozen=True)
class Mistake:
    image_id: int
    kind: str  # MISS, EXTRA or WRONG_CLASS
    annotation_id: int | None  # the label (misses, wrong classes)
    query_id: int | None  # the prediction (extra boxes, wrong classes)
    iou: float
    detail: str  # class names, score


def _pairwise_iou(predicted: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """[P, L] IoU of xyxy boxes [P, 4] and [L, 4]; a pair whose union is empty has IoU 0."""
    import torch

    from ..model.box_ops import box_iou

    iou, _ = box_iou(torch.from_numpy(predicted), torch.from_numpy(labelled))
    return torch.nan_to_num(iou, nan=0.0).numpy()


def image_mistakes(
    doc: CocoDocument,
    image_id: int,
    labels: list[Annotation],
    predictions: Detections,
    model_names: Mapping[int, str],
    iou_threshold: float = MATCH_IOU,
) -> list[Mistake]:
    """Misses, extra boxes and wrong classes of one image (``predictions`` already thresholded)."""
    order = np.argsort(-predictions.scores, kind="stable")
    label_boxes = np.array([a.xyxy for a in labels], dtype=np.float64).reshape(-1, 4)
    ious = _pairwise_iou(predictions.boxes.astype(np.float64).reshape(-1, 4), label_boxes)  # [P, L]
    categories = [doc.category(a.category_id) for a in labels]
    matched: dict[int, int] = {}  # label index -> prediction row
    found: list[Mistake] = []
    for row in order:
        label = int(predictions.labels[row])
        predicted = f"{label_name(model_names, label)} {float(predictions.scores[row]):.2f}"
        free = [j for j in range(len(labels)) if j not in matched and ious[row, j] >= iou_threshold]
        if not free:
            found.append(Mistake(image_id, EXTRA, None, int(predictions.query_ids[row]), 0.0, predicted))
            continue
        same = [j for j in free if same_class(label, categories[j], model_names)]
        pick = max(same or free, key=lambda j: ious[row, j])
        matched[pick] = int(row)
        if not same:
            found.append(
                Mistake(
                    image_id=image_id,
                    kind=WRONG_CLASS,
                    annotation_id=labels[pick].id,
                    query_id=int(predictions.query_ids[row]),
                    iou=float(ious[row, pick]),
                    detail=f"labelled {categories[pick].name}, predicted {predicted}",
                )
            )
    for j, ann in enumerate(labels):
        if j not in matched:
            found.append(Mistake(image_id, MISS, ann.id, None, 0.0, categories[j].name))
    rank = {WRONG_CLASS: 0, MISS: 1, EXTRA: 2}
    return sorted(found, key=lambda m: rank[m.kind])
