"""The session's prediction cache and its marks, turning queries into annotations, and the image filter."""

from __future__ import annotations

import numpy as np
import pytest

from detr_studio.data.coco import CocoDocument
from detr_studio.infer.detections import Detections
from detr_studio.session.editing import rounded
from detr_studio.session.filters import ImageFilter, matching_image_ids
from detr_studio.session.predictions import ACCEPTED, REJECTED, PredictionStore, accept_edit


def detections(scores, labels, boxes=None) -> Detections:
    q = len(scores)
    probs = np.full((q, 4), 0.01, dtype=np.float32)
    for row, (s, lab) in enumerate(zip(scores, labels)):
        probs[row, lab] = s
    boxes = np.array(boxes if boxes is not None else [[10, 10, 30, 40]] * q, dtype=np.float32)
    return Detections(
        image_size=(50, 60),
        boxes=boxes,
        scores=np.array(scores, dtype=np.float32),
        labels=np.array(labels, dtype=np.int64),
        probs=probs,
        query_ids=np.arange(q),
        source="a.jpg",
    )


@pytest.fixture
def doc():
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 60, "height": 50},
        {"id": 2, "file_name": "b.jpg", "width": 60, "height": 50},
    ]
    return CocoDocument.new(["cat", "dog"], images)


def test_visible_is_a_threshold_view_without_marked_queries_best_first():
    store = PredictionStore()
    store.put(1, detections([0.2, 0.9, 0.6, 0.1], [1, 2, 1, 1]), "m")
    assert list(store.visible(1, 0.5).query_ids) == [1, 2]
    store.set_marks(1, {1: REJECTED}, "m")
    assert list(store.visible(1, 0.5).query_ids) == [2]
    assert list(store.ghosts(1, 0.5).query_ids) == [0, 3]
    store.set_marks(1, {1: None}, "m")
    assert list(store.visible(1, 0.0).query_ids) == [1, 2, 0, 3]
    assert store.visible(2, 0.5) is None


def test_marks_survive_a_rerun_of_the_same_model_only():
    store = PredictionStore()
    store.put(1, detections([0.9, 0.8], [1, 1]), "m")
    store.set_marks(1, {0: ACCEPTED}, "m")
    store.put(1, detections([0.9, 0.8], [1, 1]), "m")
    assert list(store.visible(1, 0.5).query_ids) == [1]
    store.put(1, detections([0.9, 0.8], [1, 1]), "other")
    assert list(store.visible(1, 0.5).query_ids) == [0, 1]


def test_accepting_maps_labels_to_categories_by_name_and_adds_missing_ones(doc):
    dets = detections([0.9, 0.8, 0.7], [2, 3, 1], [[-5, 10, 30, 70], [0, 0, 10, 10], [1, 1, 5, 5]])
    names = {1: "dog", 2: "cat", 3: "bird"}
    edit = accept_edit(doc, 1, dets, [0, 1, 2], "tiny.onnx", names)
    doc.apply(edit)
    anns = doc.annotations
    by_name = {doc.category(a.category_id).name: a for a in anns}
    assert set(by_name) == {"cat", "dog", "bird"}
    cat = by_name["cat"]
    assert cat.bbox == (0.0, 10.0, 30.0, 40.0)  # clipped to the 60 x 50 image
    assert (cat.source, cat.model, cat.review) == ("model", "tiny.onnx", "accepted")
    assert cat.score == pytest.approx(0.9)
    assert by_name["dog"].category_id == 2  # the document's "dog", not the model's id 1


def test_accepted_boxes_are_rounded_like_drawn_ones(doc):
    dets = detections([0.9], [2], [[3.333333, 7.0049, 40.00050354003906, 45.123456]])
    doc.apply(accept_edit(doc, 1, dets, [0], "m", {2: "cat"}))
    box = doc.annotations[0].bbox
    assert box == (3.33, 7.0, 36.67, 38.12)  # float32 boxes saved as 96.00050354003906 before
    assert box == tuple(rounded(box))


def test_filters_by_name_review_predictions_class_and_score(doc):
    store = PredictionStore()
    doc.add(1, 1, [1, 1, 5, 5])
    doc.set_image_reviewed(2)
    store.put(2, detections([0.9, 0.3], [2, 1]), "m")
    names = {1: "dog", 2: "cat"}

    def ids(**kw):
        return matching_image_ids(doc, store, ImageFilter(**kw), 0.5, names)

    assert ids() == [1, 2]
    assert ids(name="B.J") == [2]
    assert ids(unreviewed=True) == [1]
    assert ids(has_predictions=True) == [2]
    assert ids(category_id=1) == [1, 2]  # an annotation of "cat" / a "cat" prediction above 0.5
    assert ids(category_id=2) == []  # the "dog" prediction scores 0.3, below the threshold
    assert ids(min_score=0.2, max_score=0.4) == [2]
    assert ids(min_score=0.95) == []


def test_marks_of_another_models_result_are_left_alone():
    store = PredictionStore()
    store.put(1, detections([0.9, 0.8], [1, 1]), "new")
    assert store.set_marks(1, {0: ACCEPTED}, "old") == {0: ACCEPTED}
    assert store.get(1).marks == {}
    assert store.set_marks(1, {0: ACCEPTED}, "new") == {0: None} and store.get(1).marks == {0: ACCEPTED}
