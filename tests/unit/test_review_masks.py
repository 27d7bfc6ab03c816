"""The review queue's mask and segment mistakes: matched boxes whose masks disagree, annotations whose mask
is only their box, and panoptic segments missed, extra or of the wrong class."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from detr_studio.common.panoptic_ids import id2rgb
from detr_studio.data.coco import CocoDocument
from detr_studio.data.coco.mask_geometry import RLE, to_form
from detr_studio.infer.detections import Detections, PanopticResult
from detr_studio.infer.review import BOX_ONLY, EXTRA_SEGMENT, MASK_DISAGREES, MISS, WRONG_CLASS
from detr_studio.session import editing
from detr_studio.session.predictions import PredictionStore
from detr_studio.session.review import find_mistakes

from .coco.helpers import panoptic_ids, write_panoptic

H, W = 60, 80
NAMES = {1: "cat", 2: "dog", 200: "sky"}


def square(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def one_prediction(box, mask: np.ndarray, label: int = 1) -> Detections:
    probs = np.full((1, 3), 0.05, dtype=np.float32)
    probs[0, label] = 0.9
    return Detections(
        image_size=(H, W),
        boxes=np.array([box], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        labels=np.array([label]),
        probs=probs,
        query_ids=np.array([11]),
        masks=mask[None],
    )


def labelled(mask: np.ndarray) -> CocoDocument:
    doc = CocoDocument.new(["cat", "dog"], [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}])
    doc.add(1, 1, [10, 10, 40, 40], segmentation=to_form(mask, RLE))
    return doc


def test_a_matched_box_whose_mask_disagrees_is_a_mistake():
    label = square(10, 10, 50, 50)
    doc = labelled(label)
    store = PredictionStore()
    inside_out = square(10, 10, 50, 50) & ~square(14, 14, 46, 46)  # the same box, only its rim as mask
    store.put(1, one_prediction([10, 10, 50, 50], inside_out), "m")
    (mistake,) = find_mistakes(doc, store, 0.5, NAMES)
    assert mistake.kind == MASK_DISAGREES and mistake.query_id == 11 and mistake.iou < 0.5
    store.put(1, one_prediction([10, 10, 50, 50], square(11, 11, 50, 50)), "m2")
    assert find_mistakes(doc, store, 0.5, NAMES) == []  # masks that agree are no mistake


def test_boxes_whose_mask_is_only_their_outline_are_listed():
    doc = labelled(square(10, 10, 50, 50))
    edit, new_id = editing.new_box(doc, 1, [55, 5, 20, 20], 1)
    doc.apply(edit)
    (mistake,) = find_mistakes(doc, PredictionStore(), 0.5, NAMES)
    assert (mistake.kind, mistake.annotation_id) == (BOX_ONLY, new_id)


def test_panoptic_segments_missed_extra_and_of_the_wrong_class(tmp_path: Path):
    doc = CocoDocument.load(write_panoptic(tmp_path), image_root=tmp_path)
    predicted = panoptic_ids().copy()  # 5: person (left), 300: car (top right), 70000: sky (bottom right)
    predicted[predicted == 300] = 0  # the car is missed
    predicted[predicted == 70000] = 2  # the sky is called "dog"
    predicted[:2, :2] = 3  # and a small extra segment
    predicted[predicted == 5] = 1
    with io.BytesIO() as buffer:
        Image.fromarray(id2rgb(predicted)).save(buffer, format="PNG")
        png = buffer.getvalue()
    segments = [
        {"id": 1, "category_id": 1, "isthing": True},
        {"id": 2, "category_id": 2, "isthing": True},
        {"id": 3, "category_id": 1, "isthing": True},
    ]
    rows = np.full((3, 3), 0.05, dtype=np.float32)
    dets = Detections(
        image_size=(6, 8),
        boxes=np.zeros((3, 4), dtype=np.float32),
        scores=np.array([0.9, 0.9, 0.9], dtype=np.float32),
        labels=np.array([1, 2, 1]),
        probs=rows,
        query_ids=np.array([20, 21, 22]),
    )
    store = PredictionStore()
    store.put(1, replace(dets, panoptic=PanopticResult(segments, png, query_ids=(20, 21, 22))), "m")
    found = {
        (m.kind, m.segment_id, m.query_id) for m in find_mistakes(doc, store, 0.5, {1: "person", 2: "dog"})
    }
    assert found == {(WRONG_CLASS, 70000, 21), (MISS, 300, None), (EXTRA_SEGMENT, None, 22)}
