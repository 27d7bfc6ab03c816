"""The objects of one image as the object list shows them, and which of them the user hid or locked.

An object is an annotation (instances datasets), a segment (panoptic datasets) or a prediction (a query of
the image's cached result, shown above the threshold or as a ghost below it), named by its `ObjectKey`: the
image, the kind and the id (annotation id, segment id, query id). `image_objects` lists them as plain
`ObjectRow`s (class, source, score, review state, box, area); `ObjectFlags` remembers what is hidden (not
drawn, not picked by a click) and what is locked (drawn and selectable, but not moved or edited). Flags are
a view of the window, like the threshold: they are not saved and not undone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from detr_studio.data.coco import CocoDocument
from detr_studio.data.labels import label_name
from detr_studio.infer.detections import Detections

ANNOTATION, SEGMENT, PREDICTION = "annotation", "segment", "prediction"
KINDS = (ANNOTATION, SEGMENT, PREDICTION)


@dataclass(frozen=True)
class ObjectKey:
    """One object of one image: ``key`` is the annotation id, segment id or query id, by ``kind``."""

    image_id: int
    kind: str
    key: int


@dataclass(frozen=True)
class ObjectRow:
    """One row of the object list. ``category`` is the category id (predictions: the model's label) that
    ``label`` names; ``review`` is the annotation's review state, or for predictions "open" (above the
    threshold) or "ghost" (below it); ``xyxy`` is None for a segment the file gives no box."""

    kind: str
    key: int
    category: int
    label: str
    source: str
    score: float | None
    review: str
    xyxy: tuple[float, float, float, float] | None
    area: float
    hidden: bool = False
    locked: bool = False


class ObjectFlags:
    """Hidden and locked objects (see the module docstring)."""

    def __init__(self) -> None:
        self.hidden: set[ObjectKey] = set()
        self.locked: set[ObjectKey] = set()

    def clear(self) -> None:
        self.hidden.clear()
        self.locked.clear()

    def set(self, which: str, keys: Iterable[ObjectKey], on: bool) -> bool:
        """Hide/show (``which`` "hidden") or lock/unlock ("locked") ``keys``; True when something changed."""
        target = self.hidden if which == "hidden" else self.locked
        keys = set(keys)
        before = len(target)
        if on:
            target |= keys
        else:
            target -= keys
        return len(target) != before

    def keys_of(self, which: str, image_id: int, kind: str) -> set[int]:
        """The ids of ``kind`` on ``image_id`` that are hidden (``which`` "hidden") or locked."""
        target = self.hidden if which == "hidden" else self.locked
        return {k.key for k in target if k.image_id == image_id and k.kind == kind}


def _box_area(xyxy: tuple[float, float, float, float]) -> float:
    return max(xyxy[2] - xyxy[0], 0.0) * max(xyxy[3] - xyxy[1], 0.0)


def document_rows(doc: CocoDocument, image_id: int) -> list[ObjectRow]:
    """The annotations (or, panoptic, the segments) of an image, in file order."""
    names = {cat.id: cat.name for cat in doc.categories}
    rows = []
    if doc.is_panoptic:
        for seg in doc.segments_for(image_id):
            xyxy = None
            if seg.bbox is not None:
                x, y, w, h = seg.bbox
                xyxy = (x, y, x + w, y + h)
            area = seg.area if seg.area is not None else (_box_area(xyxy) if xyxy is not None else 0.0)
            stuff = "stuff" if seg.isthing is False else "thing"
            label = names.get(seg.category_id, f"class {seg.category_id}")
            rows.append(
                ObjectRow(SEGMENT, seg.id, seg.category_id, label, stuff, None, "", xyxy, float(area))
            )
        return rows
    for ann in doc.annotations_for(image_id):
        label = names.get(ann.category_id, f"class {ann.category_id}")
        rows.append(
            ObjectRow(
                ANNOTATION,
                ann.id,
                ann.category_id,
                label,
                ann.source,
                ann.score,
                ann.review,
                ann.xyxy,
                ann.area,
            )
        )
    return rows


def prediction_rows(dets: Detections | None, class_names: Mapping[int, str], review: str) -> list[ObjectRow]:
    """One row per query of ``dets`` (already the rows shown), with the model's class name and score."""
    if dets is None:
        return []
    rows = []
    for row in range(len(dets)):
        xyxy = tuple(float(v) for v in dets.boxes[row])
        rows.append(
            ObjectRow(
                PREDICTION,
                int(dets.query_ids[row]),
                int(dets.labels[row]),
                label_name(class_names, int(dets.labels[row])),
                "prediction",
                float(dets.scores[row]),
                review,
                xyxy,  # type: ignore[arg-type]
                _box_area(xyxy),  # type: ignore[arg-type]
            )
        )
    return rows


def with_flags(rows: list[ObjectRow], flags: ObjectFlags, image_id: int) -> list[ObjectRow]:
    """The rows with their hidden and locked flags set."""
    out = []
    for row in rows:
        key = ObjectKey(image_id, row.kind, row.key)
        hidden, locked = key in flags.hidden, key in flags.locked
        if hidden or locked:
            row = replace(row, hidden=hidden, locked=locked)
        out.append(row)
    return out
