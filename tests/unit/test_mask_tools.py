"""The edits behind the window's mask tools: a drawn polygon, brush and eraser strokes, fill holes and the
RLE <-> polygon conversions, each keeping bbox and area those of the mask and undone exactly."""

from __future__ import annotations

import numpy as np
import pytest

from detr_studio.data.coco import CocoDocument
from detr_studio.data.coco.mask_geometry import POLYGONS, RLE, decode, encode_rle, mask_stats
from detr_studio.session import mask_tools
from detr_studio.session.mask_tools import MaskToolError

H, W = 60, 80


def new_doc() -> CocoDocument:
    return CocoDocument.new(["cat", "dog"], [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}])


def ring_mask() -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    d2 = (xx - 40) ** 2 + (yy - 30) ** 2
    return (d2 <= 15**2) & (d2 > 6**2)  # a ring: one hole in the middle


def agrees(doc: CocoDocument, aid: int) -> np.ndarray:
    """The annotation's pixels, after checking that its bbox and area are COCO's for its mask."""
    ann = doc.annotation(aid)
    bbox, area = mask_stats(ann.segmentation, H, W)
    assert list(ann.bbox) == pytest.approx(bbox) and ann.area == area
    return decode(ann.segmentation, H, W)


def test_a_drawn_polygon_is_a_new_annotation_with_its_box_and_area():
    doc = new_doc()
    edit, aid = mask_tools.polygon_annotation(doc, 1, [(10, 10), (30, 10), (30, 25), (10, 25)], 2)
    doc.apply(edit)
    ann = doc.annotation(aid)
    assert ann.category_id == 2 and ann.source == "human"
    assert ann.segmentation == [[10.0, 10.0, 30.0, 10.0, 30.0, 25.0, 10.0, 25.0]]
    assert agrees(doc, aid).sum() == ann.area > 0
    with pytest.raises(MaskToolError):
        mask_tools.polygon_annotation(doc, 1, [(1, 1), (5, 5)], 2)


def test_a_brush_stroke_starts_a_mask_paints_into_it_and_the_eraser_takes_away():
    doc = new_doc()
    edit, aid = mask_tools.stroke_edit(doc, 1, None, [(20.0, 20.0), (40.0, 20.0)], 4.0, False, 1)
    doc.apply(edit)
    first = agrees(doc, aid)
    assert first[20, 20] and first[20, 40] and not first[30, 30]
    assert isinstance(doc.annotation(aid).segmentation, dict)  # a dataset without masks yet: RLE
    edit, same = mask_tools.stroke_edit(doc, 1, aid, [(30.0, 20.0), (30.0, 40.0)], 3.0, False)
    assert same == aid
    doc.apply(edit)
    second = agrees(doc, aid)
    assert second[38, 30] and (second | first).sum() == second.sum()
    undo = doc.apply(mask_tools.stroke_edit(doc, 1, aid, [(20.0, 20.0)], 5.0, True)[0])
    third = agrees(doc, aid)
    assert not third[20, 20] and third[38, 30]
    doc.apply(undo)
    np.testing.assert_array_equal(agrees(doc, aid), second)


def test_the_eraser_refuses_to_empty_a_mask_and_needs_a_target():
    doc = new_doc()
    doc.apply(mask_tools.stroke_edit(doc, 1, None, [(20.0, 20.0)], 3.0, False, 1)[0])
    (ann,) = doc.annotations_for(1)
    with pytest.raises(MaskToolError, match="empty"):
        mask_tools.stroke_edit(doc, 1, ann.id, [(20.0, 20.0)], 10.0, True)
    with pytest.raises(MaskToolError):
        mask_tools.stroke_edit(doc, 1, None, [(20.0, 20.0)], 3.0, True)


def test_a_painted_polygon_mask_becomes_rle_and_keeps_every_pixel_outside_the_stroke():
    doc = new_doc()
    edit, aid = mask_tools.polygon_annotation(doc, 1, [(10, 10), (30, 10), (30, 25), (10, 25)], 1)
    doc.apply(edit)
    before = agrees(doc, aid)
    doc.apply(mask_tools.stroke_edit(doc, 1, aid, [(40.0, 18.0)], 4.0, False)[0])
    after = agrees(doc, aid)
    assert isinstance(doc.annotation(aid).segmentation, dict) and after[18, 40]
    np.testing.assert_array_equal(after[:, :34], before[:, :34])


def test_fill_holes_and_the_conversions_keep_the_mask_and_its_numbers():
    doc = new_doc()
    rle = encode_rle(ring_mask(), 0, 0, H, W)
    edit, aid = mask_tools.new_masked_annotation(doc, 1, rle, 1)
    doc.apply(edit)
    doc.apply(mask_tools.convert(doc, [aid], POLYGONS, 0.0))
    assert isinstance(doc.annotation(aid).segmentation, list)
    np.testing.assert_array_equal(agrees(doc, aid), ring_mask())  # tolerance 0: exact, the hole kept
    with pytest.raises(MaskToolError, match="already"):
        mask_tools.convert(doc, [aid], POLYGONS, 0.5)
    doc.apply(mask_tools.convert(doc, [aid], RLE, 0.5))
    assert isinstance(doc.annotation(aid).segmentation, dict)
    doc.apply(mask_tools.fill_holes(doc, [aid]))
    filled = agrees(doc, aid)
    assert filled[30, 40] and filled.sum() > ring_mask().sum()
    with pytest.raises(MaskToolError):
        mask_tools.fill_holes(doc, [])
