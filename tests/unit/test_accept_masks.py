"""Accepted predictions keep the model's masks (instance masks, or the panoptic segment the query made), in
the form the file uses; in a dataset with masks every saved annotation has one that pycocotools reads."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from detr_studio.common.panoptic_ids import id2rgb
from detr_studio.data.coco import OUR_KEY, CocoDocument
from detr_studio.data.coco.mask_geometry import decode, mask_stats
from detr_studio.infer.detections import Detections, PanopticResult
from detr_studio.session.predictions import accept_edit

H, W = 50, 60
NAMES = {1: "cat", 2: "dog"}


def detections(count: int = 3) -> Detections:
    probs = np.full((count, 4), 0.01, dtype=np.float32)
    probs[:, 1] = 0.9
    boxes = np.array([[10 + 10 * i, 5, 25 + 10 * i, 30] for i in range(count)], dtype=np.float32)
    return Detections(
        image_size=(H, W),
        boxes=boxes,
        scores=np.full(count, 0.9, dtype=np.float32),
        labels=np.ones(count, dtype=np.int64),
        probs=probs,
        query_ids=np.array([7, 3, 12][:count]),
        source="a.jpg",
    )


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def new_doc(annotations=()) -> CocoDocument:
    doc = CocoDocument.new(["cat", "dog"], [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}])
    for ann in annotations:
        doc.add(1, 1, ann["bbox"], segmentation=ann.get("segmentation"))
    return doc


def test_accepting_keeps_the_instance_masks_with_their_bbox_and_area():
    masks = np.stack([disc(17, 17, 6), disc(27, 17, 7), disc(37, 17, 5)])
    dets = replace(detections(), masks=masks)
    doc = new_doc()
    doc.apply(accept_edit(doc, 1, dets, [0, 2], "m", NAMES))
    first, second = doc.annotations_for(1)
    np.testing.assert_array_equal(decode(first.segmentation, H, W), masks[0])
    np.testing.assert_array_equal(decode(second.segmentation, H, W), masks[2])
    assert isinstance(first.segmentation, dict)  # no masks in the file yet: RLE
    assert (list(first.bbox), first.area) == (mask_stats(first.segmentation, H, W)[0], int(masks[0].sum()))
    assert not first.box_mask


def test_accepting_stores_polygons_when_the_file_uses_polygons():
    doc = new_doc([{"bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]}])
    dets = replace(detections(1), masks=disc(30, 25, 9)[None])
    doc.apply(accept_edit(doc, 1, dets, [0], "m", NAMES))
    accepted = doc.annotations_for(1)[-1]
    assert isinstance(accepted.segmentation, list)
    pixels = decode(accepted.segmentation, H, W)
    assert (pixels & disc(30, 25, 9)).sum() / (pixels | disc(30, 25, 9)).sum() > 0.95


def test_a_panoptic_model_gives_each_accepted_query_its_segment():
    ids = np.zeros((H, W), dtype=np.int64)
    ids[disc(20, 20, 8)] = 1
    ids[disc(40, 25, 6)] = 2
    with io.BytesIO() as buffer:
        Image.fromarray(id2rgb(ids)).save(buffer, format="PNG")
        png = buffer.getvalue()
    segments = [
        {"id": 1, "isthing": True, "category_id": 1, "area": 0},
        {"id": 2, "isthing": True, "category_id": 1},
    ]
    dets = replace(detections(), panoptic=PanopticResult(segments, png, query_ids=(3, 7)))
    doc = new_doc()
    doc.apply(accept_edit(doc, 1, dets, [0, 1, 2], "m", NAMES))
    by_query_7, by_query_3, no_segment = doc.annotations_for(1)
    np.testing.assert_array_equal(decode(by_query_7.segmentation, H, W), ids == 2)
    np.testing.assert_array_equal(decode(by_query_3.segmentation, H, W), ids == 1)
    assert no_segment.box_mask and no_segment.segmentation == [[30.0, 5.0, 45.0, 5.0, 45.0, 30.0, 30.0, 30.0]]


def test_every_saved_annotation_reads_in_pycocotools(tmp_path):
    doc = new_doc()
    doc.apply(accept_edit(doc, 1, replace(detections(1), masks=disc(20, 20, 6)[None]), [0], "m", NAMES))
    doc.apply(accept_edit(doc, 1, detections(2), [1], "m", NAMES))  # no mask: the box outline, marked
    path = doc.save(tmp_path / "labels.json")
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(ann).sum() == ann["area"] > 0
    marks = [a[OUR_KEY].get("mask") for a in coco.loadAnns(coco.getAnnIds())]
    assert marks == [None, "box"]
