"""Where to look next: images ranked by how unsure the model is, and predictions that disagree with the labels.

Uncertainty is one of the three measures of `infer.uncertainty` (entropy, top-2 margin, no-object mass, defined
for softmax and sigmoid heads alike); queries the user already accepted or rejected are left out.

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
from .uncertainty import image_uncertainty

MATCH_IOU = 0.5
MISS, EXTRA, WRONG_CLASS = "miss", "extra box", "wrong class"


# ------------------------------------------------------------------------------------------- uncertainty


@dataclass(frozen=True)
class UncertainImage:
    image_id: int
    score: float  # the uncertainty of its most doubtful query
    query_id: int | None  # that query (None when no query counts)


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
