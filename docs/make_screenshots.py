"""The README's "closing the loop" screenshots, taken from the real window, offscreen.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py [--out docs]

Starts DETR Studio as a first start does (no recent project: the built-in demo project opens and the demo
model predicts the first image) and walks through the loop, saving one PNG per step into ``--out``:

1. ``loop-1-demo.png``: the demo project with the demo model's detections on the first image.
2. ``loop-2-review.png``: Predict All, then the Review queue dock with the first mistake clicked.
3. ``loop-3-training.png``: the Training dock after fine-tuning the demo model on the project's annotated
   images (20% held out, 3 epochs at lr 2e-5 on the CPU; a real ``detr-studio train`` child, a few minutes), with the
   loss and AP curves and the before/after AP. "Use this model" then loads the fine-tuned model.
4. ``loop-4-export.png``: the Export dock after exporting that model to ONNX, with the parity report and
   the latency.
5. ``masks-1-polygon.png``: an annotation's polygon selected, with its vertices, and the Objects dock.
6. ``masks-2-brush.png``: the brush (its circle at the cursor) after a stroke that grew the mask.
7. ``masks-3-from-box.png``: mask from box: the model's own mask head gave the mask of the box drawn (the
   shape's own label hidden in the Objects dock).
8. ``panoptic-1-select.png``: the demo's panoptic val split, a small shape inside a large region picked by a
   click on its pixels (highlighted), the segments listed in the Objects dock.
9. ``panoptic-2-split.png``: the large region split in two by a polygon (K), the new part relabelled to
   another stuff class (its digit key) and selected.

``--steps masks,panoptic`` runs only those steps (after the first, which opens the demo project and loads
the demo model); the editing steps undo their edits, so nothing is saved.

Everything is written into a temporary folder (``$DETR_STUDIO_HOME`` and the window's settings file), so the
user's demo project, recent projects and settings are not touched. Before each shot the window's state is
checked; the script stops with a message and exit status 1 when a step does not show what it should.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QPoint, QPointF, QRectF, QSettings, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDockWidget, QListWidget, QScrollArea, QWidget

from detr_studio.app import demo_project
from detr_studio.app.canvas import ANNOTATIONS, PREDICTIONS
from detr_studio.app.main import APP_NAME, ORGANISATION, MainWindow, start_window
from detr_studio.app.training_form import DEMO
from detr_studio.train.events import Finished

WINDOW_SIZE = (1400, 900)
QUEUE_WIDTH = 470  # the review queue's rows: "000123.jpg — wrong class: labelled …, predicted … 0.87"
IMAGES_WIDTH = 240  # the image list beside the training and export docks (the canvas keeps some room)
PANEL_WIDTH = 560  # the training curves and the export report
OBJECTS_WIDTH = 360  # the Objects dock (under the image list): shown, locked, class, source, score, review
START_TIMEOUT_S = 300  # writing the demo dataset and loading torch on a shared CPU
PREDICT_ALL_TIMEOUT_S = 900
TRAINING_TIMEOUT_S = 15 * 60
EVALUATION_TIMEOUT_S = 600
MODEL_TIMEOUT_S = 180
EXPORT_TIMEOUT_S = 900
timeout_factor = 1.0  # --timeout-factor: every wait is this many times longer (a CPU shared with other work)

HOLDOUT, EPOCHS, LR, BATCH, SIZE = 0.2, 3, "2e-5", 4, 128
WORSE_QUESTION = "The trained model is worse"  # the Training dock asks before using a model that scores lower


class StepFailed(Exception):
    """A step did not reach the state its screenshot is meant to show."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def wait_until(
    predicate: Callable[[], object], timeout_s: float, what: str, window: MainWindow, errors: bool = True
) -> None:
    """Run the event loop until ``predicate()`` holds; StepFailed naming ``what`` after ``timeout_s``
    seconds, or (``errors``) at once when the window reports an error."""
    timeout_s *= timeout_factor
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if errors and window.services.errors:
            raise StepFailed(f"while waiting for {what}, the window reported: {window.services.errors[-1]}")
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        pause(50)


