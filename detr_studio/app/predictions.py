"""Predictions the window holds: cached `Detections` per image, the review marks on their queries, and
turning accepted queries into document edits. Qt-free, so it is tested and reused without a window.

The window shows one box per decoder query: its best row. (A sigmoid model such as Deformable DETR may report a
query in several rows, one per class it scores high; the others stay in the query's class probabilities.)
A query that the user accepts becomes an annotation (with provenance ``source="model"``, its score and the
model name) and leaves the prediction layer; a rejected query just leaves the layer. The threshold is a view
(`Detections.above`), so moving the slider never runs the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from detr_studio.data.coco import AddAnnotations, AddCategory, Batch, CocoDocument, Edit
from detr_studio.infer.detections import Detections
from detr_studio.model.classes import UNUSED_NAME

ACCEPTED = "accepted"
REJECTED = "rejected"


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

    def mark(self, image_id: int, query_ids: Iterable[int], state: str | None) -> None:
        """Set (or with ``None`` clear) the mark of queries; unknown images are ignored."""
        entry = self._by_image.get(image_id)
        if entry is None:
            return
        for q in query_ids:
            if state is None:
                entry.marks.pop(int(q), None)
            else:
                entry.marks[int(q)] = state

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

    def ghosts(self, image_id: int, threshold: float, floor: float = 0.05) -> Detections | None:
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


def _name_of(class_names: Mapping[int, str], label: int) -> str:
    name = class_names.get(int(label), UNUSED_NAME)
    return f"class {label}" if name == UNUSED_NAME else name


def category_for_label(
    doc: CocoDocument, label: int, class_names: Mapping[int, str], new: dict[int, dict]
) -> int:
    """The document category a model label goes to: the category with the model's class name, else the
    category with the same id when the model has no name for it, else a new category (added to ``new``)."""
    name = _name_of(class_names, label)
    for cat in doc.categories:
        if cat.name == name:
            return cat.id
    for cid, rec in new.items():
        if rec["name"] == name:
            return cid
    known = {cat.id for cat in doc.categories}
    if class_names.get(int(label), UNUSED_NAME) == UNUSED_NAME and int(label) in known:
        return int(label)
    cid = int(label) if int(label) not in known and int(label) not in new else max([*known, *new, 0]) + 1
    new[cid] = {"id": cid, "name": name}
    return cid


def accept_edit(
    doc: CocoDocument,
    image_id: int,
    detections: Detections,
    rows: Iterable[int],
    model: str,
    class_names: Mapping[int, str],
) -> Edit:
    """One undoable edit that adds the given rows of ``detections`` as accepted model annotations (boxes
    clipped to the image), adding categories the document lacks first."""
    info = doc.image(image_id)
    new_categories: dict[int, dict] = {}
    records = []
    for row in rows:
        x0, y0, x1, y1 = (float(v) for v in detections.boxes[row])
        x0, x1 = min(max(x0, 0.0), info.width), min(max(x1, 0.0), info.width)
        y0, y1 = min(max(y0, 0.0), info.height), min(max(y1, 0.0), info.height)
        cid = category_for_label(doc, int(detections.labels[row]), class_names, new_categories)
        records.append(
            doc.new_annotation(
                image_id,
                cid,
                (x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)),
                source="model",
                score=float(detections.scores[row]),
                model=model,
                review="accepted",
            )
        )
    steps: list[Edit] = [AddCategory(rec) for rec in new_categories.values()]
    steps.append(AddAnnotations(records))
    return Batch(steps, "accept predictions")
