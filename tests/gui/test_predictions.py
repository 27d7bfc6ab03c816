"""A tiny random model in the real window: predict, threshold, accept, reject, attention, masks, batch runs."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, Qt

from detr_studio.app.canvas import ANNOTATIONS, ATTENTION, MASKS, PREDICTIONS
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config

from .helpers import (
    CLASS_NAMES,
    annotation_item,
    ghost_items,
    load_model,
    load_tiny_model,
    open_and_wait,
    predict_and_wait,
    predicted_window,
    probe_pictures,
    view_point,
)


@pytest.fixture
def predicted(qtbot, window, dataset, tiny_checkpoint):
    return predicted_window(qtbot, window, dataset, tiny_checkpoint)


def test_model_chooser_loads_the_checkpoint_off_the_qt_thread(qtbot, predicted):
    window = predicted
    assert window.session.model_info.name == "tiny.safetensors"
    assert window.session.model_info.class_names[1] == "circle"
    assert "cpu" in window.status.device_label.text() and "tiny" in window.status.model_status.text()
    assert window.review_panel.head_combo.count() == 1 + window.session.model_info.num_heads


def test_prediction_boxes_appear_and_the_threshold_refilters_without_running_the_model(qtbot, predicted):
    window = predicted
    entry = window.session.store.get(window.session.current_image_id)
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
    assert calls == [] and window.session.store.get(window.session.current_image_id) is entry
    item = window.canvas.prediction_items()[0]
    assert item.spec.label.split()[0] in {*window.session.model_info.class_names.values(), "class"}
    assert "no-object" in item.toolTip() and f"query {item.key}" in item.toolTip()
    # a prediction's tab hangs below its box, a label's sits above: the two never cover each other
    label_tab = item.label.mapRectToScene(item.label.boundingRect())
    assert label_tab.top() == pytest.approx(item.rect().bottom(), abs=0.5)
    for annotation in window.canvas.boxes(ANNOTATIONS):
        if annotation.rect().top() >= 1.0:  # (a box at the image's top edge keeps its tab inside)
            annotation_tab = annotation.label.mapRectToScene(annotation.label.boundingRect())
            assert annotation_tab.bottom() == pytest.approx(annotation.rect().top(), abs=0.5)


def test_space_accepts_a_prediction_with_model_provenance_and_undo_restores_it(qtbot, predicted):
    window = predicted
    item = window.canvas.prediction_items()[0]
    query, before = item.key, len(window.session.doc.annotations)
    window.canvas.select(PREDICTIONS, [query])
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    assert len(window.session.doc.annotations) == before + 1
    ann = window.session.doc.annotations[-1]
    row = window.session.store.row_of(window.session.current_image_id, query)
    dets = window.session.store.get(window.session.current_image_id).detections
    assert ann.source == "model" and ann.model == "tiny.safetensors" and ann.review == "accepted"
    assert ann.score == pytest.approx(float(dets.scores[row]))
    assert window.session.doc.category(ann.category_id).name == window.presenter.label_name(
        int(dets.labels[row])
    )
    assert query not in {i.key for i in window.canvas.prediction_items()}
    assert annotation_item(window, ann.id) is not None
    window.editing.undo()
    assert len(window.session.doc.annotations) == before
    assert query in {i.key for i in window.canvas.prediction_items()}
    window.editing.redo()
    assert len(window.session.doc.annotations) == before + 1
    assert query not in {i.key for i in window.canvas.prediction_items()}


def test_clicking_a_prediction_selects_it_and_shows_the_inspector_and_attention(qtbot, predicted):
    window = predicted
    window.presenter.set_layer_visible("annotations", False)  # nothing on top of the predictions
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
    assert window.presenter.attention_head == 1
    head = window.canvas._attention_item.pixmap().toImage()
    assert mean != head
    window.presenter.set_layer_visible(ATTENTION, False)
    assert not window.canvas._attention_item.isVisible()


def test_probe_mode_shows_encoder_attention_at_the_clicked_pixel(qtbot, predicted):
    window = predicted
    qtbot.keyClick(window.canvas, Qt.Key.Key_E)
    assert window.canvas.mode == "probe"
    info = window.session.doc.image(window.session.current_image_id)
    images = probe_pictures(qtbot, window, ((5, 5), (info.width - 5, info.height - 5)))
    assert images[0] != images[1]
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert window.canvas.mode == "select" and not window.canvas.has_attention


def test_reject_hides_a_prediction_and_undo_brings_it_back(qtbot, predicted):
    window = predicted
    query = window.canvas.prediction_items()[0].key
    window.canvas.select(PREDICTIONS, [query])
    qtbot.keyClick(window.canvas, Qt.Key.Key_X)
    assert query not in {i.key for i in window.canvas.prediction_items()}
    window.editing.undo()
    assert query in {i.key for i in window.canvas.prediction_items()}
    window.editing.redo()
    assert query not in {i.key for i in window.canvas.prediction_items()}


def test_accept_all_above_threshold_is_one_undo_step(qtbot, predicted):
    window = predicted
    window.predictions.set_threshold(0.15)
    shown = len(window.canvas.prediction_items())
    assert shown > 0
    before = len(window.session.doc.annotations)
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(window.session.doc.annotations) == before + shown
    assert window.canvas.prediction_items() == []
    window.editing.undo()
    assert len(window.session.doc.annotations) == before
    assert len(window.canvas.prediction_items()) == shown


def test_ghosts_show_queries_below_the_threshold_and_one_can_be_accepted(qtbot, predicted):
    window = predicted
    dets = window.session.store.get(window.session.current_image_id).detections
    window.predictions.set_threshold(float(np.sort(dets.scores)[-2]))  # one query above
    assert len(window.canvas.prediction_items()) == 1
    window.review_panel.ghosts_box.setChecked(True)
    ghosts = ghost_items(window)
    assert len(ghosts) == int(((dets.scores > 0.05) & (dets.scores <= window.session.threshold)).sum()) > 0
    before = len(window.session.doc.annotations)
    window.canvas.select(PREDICTIONS, [ghosts[0].key])
    window.predictions.accept_selected()
    assert len(window.session.doc.annotations) == before + 1
    assert ghosts[0].key not in {g.key for g in ghost_items(window)}


def test_instance_masks_are_an_overlay_with_opacity_and_a_layer_toggle(qtbot, window, dataset):
    with qtbot.waitSignal(window.overlays_ready, timeout=20_000):
        window.projects.open_coco(dataset.instances_json("train"))
    qtbot.waitUntil(lambda: window.canvas.has_mask_overlay, timeout=10_000)
    window.review_panel.opacity_slider.setValue(80)
    assert window.canvas._mask_item.opacity() == pytest.approx(0.8)
    window.presenter.set_layer_visible(MASKS, False)
    assert not window.canvas._mask_item.isVisible()
    window.presenter.set_layer_visible(MASKS, True)
    assert window.canvas._mask_item.isVisible()


def test_predict_all_fills_every_image_in_the_background(qtbot, predicted):
    window = predicted
    with qtbot.waitSignal(window.worker.batch_finished, timeout=60_000) as finished:
        window.predictions.predict_all()
        assert window.status.progress_box.isVisible()
    summary = finished.args[0]
    assert summary.done == summary.total == 3 and not summary.cancelled and not summary.errors
    assert set(window.session.store.image_ids()) == {img.id for img in window.session.doc.images}
    assert not window.status.progress_box.isVisible()
    window.image_panel.predicted_box.setChecked(True)
    assert window.image_panel.model.rowCount() == 3


def test_predict_all_can_be_cancelled(qtbot, window, dataset, tiny_checkpoint, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    source = next(dataset.images_dir("train").glob("*.jpg"))
    for k in range(30):
        shutil.copy(source, folder / f"{k:03d}.jpg")
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    load_tiny_model(qtbot, window, tiny_checkpoint)
    with qtbot.waitSignal(window.worker.batch_finished, timeout=60_000) as finished:
        window.predictions.predict_all(batch_size=1)
        window.predictions.cancel_batch()
    summary = finished.args[0]
    assert summary.cancelled and summary.done < summary.total == 30


def test_predicting_without_a_model_says_so(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    window.predictions.predict_current()
    assert window.services.errors and "choose one" in window.services.errors[-1]


def test_a_checkpoint_that_does_not_load_is_reported_with_its_name(qtbot, window, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(window.worker.model_failed, timeout=30_000):
        load_model(window, bad)
    assert "broken.pth" in window.services.errors[-1]
    assert window.session.model_info is None


def test_the_model_runs_on_the_worker_thread_never_the_qt_thread(
    qtbot, window, dataset, tiny_checkpoint, monkeypatch
):
    from detr_studio.infer.predictor import Predictor

    threads = []
    original = Predictor.predict

    def recording(self, *args, **kwargs):
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", recording)
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)
    predict_and_wait(qtbot, window)
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_a_request_for_an_image_no_longer_shown_is_dropped(qtbot, window, dataset, tiny_checkpoint):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.navigation.select_image(2)
    with qtbot.assertNotEmitted(window.worker.predicted, wait=500):
        window.worker.predict(1, window.session.doc.image_path(1))  # image 1 is not shown any more
    assert 1 not in window.session.store
    predict_and_wait(qtbot, window)
    assert 2 in window.session.store


def test_a_result_for_a_project_closed_meanwhile_is_not_shown(
    qtbot, window, dataset, tiny_checkpoint, tmp_path
):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)
    predict_and_wait(qtbot, window)
    dets = window.session.store.get(1).detections
    folder = tmp_path / "other"
    shutil.copytree(dataset.images_dir("train"), folder)
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    window.worker.predicted.emit(1, dets, "tiny.safetensors")  # a late answer about the old image 1
    assert 1 not in window.session.store


def test_middle_drag_and_space_drag_pan_without_accepting(qtbot, predicted):
    window = predicted
    canvas = window.canvas
    canvas.set_zoom(20.0)
    before = len(window.session.doc.annotations)
    viewport = canvas.viewport()
    start = viewport.rect().center()
    for press_space in (False, True):
        h0, v0 = canvas.horizontalScrollBar().value(), canvas.verticalScrollBar().value()
        button = Qt.MouseButton.LeftButton if press_space else Qt.MouseButton.MiddleButton
        if press_space:
            canvas.select(PREDICTIONS, [canvas.prediction_items()[0].key])
            qtbot.keyPress(canvas, Qt.Key.Key_Space)
        qtbot.mousePress(viewport, button, pos=start)
        qtbot.mouseMove(viewport, start + QPoint(-40, -30))
        qtbot.mouseRelease(viewport, button, pos=start + QPoint(-40, -30))
        if press_space:
            qtbot.keyRelease(canvas, Qt.Key.Key_Space)
        assert (canvas.horizontalScrollBar().value(), canvas.verticalScrollBar().value()) == (
            h0 + 40,
            v0 + 30,
        )
    assert len(window.session.doc.annotations) == before  # the space was a hold for panning, not a tap


def test_an_exported_onnx_file_predicts_through_onnx_runtime(qtbot, window, dataset, tmp_path):
    from detr_studio.infer.onnx_export import export_onnx

    torch.manual_seed(0)
    config = tiny_config(num_classes=6)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(build_detr(config).eval(), config, onnx_path, sample_size=(64, 96), class_names=CLASS_NAMES,
                size=96, max_size=128)  # fmt: skip
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60_000):
        load_model(window, onnx_path, device="cpu")
    assert "onnxruntime" in window.status.device_label.text() and not window.session.model_info.has_attention
    window.predictions.set_threshold(0.0)
    predict_and_wait(qtbot, window)
    assert len(window.canvas.prediction_items()) == 10
    window.canvas.select(PREDICTIONS, [window.canvas.prediction_items()[0].key])
    assert not window.canvas.has_attention and not window.services.errors


def test_predict_each_image_shown_runs_on_navigation(qtbot, predicted):
    window = predicted
    window.actions_by_name["predict_on_navigate"].setChecked(True)
    assert 2 not in window.session.store
    with qtbot.waitSignal(window.predictions_changed, timeout=60_000):
        qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    assert window.session.current_image_id == 2 and 2 in window.session.store
    assert window.canvas.prediction_items()