def pause(ms: int) -> None:
    """Run the event loop for ``ms`` milliseconds. (``QTest.qWait`` would too, but it keeps the GIL while
    it polls, which starves the window's worker threads: importing torch there took minutes.)"""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def idle(window: MainWindow) -> bool:
    """No model work, project opening, image decoding or mask drawing under way."""
    runners = (window.projects.lane, window.navigation.pixels, window.presenter.overlays)
    return not window.worker.busy and not any(r.pending for r in runners)


def settle(window: MainWindow, timeout_s: float = 120) -> None:
    wait_until(lambda: idle(window), timeout_s, "the window's background work to finish", window)
    pause(300)  # queued refreshes (the review queue waits 250 ms) and repaints
    QApplication.processEvents()


def show_docks(window: MainWindow, widths: dict[QDockWidget, int]) -> None:
    """Bring these docks to the front of their tab groups, at these widths."""
    for dock in widths:
        dock.show()
        dock.raise_()
    window.resizeDocks(list(widths), list(widths.values()), Qt.Orientation.Horizontal)
    QApplication.processEvents()


def fit(window: MainWindow) -> None:
    """View > Fit: the whole image in the canvas (its size changes with the docks)."""
    QApplication.processEvents()
    window.actions_by_name["fit"].trigger()


def click(widget: QWidget, pos: QPoint | None = None) -> None:
    check(widget.isEnabled(), f"{widget.objectName() or type(widget).__name__} is not enabled")
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos or QPoint())
    QApplication.processEvents()


def fully_shown(widget: QWidget, scroll: QScrollArea) -> bool:
    """Whether ``widget`` lies entirely inside the visible part of ``scroll``."""
    viewport = scroll.viewport()
    top_left = widget.mapTo(viewport, QPoint(0, 0))
    return (
        widget.isVisible()
        and top_left.y() >= 0
        and top_left.x() >= 0
        and top_left.y() + widget.height() <= viewport.height()
        and top_left.x() + widget.width() <= viewport.width()
    )


def save_shot(window: MainWindow, out: Path, name: str) -> Path:
    check(
        not window.services.errors,
        f"the window reported an error: {window.services.errors[-1] if window.services.errors else ''}",
    )
    QApplication.processEvents()
    path = out / name
    check(window.grab().save(str(path)), f"cannot write {path}")
    print(f"saved {path}", flush=True)
    return path


# ---------------------------------------------------------------------------------------------- the steps


def step_demo(window: MainWindow, out: Path) -> None:
    """1. The first start: the demo project opens and the demo model predicts the first image."""
    drawn_after_prediction: list[int] = []  # the mask overlay redrawn once the predictions are in
    predicted: list[int] = []
    window.predictions_changed.connect(predicted.append)
    window.overlays_ready.connect(lambda: drawn_after_prediction.append(1) if predicted else None)
    wait_until(
        lambda: window.session.project is not None and window.canvas.has_pixmap,
        START_TIMEOUT_S,
        "the demo project to open",
        window,
    )
    check(
        window.session.project.location.absolute().is_relative_to(demo_project.demo_root().absolute()),
        f"the window opened {window.session.project.location}, not the demo project",
    )
    first = window.image_panel.model.image_id_at(0)
    wait_until(
        lambda: (
            window.session.model_info is not None and window.session.current_image_id in window.session.store
        ),
        START_TIMEOUT_S,
        "the demo model to predict the first image",
        window,
    )
    wait_until(lambda: drawn_after_prediction, 120, "the predicted masks to be drawn", window)
    settle(window)
    check(
        window.session.current_image_id == first, "the first image of the demo project is not the one shown"
    )
    check(
        window.session.model_info.name == "model.safetensors",
        f"the model loaded is {window.session.model_info.name}",
    )
    boxes = window.canvas.prediction_items()
    check(boxes, "the demo model's detections are not drawn on the first image")
    fit(window)
    save_shot(window, out, "loop-1-demo.png")
    print(f"  {len(boxes)} detections on {window.session.doc.image(first).file_name}", flush=True)


