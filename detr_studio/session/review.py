"""The review queue's two lists over what the session holds: images ranked by uncertainty, and mistakes where
the open predictions disagree with the trusted labels (the measures and the matching: `infer.review`)."""

from __future__ import annotations

from collections.abc import Mapping

from detr_studio.data.coco import Annotation, CocoDocument
from detr_studio.data.labels import is_trusted
from detr_studio.infer.review import (
    MATCH_IOU,
    Mistake,
    UncertainImage,
    box_only_masks,
    image_mistakes,
    rank_uncertain,
    segment_mistakes,
)

from .predictions import PredictionStore


def uncertain_images(store: PredictionStore, measure: str) -> list[UncertainImage]:
    """Images with cached predictions, most uncertain first; queries already accepted or rejected are
    left out."""
    entries = ((iid, store.get(iid)) for iid in store.image_ids())
    return rank_uncertain(
        ((iid, entry.detections, entry.marks) for iid, entry in entries if entry is not None), measure
    )


def find_mistakes(
    doc: CocoDocument,
    store: PredictionStore,
    threshold: float,
    model_names: Mapping[int, str],
    iou_threshold: float = MATCH_IOU,
) -> list[Mistake]:
    """Disagreements on every image with cached predictions that is reviewed or has trusted labels, in the
    document's image order (the open predictions above ``threshold`` against the trusted labels), then the
    annotations whose mask is only their box. Panoptic documents: segment mistakes on every image with
    predicted segments."""
    if doc.is_panoptic:
        return _segment_mistakes(doc, store, threshold, model_names)
    trusted: dict[int, list[Annotation]] = {}
    for ann in doc.annotations:
        if is_trusted(ann):
            trusted.setdefault(ann.image_id, []).append(ann)
    found: list[Mistake] = []
    for info in doc.images:
        if info.id not in store or not (info.reviewed or info.id in trusted):
            continue
        visible = store.visible(info.id, threshold)
        if visible is None:
            continue
        found += image_mistakes(doc, info.id, trusted.get(info.id, []), visible, model_names, iou_threshold)
    return found + box_only_masks(doc)


def _segment_mistakes(
    doc: CocoDocument, store: PredictionStore, threshold: float, model_names: Mapping[int, str]
) -> list[Mistake]:
    found: list[Mistake] = []
    for iid in doc.image_ids:
        visible = store.visible(iid, threshold) if iid in store else None
        if visible is None or visible.panoptic is None:
            continue
        found += segment_mistakes(doc, iid, visible, model_names, {int(q) for q in visible.query_ids})
    return found
