"""Helpers that drive the window: open and wait, load the tiny model, drag with the mouse, screenshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication

from detr_studio.app.canvas import ANNOTATIONS, PREDICTIONS
from detr_studio.app.main import MainWindow
from detr_studio.data.coco.mask_geometry import decode, mask_stats
from detr_studio.session.model_loading import ModelChoice

CLASS_NAMES = {1: "circle", 2: "square", 3: "triangle", 4: "star", 5: "ring"}


def open_and_wait(qtbot, window: MainWindow, opener, *args) -> None:
    with qtbot.waitSignal(window.project_opened, timeout=20_000):
        opener(*args)
    wait_for_pixels(qtbot, window)


def wait_for_pixels(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.canvas.has_pixmap, timeout=10_000)


def load_model(window: MainWindow, source: Path | str, **options) -> None:
    """Ask the session for a model, as the Model dialog does."""
    window.session.choose_model(ModelChoice(str(source), **options))


def load_tiny_model(qtbot, window: MainWindow, checkpoint: Path) -> None:
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60_000):
        load_model(window, checkpoint, device="cpu", size=96, max_size=128)


def annotation_item(window: MainWindow, annotation_id: int):
    """The canvas item of an annotation (None when it is not drawn)."""
    return next((b for b in window.canvas.boxes(ANNOTATIONS) if b.key == annotation_id), None)


def ghost_items(window: MainWindow) -> list:
    """The faint boxes of queries below the threshold."""
    return [b for b in window.canvas.boxes(PREDICTIONS) if b.kind == "ghost"]


def predicted_window(qtbot, window: MainWindow, dataset, checkpoint: Path) -> MainWindow:
    """The window with the dataset's train split open, ``checkpoint`` loaded, the current image predicted at
    threshold 0 and the canvas focused."""
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    load_tiny_model(qtbot, window, checkpoint)
    window.predictions.set_threshold(0.0)
    predict_and_wait(qtbot, window)
    window.canvas.setFocus()
    return window


def predict_and_wait(qtbot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.predictions_changed, timeout=60_000):
        window.predictions.predict_current()


def view_point(window: MainWindow, x: float, y: float) -> QPoint:
    """Viewport pixel of image pixel (x, y)."""
    return window.canvas.mapFromScene(QPointF(x, y))


def probe_pictures(qtbot, window: MainWindow, points) -> list:
    """Click each image pixel (x, y) in probe mode; -> the attention picture after each click."""
    pictures = []
    for x, y in points:
        qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=view_point(window, x, y))
        assert window.presenter.probe_point is not None and window.canvas.has_attention
        pictures.append(window.canvas._attention_item.pixmap().toImage())
    return pictures


def drag(
    qtbot, window: MainWindow, start: tuple[float, float], end: tuple[float, float], steps: int = 4
) -> None:
    """Press at ``start``, move in steps, release at ``end`` (image pixels), with the left button."""
    viewport = window.canvas.viewport()
    a, b = view_point(window, *start), view_point(window, *end)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    for k in range(1, steps + 1):
        qtbot.mouseMove(
            viewport, QPoint(a.x() + (b.x() - a.x()) * k // steps, a.y() + (b.y() - a.y()) * k // steps)
        )
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)
    QApplication.processEvents()


def checked_mask(window: MainWindow, annotation_id: int) -> np.ndarray:
    """The annotation's mask [H, W] bool, after checking that its bbox and area are COCO's for that mask."""
    doc = window.session.doc
    ann = doc.annotation(annotation_id)
    width, height = doc.image_size(ann.image_id)
    bbox, area = mask_stats(ann.segmentation, height, width)
    assert list(ann.bbox) == pytest.approx(bbox) and ann.area == area
    return decode(ann.segmentation, height, width)


def shot(window: MainWindow, folder: Path, name: str) -> Path:
    """A picture of the window in ``folder`` (a test's own temporary folder) for a person to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    QApplication.processEvents()
    path = folder / f"{name}.png"
    window.grab().save(str(path))
    return path
