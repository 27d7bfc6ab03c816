"""Predictions the window holds: cached `Detections` per image, the review marks on their queries, and
turning accepted queries into document edits.

The window shows one box per decoder query: its best row. (A sigmoid model such as Deformable DETR may report a
query in several rows, one per class it scores high; the others stay in the query's class probabilities.)
A query that the user accepts becomes an annotation (with provenance ``source="model"``, its score and the
model name) and leaves the prediction layer. It keeps the model's mask (`Detections.row_mask`: the instance
mask, or the panoptic segment the query made) in the form the file uses (polygons when its masks are
polygons, else RLE), with bbox and area those of the mask; in a dataset with masks, a query without one
gets its box's outline, marked as a box mask; a rejected query just leaves the layer. Marks change through
`MarkChange`, an undoable change of the session's history like the document's edits. The threshold is a
view (`Detections.above`), so moving the slider never runs the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from detr_studio.data.coco import OUR_KEY, AddAnnotations, AddCategory, Batch, CocoDocument, Edit
from detr_studio.data.coco.mask_edits import (
    box_mask_fields,
    has_masks,
    mark_box_mask,
    mask_fields,
    preferred_form,
)
from detr_studio.data.coco.mask_geometry import to_form
from detr_studio.data.labels import category_for_label
from detr_studio.infer.detections import Detections

from .editing import rounded

ACCEPTED = "accepted"
REJECTED = "rejected"
GHOST_FLOOR = 0.05  # queries scoring at or below this are not shown even as ghosts


@dataclass
class ImagePredictions:
    """All queries of one image and what the user did with each (query id -> state)."""

    detections: Detections
    model: str
    marks: dict[int, str] = field(default_factory=dict)


class PredictionStore:
    """Detections per image id, with accepted/rejected marks per query id."""

    def __init__(self) -> None:
        self._by_image: dict[int, ImagePredictions] = {}

    def __len__(self) -> int:
        return len(self._by_image)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self._by_image

    def image_ids(self) -> list[int]:
        return list(self._by_image)

    def put(self, image_id: int, detections: Detections, model: str) -> None:
        """Store a result; marks survive a re-run by the same model (its query ids mean the same queries)."""
        old = self._by_image.get(image_id)
        marks = old.marks if old is not None and old.model == model else {}
        self._by_image[image_id] = ImagePredictions(detections, model, marks)

    def get(self, image_id: int) -> ImagePredictions | None:
        return self._by_image.get(image_id)

    def clear(self) -> None:
        self._by_image.clear()

    def set_marks(self, image_id: int, marks: Mapping[int, str | None], model: str) -> dict[int, str | None]:
        """Set (or with ``None`` clear) the marks of queries of ``model``'s result for the image; returns the
        marks they had. Unknown images, and results of another model, are left alone."""
        entry = self._by_image.get(image_id)
        if entry is None or entry.model != model:
            return {
                int(q): state for q, state in marks.items()
            }  # nothing changed: undoing it changes nothing
        previous: dict[int, str | None] = {}
        for q, state in marks.items():
            previous[int(q)] = entry.marks.get(int(q))
            if state is None:
                entry.marks.pop(int(q), None)
            else:
                entry.marks[int(q)] = state
        return previous

    def _open_rows(self, entry: ImagePredictions) -> np.ndarray:
        """[N] rows of queries neither accepted nor rejected, each query's best row only."""
        dets = entry.detections
        open_rows = np.array([int(q) not in entry.marks for q in dets.query_ids], dtype=bool)
        return open_rows & best_row_of_each_query(dets)

    def visible(self, image_id: int, threshold: float) -> Detections | None:
        """Queries above ``threshold`` that are neither accepted nor rejected, best first."""
        entry = self._by_image.get(image_id)
        if entry is None:
            return None
        dets = entry.detections
        keep = self._open_rows(entry) & (dets.scores > threshold)
        return dets.select(keep).sorted()

    def ghosts(self, image_id: int, threshold: float, floor: float = GHOST_FLOOR) -> Detections | None:
        """Open queries at or below ``threshold`` but above ``floor``: shown faintly, promoted by a click."""
        entry = self._by_image.get(image_id)
        if entry is None:
            return None
        dets = entry.detections
        keep = self._open_rows(entry) & (dets.scores <= threshold) & (dets.scores > floor)
        return dets.select(keep).sorted()

    def row_of(self, image_id: int, query_id: int) -> int:
        """Row of a query id in the image's full Detections (its best row)."""
        dets = self._by_image[image_id].detections
        rows = np.flatnonzero((dets.query_ids == query_id) & best_row_of_each_query(dets))
        if not len(rows):
            raise KeyError(f"image {image_id} has no query {query_id}")
        return int(rows[0])


