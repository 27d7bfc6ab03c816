"""The smaller things a new user met in the first hour: status-bar text that ran under its neighbours, spin
boxes that changed on scrolling, a Training dock that needed scrolling and clipped its right column, chart
legends over the last epochs, "1 images", Reject with nothing selected, layer buttons whose state was hard to
see, no key shown for Accept, labels cut off at the image's bottom edge, and a demo model that never said it
knows only five synthetic shapes."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QFontMetrics, QWheelEvent
from PySide6.QtWidgets import QApplication, QToolButton

from detr_studio.app.canvas import ANNOTATIONS, PREDICTIONS, BoxSpec
from detr_studio.app.demo_project import SHAPES_ONLY_NOTE
from detr_studio.app.model_dialog import ModelDialog
from detr_studio.app.shortcuts import ShortcutDialog
from detr_studio.app.training_charts import epoch_step
from detr_studio.train.events import Evaluated, Finished, Started, Step

from .helpers import load_tiny_model, open_and_wait, predict_and_wait


def _wheel(widget, steps: int = -1) -> None:
    """One notch of the mouse wheel over the middle of ``widget`` (down for a negative ``steps``)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)  # fmt: skip
    QApplication.sendEvent(widget, event)


def _feed_a_run(panel, epochs: int = 30) -> None:
    """The events of a long run, as the training child sends them, with a long device name."""
    panel._on_event(Started(epochs=50, start_epoch=0, steps_per_epoch=20, train_images=1234, val_images=300,
                            device="cuda:0 (NVIDIA H200, 139 GiB, bf16 autocast)", world_size=1, out_dir="run"))  # fmt: skip
    for epoch in range(1, epochs + 1):
        panel._on_event(Step(epoch=epoch, step=20, steps=20, global_step=20 * epoch, loss=3.0 / epoch,
                             losses={"loss_ce": 1.0 / epoch, "loss_bbox": 0.5 / epoch, "loss_giou": 0.7 / epoch},
                             lr=1e-4, images_per_s=123.4, eta_s=3725.0))  # fmt: skip
        panel._on_event(
            Evaluated(epoch=epoch, metrics={"AP": 0.3 + 0.005 * epoch, "AP50": 0.5 + 0.006 * epoch})
        )
    QApplication.processEvents()


def test_a_long_status_message_ends_in_an_ellipsis_before_the_widgets_on_its_right(qtbot, window):
    long = "Opened a_project_with_a_really_long_name.json: " + "a warning about an image, " * 30
    window.services.status(long)
    window.status.model_status.setText("model: " + "a_very_long_checkpoint_name_" * 6 + ".safetensors")
    QApplication.processEvents()
    message, bar = window.status.message, window.statusBar()
    assert message.text() == long and message.shown_text().endswith("…")
    assert message.fontMetrics().horizontalAdvance(message.shown_text()) <= message.contentsRect().width()
    neighbours = [w for w in (window.status.size_label, window.status.zoom_label, window.status.model_status,
                              window.status.device_label) if w.isVisible()]  # fmt: skip
    assert message.geometry().right() < min(w.geometry().left() for w in neighbours)
    assert all(w.geometry().right() <= bar.width() for w in neighbours)  # nothing runs off the window
    assert (
        window.status.model_status.shown_text().endswith("…")
        and "safetensors" in window.status.model_status.toolTip()
    )


def test_spin_boxes_in_the_training_dock_take_the_wheel_only_when_focused(qtbot, window):
    window.training_dock.raise_()
    batch = window.training_dock.panel.form.batch_spin
    batch.setValue(2)
    window.canvas.setFocus()
    _wheel(batch)
    assert batch.value() == 2  # scrolling the dock over it changes nothing
    batch.setFocus()
    qtbot.waitUntil(batch.hasFocus, timeout=2_000)
    _wheel(batch)
    assert batch.value() == 1
    threshold = window.review_panel.threshold_slider
    window.canvas.setFocus()
    before = threshold.value()
    _wheel(threshold)
    assert threshold.value() == before


def test_the_training_dock_fits_a_1600_by_1000_window_during_a_run(qtbot, window, dataset):
    window.resize(1600, 1000)
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    window.training_dock.raise_()
    QApplication.processEvents()
    scroll = window.training_dock.widget()
    assert scroll.verticalScrollBar().maximum() == 0 and scroll.horizontalScrollBar().maximum() == 0
    _feed_a_run(window.training_dock.panel)
    qtbot.wait(50)
    assert scroll.verticalScrollBar().maximum() == 0, "the dock needs scrolling during a run"
    assert scroll.horizontalScrollBar().maximum() == 0, "the right column is clipped during a run"


def test_chart_legends_stay_off_the_curves_and_epoch_labels_keep_apart(qtbot, window):
    window.training_dock.raise_()
    panel = window.training_dock.panel
    _feed_a_run(panel, epochs=30)
    for plot, names in ((panel.loss_plot, ("total", "loss_ce")), (panel.ap_plot, ("AP", "AP50"))):
        item = plot.getPlotItem()
        assert item.legend is None  # no legend box over the view
        assert all(name in item.titleLabel.text for name in names)
        axis = plot.getAxis("bottom")
        spacing, values = axis.tickValues(0.0, 30.0, axis.width())[0]
        assert values and all(v == int(v) for v in values)
        label = max(QFontMetrics(axis.font()).horizontalAdvance(str(int(v))) for v in values)
        assert axis.width() * spacing / 30.0 >= label + 8  # a gap between neighbouring labels
    assert epoch_step(30, 120) == 10 and epoch_step(3, 300) == 1 and epoch_step(500, 300) == 100


