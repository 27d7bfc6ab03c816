"""The edits that change an annotation's mask, each keeping box, mask and area in agreement by COCO's rules.

Every function returns an `UpdateAnnotation` (setting ``segmentation``, ``bbox``, ``area`` and our own
fields), which the document journals like any edit and whose inverse restores the record exactly (the
same values, the same key order). Nothing is changed until the edit is applied (``doc.apply(edit)`` or
``Session.apply``). Give the window's plain numbers: boxes are ``[x, y, w, h]`` in image pixels.

- `moved_box_edit(doc, annotation_id, box)`: the box moved or resized; the mask goes with it
  (`mask_geometry.transform`), and bbox and area are the new mask's (a box without a mask in a dataset
  with masks gets its box as a polygon, see below).
- `mask_edit(doc, annotation_id, mask_or_segmentation)`: a new mask (a brush stroke's `MaskCanvas.mask`,
  polygons from the polygon tool, a mask from the model): stored in the annotation's form (the dataset's
  for an annotation without a mask), bbox and area recomputed.
- `convert_edit(doc, annotation_id, form, tolerance, holes)`: RLE -> polygons (traced, see `contours`
  for what happens to holes) or polygons -> RLE; `fill_holes_edit`: the mask without holes.

Datasets with masks (`has_masks`: any annotation has a ``segmentation``): every annotation we write there
has one that pycocotools reads. A box with no mask of its own gets its box as a polygon, marked
``"detr_studio": {"mask": "box"}`` (`BOX_MASK`), so that the review queue can list it; the mark goes when a
real mask replaces it. `box_mask_fields` makes those fields for new annotations, and `fill_box_masks_edit`
gives every annotation of an older file without a mask its box polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .contours import BRIDGE, DEFAULT_TOLERANCE, PolygonResult, mask_to_polygons
from .edits import Batch, Edit, UpdateAnnotation
from .mask_geometry import (
    POLYGONS,
    RLE,
    box_polygons,
    decode,
    fill_holes,
    mask_form,
    mask_stats,
    rle_size,
    to_form,
    transform,
)
from .problems import CocoEditError
from .records import OUR_KEY, default_ours

if TYPE_CHECKING:
    from .document import CocoDocument

BOX_MASK = "box"  # our "mask" field: the segmentation is only the box's outline
MASK_KEY = "mask"


def _rounded(box: Sequence[float]) -> list[float]:
    return [round(float(v), 2) for v in box]


def has_masks(doc: CocoDocument) -> bool:
    """Whether any annotation of the (instances) document has a ``segmentation``."""
    return any(mask_form(a.get("segmentation")) is not None for a in doc.index.anns.values())


def preferred_form(doc: CocoDocument) -> str:
    """The form new masks of the document take: `POLYGONS` when its masks are mostly polygons (box outlines
    left out), else `RLE`."""
    polygons = rles = 0
    for ann in doc.index.anns.values():
        form = mask_form(ann.get("segmentation"))
        if form is None or is_box_mask(ann):
            continue
        if form == POLYGONS:
            polygons += 1
        else:
            rles += 1
    return POLYGONS if polygons > rles else RLE


def is_box_mask(record: dict[str, Any]) -> bool:
    """Whether an annotation record's mask is only its box's outline (our ``"mask": "box"`` mark)."""
    ours = record.get(OUR_KEY)
    return isinstance(ours, dict) and ours.get(MASK_KEY) == BOX_MASK


def _hw(doc: CocoDocument, image_id: int) -> tuple[int, int]:
    width, height = doc.image_size(image_id)
    return height, width


def _ours(record: dict[str, Any], box_mask: bool) -> dict[str, Any] | None:
    """Our fields of ``record`` with the box mark set or dropped; None when they stay as they are."""
    ours = record.get(OUR_KEY)
    if box_mask == is_box_mask(record):
        return None
    new = dict(ours) if isinstance(ours, dict) else default_ours()
    if box_mask:
        new[MASK_KEY] = BOX_MASK
    else:
        new.pop(MASK_KEY, None)
    return new


def box_mask_fields(box: Sequence[float], height: int, width: int) -> dict[str, Any]:
    """``segmentation`` (the box as a polygon), ``bbox`` and ``area`` (its pixel count) of a box without a
    mask of its own in a dataset with masks; mark it with `mark_box_mask`."""
    bbox = _rounded(box)
    segmentation = box_polygons(bbox)
    _, area = mask_stats(segmentation, height, width)
    return {"segmentation": segmentation, "bbox": bbox, "area": area}


def mark_box_mask(ours: dict[str, Any]) -> dict[str, Any]:
    """Our fields with the box mark (a copy)."""
    return {**ours, MASK_KEY: BOX_MASK}


def mask_fields(segmentation: Any, height: int, width: int, box: Sequence[float]) -> dict[str, Any]:
    """``segmentation``, ``bbox`` and ``area`` by COCO's rules (`mask_stats`); an empty mask keeps ``box``
    with area 0."""
    bbox, area = mask_stats(segmentation, height, width)
    if area == 0:
        bbox = _rounded(box)
    return {"segmentation": segmentation, "bbox": bbox, "area": area}


def _update(record: dict[str, Any], fields: dict[str, Any], box_mask: bool) -> UpdateAnnotation:
    ours = _ours(record, box_mask)
    if ours is not None:
        fields[OUR_KEY] = ours
    return UpdateAnnotation(record["id"], fields)


def _record(doc: CocoDocument, annotation_id: int) -> dict[str, Any]:
    try:
        return doc.index.annotation_record(annotation_id)
    except KeyError:
        raise CocoEditError(f"no annotation with id {annotation_id}") from None


def moved_box_edit(doc: CocoDocument, annotation_id: int, box: Sequence[float]) -> UpdateAnnotation:
    """The annotation's box moved or resized to ``box`` (rounded to 1/100 px), its mask carried along, and
    bbox and area those of the moved mask (see the module docstring)."""
    record = _record(doc, annotation_id)
    height, width = _hw(doc, record["image_id"])
    segmentation = record.get("segmentation")
    form = mask_form(segmentation)
    new_box = _rounded(box)
    if is_box_mask(record) or (form is None and has_masks(doc)):
        return _update(record, box_mask_fields(new_box, height, width), box_mask=True)
    if form is None:
        return UpdateAnnotation(annotation_id, {"bbox": new_box, "area": round(new_box[2] * new_box[3], 4)})
    moved = transform(segmentation, record["bbox"], new_box, height, width)
    return _update(record, mask_fields(moved, height, width, new_box), box_mask=False)


def shifted_box_edit(doc: CocoDocument, annotation_id: int, dx: float, dy: float) -> UpdateAnnotation:
    """`moved_box_edit` by (dx, dy) pixels (a nudge), the box kept inside the image."""
    record = _record(doc, annotation_id)
    width, height = doc.image_size(record["image_id"])
    x, y, w, h = (float(v) for v in record["bbox"])
    x = min(max(x + dx, 0.0), max(width - w, 0.0))
    y = min(max(y + dy, 0.0), max(height - h, 0.0))
    return moved_box_edit(doc, annotation_id, [x, y, w, h])


def mask_edit(
    doc: CocoDocument,
    annotation_id: int,
    mask: np.ndarray | Any,
    *,
    form: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    holes: str = BRIDGE,
) -> UpdateAnnotation:
    """A new mask for the annotation: ``mask`` is [H, W] bool pixels (encoded in ``form``: by default the
    annotation's, the dataset's for one without a mask) or a stored segmentation (kept as given). Bbox and
    area become the mask's; the box mark goes."""
    record = _record(doc, annotation_id)
    height, width = _hw(doc, record["image_id"])
    if isinstance(mask, np.ndarray):
        if mask.shape != (height, width):
            raise CocoEditError(
                f"a {mask.shape[1]}x{mask.shape[0]} mask for annotation {annotation_id} on a {width}x{height}"
                " image"
            )
        if form is None:
            current = mask_form(record.get("segmentation"))
            form = preferred_form(doc) if current is None or is_box_mask(record) else current
        segmentation = to_form(mask, form, tolerance, holes)
    else:
        segmentation = mask
    return _update(record, mask_fields(segmentation, height, width, record["bbox"]), box_mask=False)


