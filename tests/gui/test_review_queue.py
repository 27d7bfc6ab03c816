"""The review queue: uncertainty orderings and prediction/label disagreements on hand-made `Detections`, and
its rows taking the user to the image and the box on the canvas."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from detr_studio.app.canvas import ANNOTATIONS, PREDICTIONS
from detr_studio.app.predictions import ACCEPTED, PredictionStore
from detr_studio.app.review_queue import EXTRA, MISS, WRONG_CLASS, find_mistakes, rank_uncertain
from detr_studio.data.coco import CocoDocument
from detr_studio.infer.detections import Detections
from detr_studio.infer.uncertainty import ENTROPY, MARGIN, NO_OBJECT, image_uncertainty, query_uncertainty

from .helpers import open_and_wait, shot

CONFIDENT_BACKGROUND = [0.01, 0.01, 0.98]  # two classes and no-object


def dets(rows: list[list[float]], boxes: list[list[float]] | None = None, size=(100, 100)) -> Detections:
    """Detections from class distributions [Q, C+1] (no-object last); score and label from the real classes."""
    probs = np.array(rows, dtype=np.float32)
    if boxes is None:
        boxes = [[10.0 * q, 10.0 * q, 10.0 * q + 8, 10.0 * q + 8] for q in range(len(rows))]
    return Detections(
        image_size=size,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=probs[:, :-1].max(1),
        labels=probs[:, :-1].argmax(1),
        probs=probs,
        query_ids=np.arange(len(rows)),
    )


def test_each_measure_scores_the_expected_query_as_most_uncertain():
    probs = np.array(
        [
            [0.98, 0.01, 0.01],  # sure of class 0
            [0.45, 0.45, 0.10],  # torn between two classes: smallest top-2 margin
            [0.30, 0.30, 0.40],  # spread over everything: highest entropy
            [0.50, 0.00, 0.50],  # object or background? no-object mass at one half
        ]
    )
    assert int(np.argmax(query_uncertainty(probs, ENTROPY))) == 2
    assert int(np.argmax(query_uncertainty(probs, MARGIN))) == 1
    assert int(np.argmax(query_uncertainty(probs, NO_OBJECT))) == 3
    for measure in (ENTROPY, MARGIN, NO_OBJECT):
        values = query_uncertainty(probs, measure)
        assert values.min() >= 0.0 and values.max() <= 1.0 + 1e-9
        assert np.argmin(values) == 0
    with pytest.raises(ValueError, match="unknown measure"):
        query_uncertainty(probs, "variance")


def test_confident_background_and_reviewed_queries_do_not_make_an_image_uncertain():
    spread_background = [0.04, 0.04, 0.92]  # high entropy but almost no mass on real classes
    image = dets([CONFIDENT_BACKGROUND, spread_background, [0.55, 0.40, 0.05]])
    score, query = image_uncertainty(image, MARGIN)
    assert query == 2 and score == pytest.approx(1 - 0.15)
    assert image_uncertainty(image, MARGIN, skip=[2]) == (0.0, None)
    score, query = image_uncertainty(image, NO_OBJECT)
    assert query == 1  # no-object mass looks at every query: 0.92 is the closest to one half here
    assert score == pytest.approx(1 - abs(2 * 0.92 - 1))


def test_images_are_ranked_most_uncertain_first_and_marks_are_respected():
    store = PredictionStore()
    store.put(1, dets([[0.9, 0.05, 0.05], CONFIDENT_BACKGROUND]), "m")
    store.put(2, dets([[0.5, 0.45, 0.05], CONFIDENT_BACKGROUND]), "m")
    store.put(3, dets([[0.7, 0.2, 0.1], CONFIDENT_BACKGROUND]), "m")
    assert [u.image_id for u in rank_uncertain(store, MARGIN)] == [2, 3, 1]
    store.mark(2, [0], ACCEPTED)  # the user dealt with image 2's doubtful query
    ranked = rank_uncertain(store, MARGIN)
    assert [u.image_id for u in ranked] == [3, 1, 2] and ranked[-1].query_id is None


@pytest.fixture
def labelled_doc() -> CocoDocument:
    """One 100×100 image with a cat at (10, 10, 30, 30), a dog at (60, 60, 30, 30) and a cat at (10, 60,
    20, 20); a second image with a label nobody predicted; a third with no labels and not reviewed."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 60, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 60, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
    ]
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    return CocoDocument({"images": images, "annotations": anns, "categories": cats})