def test_counts_of_one_are_singular(qtbot, window, dataset, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((dataset.images_dir("train") / "000001.jpg").read_bytes())
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    assert window.image_panel.count_label.text() == "1 image"
    steps = []
    window.session.events.edited.connect(lambda change: steps.append(change.text))
    box = window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -20, -20))
    assert "1 label" in window.image_panel.model.index(0).data()
    window.canvas.select(ANNOTATIONS, [box])
    window.editing.delete_selected()
    assert steps[-1] == "delete 1 box"
    panel = window.training_dock.panel
    panel._on_event(Finished(epochs_done=1, best_metric=0.5, best_path="", last_path="", cancelled=True))
    assert "after 1 full epoch;" in panel.status_label.text()


def test_accept_and_reject_wait_for_a_selected_prediction(qtbot, window, dataset, tiny_checkpoint):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.predictions.set_threshold(0.0)
    predict_and_wait(qtbot, window)
    actions = window.actions_by_name
    assert not actions["reject"].isEnabled() and not actions["accept"].isEnabled()
    assert not actions["delete"].isEnabled() and actions["accept_all"].isEnabled()
    window.canvas.select(PREDICTIONS, [window.canvas.prediction_items()[0].key])
    assert (
        actions["reject"].isEnabled() and actions["accept"].isEnabled() and not actions["delete"].isEnabled()
    )
    window.canvas.select(ANNOTATIONS, [window.canvas.boxes(ANNOTATIONS)[0].key])
    assert not actions["reject"].isEnabled() and actions["delete"].isEnabled()


def _mean_colour(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(-1, 3).mean(axis=0)


def test_a_layer_button_that_is_on_looks_plainly_different_from_one_that_is_off(qtbot, window):
    action = window.actions_by_name["layer_masks"]
    button = next(b for b in window.review_panel.findChildren(QToolButton) if b.defaultAction() is action)
    action.setChecked(True)
    on = _mean_colour(button)
    action.setChecked(False)
    off = _mean_colour(button)
    assert np.abs(on - off).max() > 60, (on, off)  # a filled button, not a faint shade


def test_the_shortcut_editor_shows_space_for_accept_and_keeps_it(qtbot, window):
    actions = window.actions
    dialog = ShortcutDialog(
        actions.by_name, actions.defaults, window.services.settings, window, actions.built_in
    )
    qtbot.addWidget(dialog)
    row = dialog._names.index("accept")
    assert dialog.table.item(row, 1).text() == "Space"
    assert not dialog.set_keys("reject", ["Space"])  # Space stays Accept's
    assert "Accept" in dialog.message.text()
    assert "(Space)" in actions["accept"].toolTip()


def test_labels_of_boxes_at_the_images_edges_stay_inside_the_image(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    canvas = window.canvas
    height = canvas.image_size[1]
    low = BoxSpec(1, (10.0, height - 30.0, 50.0, height - 0.5), (200, 30, 30), "circle 0.93")
    high = BoxSpec(2, (10.0, 0.0, 50.0, 20.0), (30, 30, 200), "square")
    canvas.set_predictions([low], [])
    canvas.set_annotations([high])
    for zoom in (canvas.zoom, 1.0, 4.0):
        canvas.set_zoom(zoom)
        for box in (*canvas.prediction_items(), *canvas.boxes(ANNOTATIONS)):
            tab = box.label.sceneBoundingRect()
            assert tab.bottom() <= height + 0.5 and tab.top() >= -0.5, (box.kind, zoom, tab)
    canvas.set_predictions([BoxSpec(3, (10.0, 10.0, 50.0, 30.0), (200, 30, 30), "ring")], [])
    tab = canvas.prediction_items()[0].label.sceneBoundingRect()
    assert tab.top() >= 30.0 - 0.5  # away from the edge, a prediction's tab still hangs below its box


def test_a_model_that_knows_only_the_demo_shapes_says_so(qtbot, window, dataset, tiny_checkpoint):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, tiny_checkpoint)  # its classes are the five shapes
    assert "Demo model" in window.review_panel.model_label.text()
    assert "knows only five synthetic shapes" in window.review_panel.model_label.text()
    dialog = ModelDialog(window)
    qtbot.addWidget(dialog)
    assert dialog.demo_weights is not None and dialog.demo_note.text() == SHAPES_ONLY_NOTE
    dialog.demo_radio.setChecked(True)
    dialog.device_combo.setCurrentText("cpu")
    choice = dialog.choice()
    assert choice.source == str(dialog.demo_weights) and choice.size is None  # the size it was trained at
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60_000):
        window.session.choose_model(choice)
    assert window.session.model_info.input_size == (128, 128)
    assert "knows only five synthetic shapes" in window.review_panel.model_label.text()
