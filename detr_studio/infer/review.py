"""Where to look next: images ranked by how unsure the model is, and predictions that disagree with the labels.

Uncertainty is one of the three measures of `infer.uncertainty` (entropy, top-2 margin, no-object mass, defined
for softmax and sigmoid heads alike); queries the user already accepted or rejected are left out.

Mistakes are found by greedy IoU matching at 0.5 (best-scoring prediction first, same-class labels preferred):
a label no prediction matches is a miss, a prediction that matches no label an extra box, a match of another
class a wrong class. The IoU is `model.box_ops.box_iou`; classes are compared by `data.labels.same_class`.
A match of the same class whose masks overlap by less than 0.5 (mask IoU; both must have a mask: the
label one of its own, not its box's outline, and the prediction an instance mask or a panoptic segment) is
a mask that disagrees. An annotation whose mask is only its box (a box drawn in a dataset with masks) is
listed too, so that someone gives it a real mask.

Panoptic datasets compare segments (`segment_mistakes`), by panopticapi's matching: a ground-truth and a
predicted segment match when their IoU is above 0.5 (predicted pixels on unlabelled ground truth left out
of the union), which pairs each segment with at most one; a match of another class is a wrong class, a
ground-truth segment without a match a miss (crowd regions excepted), a predicted one an extra segment
(unless it lies mostly on unlabelled pixels).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..data.coco import Annotation, CocoDocument
from ..data.coco.mask_geometry import decode, mask_form, mask_iou
from ..data.labels import label_name, same_class
from .detections import Detections
from .uncertainty import image_uncertainty

MATCH_IOU = 0.5
MASK_IOU = 0.5  # a matched pair whose masks overlap less disagrees
MISS, EXTRA, WRONG_CLASS = "miss", "extra box", "wrong class"
MASK_DISAGREES, BOX_ONLY = "mask disagrees", "box as mask"
EXTRA_SEGMENT = "extra segment"
_OFFSET = 1 << 24  # pairs of 24-bit segment ids in one int64


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
    kind: str  # MISS, EXTRA, WRONG_CLASS, MASK_DISAGREES, BOX_ONLY, EXTRA_SEGMENT
    annotation_id: int | None  # the label (misses, wrong classes, masks)
    query_id: int | None  # the prediction (extra boxes, wrong classes, masks)
    iou: float  # the box IoU (mask IoU for MASK_DISAGREES, segment IoU for segments)
    detail: str  # class names, score
    segment_id: int | None = None  # panoptic: the ground-truth segment (misses, wrong classes)


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
        if same:
            disagreement = _mask_disagreement(labels[pick], predictions, int(row), image_id, predicted)
            if disagreement is not None:
                found.append(disagreement)
        else:
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
    rank = {WRONG_CLASS: 0, MISS: 1, MASK_DISAGREES: 2, EXTRA: 3}
    return sorted(found, key=lambda m: rank[m.kind])


def _mask_disagreement(
    label: Annotation, predictions: Detections, row: int, image_id: int, predicted: str
) -> Mistake | None:
    """MASK_DISAGREES when both the label and the prediction have masks that overlap by less than MASK_IOU."""
    if label.box_mask or mask_form(label.segmentation) is None:
        return None
    pixels = predictions.row_mask(row)
    if pixels is None:
        return None
    height, width = pixels.shape
    iou = mask_iou(decode(label.segmentation, height, width), pixels)
    if iou >= MASK_IOU:
        return None
    return Mistake(
        image_id,
        MASK_DISAGREES,
        label.id,
        int(predictions.query_ids[row]),
        iou,
        f"mask IoU {iou:.2f}, {predicted}",
    )


def box_only_masks(doc: CocoDocument) -> list[Mistake]:
    """Annotations whose mask is only their box's outline (see the module docstring), in document order."""
    return [
        Mistake(a.image_id, BOX_ONLY, a.id, None, 1.0, doc.category(a.category_id).name)
        for a in doc.annotations
        if a.box_mask
    ]


def segment_mistakes(
    doc: CocoDocument,
    image_id: int,
    predictions: Detections,
    model_names: Mapping[int, str],
    open_queries: Collection[int] | None = None,
) -> list[Mistake]:
    """Missed, extra and wrongly classed segments of one panoptic image (see the module docstring); only the
    predicted segments of ``open_queries`` count (default: all)."""
    result = predictions.panoptic
    if result is None:
        return []
    gt_map = np.asarray(doc.id_map(image_id), dtype=np.int64)  # [H, W]
    pred_map = result.ids.astype(np.int64)  # [H, W]
    if gt_map.shape != pred_map.shape:
        return []
    queries = result.query_ids or tuple(range(len(result.segments_info)))
    predicted = {
        seg["id"]: (seg, q)
        for seg, q in zip(result.segments_info, queries)
        if open_queries is None or q in open_queries
    }
    truth = {seg.id: seg for seg in doc.segments_for(image_id)}
    pairs, counts = np.unique(gt_map * _OFFSET + pred_map, return_counts=True)
    overlap = {(int(p) // _OFFSET, int(p) % _OFFSET): int(c) for p, c in zip(pairs, counts)}
    gt_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    for (g, p), c in overlap.items():
        gt_area[g] = gt_area.get(g, 0) + c
        pred_area[p] = pred_area.get(p, 0) + c
    found: list[Mistake] = []
    matched_gt: set[int] = set()
    matched_pred: set[int] = set()
    for (g, p), inter in sorted(overlap.items()):
        if g not in truth or p not in predicted:
            continue
        union = gt_area[g] + pred_area[p] - inter - overlap.get((0, p), 0)
        iou = inter / union if union else 0.0
        if iou <= MATCH_IOU:
            continue
        matched_gt.add(g)
        matched_pred.add(p)
        seg, query = predicted[p]
        category = doc.category(truth[g].category_id)
        if not same_class(int(seg["category_id"]), category, model_names):
            detail = f"labelled {category.name}, predicted {label_name(model_names, int(seg['category_id']))}"
            found.append(Mistake(image_id, WRONG_CLASS, None, query, iou, detail, segment_id=g))
    for g, seg in truth.items():
        if g not in matched_gt and not seg.iscrowd:
            found.append(
                Mistake(image_id, MISS, None, None, 0.0, doc.category(seg.category_id).name, segment_id=g)
            )
    for p, (seg, query) in predicted.items():
        if p in matched_pred or not pred_area.get(p):
            continue
        if overlap.get((0, p), 0) / pred_area[p] > 0.5:
            continue  # mostly on unlabelled pixels
        name = label_name(model_names, int(seg["category_id"]))
        found.append(Mistake(image_id, EXTRA_SEGMENT, None, query, 0.0, name))
    rank = {WRONG_CLASS: 0, MISS: 1, EXTRA_SEGMENT: 2}
    return sorted(found, key=lambda m: rank[m.kind])