def polygons_edit(doc: CocoDocument, annotation_id: int, polygons: list[list[float]]) -> UpdateAnnotation:
    """The annotation's mask replaced by ``polygons`` (from the polygon tool, `polygons` helpers)."""
    if not polygons or any(len(p) < 6 or len(p) % 2 for p in polygons):
        raise CocoEditError("every polygon needs at least 3 vertices (x, y pairs)")
    return mask_edit(doc, annotation_id, [[float(v) for v in p] for p in polygons])


def convert_edit(
    doc: CocoDocument,
    annotation_id: int,
    form: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    holes: str = BRIDGE,
) -> tuple[UpdateAnnotation, PolygonResult | None]:
    """(the annotation's mask in ``form``, what tracing did: None unless converted to polygons). RLE ->
    polygons traces the pixels to ``tolerance`` px (``holes``: see `contours`); polygons -> RLE is exact;
    RLE <-> uncompressed RLE only changes how the counts are written."""
    record = _record(doc, annotation_id)
    segmentation = record.get("segmentation")
    current = mask_form(segmentation)
    if current is None:
        raise CocoEditError(f"annotation {annotation_id} has no mask to convert")
    height, width = _hw(doc, record["image_id"])
    pixels = decode(segmentation, *rle_size(segmentation, height, width))
    traced = None
    if form == POLYGONS:
        traced = mask_to_polygons(pixels, tolerance, holes)
        converted: Any = traced.polygons
    else:
        converted = to_form(pixels, form)
    fields = mask_fields(converted, height, width, record["bbox"])
    return _update(record, fields, box_mask=is_box_mask(record) and form == POLYGONS), traced


def fill_holes_edit(doc: CocoDocument, annotation_id: int) -> UpdateAnnotation:
    """The annotation's mask with its holes filled (`mask_geometry.fill_holes`), in its form."""
    record = _record(doc, annotation_id)
    segmentation = record.get("segmentation")
    if mask_form(segmentation) is None:
        raise CocoEditError(f"annotation {annotation_id} has no mask")
    height, width = _hw(doc, record["image_id"])
    filled = fill_holes(segmentation, height, width)
    return _update(record, mask_fields(filled, height, width, record["bbox"]), box_mask=is_box_mask(record))


def fill_box_masks_edit(doc: CocoDocument) -> Edit | None:
    """In a dataset with masks, every annotation without one gets its box as a polygon (marked); None when
    there is nothing to do (no masks, or every annotation has one)."""
    if not has_masks(doc):
        return None
    steps: list[Edit] = []
    for ann in doc.index.anns.values():
        if mask_form(ann.get("segmentation")) is None:
            height, width = _hw(doc, ann["image_id"])
            steps.append(_update(ann, box_mask_fields(ann["bbox"], height, width), box_mask=True))
    return Batch(steps, "give boxes their outline as mask") if steps else None
