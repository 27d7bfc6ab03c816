"""A tiny random model in the real window: predict, threshold, accept, reject, attention, masks, batch runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import Qt

from detr_studio.app.canvas import ATTENTION, MASKS, PREDICTIONS

from .helpers import load_tiny_model, open_and_wait, predict_and_wait, view_point


@pytest.fixture
def predicted(qtbot, window, dataset, tiny_checkpoint):
    open_and_wait(qtbot, window, window.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.set_threshold(0.0)
    predict_and_wait(qtbot, window)
    window.canvas.setFocus()
    return window


def test_model_chooser_loads_the_checkpoint_off_the_qt_thread(qtbot, predicted):
    window = predicted
    assert window.model_info.name == "tiny.safetensors"
    assert window.model_info.class_names[1] == "circle"
    assert "cpu" in window.device_label.text() and "tiny" in window.model_status.text()
    assert window.review_panel.head_combo.count() == 1 + window.model_info.num_heads


def test_prediction_boxes_appear_and_the_threshold_refilters_without_running_the_model(qtbot, predicted):
    window = predicted
    entry = window.store.get(window.current_image_id)
    dets = entry.detections
    assert len(window.canvas.prediction_items()) == len(dets) == 10
    calls = []
    window.worker.predicted.connect(lambda *args: calls.append(args))
    cut = float(np.median(dets.scores))
    window.review_panel.threshold_slider.setValue(round(cut * 100))
    shown = {item.key for item in window.canvas.prediction_items()}
    expected = {int(q) for q, s in zip(dets.query_ids, dets.scores) if s > round(cut * 100) / 100}
    assert shown == expected and 0 < len(shown) < 10
    qtbot.wait(50)
    assert calls == [] and window.store.get(window.current_image_id) is entry
    item = window.canvas.prediction_items()[0]
    assert item.spec.label.split()[0] in {*window.model_info.class_names.values(), "class"}
    assert "no-object" in item.toolTip() and f"query {item.key}" in item.toolTip()


def test_space_accepts_a_prediction_with_model_provenance_and_undo_restores_it(qtbot, predicted):
    window = predicted
    item = window.canvas.prediction_items()[0]
    query, before = item.key, len(window.doc.annotations)
    window.canvas.select(PREDICTIONS, [query])
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    assert len(window.doc.annotations) == before + 1
    ann = window.doc.annotations[-1]
    row = window.store.row_of(window.current_image_id, query)
    dets = window.store.get(window.current_image_id).detections
    assert ann.source == "model" and ann.model == "tiny.safetensors" and ann.review == "accepted"
    assert ann.score == pytest.approx(float(dets.scores[row]))
    assert window.doc.category(ann.category_id).name == window.label_name(int(dets.labels[row]))
    assert query not in {i.key for i in window.canvas.prediction_items()}
    assert window.canvas.annotation_item(ann.id) is not None
    window.undo()
    assert len(window.doc.annotations) == before
    assert query in {i.key for i in window.canvas.prediction_items()}
    window.redo()
    assert len(window.doc.annotations) == before + 1
    assert query not in {i.key for i in window.canvas.prediction_items()}


def test_clicking_a_prediction_selects_it_and_shows_the_inspector_and_attention(qtbot, predicted):
    window = predicted
    window.set_layer_visible("annotations", False)  # nothing on top of the predictions
    item = window.canvas.prediction_items()[-1]
    window.canvas.scene().clearSelection()
    centre = item.rect().center()
    hits = [b for b in window.canvas.items(view_point(window, centre.x(), centre.y())) if hasattr(b, "kind")]
    qtbot.mouseClick(
        window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=view_point(window, centre.x(), centre.y())
    )
    selected = window.canvas.selected_prediction_ids()
    assert selected == [hits[0].key]
    assert f"Query {selected[0]}" in window.review_panel.inspector.text()
    assert "no object" in window.review_panel.inspector.text()
    assert window.canvas.has_attention
    mean = window.canvas._attention_item.pixmap().toImage()
    window.review_panel.head_combo.setCurrentIndex(2)
    assert window.attention_head == 1
    head = window.canvas._attention_item.pixmap().toImage()
    assert mean != head
    window.set_layer_visible(ATTENTION, False)
    assert not window.canvas._attention_item.isVisible()


def test_probe_mode_shows_encoder_attention_at_the_clicked_pixel(qtbot, predicted):
    window = predicted
    qtbot.keyClick(window.canvas, Qt.Key.Key_E)
    assert window.canvas.mode == "probe"
    info = window.doc.image(window.current_image_id)
    images = []
    for x, y in ((5, 5), (info.width - 5, info.height - 5)):
        qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=view_point(window, x, y))
        assert window.probe_point is not None and window.canvas.has_attention
        images.append(window.canvas._attention_item.pixmap().toImage())
    assert images[0] != images[1]
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert window.canvas.mode == "select" and not window.canvas.has_attention


def test_reject_hides_a_prediction_and_undo_brings_it_back(qtbot, predicted):
    window = predicted
    query = window.canvas.prediction_items()[0].key
    window.canvas.select(PREDICTIONS, [query])
    qtbot.keyClick(window.canvas, Qt.Key.Key_X)
    assert query not in {i.key for i in window.canvas.prediction_items()}
    window.undo()
    assert query in {i.key for i in window.canvas.prediction_items()}
    window.redo()
    assert query not in {i.key for i in window.canvas.prediction_items()}


def test_accept_all_above_threshold_is_one_undo_step(qtbot, predicted):
    window = predicted
    window.set_threshold(0.15)
    shown = len(window.canvas.prediction_items())
    assert shown > 0
    before = len(window.doc.annotations)
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(window.doc.annotations) == before + shown
    assert window.canvas.prediction_items() == []
    window.undo()
    assert len(window.doc.annotations) == before
    assert len(window.canvas.prediction_items()) == shown


def test_ghosts_show_queries_below_the_threshold_and_one_can_be_accepted(qtbot, predicted):
    window = predicted
    dets = window.store.get(window.current_image_id).detections
    window.set_threshold(float(np.sort(dets.scores)[-2]))  # one query above
    assert len(window.canvas.prediction_items()) == 1
    window.review_panel.ghosts_box.setChecked(True)
    ghosts = window.canvas.ghost_items()
    assert len(ghosts) == int(((dets.scores > 0.05) & (dets.scores <= window.threshold)).sum()) > 0
    before = len(window.doc.annotations)
    window.canvas.select(PREDICTIONS, [ghosts[0].key])
    window.accept_selected()
    assert len(window.doc.annotations) == before + 1
    assert ghosts[0].key not in {g.key for g in window.canvas.ghost_items()}


def test_instance_masks_are_an_overlay_with_opacity_and_a_layer_toggle(qtbot, window, dataset):
    with qtbot.waitSignal(window.overlays_ready, timeout=20_000):
        window.open_coco(dataset.instances_json("train"))
    qtbot.waitUntil(lambda: window.canvas.has_mask_overlay, timeout=10_000)
    window.review_panel.opacity_slider.setValue(80)
    assert window.canvas._mask_item.opacity() == pytest.approx(0.8)
    window.set_layer_visible(MASKS, False)
    assert not window.canvas._mask_item.isVisible()
    window.set_layer_visible(MASKS, True)
    assert window.canvas._mask_item.isVisible()


def test_predict_all_fills_every_image_in_the_background(qtbot, predicted):
    window = predicted
    with qtbot.waitSignal(window.worker.batch_finished, timeout=60_000) as finished:
        window.predict_all()
        assert window.progress_box.isVisible()
    summary = finished.args[0]
    assert summary.done == summary.total == 3 and not summary.cancelled and not summary.errors
    assert set(window.store.image_ids()) == {img.id for img in window.doc.images}
    assert not window.progress_box.isVisible()
    window.image_panel.predicted_box.setChecked(True)
    assert window.image_panel.model.rowCount() == 3


def test_predict_all_can_be_cancelled(qtbot, window, dataset, tiny_checkpoint, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    source = next(dataset.images_dir("train").glob("*.jpg"))
    for k in range(30):
        shutil.copy(source, folder / f"{k:03d}.jpg")
    open_and_wait(qtbot, window, window.open_folder, folder)
    load_tiny_model(qtbot, window, tiny_checkpoint)
    with qtbot.waitSignal(window.worker.batch_finished, timeout=60_000) as finished:
        window.predict_all(batch_size=1)
        window.cancel_batch()
    summary = finished.args[0]
    assert summary.cancelled and summary.done < summary.total == 30


def test_predicting_without_a_model_says_so(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.open_coco, dataset.instances_json("train"))
    window.predict_current()
    assert window.errors and "choose one" in window.errors[-1]


def test_a_checkpoint_that_does_not_load_is_reported_with_its_name(qtbot, window, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(window.worker.model_failed, timeout=30_000):
        window.load_model(bad)
    assert "broken.pth" in window.errors[-1]
    assert window.model_info is None