def test_mistakes_are_misses_extra_boxes_and_wrong_classes_by_iou(labelled_doc):
    store = PredictionStore()
    # the model knows the classes by name under its own ids: 7 is "cat", 8 is "dog"
    names = {7: "cat", 8: "dog"}
    rows = [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.05, 0.05],  # q0: cat on the cat: right
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.05, 0.05],  # q1: cat on the dog: wrong class
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.9, 0.05],  # q2: dog on empty ground: extra box
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.0, 0.4],  # q3: second cat on the first cat: extra
    ]
    boxes = [[11, 11, 41, 41], [62, 61, 91, 90], [60, 5, 90, 30], [10, 10, 38, 40]]
    store.put(1, dets(rows, boxes), "m")
    store.put(3, dets([rows[2]], [boxes[2]]), "m")  # not reviewed, no labels: not checked
    found = find_mistakes(labelled_doc, store, threshold=0.5, model_names=names)
    kinds = [(m.image_id, m.kind, m.annotation_id, m.query_id) for m in found]
    assert kinds == [(1, WRONG_CLASS, 2, 1), (1, MISS, 3, None), (1, EXTRA, None, 2), (1, EXTRA, None, 3)]
    wrong = found[0]
    assert wrong.iou > 0.5 and "labelled dog, predicted cat" in wrong.detail
    # a threshold above q3's score leaves it out; image 2 has no predictions cached, so it is not judged
    assert [m.query_id for m in find_mistakes(labelled_doc, store, 0.7, names) if m.kind == EXTRA] == [2]
    labelled_doc.set_image_reviewed(3)
    assert any(m.image_id == 3 for m in find_mistakes(labelled_doc, store, 0.5, names))


def test_without_model_names_classes_are_compared_by_id(labelled_doc):
    store = PredictionStore()
    rows = [[0.0, 0.05, 0.9, 0.05]]  # label 2 (dog) on the cat
    store.put(1, dets(rows, [[10, 10, 40, 40]]), "m")
    found = find_mistakes(labelled_doc, store, 0.5, {})
    assert (found[0].kind, found[0].annotation_id) == (WRONG_CLASS, 1)


def test_rows_take_the_user_to_the_image_and_select_the_box(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.open_coco, dataset.instances_json("train"))
    window.queue_dock.show()
    window.queue_dock.raise_()
    panel = window.queue_dock.panel
    doc = window.doc
    target = doc.images[-1]
    label = doc.annotations_for(target.id)[0]
    x, y, w, h = label.bbox
    c = len(doc.class_names)  # real classes 0..C-1, no-object last
    sure_label = np.zeros(c + 1)
    sure_label[label.category_id] = 0.95
    sure_label[-1] = 0.05
    doubtful = np.full(c + 1, 0.8 / c)
    doubtful[-1] = 0.2
    rows = [sure_label, sure_label, doubtful]
    boxes = [[0, 0, 3, 3], [x, y, x + w, y + h], [2, 2, 5, 5]]  # q0 an extra box, q1 on the label, q2 unsure
    source = str(doc.image_path(target.id))
    image_dets = replace(dets(rows, boxes, size=(target.height, target.width)), source=source)
    window.store.put(target.id, image_dets, "hand-made")
    window.predictions_changed.emit(target.id)
    qtbot.waitUntil(
        lambda: panel.mistakes_list.count() > 0 and panel.uncertain_list.count() > 0, timeout=5_000
    )

    texts = [panel.mistakes_list.item(i).text() for i in range(panel.mistakes_list.count())]
    assert any("extra box" in t for t in texts), texts
    extra_row = next(i for i, t in enumerate(texts) if "extra box" in t)
    window.select_image(doc.images[0].id)
    panel.tabs.setCurrentIndex(1)
    panel.mistakes_list.itemClicked.emit(panel.mistakes_list.item(extra_row))
    assert window.current_image_id == target.id
    assert window.canvas.selected_prediction_ids() == [0]

    panel.set_measure(ENTROPY)
    panel.refresh()
    top = panel.uncertain_list.item(0)
    assert top.data(Qt.ItemDataRole.UserRole) == (target.id, PREDICTIONS, 2)  # the unsure query
    panel.tabs.setCurrentIndex(0)
    panel.uncertain_list.itemClicked.emit(top)
    assert window.show_ghosts  # its score is below the threshold: shown faintly to be selected
    assert window.canvas.selected_prediction_ids() == [2]
    shot(window, "review-queue")

    other = [a for a in doc.annotations_for(target.id) if a.id != label.id]
    if other:  # labels without a prediction are misses that select the annotation
        miss = next(i for i, t in enumerate(texts) if "miss" in t)
        panel.mistakes_list.itemClicked.emit(panel.mistakes_list.item(miss))
        assert window.canvas.selected_annotation_ids()[0] in {a.id for a in other}
    assert panel.mistakes_list.item(0).data(Qt.ItemDataRole.UserRole)[1] in (ANNOTATIONS, PREDICTIONS)

    # a rebuild (new predictions, an edit) keeps the row the user was on
    panel.mistakes_list.setCurrentRow(extra_row)
    chosen = panel.mistakes_list.currentItem().data(Qt.ItemDataRole.UserRole)
    window.predictions_changed.emit(target.id)
    panel.refresh()
    assert panel.mistakes_list.currentItem().data(Qt.ItemDataRole.UserRole) == chosen
    assert panel.mistakes_list.currentItem().isSelected()
