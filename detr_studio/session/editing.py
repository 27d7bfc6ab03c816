"""The document edits behind the editing commands of the window (draw, move, nudge, duplicate, relabel),
built from plain numbers: boxes are COCO ``[x, y, w, h]`` in image pixels, rounded to 1/100 px.
"""

from __future__ import annotations

from collections.abc import Sequence

from detr_studio.data.coco import (
    AddAnnotations,
    AddCategory,
    Batch,
    CocoDocument,
    Edit,
    Relabel,
    UpdateAnnotation,
)

Box = tuple[float, float, float, float]
NUDGE = "nudge"  # the merge key of arrow-key nudges: consecutive nudges of the same boxes are one undo step
DUPLICATE_OFFSET_PX = 10.0
FIRST_CLASS = "object"  # the class a box drawn in a project without classes gets


def rounded(box: Sequence[float]) -> list[float]:
    """A box rounded to 1/100 px, as the window stores drawn and moved boxes."""
    return [round(float(v), 2) for v in box]


def new_box(
    doc: CocoDocument, image_id: int, box: Sequence[float], category_id: int | None
) -> tuple[Edit, int]:
    """(the edit adding a human box, its annotation id); without a class (a new project) it starts one."""
    steps: list[Edit] = []
    cid = category_id
    if cid is None:
        cid = 1
        steps.append(AddCategory({"id": cid, "name": FIRST_CLASS}))
    record = doc.new_annotation(image_id, cid, rounded(box))
    steps.append(AddAnnotations([record]))
    edit = steps[0] if len(steps) == 1 else Batch(steps, "draw box")
    return edit, int(record["id"])


def moved_box(doc: CocoDocument, annotation_id: int, box: Sequence[float]) -> Edit:
    """A new box for an annotation (a move or a resize); a box without a mask gets the box's area."""
    bbox = rounded(box)
    fields: dict = {"bbox": bbox}
    if not doc.annotation(annotation_id).segmentation:
        fields["area"] = round(bbox[2] * bbox[3], 4)
    return UpdateAnnotation(annotation_id, fields)


def nudged(doc: CocoDocument, image_id: int, annotation_ids: Sequence[int], dx: float, dy: float) -> Edit:
    """Move boxes by (dx, dy) pixels, each kept inside the image."""
    info = doc.image(image_id)
    steps: list[Edit] = []
    for aid in annotation_ids:
        x, y, w, h = doc.annotation(aid).bbox
        x = min(max(x + dx, 0.0), max(info.width - w, 0.0))
        y = min(max(y + dy, 0.0), max(info.height - h, 0.0))
        steps.append(UpdateAnnotation(aid, {"bbox": [round(x, 2), round(y, 2), w, h]}))
    return steps[0] if len(steps) == 1 else Batch(steps, NUDGE)


def duplicates(doc: CocoDocument, image_id: int, annotation_ids: Sequence[int]) -> tuple[Edit, list[int]]:
    """(copies of the boxes shifted down-right inside the image, the copies' ids)."""
    info = doc.image(image_id)
    records = []
    for aid in annotation_ids:
        ann = doc.annotation(aid)
        x, y, w, h = ann.bbox
        x = min(x + DUPLICATE_OFFSET_PX, max(info.width - w, 0.0))
        y = min(y + DUPLICATE_OFFSET_PX, max(info.height - h, 0.0))
        records.append(doc.new_annotation(ann.image_id, ann.category_id, (x, y, w, h)))
    return AddAnnotations(records), [int(r["id"]) for r in records]


def relabelled(doc: CocoDocument, annotation_ids: Sequence[int], name: str) -> Edit:
    """Relabel to the class called ``name``, adding that class first when the document has none."""
    match = next((c for c in doc.categories if c.name == name), None)
    if match is not None:
        return Relabel(list(annotation_ids), match.id)
    cid = max([c.id for c in doc.categories] + [0]) + 1
    return Batch([AddCategory({"id": cid, "name": name}), Relabel(list(annotation_ids), cid)], "relabel")