def step_review(window: MainWindow, out: Path) -> None:
    """2. Predict All, then the review queue: uncertain images and mistakes; the first mistake clicked."""
    finished = []
    window.worker.batch_finished.connect(finished.append)
    action = window.actions_by_name["predict_all"]
    check(action.isEnabled(), "Predict All is not enabled")
    action.trigger()
    wait_until(lambda: finished, PREDICT_ALL_TIMEOUT_S, "Predict All to finish", window)
    summary = finished[0]
    check(
        not summary.cancelled and not summary.failure and summary.done == len(window.session.doc.images),
        f"Predict All did not predict every image: {summary}",
    )
    print(f"  Predict All: {summary.done} images", flush=True)

    dock = window.queue_dock
    panel = dock.panel
    show_docks(window, {dock: QUEUE_WIDTH})
    predicted = f"{summary.done} images with predictions"  # the lists were filled before Predict All too

    def refreshed() -> bool:
        return (
            panel.summary_label.text().startswith(predicted)
            and panel.uncertain_list.count() == summary.done
            and panel.mistakes_list.count() > 0
        )

    wait_until(refreshed, 60, "the review queue to list every predicted image and the mistakes", window)
    settle(window)
    panel.tabs.setCurrentIndex(1)  # Mistakes
    QApplication.processEvents()
    mistakes: QListWidget = panel.mistakes_list
    item = mistakes.item(0)
    text = item.text()
    image_id, layer, key = item.data(Qt.ItemDataRole.UserRole)
    mistakes.scrollToItem(item)
    click(mistakes.viewport(), mistakes.visualItemRect(item).center())
    settle(window)
    selected_rows = [row.text() for row in mistakes.selectedItems()]
    check(selected_rows == [text], f"the first mistake is not the row selected in the list: {selected_rows}")
    check(window.session.current_image_id == image_id, "clicking the first mistake did not show its image")
    selected = (
        window.canvas.selected_prediction_ids()
        if layer == PREDICTIONS
        else window.canvas.selected_annotation_ids()
    )
    check(key is None or selected == [key], f"the mistake's box ({layer} {key}) is not selected: {selected}")
    fit(window)
    save_shot(window, out, "loop-2-review.png")
    print(
        f"  review queue: {panel.uncertain_list.count()} uncertain images, {mistakes.count()} mistakes; "
        f"clicked: {text}",
        flush=True,
    )


