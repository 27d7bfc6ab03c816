"""Screenshots of the main states into /tmp/gui-shots/ (looked at by a person), with checks that each state
really shows what it should."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QImage

from detr_studio.app.canvas import PREDICTIONS

from .helpers import annotation_item, load_tiny_model, open_and_wait, predict_and_wait, shot


def mean_lightness(path) -> float:
    image = QImage(str(path))
    step = 16
    values = [
        image.pixelColor(x, y).lightnessF()
        for x in range(0, image.width(), step)
        for y in range(0, image.height(), step)
    ]
    return sum(values) / len(values)


def test_screenshots_of_the_main_states(qtbot, window, dataset, tiny_checkpoint, shots):
    with qtbot.waitSignal(window.overlays_ready, timeout=20_000):
        window.projects.open_coco(dataset.instances_json("train"))
    window.navigation.select_image(2)
    qtbot.waitUntil(lambda: window.canvas.has_pixmap and window.canvas.has_mask_overlay, timeout=10_000)
    masks = shot(window, shots, "01-annotations-and-masks")

    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.predictions.set_threshold(0.18)
    predict_and_wait(qtbot, window)
    window.presenter.set_layer_visible("masks", False)
    assert window.canvas.prediction_items()
    predictions = shot(window, shots, "02-predictions")

    window.presenter.set_layer_visible("annotations", False)
    window.canvas.select(PREDICTIONS, [window.canvas.prediction_items()[0].key])
    assert window.canvas.has_attention
    attention = shot(window, shots, "03-decoder-attention")

    window.presenter.set_layer_visible("annotations", True)
    window.presenter.set_layer_visible("masks", True)
    window.canvas.scene().clearSelection()
    new = window.editing.add_box(QRectF(8, 10, 30, 26))
    window.canvas.select("annotations", [new])
    assert len(annotation_item(window, new)._handles) == 8
    editing = shot(window, shots, "04-editing")

    window.actions_by_name["dark_theme"].setChecked(True)
    dark = shot(window, shots, "05-dark-theme")
    window.actions_by_name["dark_theme"].setChecked(False)
    assert mean_lightness(dark) < mean_lightness(editing) - 0.15

    with qtbot.waitSignal(window.overlays_ready, timeout=20_000):
        open_and_wait(qtbot, window, window.projects.open_coco, dataset.panoptic_json("train"))
    qtbot.waitUntil(lambda: window.canvas.has_mask_overlay, timeout=10_000)
    panoptic = shot(window, shots, "06-panoptic")

    shots = [masks, predictions, attention, editing, dark, panoptic]
    sizes = {(QImage(str(p)).width(), QImage(str(p)).height()) for p in shots}
    assert sizes == {(window.width(), window.height())}
    assert len({p.read_bytes() for p in shots}) == len(shots)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
