"""Turning the model's mask for a drawn box (`infer.box_mask.BoxMask`, from ``InferenceEngine.mask_from_box``
on the inference worker) into an annotation edit.

`box_mask_edit` either gives an existing annotation the mask (its box then becomes the mask's bounds), or
adds a new annotation with it: of the category the user chose, else the one the query's label maps to
(`data.labels.category_for_label`, adding it when the document lacks it). The mask is stored in the file's
form (polygons when its masks are polygons, else RLE), with bbox and area by COCO's rules. The user drew
the box and took the mask, so the annotation is the user's (``source`` "human", accepted), with the model's
name kept beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from detr_studio.data.coco import AddAnnotations, AddCategory, Batch, CocoDocument, CocoEditError, Edit
from detr_studio.data.coco.mask_edits import mask_edit, mask_fields, preferred_form
from detr_studio.data.coco.mask_geometry import to_form
from detr_studio.data.labels import category_for_label

if TYPE_CHECKING:  # torch: the window imports this module at start, torch comes later
    from detr_studio.infer.box_mask import BoxMask


def box_mask_edit(
    doc: CocoDocument,
    image_id: int,
    result: BoxMask,
    *,
    annotation_id: int | None = None,
    category_id: int | None = None,
    class_names: Mapping[int, str] | None = None,
    model: str | None = None,
) -> tuple[Edit, int]:
    """(the edit, the annotation's id): ``result``'s mask for annotation ``annotation_id``, or for a new
    annotation when it is None. `CocoEditError` when the mask is empty or not the image's size."""
    width, height = doc.image_size(image_id)
    if result.mask.shape != (height, width):
        raise CocoEditError(
            f"the mask is {result.mask.shape[1]}x{result.mask.shape[0]}, the image {width}x{height}"
        )
    if not result.mask.any():
        raise CocoEditError("the model's mask for this box is empty; draw the box again or paint the mask")
    if annotation_id is not None:
        return mask_edit(doc, annotation_id, result.mask), annotation_id
    new_categories: dict[int, dict] = {}
    cid = category_id
    if cid is None:
        cid = category_for_label(doc.categories, result.label, class_names or {}, new_categories)
    x0, y0, x1, y1 = result.box
    record = doc.new_annotation(image_id, cid, (x0, y0, x1 - x0, y1 - y0), model=model)
    record.update(mask_fields(to_form(result.mask, preferred_form(doc)), height, width, record["bbox"]))
    steps: list[Edit] = [AddCategory(rec) for rec in new_categories.values()]
    steps.append(AddAnnotations([record]))
    edit = steps[0] if len(steps) == 1 else Batch(steps, "mask from box")
    return edit, int(record["id"])