def step_training(window: MainWindow, out: Path) -> None:
    """3. Fine-tune the demo model on the annotated images, wait for the before/after AP, use the model."""
    dock = window.training_dock
    panel = dock.panel
    show_docks(window, {window.images_dock: IMAGES_WIDTH, dock: PANEL_WIDTH})
    base = panel.form.base_combo.findData(DEMO)
    check(base >= 0, "the Training dock offers no demo model to start from")
    panel.form.base_combo.setCurrentIndex(base)
    panel.form.images_combo.setCurrentIndex(panel.form.images_combo.findData("annotated"))
    panel.form.holdout_spin.setValue(HOLDOUT)
    panel.form.epochs_spin.setValue(EPOCHS)
    panel.form.lr_edit.setText(LR)
    panel.form.batch_spin.setValue(BATCH)
    panel.form.size_spin.setValue(SIZE)
    panel.form.max_size_spin.setValue(SIZE)
    panel.form.device_combo.setCurrentText("cpu")
    panel.form.extra_options = {"workers": 0}
    print(f"  training: {panel.form.count_label.text()}", flush=True)

    ended = []
    panel.job.ended.connect(ended.append)
    started = time.monotonic()
    click(panel.start_button)
    check(panel.job.running, f"the training run did not start: {window.services.errors}")
    wait_until(lambda: ended, TRAINING_TIMEOUT_S, "the training run to end", window)
    end = ended[0]
    check(
        isinstance(end.final, Finished) and not end.final.cancelled,
        f"the training run did not finish: {end.final!r}",
    )
    print(f"  training run: {time.monotonic() - started:.0f} s, {panel.status_label.text()}", flush=True)

    def compared() -> bool:
        data = panel.comparison()
        measured = [data.get(k) for k in ("before", "after")]
        done = all(isinstance(m, dict) and ("AP" in m or "error" in m) for m in measured)
        return done and panel.evaluator.pending == 0

    wait_until(compared, EVALUATION_TIMEOUT_S, "the before/after AP comparison", window)
    settle(window)
    data = panel.comparison()
    before, after = data["before"], data["after"]
    check("AP" in before and "AP" in after, f"the before/after AP was not measured: {data}")
    label = panel.compare_label.text()
    check(
        f"{before['AP']:.3f}" in label and f"{after['AP']:.3f}" in label,
        f"the panel does not show the AP before/after: {label!r}",
    )
    check(len(panel.loss_series.get("total", ())) > 0, "the loss curve is empty")
    check(len(panel.ap_series.get("AP", ())) > 0, "the AP curve is empty")
    check(panel.use_button.isEnabled(), "'Use this model' is not enabled after the run")

    scroll = dock.widget()
    assert isinstance(scroll, QScrollArea)
    run_box = panel.loss_plot.parentWidget()  # the "Run" group: curves, comparison, "Use this model"
    scroll.verticalScrollBar().setValue(run_box.y())
    QApplication.processEvents()
    for widget, what in ((panel.loss_plot, "loss curve"), (panel.ap_plot, "AP curve"),
                         (panel.compare_label, "AP comparison")):  # fmt: skip
        check(fully_shown(widget, scroll), f"the {what} is not fully visible in the Training dock")
    fit(window)
    save_shot(window, out, "loop-3-training.png")
    print(
        f"  AP before {before['AP']:.3f} (AP50 {before.get('AP50', 0.0):.3f}), "
        f"after {after['AP']:.3f} (AP50 {after.get('AP50', 0.0):.3f}) "
        f"on the held-out images",
        flush=True,
    )

    loaded = []
    window.worker.model_loaded.connect(loaded.append)
    click(panel.use_button)
    wait_until(lambda: loaded, MODEL_TIMEOUT_S, "the fine-tuned model to load", window)
    check(
        window.session.model_info.name == "best.safetensors",
        f"the model loaded is {window.session.model_info.name}",
    )
    window.actions_by_name["predict"].trigger()  # the canvas shows the fine-tuned model's detections
    wait_until(
        lambda: window.session.current_image_id in window.session.store,
        MODEL_TIMEOUT_S,
        "the fine-tuned prediction",
        window,
    )
    settle(window)
    print(f"  using {window.session.model_choice.source}", flush=True)


def step_export(window: MainWindow, out: Path, temp: Path) -> None:
    """4. Export the fine-tuned model to ONNX; the parity report and the latency."""
    dock = window.export_dock
    panel = dock.panel
    show_docks(window, {window.images_dock: IMAGES_WIDTH, dock: PANEL_WIDTH})
    target = temp / "exports" / "demo-fine-tuned.onnx"
    panel.path_edit.setText(str(target))
    panel.path_edit.setModified(True)
    click(panel.export_button)
    wait_until(
        lambda: panel.result is not None or panel.error is not None, EXPORT_TIMEOUT_S, "the export", window
    )
    check(panel.error is None, f"the export failed: {panel.error}")
    settle(window)
    rows = dict(panel.rows)
    check(target.is_file(), f"{target} was not written")
    check(rows.get("Parity") == "passed", f"the parity check did not pass: {rows.get('Parity')}")
    check("ms per image" in rows.get("CPU latency", ""), f"no CPU latency: {rows.get('CPU latency')}")
    check("Parity" in panel.summary.text() and panel.details.toPlainText(), "the parity report is not shown")
    scroll = dock.widget()
    assert isinstance(scroll, QScrollArea)
    scroll.verticalScrollBar().setValue(0)
    QApplication.processEvents()
    check(fully_shown(panel.summary, scroll), "the parity report is not fully visible in the Export dock")
    fit(window)
    save_shot(window, out, "loop-4-export.png")
    for name in ("Parity", "CPU latency", "CUDA latency"):
        print(f"  {name}: {rows.get(name)}", flush=True)


