"""Which images the image list shows: a small filter record and the function that applies it (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

from detr_studio.data.coco import CocoDocument, ImageInfo
from detr_studio.data.labels import same_class

from .predictions import PredictionStore


@dataclass(frozen=True)
class ImageFilter:
    """Every field narrows the list; the default shows every image.

    ``category_id``: the image has an annotation (or, panoptic, a segment) of that class, or a prediction of
    it above the threshold. ``min_score``/``max_score``: the image has an open prediction scoring in range.
    """

    name: str = ""
    unreviewed: bool = False
    has_predictions: bool = False
    category_id: int | None = None
    min_score: float = 0.0
    max_score: float = 1.0

    @property
    def is_empty(self) -> bool:
        return self == ImageFilter()

    @property
    def uses_scores(self) -> bool:
        return self.min_score > 0.0 or self.max_score < 1.0


def _category_ids(doc: CocoDocument, image_id: int) -> set[int]:
    if doc.is_panoptic:
        return {seg.category_id for seg in doc.segments_for(image_id)}
    return {ann.category_id for ann in doc.annotations_for(image_id)}


def matching_image_ids(
    doc: CocoDocument,
    store: PredictionStore,
    flt: ImageFilter,
    threshold: float,
    predicted_names: dict[int, str] | None = None,
    images: list[ImageInfo] | None = None,
) -> list[int]:
    """Ids of the images that pass ``flt``, in document order. ``predicted_names``: model label -> name, to
    match predictions to a document category by name; ``images``: ``doc.images`` when the caller has it."""
    images = doc.images if images is None else images
    if flt.is_empty:
        return [img.id for img in images]
    needle = flt.name.strip().lower()
    wanted = None
    if flt.category_id is not None:
        try:
            wanted = doc.category(flt.category_id)
        except KeyError:
            wanted = None
    names = predicted_names or {}
    out = []
    for img in images:
        if needle and needle not in img.file_name.lower():
            continue
        if flt.unreviewed and img.reviewed:
            continue
        visible = store.visible(img.id, threshold) if img.id in store else None
        if flt.has_predictions and (visible is None or not len(visible)):
            continue
        if flt.uses_scores:
            entry = store.get(img.id)
            if entry is None:
                continue
            scores = store.visible(img.id, -1.0).scores
            if not ((scores >= flt.min_score) & (scores <= flt.max_score)).any():
                continue
        if flt.category_id is not None and flt.category_id not in _category_ids(doc, img.id):
            labels = set() if visible is None else {int(v) for v in visible.labels}
            if wanted is None or not any(same_class(lab, wanted, names) for lab in labels):
                continue
        out.append(img.id)
    return out
