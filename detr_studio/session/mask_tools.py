"""The document edits behind the window's mask tools, built from what the tools hand over: the points of a
polygon, the centre line and radius of a brush stroke, the ids of the selected annotations.

The pixels are the core's (`data.coco`): a stroke is replayed segment by segment into a `MaskCanvas` (each
segment touches only its own bounding box) and encoded once, and `mask_edits` keeps bbox and area those of
the mask by COCO's rules. Every function returns an `Edit` (to make with ``Session.apply``, one undo step)
or raises `MaskToolError` with a message for the status bar when there is nothing sensible to do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from detr_studio.data.coco import AddAnnotations, AddCategory, Batch, CocoDocument, Edit
from detr_studio.data.coco.brush import MaskCanvas
from detr_studio.data.coco.mask_edits import (
    convert_edit,
    fill_holes_edit,
    is_box_mask,
    mask_edit,
    mask_fields,
)
from detr_studio.data.coco.mask_geometry import POLYGONS, RLE, mask_form, to_form
from detr_studio.data.coco.polygons import closed_polygon

from .editing import FIRST_CLASS

Points = Sequence[tuple[float, float]]


class MaskToolError(ValueError):
    """A mask tool was used where it cannot do anything (the message says why)."""


def _size(doc: CocoDocument, image_id: int) -> tuple[int, int]:
    width, height = doc.image_size(image_id)
    return height, width


def new_masked_annotation(
    doc: CocoDocument, image_id: int, segmentation: Any, category_id: int | None
) -> tuple[Edit, int]:
    """(the edit adding a human annotation with this mask, its id): bbox and area are the mask's; without a
    class (a new project) it starts one."""
    height, width = _size(doc, image_id)
    fields = mask_fields(segmentation, height, width, (0.0, 0.0, 0.0, 0.0))
    if not fields["area"]:
        raise MaskToolError("the mask covers no pixel of the image")
    steps: list[Edit] = []
    cid = category_id
    if cid is None:
        cid = 1
        steps.append(AddCategory({"id": cid, "name": FIRST_CLASS}))
    record = doc.new_annotation(image_id, cid, fields["bbox"], segmentation=fields["segmentation"])
    record["area"] = fields["area"]
    steps.append(AddAnnotations([record]))
    edit = steps[0] if len(steps) == 1 else Batch(steps, "add mask")
    return edit, int(record["id"])


def polygon_annotation(
    doc: CocoDocument, image_id: int, points: Points, category_id: int | None
) -> tuple[Edit, int]:
    """A new annotation whose mask is the polygon through ``points`` [(x, y), ...] (three at least)."""
    if len(points) < 3:
        raise MaskToolError("a polygon needs three vertices at least")
    return new_masked_annotation(doc, image_id, [closed_polygon(points)], category_id)


def paint_stroke(canvas: MaskCanvas, points: Points, radius: float, paint: bool = True) -> None:
    """Replay a stroke's centre line into ``canvas``: each segment paints (or erases) a capsule of
    ``radius``; a stroke of one point paints a disc."""
    if len(points) == 1:
        ((x, y),) = points
        canvas.stroke(x, y, x, y, radius, paint)
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        canvas.stroke(x0, y0, x1, y1, radius, paint)


def stroke_edit(
    doc: CocoDocument,
    image_id: int,
    annotation_id: int | None,
    points: Points,
    radius: float,
    erase: bool,
    category_id: int | None = None,
) -> tuple[Edit, int]:
    """(the edit, the annotation's id) of one brush or eraser stroke on annotation ``annotation_id``; with
    None, a brush stroke starts a new annotation of ``category_id``. A painted mask is a bitmap, stored as
    RLE (exact: no pixel outside the stroke changes; `convert` traces it into polygons again). A mask that
    is only its box's outline (a box drawn in a dataset with masks) is painted from empty, and erased from
    the box. The eraser is refused when it would leave no pixel (delete the annotation instead)."""
    if not points:
        raise MaskToolError("the stroke has no points")
    height, width = _size(doc, image_id)
    if annotation_id is None:
        if erase:
            raise MaskToolError("select the annotation to erase from")
        canvas = MaskCanvas.empty(height, width)
        paint_stroke(canvas, points, radius)
        return new_masked_annotation(doc, image_id, to_form(canvas.mask, RLE), category_id)
    record = doc.index.annotation_record(annotation_id)
    segmentation = record.get("segmentation")
    if mask_form(segmentation) is None or (is_box_mask(record) and not erase):
        canvas = MaskCanvas.empty(height, width)
    else:
        canvas = MaskCanvas.from_segmentation(segmentation, height, width)
    paint_stroke(canvas, points, radius, paint=not erase)
    if not canvas.mask.any():
        raise MaskToolError("the eraser would leave the mask empty: delete the annotation instead (Del)")
    return mask_edit(doc, annotation_id, canvas.mask, form=RLE), annotation_id


def _with_masks(doc: CocoDocument, annotation_ids: Iterable[int]) -> list[int]:
    ids = [a for a in annotation_ids if mask_form(doc.index.annotation_record(a).get("segmentation"))]
    if not ids:
        raise MaskToolError("select an annotation with a mask first")
    return ids


def _one_step(steps: list[Edit], text: str) -> Edit:
    return steps[0] if len(steps) == 1 else Batch(steps, text)


def fill_holes(doc: CocoDocument, annotation_ids: Iterable[int]) -> Edit:
    """Fill the holes of the masks of these annotations (those without a mask are left out)."""
    return _one_step([fill_holes_edit(doc, a) for a in _with_masks(doc, annotation_ids)], "fill holes")


def convert(doc: CocoDocument, annotation_ids: Iterable[int], form: str, tolerance: float) -> Edit:
    """The masks of these annotations in ``form`` (`mask_geometry.POLYGONS` traced to ``tolerance`` px, or
    `RLE`); masks already in that form are left out."""
    ids = [a for a in _with_masks(doc, annotation_ids) if mask_form(doc.annotation(a).segmentation) != form]
    if not ids:
        what = "polygons" if form == POLYGONS else "RLE"
        raise MaskToolError(f"the selected masks are {what} already")
    steps = [convert_edit(doc, a, form, tolerance=tolerance)[0] for a in ids]
    return _one_step(steps, "convert masks")