def view_point(window: MainWindow, x: float, y: float) -> QPoint:
    return window.canvas.mapFromScene(QPointF(x, y))


def mouse_drag(
    window: MainWindow, points: list[tuple[float, float]], button=Qt.MouseButton.LeftButton
) -> None:
    """Press at the first image point, move through the others, release at the last (real mouse events)."""
    viewport = window.canvas.viewport()
    QTest.mousePress(viewport, button, Qt.KeyboardModifier.NoModifier, view_point(window, *points[0]))
    for x, y in points[1:]:
        QTest.mouseMove(viewport, view_point(window, x, y))
        QApplication.processEvents()
    QTest.mouseRelease(viewport, button, Qt.KeyboardModifier.NoModifier, view_point(window, *points[-1]))
    QApplication.processEvents()


def zoom_on(window: MainWindow, box: tuple[float, float, float, float], margin: float = 1.6) -> None:
    """Fit the canvas on an xywh box, with room around it."""
    x, y, w, h = box
    cx, cy, side = x + w / 2, y + h / 2, max(w, h) * margin
    window.canvas.fitInView(
        QRectF(cx - side / 2, cy - side / 2, side, side), Qt.AspectRatioMode.KeepAspectRatio
    )
    window.canvas.zoom_by(1.0)  # the zoom-dependent parts (vertex margins, pixmap mode) follow
    QApplication.processEvents()


def show_objects(window: MainWindow) -> None:
    """The Review and Objects docks in front, the predictions' layer hidden (their masks would cover the
    document's)."""
    window.presenter.set_layer_visible(PREDICTIONS, False)
    show_docks(window, {window.images_dock: OBJECTS_WIDTH, window.review_dock: 290})
    window.objects_dock.show()
    window.objects_dock.raise_()
    QApplication.processEvents()


def step_masks(window: MainWindow, out: Path) -> None:
    """5-7. The mask tools on the demo project: a polygon's vertices, a brush stroke, mask from box."""
    session, canvas = window.session, window.canvas
    doc = session.doc
    show_objects(window)
    polygons = [a for a in doc.annotations if isinstance(a.segmentation, list) and a.area > 600]
    check(polygons, "the demo project has no polygon mask to edit")
    ann = max(polygons, key=lambda a: a.area)
    window.navigation.select_image(ann.image_id)
    wait_until(lambda: canvas.image_id == ann.image_id and canvas.has_pixmap, 60, "the image to show", window)
    settle(window)
    steps = len(session.history)
    canvas.select(ANNOTATIONS, [ann.id])
    QApplication.processEvents()
    polygon = canvas.polygon()
    check(polygon is not None and polygon.vertex_count() >= 3, "the selected polygon shows no vertices")
    zoom_on(window, ann.bbox)
    save_shot(window, out, "masks-1-polygon.png")
    print(f"  polygon of annotation {ann.id}: {polygon.vertex_count()} vertices", flush=True)

    canvas.setFocus()
    window.actions_by_name["brush"].trigger()
    check(canvas.mode == "brush", "B did not start the brush")
    x, y, w, h = ann.bbox
    canvas.brush_radius = max(w, h) / 8
    before = ann.area
    mouse_drag(window, [(x + w * k / 10, y + h * 1.05) for k in range(2, 9)])
    settle(window)
    after = doc.annotation(ann.id)
    check(len(session.history) == steps + 1 and after.area > before, "the brush stroke did not grow the mask")
    QTest.mouseMove(canvas.viewport(), view_point(window, x + w * 0.5, y + h * 1.15))
    QApplication.processEvents()
    check(canvas.tools["brush"].circle.isVisible(), "the brush circle is not shown at the cursor")
    save_shot(window, out, "masks-2-brush.png")
    print(f"  brush stroke: mask area {before:.0f} -> {after.area:.0f} px", flush=True)
    session.undo()
    canvas.set_mode("select")

    info = session.model_info
    check(info is not None and info.supports_masks, "the model loaded has no mask head for mask from box")
    others = [a for a in doc.annotations_for(ann.image_id) if a.area > 300]
    target = max(others, key=lambda a: a.area)
    session.set_hidden("annotation", [target.id])  # the Objects dock's "shown" box, unticked
    fit(window)
    answers: list[object] = []
    window.worker.box_masked.connect(lambda _iid, result: answers.append(result))
    window.actions_by_name["mask_from_box"].trigger()
    x, y, w, h = target.bbox
    count = len(doc.annotations)
    mouse_drag(window, [(x - 2, y - 2), (x + w / 2, y + h / 2), (x + w + 2, y + h + 2)])
    wait_until(
        lambda: answers and len(doc.annotations) == count + 1, MODEL_TIMEOUT_S, "the mask from box", window
    )
    settle(window)
    new = session.selection.annotation_ids
    check(len(new) == 1 and doc.annotation(new[0]).segmentation, "mask from box added no masked annotation")
    save_shot(window, out, "masks-3-from-box.png")
    result = answers[0]
    print(f"  mask from box: query {result.query_id}, IoU {result.iou:.2f}, {doc.annotation(new[0]).area:.0f} px",
          flush=True)  # fmt: skip
    while len(session.history) > steps:
        session.undo()
    session.set_hidden("annotation", [target.id], False)