def best_row_of_each_query(dets: Detections) -> np.ndarray:
    """[N] bool: the highest-scoring row of each query (every row when each query has one)."""
    order = np.argsort(-dets.scores, kind="stable")
    _, first = np.unique(dets.query_ids[order], return_index=True)
    best = np.zeros(len(dets), dtype=bool)
    best[order[first]] = True
    return best


@dataclass(frozen=True)
class MarkChange:
    """Set the review marks of some queries of one image's result (an undoable change)."""

    store: PredictionStore
    image_id: int
    model: str
    marks: tuple[tuple[int, str | None], ...]
    touches_document: bool = False

    @classmethod
    def of(
        cls, store: PredictionStore, image_id: int, model: str, query_ids: Iterable[int], state: str | None
    ) -> MarkChange:
        return cls(store, image_id, model, tuple((int(q), state) for q in query_ids))

    def apply(self) -> MarkChange:
        previous = self.store.set_marks(self.image_id, dict(self.marks), self.model)
        return MarkChange(self.store, self.image_id, self.model, tuple(previous.items()))


def accept_edit(
    doc: CocoDocument,
    image_id: int,
    detections: Detections,
    rows: Iterable[int],
    model: str,
    class_names: Mapping[int, str],
) -> Edit:
    """One undoable edit that adds the given rows of ``detections`` as accepted model annotations (boxes
    clipped to the image and rounded as drawn boxes are, masks kept: see the module docstring), adding
    categories the document lacks first (`data.labels.category_for_label`)."""
    info = doc.image(image_id)
    width, height = doc.image_size(image_id)
    rows = list(rows)
    masks = [_mask_at_image_size(detections.row_mask(row), height, width) for row in rows]
    masks = [m if m is not None and m.any() else None for m in masks]
    masks_here = has_masks(doc) or any(m is not None for m in masks)
    form = preferred_form(doc)
    new_categories: dict[int, dict] = {}
    records = []
    for row, mask in zip(rows, masks):
        x0, y0, x1, y1 = (float(v) for v in detections.boxes[row])
        x0, x1 = min(max(x0, 0.0), info.width), min(max(x1, 0.0), info.width)
        y0, y1 = min(max(y0, 0.0), info.height), min(max(y1, 0.0), info.height)
        cid = category_for_label(doc.categories, int(detections.labels[row]), class_names, new_categories)
        box = tuple(rounded((x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0))))
        record = doc.new_annotation(
            image_id,
            cid,
            box,
            source="model",
            score=float(detections.scores[row]),
            model=model,
            review="accepted",
        )
        if mask is not None:
            record.update(mask_fields(to_form(mask, form), height, width, box))
        elif masks_here:
            record.update(box_mask_fields(box, height, width))
            record[OUR_KEY] = mark_box_mask(record[OUR_KEY])
        records.append(record)
    steps: list[Edit] = [AddCategory(rec) for rec in new_categories.values()]
    steps.append(AddAnnotations(records))
    return Batch(steps, "accept predictions")


def _mask_at_image_size(mask: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """``mask`` [h, w] bool, nearest-resized to the document's [height, width] when the two differ."""
    if mask is None or mask.shape == (height, width):
        return mask
    rows = np.minimum((np.arange(height) + 0.5) * mask.shape[0] // height, mask.shape[0] - 1).astype(np.int64)
    cols = np.minimum((np.arange(width) + 0.5) * mask.shape[1] // width, mask.shape[1] - 1).astype(np.int64)
    return mask[np.ix_(rows, cols)]
