"""Instance masks in the correction loop: moving and resizing boxes carries their masks, mask edits keep bbox
and area by COCO's rules, conversions between RLE and polygons keep the mask, and every edit undoes exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from detr_studio.data.coco import OUR_KEY, CocoDocument
from detr_studio.data.coco.brush import MaskCanvas, stroke_footprint
from detr_studio.data.coco.contours import BRIDGE, FILL, mask_to_polygons
from detr_studio.data.coco.mask_edits import (
    convert_edit,
    fill_box_masks_edit,
    fill_holes_edit,
    mask_edit,
    moved_box_edit,
    polygons_edit,
)
from detr_studio.data.coco.mask_geometry import (
    POLYGONS,
    RLE,
    RLE_COUNTS,
    decode,
    encode_rle,
    mask_iou,
    mask_stats,
    to_form,
)
from detr_studio.data.coco.polygons import delete_vertex, insert_vertex, move_vertex, nearest_edge
from detr_studio.data.synthetic import render_image
from detr_studio.session import editing

from .helpers import dumps, write_json

W, H = 120, 90


def blob(kind: str) -> np.ndarray:
    """Hand-made masks with concavities and holes, [H, W] bool."""
    yy, xx = np.mgrid[:H, :W]
    if kind == "crescent":
        return ((xx - 50) ** 2 + (yy - 45) ** 2 < 30**2) & ~((xx - 62) ** 2 + (yy - 40) ** 2 < 24**2)
    if kind == "ring":
        r2 = (xx - 60) ** 2 + (yy - 45) ** 2
        return (r2 < 35**2) & (r2 > 15**2)
    if kind == "comb":
        m = np.zeros((H, W), dtype=bool)
        m[20:30, 10:100] = True
        for x in range(12, 100, 14):
            m[30:75, x : x + 6] = True
        return m
    angle = np.arctan2(yy - 45, xx - 60)  # a star-like blob
    return np.hypot(xx - 60, yy - 45) < 22 + 12 * np.sin(5 * angle)


def doc_with(segmentation, tmp_path: Path, bbox=None, **extra) -> CocoDocument:
    h, w = H, W
    box, area = mask_stats(segmentation, h, w)
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation, "area": area}
    ann.update(bbox=bbox or box, iscrowd=0, **extra)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
        "annotations": [ann, {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    return CocoDocument.load(write_json(tmp_path, data))


def assert_agrees(doc: CocoDocument, aid: int, box) -> None:
    rec = doc.index.anns[aid]
    bbox, area = mask_stats(rec["segmentation"], H, W)
    assert rec["bbox"] == bbox and rec["area"] == area  # COCO's rules, as pycocotools computes them
    for got, want in zip(bbox, box):
        assert abs(got - want) <= 1.0
    assert abs(bbox[0] + bbox[2] - box[0] - box[2]) <= 1.0 and abs(bbox[1] + bbox[3] - box[1] - box[3]) <= 1.0


@pytest.mark.parametrize("form", [POLYGONS, RLE, RLE_COUNTS])
@pytest.mark.parametrize(
    "new_box", [[40.0, 20.0, 50.0, 44.0], [7.4, 12.6, 31.2, 70.7], [0.0, 0.0, 119.0, 89.0]]
)
def test_moving_and_resizing_a_box_carries_its_mask_and_undo_restores_it_exactly(form, new_box, tmp_path):
    seg = to_form(blob("crescent"), form)
    doc = doc_with(seg, tmp_path)
    before = dumps(doc)
    undo = doc.apply(moved_box_edit(doc, 1, new_box))
    assert_agrees(doc, 1, new_box)
    rec = doc.index.anns[1]
    assert rec["area"] != mask_stats(seg, H, W)[1] or new_box[2] * new_box[3] == 0
    assert (form == POLYGONS) == isinstance(rec["segmentation"], list)
    if form == RLE_COUNTS:
        assert isinstance(rec["segmentation"]["counts"], list)
    doc.apply(undo)
    assert dumps(doc) == before


def test_a_polygon_moves_exactly_and_an_rle_moved_by_whole_pixels_is_shifted_exactly(tmp_path):
    doc = doc_with([[10.5, 10.0, 30.25, 12.0, 20.0, 40.0]], tmp_path)
    x, y, w, h = doc.index.anns[1]["bbox"]
    doc.apply(moved_box_edit(doc, 1, [x + 7.5, y - 3.25, w, h]))
    assert doc.index.anns[1]["segmentation"] == [[18.0, 6.75, 37.75, 8.75, 27.5, 36.75]]
    mask = blob("star")
    doc = doc_with(to_form(mask, RLE), tmp_path)
    x, y, w, h = doc.index.anns[1]["bbox"]
    doc.apply(moved_box_edit(doc, 1, [x + 9, y - 4, w, h]))
    moved = decode(doc.index.anns[1]["segmentation"], H, W)
    np.testing.assert_array_equal(moved[:-4, 9:], mask[4:, :-9])


def test_resizing_an_rle_mask_scales_it(tmp_path):
    mask = blob("comb")
    doc = doc_with(to_form(mask, RLE), tmp_path)
    x, y, w, h = doc.index.anns[1]["bbox"]
    doc.apply(moved_box_edit(doc, 1, [x / 2, y / 2, w / 2, h / 2]))
    small = decode(doc.index.anns[1]["segmentation"], H, W)
    back = np.repeat(np.repeat(small, 2, 0), 2, 1)[:H, :W]
    assert mask_iou(back, mask) > 0.85
    assert abs(int(small.sum()) - int(mask.sum()) / 4) < 0.1 * mask.sum() / 4


def test_iscrowd_and_the_stored_form_are_kept(tmp_path):
    seg = to_form(blob("ring"), RLE_COUNTS)
    doc = doc_with(seg, tmp_path)
    doc.apply(doc.update(1, iscrowd=1) and moved_box_edit(doc, 1, [30, 10, 60, 60]))
    assert isinstance(doc.index.anns[1]["segmentation"]["counts"], list)
    assert doc.index.anns[1]["iscrowd"] == 1


def shapes_masks(count: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    masks = []
    while len(masks) < count:
        image = render_image(rng, size=160)
        masks += [s.mask for s in image.segments if s.area() >= 150]
    return masks[:count]


@pytest.mark.parametrize("mask", [blob(k) for k in ("crescent", "ring", "comb", "star")] + shapes_masks())
def test_rle_to_polygons_to_rle_keeps_the_mask(mask):
    h, w = mask.shape
    rle = to_form(mask, RLE)
    polygons = mask_to_polygons(decode(rle, h, w)).polygons  # the default tolerance, half a pixel
    back = decode(to_form(decode(polygons, h, w), RLE), h, w)
    assert mask_iou(back, mask) >= 0.95
    if mask.sum() >= 1000:  # a coarser outline still holds on larger objects
        coarse = mask_to_polygons(mask, tolerance=1.0).polygons
        assert mask_iou(decode(coarse, h, w), mask) >= 0.95
        assert sum(map(len, coarse)) <= sum(map(len, polygons))
    exact = mask_to_polygons(mask, tolerance=0.0).polygons
    np.testing.assert_array_equal(decode(exact, h, w), mask)  # no simplification: the very pixels


def test_holes_are_bridged_or_filled_and_the_result_says_so():
    ring = blob("ring")
    bridged = mask_to_polygons(ring, 0.0, BRIDGE)
    assert bridged.holes == 1 and bridged.filled_pixels == 0 and len(bridged.polygons) == 1
    np.testing.assert_array_equal(decode(bridged.polygons, H, W), ring)
    filled = mask_to_polygons(ring, 0.0, FILL)
    disc = decode(filled.polygons, H, W)
    assert filled.filled_pixels == int(disc.sum() - ring.sum()) > 0
    assert not (ring & ~disc).any()


def test_converting_between_forms_is_an_edit_with_bbox_and_area(tmp_path):
    doc = doc_with(to_form(blob("ring"), RLE), tmp_path)
    before = dumps(doc)
    edit, traced = convert_edit(doc, 1, POLYGONS, tolerance=1.0)
    undo = doc.apply(edit)
    rec = doc.index.anns[1]
    assert isinstance(rec["segmentation"], list) and traced is not None and traced.holes == 1
    assert (rec["bbox"], rec["area"]) == tuple(mask_stats(rec["segmentation"], H, W))
    assert mask_iou(decode(rec["segmentation"], H, W), blob("ring")) >= 0.95
    doc.apply(undo)
    assert dumps(doc) == before
    back, _ = convert_edit(doc, 1, RLE_COUNTS)
    doc.apply(back)
    assert isinstance(doc.index.anns[1]["segmentation"]["counts"], list)
    assert doc.index.anns[1]["area"] == int(blob("ring").sum())


@pytest.mark.parametrize("form", [POLYGONS, RLE])
def test_fill_holes_fills_them_in_the_same_form(form, tmp_path):
    ring = blob("ring")
    seg = mask_to_polygons(ring, 0.0).polygons if form == POLYGONS else to_form(ring, RLE)
    doc = doc_with(seg, tmp_path)
    doc.apply(fill_holes_edit(doc, 1))
    rec = doc.index.anns[1]
    filled = decode(rec["segmentation"], H, W)
    assert not (ring & ~filled).any() and filled.sum() > ring.sum()
    assert (rec["area"], isinstance(rec["segmentation"], list)) == (int(filled.sum()), form == POLYGONS)
    if form == POLYGONS:
        assert rec["segmentation"][0] == seg[0]  # the user's polygon stays; the hole gets one of its own


def test_a_brush_stroke_touches_only_its_box_and_commits_as_one_edit(tmp_path):
    doc = doc_with(to_form(blob("crescent"), RLE), tmp_path)
    canvas = MaskCanvas.from_segmentation(doc.index.anns[1]["segmentation"], H, W)
    rect = canvas.stroke(90, 70, 110, 80, 4)
    assert (rect.width, rect.height) == (29, 19)
    erased = canvas.stroke(50, 45, 50, 45, 3, paint=False)
    assert erased.width <= 8 and canvas.dirty is not None and canvas.dirty.width > rect.width
    before = dumps(doc)
    undo = doc.apply(mask_edit(doc, 1, canvas.mask))
    rec = doc.index.anns[1]
    np.testing.assert_array_equal(decode(rec["segmentation"], H, W), canvas.mask)
    assert rec["bbox"] == mask_stats(rec["segmentation"], H, W)[0] and rec["bbox"][0] + rec["bbox"][2] >= 110
    doc.apply(undo)
    assert dumps(doc) == before


def test_the_stroke_footprint_is_a_capsule():
    rect, pixels = stroke_footprint(10, 10, 30, 10, 3, 100, 100)
    assert pixels[rect.height // 2, :26].all() and pixels.sum() == pytest.approx(
        20 * 6 + math.pi * 9, rel=0.15
    )
    rect, pixels = stroke_footprint(-50, -50, -40, -40, 3, 100, 100)
    assert rect.empty


def test_polygon_vertices_can_be_moved_inserted_and_deleted(tmp_path):
    polygons = [[10.0, 10.0, 40.0, 10.0, 40.0, 40.0, 10.0, 40.0]]
    moved = move_vertex(polygons, 0, 2, 60, 50)
    assert moved[0][4:6] == [60.0, 50.0] and polygons[0][4:6] == [40.0, 40.0]
    hit = nearest_edge(moved, 25, 9)
    assert (hit.polygon, hit.index) == (0, 0)
    inserted = insert_vertex(moved, 0, hit.index + 1, hit.x, hit.y - 5)
    assert len(inserted[0]) == 10 and inserted[0][2:4] == [25.0, 5.0]
    assert delete_vertex(delete_vertex(inserted, 0, 0), 0, 0)[0] == inserted[0][4:]
    assert delete_vertex([[0, 0, 5, 0, 5, 5]], 0, 1) == []
    doc = doc_with(polygons, tmp_path)
    doc.apply(polygons_edit(doc, 1, inserted))
    rec = doc.index.anns[1]
    assert rec["segmentation"] == inserted and rec["bbox"] == [10.0, 5.0, 50.0, 45.0]


def test_boxes_in_a_dataset_with_masks_get_their_outline_marked_and_pycocotools_reads_every_one(tmp_path):
    doc = doc_with(to_form(blob("star"), RLE), tmp_path)
    edit, new_id = editing.new_box(doc, 1, [60, 10, 30, 20], 1)
    doc.apply(edit)
    doc.apply(editing.moved_box(doc, 2, [8, 8, 12, 12]))  # an old box without a mask: it gets one
    doc.apply(editing.nudged(doc, 1, [new_id], 3, 2))
    copy_edit, copies = editing.duplicates(doc, 1, [1, new_id])
    doc.apply(copy_edit)
    rec = doc.index.anns[new_id]
    assert rec["segmentation"] == [[63.0, 12.0, 93.0, 12.0, 93.0, 32.0, 63.0, 32.0]]
    assert rec["bbox"] == [63.0, 12.0, 30.0, 20.0] and rec["area"] == 600 and rec[OUR_KEY]["mask"] == "box"
    assert doc.annotation(new_id).box_mask and not doc.annotation(1).box_mask
    assert doc.index.anns[2][OUR_KEY]["mask"] == "box"
    star_copy = doc.index.anns[copies[0]]
    assert mask_iou(decode(star_copy["segmentation"], H, W)[10:, 10:], blob("star")[:-10, :-10]) > 0.99
    path = doc.save()
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        pixels = coco.annToMask(ann)
        assert pixels.shape == (H, W) and int(pixels.sum()) == int(ann["area"])
    assert json.loads(path.read_text())["annotations"][0]["segmentation"]["counts"]


def test_a_real_mask_replaces_the_box_outline_and_its_mark(tmp_path):
    doc = doc_with(to_form(blob("star"), RLE), tmp_path)
    edit, new_id = editing.new_box(doc, 1, [60, 10, 30, 20], 1)
    doc.apply(edit)
    doc.apply(mask_edit(doc, new_id, blob("comb")))
    rec = doc.index.anns[new_id]
    assert "mask" not in rec[OUR_KEY] and isinstance(rec["segmentation"], dict)


def test_fill_box_masks_gives_every_annotation_of_an_older_file_a_mask(tmp_path):
    doc = doc_with(to_form(blob("star"), RLE), tmp_path)
    edit = fill_box_masks_edit(doc)
    assert edit is not None
    doc.apply(edit)
    assert fill_box_masks_edit(doc) is None
    assert doc.index.anns[2]["segmentation"] == [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]


def test_mask_edits_are_journaled_and_replayed(tmp_path):
    doc = doc_with(to_form(blob("crescent"), RLE), tmp_path)
    doc.apply(moved_box_edit(doc, 1, [20, 20, 40, 40]))
    doc.apply(convert_edit(doc, 1, POLYGONS)[0])
    expected = dumps(doc)
    recovered = CocoDocument.load(doc.path, lock=False)
    assert recovered.index.anns[1]["segmentation"]["counts"]  # the file still holds the old mask
    doc.close()
    again = CocoDocument.load(doc.path)
    assert again.replay_journal() == 2
    assert dumps(again) == expected


def test_encoding_a_region_equals_encoding_the_whole_mask():
    mask = blob("comb")
    mask[:, :3] = True
    mask[-1, -1] = True
    whole = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    region = encode_rle(mask, 0, 0, H, W)
    assert region["counts"] == whole["counts"].decode()
    part = encode_rle(mask[20:75, 10:100], 10, 20, H, W)
    np.testing.assert_array_equal(decode(part, H, W)[20:75, 10:100], mask[20:75, 10:100])
