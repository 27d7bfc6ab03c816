"""The document edits behind the editing commands of the window (draw, move, nudge, duplicate, relabel),
built from plain numbers: boxes are COCO ``[x, y, w, h]`` in image pixels, rounded to 1/100 px.

Masks go with their boxes: moving, resizing or nudging a box carries its mask along and sets bbox and area
to the moved mask's (`data.coco.mask_edits.moved_box_edit`); a duplicate copies the mask. In a dataset with
masks, a drawn box gets its outline as a polygon, marked as a box mask, so that pycocotools reads every
annotation and the review queue can list the boxes that still need a real mask.
"""

from __future__ import annotations

from collections.abc import Sequence

from detr_studio.data.coco import (
    OUR_KEY,
    AddAnnotations,
    AddCategory,
    Batch,
    CocoDocument,
    Edit,
    Relabel,
)
from detr_studio.data.coco.mask_edits import (
    box_mask_fields,
    has_masks,
    is_box_mask,
    mark_box_mask,
    moved_box_edit,
    shifted_box_edit,
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
    if has_masks(doc):
        with_box_mask(doc, record)
    steps.append(AddAnnotations([record]))
    edit = steps[0] if len(steps) == 1 else Batch(steps, "draw box")
    return edit, int(record["id"])


def with_box_mask(doc: CocoDocument, record: dict) -> dict:
    """A new annotation record (``record``, changed in place and returned) given its box's outline as its
    mask, marked as such: what a box without a mask gets in a dataset with masks."""
    width, height = doc.image_size(record["image_id"])
    record.update(box_mask_fields(record["bbox"], height, width))
    record[OUR_KEY] = mark_box_mask(record[OUR_KEY])
    return record


def moved_box(doc: CocoDocument, annotation_id: int, box: Sequence[float]) -> Edit:
    """A new box for an annotation (a move or a resize), its mask moved with it; bbox and area agree with
    the moved mask (a box without a mask gets the box's area)."""
    return moved_box_edit(doc, annotation_id, box)


def nudged(doc: CocoDocument, image_id: int, annotation_ids: Sequence[int], dx: float, dy: float) -> Edit:
    """Move boxes (and their masks) by (dx, dy) pixels, each box kept inside the image."""
    steps: list[Edit] = [shifted_box_edit(doc, aid, dx, dy) for aid in annotation_ids]
    return steps[0] if len(steps) == 1 else Batch(steps, NUDGE)


def duplicates(doc: CocoDocument, image_id: int, annotation_ids: Sequence[int]) -> tuple[Edit, list[int]]:
    """(copies of the boxes shifted down-right inside the image, with their masks, the copies' ids)."""
    info = doc.image(image_id)
    masks = has_masks(doc)
    records = []
    for aid in annotation_ids:
        ann = doc.annotation(aid)
        x, y, w, h = ann.bbox
        x = min(x + DUPLICATE_OFFSET_PX, max(info.width - w, 0.0))
        y = min(y + DUPLICATE_OFFSET_PX, max(info.height - h, 0.0))
        record = doc.new_annotation(ann.image_id, ann.category_id, (x, y, w, h))
        source = doc.index.anns[aid]
        if ann.segmentation and not is_box_mask(source):
            moved = moved_box_edit(doc, aid, (x, y, w, h)).fields  # the mask carried to the copy's box
            record.update(segmentation=moved["segmentation"], bbox=moved["bbox"], area=moved["area"])
        elif masks:
            with_box_mask(doc, record)
        records.append(record)
    return AddAnnotations(records), [int(r["id"]) for r in records]


def relabelled(doc: CocoDocument, annotation_ids: Sequence[int], name: str) -> Edit:
    """Relabel to the class called ``name``, adding that class first when the document has none."""
    match = next((c for c in doc.categories if c.name == name), None)
    if match is not None:
        return Relabel(list(annotation_ids), match.id)
    cid = max([c.id for c in doc.categories] + [0]) + 1
    return Batch([AddCategory({"id": cid, "name": name}), Relabel(list(annotation_ids), cid)], "relabel")
