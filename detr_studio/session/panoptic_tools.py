"""The document edits behind the window's panoptic tools, from what the canvas hands over: a polygon's
points or a brush stroke (centre line and radius), and the selected segments.

A region (polygon or stroke) is rasterised by the core (`data.coco.brush`: pycocotools' rule for polygons,
capsules for strokes) into a mask with the rectangle it touched, and then, by what the user asked for:

- ``"paint"``: the region's pixels join the selected segment (with none selected, they become a new segment
  of the panel's class);
- ``"erase"``: they become void (only the selected segment's, when one is selected);
- ``"split"``: the selected segment's pixels in the region become a new segment of its class.

Merge and delete take the selection as it is (relabelling several segments is one `relabel_segment_edit`
each, built one after the other: ``Session.apply_steps``). Every function returns an `Edit` (make it with
``Session.apply``: one undo step) and the segment the user will want selected next, or raises
`MaskToolError` with a message for the status bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detr_studio.data.coco import CocoDocument, CocoEditError, Edit
from detr_studio.data.coco.brush import MaskCanvas, Rect
from detr_studio.data.coco.polygons import closed_polygon
from detr_studio.data.coco.segment_edits import (
    delete_segments_edit,
    merge_segments_edit,
    new_segment_edit,
    paint_segment_edit,
    split_segment_edit,
)

from .mask_tools import MaskToolError, Points, paint_stroke

PAINT, ERASE, SPLIT = "paint", "erase", "split"


def polygon_region(doc: CocoDocument, image_id: int, points: Points) -> tuple[np.ndarray, Rect | None]:
    """([H, W] bool pixels inside the polygon through ``points``, the rectangle they lie in)."""
    if len(points) < 3:
        raise MaskToolError("a polygon needs three vertices at least")
    width, height = doc.image_size(image_id)
    canvas = MaskCanvas.empty(height, width)
    canvas.polygon(closed_polygon(points))
    return canvas.mask, canvas.dirty


def stroke_region(
    doc: CocoDocument, image_id: int, points: Points, radius: float
) -> tuple[np.ndarray, Rect | None]:
    """([H, W] bool pixels under a brush stroke, the rectangle they lie in)."""
    if not points:
        raise MaskToolError("the stroke has no points")
    width, height = doc.image_size(image_id)
    canvas = MaskCanvas.empty(height, width)
    paint_stroke(canvas, points, radius)
    return canvas.mask, canvas.dirty


def _one(selected: Sequence[int], what: str) -> int:
    if len(selected) != 1:
        raise MaskToolError(f"select one segment to {what}")
    return selected[0]


def region_edit(
    doc: CocoDocument,
    image_id: int,
    region: tuple[np.ndarray, Rect | None],
    how: str,
    selected: Sequence[int],
    category_id: int | None,
) -> tuple[Edit, int | None]:
    """(the edit, the segment to select after it) of a region used as ``how`` (see the module docstring)."""
    pixels, rect = region
    if rect is None:
        raise MaskToolError("the region covers no pixel of the image")
    try:
        if how == SPLIT:
            edit, new = split_segment_edit(doc, image_id, _one(selected, "split"), pixels, rect=rect)
            return edit, new
        if how == ERASE:
            if selected:
                pixels = pixels & np.isin(doc.id_map(image_id), list(selected))
            return paint_segment_edit(doc, image_id, pixels, 0, rect), None
        if selected:
            target = _one(selected, "paint into")
            return paint_segment_edit(doc, image_id, pixels, target, rect), target
        if category_id is None:
            raise MaskToolError("choose the class of the new segment in the panel first")
        edit, new = new_segment_edit(doc, image_id, pixels, category_id, rect)
        return edit, new
    except CocoEditError as exc:
        raise MaskToolError(str(exc)) from None


def merge(doc: CocoDocument, image_id: int, segment_ids: Sequence[int]) -> Edit:
    """The segments become one (the first of ``segment_ids`` keeps its id and class)."""
    if len(set(segment_ids)) < 2:
        raise MaskToolError("select two segments or more to merge (Ctrl+click, or in the Objects dock)")
    try:
        return merge_segments_edit(doc, image_id, list(segment_ids))
    except CocoEditError as exc:
        raise MaskToolError(str(exc)) from None


def delete(doc: CocoDocument, image_id: int, segment_ids: Sequence[int]) -> Edit:
    """The segments go; their pixels become void."""
    if not segment_ids:
        raise MaskToolError("select the segments to delete")
    try:
        return delete_segments_edit(doc, image_id, list(segment_ids))
    except CocoEditError as exc:
        raise MaskToolError(str(exc)) from None