def step_panoptic(window: MainWindow, out: Path) -> None:
    """8-9. The demo's panoptic split: pick a small shape inside a region by its pixels, split a region."""
    from detr_studio.data.synthetic import SyntheticLayout

    root = demo_project.demo_root().absolute()
    layout = SyntheticLayout(root)
    opened = []
    window.project_opened.connect(lambda: opened.append(1))
    window.session.set_project(None)  # the mask steps undid their edits: nothing to ask about
    window.projects.open_coco(layout.panoptic_json("val"), layout.images_dir("val"))
    wait_until(lambda: opened and window.session.doc is not None and window.session.doc.is_panoptic, START_TIMEOUT_S,
               "the panoptic split to open", window)  # fmt: skip
    session, canvas = window.session, window.canvas
    doc = session.doc
    check(session.panoptic_editable, "the panoptic split opened without its PNG folder")

    def small_inside_large(image_id: int):
        segments = doc.segments_for(image_id)
        small = [s for s in segments if s.isthing and s.area and 80 < s.area < 900]
        return min(small, key=lambda s: s.area) if small else None

    image_id = next(i for i in doc.image_ids if small_inside_large(i) is not None)
    window.navigation.select_image(image_id)
    wait_until(lambda: canvas.image_id == image_id and canvas.has_pixmap, 60, "the image to show", window)
    settle(window)
    wait_until(lambda: window.presenter._segment_ids is not None, 60, "the segments to be drawn", window)
    show_objects(window)
    fit(window)
    small = small_inside_large(image_id)
    ids = doc.id_map(image_id)
    ys, xs = np.nonzero(ids == small.id)
    point = view_point(window, xs[len(xs) // 2] + 0.5, ys[len(ys) // 2] + 0.5)
    canvas.setFocus()
    QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)
    settle(window)
    check(
        session.selection.segment_ids == (small.id,),
        f"the click picked {session.selection}, not the small shape",
    )
    wait_until(lambda: canvas.has_highlight, 30, "the selected segment's highlight", window)
    save_shot(window, out, "panoptic-1-select.png")
    name = doc.category(small.category_id).name
    print(f"  picked segment {small.id} ({name}, {small.area:.0f} px) by a click on its pixels", flush=True)

    steps = len(session.history)
    region = max(doc.segments_for(image_id), key=lambda s: s.area or 0)
    canvas.select(ANNOTATIONS, [region.id])
    window.actions_by_name["split_segment"].trigger()
    check(canvas.mode == "polygon", "K did not start the polygon for the split")
    x, y, w, h = region.bbox
    for px, py in ((x - 1, y - 1), (x + w / 2, y - 1), (x + w / 3, y + h + 1), (x - 1, y + h + 1)):
        QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         view_point(window, px, py))  # fmt: skip
    QTest.keyClick(canvas, Qt.Key.Key_Return)
    settle(window)
    new = session.selection.segment_ids
    check(
        len(session.history) == steps + 1 and len(new) == 1 and new[0] != region.id,
        "the split made no segment",
    )
    here = {s.category_id for s in doc.segments_for(image_id)}
    stuff = [c for c in doc.categories if c.isthing is False and c.id not in here]
    check(stuff, "no other stuff class to relabel the new part to")
    digit = next(i for i, c in enumerate(doc.categories) if c.id == stuff[0].id) + 1
    QTest.keyClick(canvas, getattr(Qt.Key, f"Key_{digit}"))
    settle(window)
    relabelled = {s.id: s.category_id for s in doc.segments_for(image_id)}
    check(relabelled.get(new[0]) == stuff[0].id, f"the new part is not {stuff[0].name}: {relabelled}")
    wait_until(lambda: canvas.has_highlight, 30, "the new segment's highlight", window)
    save_shot(window, out, "panoptic-2-split.png")
    print(f"  split segment {new[0]} off {region.id} and relabelled it {stuff[0].name}", flush=True)
    while len(session.history) > steps:
        session.undo()


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for PNGs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    parser.add_argument(
        "--timeout-factor", type=float, default=1.0, help="multiply every wait's time limit (a busy CPU)"
    )
    parser.add_argument(
        "--steps", default="", help="only these steps after the first, e.g. masks,panoptic (default: all)"
    )
    args = parser.parse_args(argv)
    global timeout_factor
    timeout_factor = max(args.timeout_factor, 0.01)
    if demo_project.demo_model_path() is None:
        print(
            "make_screenshots: the demo model (resources/demo/model.safetensors) is missing", file=sys.stderr
        )
        return 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix="detr-studio-shots-"))
    os.environ[demo_project.HOME_ENV] = str(temp / "home")  # the demo project is written here
    settings = QSettings(str(temp / "settings.ini"), QSettings.Format.IniFormat)  # no recent projects

    app = QApplication.instance() or QApplication([APP_NAME])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORGANISATION)
    app.setWindowIcon(demo_project.app_icon())
    started = time.monotonic()
    window = start_window(["detr-studio"], settings)  # as `detr-studio` does: no recent project -> the demo
    window.services.error_dialogs = False  # errors fail the step instead of opening a message box in a shot

    def ask(title: str, text: str, choices=("Yes", "No"), default: str | None = None) -> str:
        """A modal question would block offscreen: the one the walkthrough expects is answered, any other one
        fails the step."""
        if title == WORSE_QUESTION:  # 3 epochs on the CPU may score a little lower: the walkthrough uses it
            print(f"  asked: {text} -> {choices[0]}", flush=True)
            return choices[0]
        window.services.errors.append(f"unexpected question: {title}: {text}")
        return choices[-1]

    window.services.ask = ask
    window.resize(*WINDOW_SIZE)
    status = 0
    step = "start"
    try:
        wanted = {name.strip() for name in args.steps.split(",") if name.strip()}
        for step, run in (
            ("1 demo", lambda: step_demo(window, out)),
            ("2 review", lambda: step_review(window, out)),
            ("3 training", lambda: step_training(window, out)),
            ("4 export", lambda: step_export(window, out, temp)),
            ("5 masks", lambda: step_masks(window, out)),
            ("6 panoptic", lambda: step_panoptic(window, out)),
        ):
            if wanted and step != "1 demo" and step.split()[1] not in wanted:
                continue
            t0 = time.monotonic()
            print(f"step {step}…", flush=True)
            run()
            print(f"  ({time.monotonic() - t0:.0f} s)", flush=True)
    except StepFailed as exc:
        print(f"make_screenshots: step {step} failed: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        with contextlib.suppress(StepFailed):
            wait_until(lambda: idle(window), 120, "background work before closing", window, errors=False)
        window.session.set_project(None)  # nothing to ask about: the walkthrough edits nothing
        window.close()  # stops the threads (and a training child still running)
        window.deleteLater()
        QApplication.processEvents()
        if args.keep:
            print(f"kept {temp}", flush=True)
        else:
            shutil.rmtree(temp, ignore_errors=True)
    print(f"{'done' if status == 0 else 'stopped'} in {time.monotonic() - started:.0f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
