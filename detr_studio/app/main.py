"""The main window of DETR Studio and `run_app`, what ``detr-studio`` with no arguments runs.

The window is thin: documents come from `CocoDocument` (through `project`), predictions from the inference
worker (a `Predictor` in its own thread), and every change is a document `Edit` pushed through `History`
(a QUndoStack). Its own job is wiring: menus and shortcuts, panels, the canvas, the status bar, and turning
what the user does into those calls. Opening, image decoding and mask drawing run on background threads.

Every public method that a menu calls can also be called directly (the GUI tests do): ``open_folder``,
``open_images``, ``open_coco``, ``save``, ``save_as``, ``load_model``, ``select_image``, ``predict_current``,
``predict_all``, ``set_threshold``, ``accept_selected``, ``reject_selected``, ``accept_all``, ``delete_selected``,
``relabel_selected``, ``undo``, ``redo``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QWidget,
)

from detr_studio.data.coco import (
    AddAnnotations,
    AddCategory,
    Batch,
    CocoDocument,
    CocoFormatError,
    CocoSaveError,
    Edit,
    Relabel,
    RemoveAnnotations,
    SetImageReviewed,
    UpdateAnnotation,
)
from detr_studio.data.images import ImageReadError, is_image_file, load_image
from detr_studio.infer.detections import Detections

from . import demo_project
from . import project as projects
from .canvas import ANNOTATIONS, ATTENTION, MASKS, PREDICTIONS, Canvas
from .class_manager import ClassManager
from .export_panel import ExportDock
from .image_list import ImageListPanel
from .layers import (
    Palette,
    annotation_specs,
    attention_picture,
    draw_masks,
    mask_jobs,
    prediction_specs,
    visible_predictions,
)
from .main_thread_gc import MainThreadCollector
from .model_dialog import ModelDialog
from .overlays import rgb_to_qimage
from .panels import ReviewPanel, duration_text
from .predictions import ACCEPTED, REJECTED, PredictionStore, accept_edit
from .review_queue import ReviewQueueDock
from .shortcuts import ShortcutDialog, saved_keys
from .theme import apply_theme
from .training_panel import TrainingDock
from .undo import History
from .workers import BatchSummary, InferenceWorker, ModelChoice, ModelInfo, TaskRunner

APP_NAME = "DETR Studio"
ORGANISATION = "detr-studio"
MAX_RECENT = 10
AUTOSAVE_MS = 60_000
NUDGE_MERGE = "nudge"


def _bbox(rect: QRectF) -> list[float]:
    """A QRectF in image pixels -> COCO [x, y, w, h], rounded to 1/100 px."""
    return [round(rect.x(), 2), round(rect.y(), 2), round(rect.width(), 2), round(rect.height(), 2)]


def decode_for_display(path: Path) -> QImage:
    """The image at ``path`` as a QImage (runs on a background thread)."""
    return rgb_to_qimage(np.asarray(load_image(path)))


class MainWindow(QMainWindow):
    """See the module docstring. ``project_opened`` fires when a project is in place (after the background
    load); ``predictions_changed(image_id)`` when new predictions for an image arrive."""

    project_opened = Signal()
    predictions_changed = Signal(int)
    image_shown = Signal(int)
    overlays_ready = Signal()

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings if settings is not None else QSettings(ORGANISATION, "detr-studio")
        self.project: projects.Project | None = None
        self.doc: CocoDocument | None = None
        self.history: History | None = None
        self.store = PredictionStore()
        self.model_info: ModelInfo | None = None
        self.model_choice: ModelChoice | None = None
        self.current_image_id: int | None = None
        self.threshold = 0.5
        self.show_ghosts = False
        self.attention_head: int | None = None
        self.probe_point: tuple[float, float] | None = None
        self.errors: list[str] = []
        self.error_dialogs = True
        self.autosave = bool(self.settings.value("autosave", True, type=bool))
        self.theme = str(self.settings.value("theme", "light"))
        self.opening = False
        self._categories_seen: tuple = ()
        self._batch_started = 0.0
        self._overlay_generation = 0
        MainThreadCollector.acquire()  # garbage with Qt objects in it is freed on this thread only
        self._collector_held = True

        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1280, 820)

        self.worker = InferenceWorker(self)
        self.tasks = TaskRunner(workers=1, parent=self)  # opening projects
        self.pixels = TaskRunner(workers=1, parent=self)  # decoding the image shown
        self.overlay_tasks = TaskRunner(workers=1, parent=self)  # mask overlays

        self.canvas = Canvas(self)
        self.canvas.setAcceptDrops(False)
        self.canvas.viewport().setAcceptDrops(False)
        self.setCentralWidget(self.canvas)
        self.actions_by_name: dict[str, QAction] = {}
        self.default_shortcuts: dict[str, list[str]] = {}  # rebindable: see shortcuts.py
        self.class_manager: ClassManager | None = None
        self._make_actions()
        self.image_panel = ImageListPanel(self)
        self.review_panel = ReviewPanel(self.actions_by_name, self)
        self._make_docks()
        self._make_menus()
        self._make_toolbar()
        self._make_status_bar()
        self._connect()
        self._set_editing_enabled()
        self._make_loop_docks()

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(AUTOSAVE_MS)
        self._autosave_timer.timeout.connect(self._autosave)
        self._autosave_timer.start()
        if self.theme == "dark":
            self.actions_by_name["dark_theme"].setChecked(True)

    # ------------------------------------------------------------------------------------------------------
    # construction

    def _action(
        self,
        name: str,
        text: str,
        slot: Callable[[], object] | None = None,
        shortcut: str | Sequence[str] | None = None,
        *,
        checkable: bool = False,
        checked: bool = False,
        tip: str = "",
    ) -> QAction:
        action = QAction(text, self)
        keys = [shortcut] if isinstance(shortcut, str) else list(shortcut or [])
        self.default_shortcuts[name] = keys
        keys = saved_keys(self.settings, name, keys)  # rebound in the settings: shortcuts/<name>
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setCheckable(checkable)
        if checkable:
            action.setChecked(checked)
        if tip or keys:
            action.setToolTip(f"{tip or text.replace('&', '')}" + (f" ({keys[0]})" if keys else ""))
        if slot is not None:
            if checkable:
                action.toggled.connect(slot)
            else:
                action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _make_actions(self) -> None:
        a = self._action
        a("open_folder", "Open &Folder…", self.choose_folder, "Ctrl+O")
        a("open_images", "Open &Images…", self.choose_images, "Ctrl+Shift+O")
        a("open_coco", "Open &COCO Dataset…", self.choose_coco, "Ctrl+Alt+O")
        a("set_image_root", "Set Image Folder…", self.choose_image_root)
        a("save", "&Save", self.save, "Ctrl+S")
        a("save_as", "Save &As…", self.save_as_dialog, "Ctrl+Shift+S")
        a("autosave", "Autosave", self._set_autosave, checkable=True, checked=self.autosave)
        a("quit", "&Quit", self.close, "Ctrl+Q")
        a("undo", "&Undo", self.undo, "Ctrl+Z")
        a("redo", "&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        a("draw", "Draw Box", self.start_drawing, "W", tip="Draw a box")
        a("delete", "Delete", self.delete_selected, "Del")
        a("duplicate", "Duplicate", self.duplicate_selected, "Ctrl+D")
        a("relabel", "Relabel…", self.relabel_dialog, "L")
        a("accept", "Accept (Space)", self.accept_selected, tip="Accept the selected prediction (Space)")
        a("reject", "Reject", self.reject_selected, "X")
        a("accept_all", "Accept All Above Threshold", self.accept_all, "Ctrl+Return")
        a("mark_reviewed", "Mark Reviewed", self.toggle_reviewed, "R")
        a("next", "Next Image", self.next_image, "D")
        a("previous", "Previous Image", self.previous_image, "A")
        a("next_unreviewed", "Next Unreviewed", self.next_unreviewed, "Shift+D")
        a("fit", "Fit", self.canvas.fit, "F")
        a("actual_size", "100%", self.canvas.actual_size, "Ctrl+1")
        a("zoom_in", "Zoom In", lambda: self.canvas.zoom_by(1.25), "Ctrl+=")
        a("zoom_out", "Zoom Out", lambda: self.canvas.zoom_by(0.8), "Ctrl+-")
        for layer, key in (
            (ANNOTATIONS, "Ctrl+2"),
            (PREDICTIONS, "Ctrl+3"),
            (MASKS, "Ctrl+4"),
            (ATTENTION, "Ctrl+5"),
        ):
            a(
                f"layer_{layer}",
                layer.capitalize(),
                lambda on, layer=layer: self.set_layer_visible(layer, on),
                key,
                checkable=True,
                checked=True,
            )
        a("probe", "Probe Encoder Attention", self._set_probe, "E", checkable=True)
        a("dark_theme", "Dark Theme", self._set_dark, checkable=True)
        a("choose_model", "Choose Model…", self.choose_model, "Ctrl+M")
        a("predict", "Predict", self.predict_current, "P")
        a("predict_all", "Predict All", self.predict_all, "Ctrl+P")
        a("predict_on_navigate", "Predict Each Image Shown", None, checkable=True)
        a("cancel_batch", "Cancel Batch", self.cancel_batch)
        a("classes", "&Classes…", self.manage_classes, tip="Add, rename, merge and colour classes")
        a("shortcuts", "&Keyboard Shortcuts…", self.edit_shortcuts)
        for k in range(1, 10):
            a(f"class_{k}", f"Relabel to Class {k}", lambda k=k: self.relabel_to_index(k - 1), str(k))
        a("open_demo", "Open &Demo Project", lambda: demo_project.open_demo(self))

    def _make_menus(self) -> None:
        n = self.actions_by_name
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for name in ("open_folder", "open_images", "open_coco"):
            file_menu.addAction(n[name])
        self.recent_menu = file_menu.addMenu("Recent Projects")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addAction(n["set_image_root"])
        file_menu.addSeparator()
        for name in ("save", "save_as", "autosave"):
            file_menu.addAction(n[name])
        file_menu.addSeparator()
        file_menu.addAction(n["quit"])
        edit_menu = bar.addMenu("&Edit")
        for name in ("undo", "redo", None, "draw", "delete", "duplicate", "relabel", None, "accept", "reject",
                     "accept_all", "mark_reviewed", None, "classes", "shortcuts"):  # fmt: skip
            edit_menu.addAction(n[name]) if name else edit_menu.addSeparator()
        view_menu = bar.addMenu("&View")
        for name in ("fit", "actual_size", "zoom_in", "zoom_out", None, "layer_annotations", "layer_predictions",
                     "layer_masks", "layer_attention", "probe", None, "dark_theme"):  # fmt: skip
            view_menu.addAction(n[name]) if name else view_menu.addSeparator()
        go_menu = bar.addMenu("&Go")
        for name in ("next", "previous", "next_unreviewed"):
            go_menu.addAction(n[name])
        model_menu = bar.addMenu("&Model")
        for name in ("choose_model", "predict", "predict_all", "predict_on_navigate", "cancel_batch"):
            model_menu.addAction(n[name])
        self.docks_menu = bar.addMenu("&Window")
        self.docks_menu.addAction(self.images_dock.toggleViewAction())
        self.docks_menu.addAction(self.review_dock.toggleViewAction())
        bar.addMenu("&Help").addAction(n["open_demo"])

    def _make_toolbar(self) -> None:
        n = self.actions_by_name
        bar = self.addToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for name in ("open_folder", "open_coco", "save", None, "undo", "redo", None, "draw", "fit",
                     "actual_size", None, "choose_model", "predict", "predict_all"):  # fmt: skip
            bar.addAction(n[name]) if name else bar.addSeparator()

    def _make_docks(self) -> None:
        self.images_dock = QDockWidget("Images", self)
        self.images_dock.setObjectName("images-dock")
        self.images_dock.setWidget(self.image_panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.images_dock)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.review_panel)
        self.review_dock = QDockWidget("Review", self)
        self.review_dock.setObjectName("review-dock")
        self.review_dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.review_dock)
        self.resizeDocks([self.images_dock, self.review_dock], [250, 290], Qt.Orientation.Horizontal)

    def _make_loop_docks(self) -> None:
        """Training, Export and Review queue docks, tabbed behind Review and Images; toggled in Window."""
        self.training_dock = TrainingDock(self)
        self.export_dock = ExportDock(self)
        self.queue_dock = ReviewQueueDock(self)
        for dock, beside in ((self.training_dock, self.review_dock), (self.export_dock, self.review_dock),
                             (self.queue_dock, self.images_dock)):  # fmt: skip
            self.tabifyDockWidget(beside, dock)
            self.docks_menu.addAction(dock.toggleViewAction())
        self.review_dock.raise_()
        self.images_dock.raise_()

    def _make_status_bar(self) -> None:
        bar = self.statusBar()
        self.size_label = QLabel("", self)
        self.zoom_label = QLabel("", self)
        self.model_status = QLabel("no model", self)
        self.device_label = QLabel("", self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m")
        self.eta_label = QLabel("", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel_batch)
        progress_box = QWidget(self)
        row = QHBoxLayout(progress_box)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (self.progress, self.eta_label, self.cancel_button):
            row.addWidget(widget)
        progress_box.setVisible(False)
        self.progress_box = progress_box
        bar.addPermanentWidget(progress_box)
        for label in (self.size_label, self.zoom_label, self.model_status, self.device_label):
            bar.addPermanentWidget(label)

    def _connect(self) -> None:
        c = self.canvas
        c.box_drawn.connect(self._on_box_drawn)
        c.box_edited.connect(self._on_box_edited)
        c.selection_changed.connect(self._on_selection_changed)
        c.delete_requested.connect(self.delete_selected)
        c.accept_requested.connect(self.accept_selected)
        c.relabel_requested.connect(self.relabel_dialog)
        c.nudge_requested.connect(self.nudge_selected)
        c.zoom_changed.connect(lambda z: self.zoom_label.setText(f"zoom {z * 100:.0f}%"))
        c.pixel_clicked.connect(self._on_probe)
        c.mode_changed.connect(lambda mode: self.actions_by_name["probe"].setChecked(mode == "probe"))
        self.image_panel.image_chosen.connect(self._show_image)
        p = self.review_panel
        p.threshold_slider.valueChanged.connect(lambda v: self.set_threshold(v / 100.0))
        p.ghosts_box.toggled.connect(self._set_ghosts)
        p.opacity_slider.valueChanged.connect(lambda v: self.canvas.set_mask_opacity(v / 100.0))
        p.head_combo.currentIndexChanged.connect(lambda _i: self._set_head(p.head_combo.currentData()))
        w = self.worker
        w.model_loaded.connect(self._on_model_loaded)
        w.model_failed.connect(self._on_model_failed)
        w.predicted.connect(self._on_predicted)
        w.predict_failed.connect(self._on_predict_failed)
        w.batch_progress.connect(self._on_batch_progress)
        w.batch_results.connect(self._on_batch_results)
        w.batch_finished.connect(self._on_batch_finished)
        self.tasks.done.connect(self._on_task_done)
        self.tasks.failed.connect(self._on_task_failed)
        self.pixels.done.connect(self._on_pixels)
        self.pixels.failed.connect(self._on_pixels_failed)
        self.overlay_tasks.done.connect(self._on_overlay)
        self.overlay_tasks.failed.connect(lambda tag, exc: self.report_error(f"masks: {exc}"))

    # ------------------------------------------------------------------------------------------------------
    # messages and questions (tests replace `ask`)

    def report_error(self, message: str) -> None:
        """Show an error without blocking: the status bar, a non-modal message box, and ``errors``."""
        self.errors.append(message)
        self.statusBar().showMessage(message.splitlines()[0] if message else "error", 15_000)
        if self.error_dialogs:
            box = QMessageBox(
                QMessageBox.Icon.Warning, APP_NAME, message, QMessageBox.StandardButton.Ok, self
            )
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def ask(self, title: str, text: str, choices: Sequence[str] = ("Yes", "No")) -> str:
        """Ask the user to pick one of ``choices`` (returns it); the last choice is the safe one."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, self)
        buttons = [box.addButton(choice, QMessageBox.ButtonRole.ActionRole) for choice in choices]
        box.setDefaultButton(buttons[0])
        box.exec()
        clicked = box.clickedButton()
        return choices[buttons.index(clicked)] if clicked in buttons else choices[-1]

    # ------------------------------------------------------------------------------------------------------
    # opening

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if folder:
            self.open_folder(folder)

    def choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open images", "", "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp)"
        )
        if files:
            self.open_images(files)

    def choose_coco(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a COCO dataset (instances or panoptic JSON)", "", "COCO JSON (*.json)"
        )
        if not path:
            return
        self.open_coco(path)

    def choose_image_root(self) -> None:
        if self.doc is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder that holds the images")
        if folder:
            self.doc.image_root = Path(folder)
            self.image_panel.model.thumbnails.clear()
            self.image_panel.model.refresh()
            if self.current_image_id is not None:
                self._show_image(self.current_image_id)

    def open_folder(self, folder: str | Path) -> None:
        """Open every image under ``folder`` (or its saved ``annotations.json``) in the background."""
        self._open_async(f"Opening {folder}…", projects.open_folder, Path(folder))

    def open_images(self, paths: Sequence[str | Path]) -> None:
        self._open_async("Opening images…", projects.open_images, [Path(p) for p in paths])

    def open_coco(self, path: str | Path, image_root: str | Path | None = None) -> None:
        """Open a COCO instances or panoptic JSON file; ``image_root`` defaults to a guess beside it."""
        self._open_async(f"Opening {path}…", projects.open_coco, Path(path), image_root)

    def open_path(self, path: str | Path) -> None:
        """Open whatever ``path`` is: a folder, a COCO JSON file or an image."""
        path = Path(path)
        if path.is_dir():
            self.open_folder(path)
        elif path.suffix.lower() == ".json":
            self.open_coco(path)
        elif is_image_file(path):
            self.open_images([path])
        else:
            self.report_error(f"{path}: not a folder, a COCO JSON file or an image")

    def open_recent(self, entry: str) -> None:
        self._open_async("Opening recent project…", projects.open_recent, entry)

    def _open_async(self, message: str, fn: Callable[..., projects.Project], *args: object) -> None:
        if not self._may_discard_changes():
            return
        self.opening = True
        self.statusBar().showMessage(message)
        QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)
        self.tasks.submit("open", fn, *args)

    def _on_task_done(self, tag: object, result: object) -> None:
        if tag == "open":
            QApplication.restoreOverrideCursor()
            self.opening = False
            assert isinstance(result, projects.Project)
            self.set_project(result)

    def _on_task_failed(self, tag: object, exc: object) -> None:
        if tag == "open":
            QApplication.restoreOverrideCursor()
            self.opening = False
            self.report_error(
                str(exc) if isinstance(exc, (CocoFormatError, OSError, ValueError)) else repr(exc)
            )

    def set_project(self, project: projects.Project) -> None:
        """Show ``project`` (replacing the current one): recovers its journal, fills the list, shows image 1."""
        doc = project.doc
        if doc.pending_journal:
            answer = self.ask(
                "Recover unsaved edits?",
                f"{len(doc.pending_journal)} edits to {doc.path or project.location} were not saved when DETR"
                " Studio last stopped. Recover them?",
                ("Recover", "Discard"),
            )
            if answer == "Recover":
                doc.replay_journal()
            else:
                doc.discard_journal()
        self.worker.cancel_batch()  # its results would belong to the old project
        self.worker.current_image = None
        self.project = project
        self.doc = doc
        if self.history is not None:
            self.history.deleteLater()
        self.history = History(doc, self)
        self.history.changed.connect(self._on_doc_changed)
        self.history.failed.connect(self.report_error)
        self.store.clear()
        self.current_image_id = None
        self.probe_point = None
        self._refresh_categories(force=True)
        self.image_panel.set_document(doc, self.store, project.images)
        self._add_recent(project.recent_entry())
        kind = "panoptic" if doc.is_panoptic else "instances"
        message = f"Opened {self._title_name()}: {self.image_panel.model.total:,} images ({kind})"
        if doc.warnings:
            message += f"; {len(doc.warnings)} warnings, the first: {doc.warnings[0]}"
        self.statusBar().showMessage(message, 15_000)
        self._update_title()
        self._set_editing_enabled()
        first = self.image_panel.model.image_id_at(0)
        if first is not None:
            self.select_image(first)
        else:
            self.canvas.show_image(None, 0, 0)
        self.project_opened.emit()

    def _set_editing_enabled(self) -> None:
        editable = self.doc is not None and not self.doc.is_panoptic
        for name in ("draw", "delete", "duplicate", "relabel", "accept", "accept_all"):
            self.actions_by_name[name].setEnabled(editable)
        has_doc = self.doc is not None
        for name in (
            "save",
            "save_as",
            "mark_reviewed",
            "next",
            "previous",
            "next_unreviewed",
            "predict_all",
        ):
            self.actions_by_name[name].setEnabled(has_doc)

    # ------------------------------------------------------------------------------------------------------
    # recent projects

    def recent_projects(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, entry: str) -> None:
        entries = [e for e in self.recent_projects() if e != entry]
        self.settings.setValue("recent", [entry, *entries][:MAX_RECENT])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        entries = self.recent_projects()
        if not entries:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for entry in entries:
            action = self.recent_menu.addAction(projects.recent_label(entry))
            action.triggered.connect(lambda _checked=False, entry=entry: self.open_recent(entry))

    # ------------------------------------------------------------------------------------------------------
    # saving

    def save(self) -> bool:
        """Save to the document's file (a new folder project: ``<folder>/annotations.json``)."""
        if self.doc is None or self.project is None:
            return False
        target = self.doc.path or self.project.default_save
        if target is None:
            return self.save_as_dialog()
        return self.save_as(target)

    def save_as_dialog(self) -> bool:
        if self.doc is None:
            return False
        start = str(self.doc.path or (self.project.default_save if self.project else "") or "")
        path, _ = QFileDialog.getSaveFileName(self, "Save COCO annotations", start, "COCO JSON (*.json)")
        return self.save_as(path) if path else False

    def save_as(self, path: str | Path) -> bool:
        """Write the document atomically to ``path``; on failure the old file and the dirty state stay."""
        if self.doc is None or self.project is None:
            return False
        try:
            written = self.doc.save(path)
        except CocoSaveError as exc:
            self.report_error(str(exc))
            self._update_title()
            return False
        self.history.mark_saved() if self.history is not None else None
        self._add_recent(self.project.recent_entry())
        self.statusBar().showMessage(f"Saved {written}", 5_000)
        self._update_title()
        return True

    def _autosave(self) -> None:
        """Save a dirty document that already has its file (autosave never creates a file unasked)."""
        if not self.autosave or self.doc is None or not self.doc.dirty or self.doc.path is None:
            return
        try:
            self.doc.save()
        except CocoSaveError as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 15_000)
            return
        if self.history is not None:
            self.history.mark_saved()
        self._update_title()

    def _set_autosave(self, on: bool) -> None:
        self.autosave = on
        self.settings.setValue("autosave", on)

    def _may_discard_changes(self) -> bool:
        """Before replacing or closing a dirty document: save, discard or cancel."""
        if self.doc is None or not self.doc.dirty:
            return True
        answer = self.ask(
            "Unsaved changes", f"{self._title_name()} has unsaved changes.", ("Save", "Discard", "Cancel")
        )
        if answer == "Save":
            return self.save()
        return answer == "Discard"

    def _title_name(self) -> str:
        return self.project.title if self.project is not None else "The project"

    def _update_title(self) -> None:
        if self.doc is None:
            self.setWindowTitle(APP_NAME)
            return
        self.setWindowTitle(f"{self._title_name()}[*] — {APP_NAME}")
        self.setWindowModified(self.doc.dirty)

    # ------------------------------------------------------------------------------------------------------
    # showing an image

    def select_image(self, image_id: int) -> None:
        """Make ``image_id`` current (in the list when the filter shows it, on the canvas in any case)."""
        if not self.image_panel.select_image(image_id) or self.current_image_id != image_id:
            self._show_image(image_id)

    def _show_image(self, image_id: int) -> None:
        if self.doc is None:
            return
        if self.current_image_id is not None and self.current_image_id != image_id:
            self._autosave()
        self.current_image_id = image_id
        self.worker.current_image = image_id
        self.probe_point = None
        with contextlib.suppress(ImageReadError):  # a folder's sizes are read lazily; decoding names the file
            self.doc.image_size(image_id)
        info = self.doc.image(image_id)
        self.canvas.show_image(image_id, info.width, info.height)
        self.size_label.setText(f"{info.width} × {info.height} px")
        self.refresh_boxes()
        self._refresh_overlays()
        self.pixels.submit(
            ("pixels", image_id), self._decode_if_shown, image_id, self.doc.image_path(image_id)
        )
        if (
            self.actions_by_name["predict_on_navigate"].isChecked()
            and self.model_info is not None
            and image_id not in self.store
        ):
            self.predict_current()
        self.image_shown.emit(image_id)

    def _decode_if_shown(self, image_id: int, path: Path) -> QImage | None:
        """Decode for display unless the user has moved on (runs on the pixel thread; holding D skips)."""
        return decode_for_display(path) if image_id == self.current_image_id else None

    def _on_pixels(self, tag: object, image: object) -> None:
        _, image_id = tag  # type: ignore[misc]
        if image_id == self.current_image_id and isinstance(image, QImage):
            self.canvas.set_pixmap(image_id, image)

    def _on_pixels_failed(self, tag: object, exc: object) -> None:
        _, image_id = tag  # type: ignore[misc]
        if image_id == self.current_image_id:
            self.report_error(str(exc) if isinstance(exc, ImageReadError) else f"{exc!r}")

    def next_image(self) -> None:
        self._step(1)

    def previous_image(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        model = self.image_panel.model
        if not model.rowCount():
            return
        row = model.row_of(self.current_image_id) if self.current_image_id is not None else -1
        row = min(max(row + delta, 0), model.rowCount() - 1)
        image_id = model.image_id_at(row)
        if image_id is not None:
            self.select_image(image_id)

    def next_unreviewed(self) -> None:
        if self.doc is None:
            return
        ids = self.image_panel.model.image_ids
        start = ids.index(self.current_image_id) + 1 if self.current_image_id in ids else 0
        for image_id in ids[start:] + ids[:start]:
            if not self.doc.image(image_id).reviewed and image_id != self.current_image_id:
                self.select_image(image_id)
                return
        self.statusBar().showMessage("Every image shown is reviewed", 5_000)

    # ------------------------------------------------------------------------------------------------------
    # colours, names, boxes

    def palette(self) -> Palette:
        """Names and colours of the document's classes and the model's labels, for one refresh."""
        return Palette(self.doc, self.model_info.class_names if self.model_info is not None else None)

    def label_name(self, label: int) -> str:
        """The model's name for a predicted label."""
        return self.palette().label_name(label)

    def refresh_boxes(self) -> None:
        """Rebuild the canvas boxes of the current image from the document and the prediction cache."""
        if self.doc is None or self.current_image_id is None:
            return
        palette = self.palette()
        self.canvas.set_annotations(annotation_specs(self.doc, self.current_image_id, palette))
        shown, ghosts = visible_predictions(
            self.store, self.current_image_id, self.threshold, self.show_ghosts
        )
        self.canvas.set_predictions(prediction_specs(shown, palette), prediction_specs(ghosts, palette))

    def _refresh_categories(self, force: bool = False) -> None:
        if self.doc is None:
            return
        if self.class_manager is not None:
            self.class_manager.refresh()  # colours and counts change without a rename
        seen = tuple((c.id, c.name) for c in self.doc.categories)
        if seen == self._categories_seen and not force:
            return
        self._categories_seen = seen
        self.image_panel.set_classes(seen)
        combo = self.review_panel.class_combo
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for cid, name in seen:
            combo.addItem(name, cid)
        index = combo.findData(current)
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)

    # ------------------------------------------------------------------------------------------------------
    # overlays: masks and attention

    def _refresh_overlays(self) -> None:
        self._refresh_masks()
        self._refresh_attention()

    def _refresh_masks(self) -> None:
        """Gather what the mask layer shows (plain data) and draw it on a background thread."""
        if self.doc is None or self.current_image_id is None:
            return
        iid = self.current_image_id
        predictions = self.store.get(iid) if self.canvas.visible_layers[PREDICTIONS] else None
        visible = self.store.visible(iid, self.threshold) if predictions is not None else None
        jobs = mask_jobs(self.doc, iid, self.palette(), predictions, visible)
        self._overlay_generation += 1
        if not jobs:
            self.canvas.set_mask_overlay(None)
            self.overlays_ready.emit()
            return
        info = self.doc.image(iid)
        tag = ("masks", iid, self._overlay_generation)
        self.overlay_tasks.submit(tag, draw_masks, jobs, info.height, info.width)

    def _on_overlay(self, tag: object, image: object) -> None:
        _, iid, generation = tag  # type: ignore[misc]
        if iid != self.current_image_id or generation != self._overlay_generation:
            return
        self.canvas.set_mask_overlay(image if isinstance(image, QImage) else None)
        self.overlays_ready.emit()

    def _refresh_attention(self) -> None:
        """Decoder attention of the one selected prediction, or encoder attention at the probed pixel."""
        entry = self.store.get(self.current_image_id) if self.current_image_id is not None else None
        selected = self.canvas.selected_prediction_ids()
        picture = attention_picture(
            entry.detections.attention if entry is not None else None,
            selected[0] if len(selected) == 1 else None,
            self.probe_point,
            self.attention_head,
        )
        if picture is None:
            self.canvas.set_attention(None)
        else:
            self.canvas.set_attention(*picture)

    def _set_head(self, head: int | None) -> None:
        self.attention_head = head
        self._refresh_attention()

    def _set_probe(self, on: bool) -> None:
        if on and self.canvas.mode != "probe":
            self.canvas.set_mode("probe")
            self.set_layer_visible(ATTENTION, True)
        elif not on:
            if self.canvas.mode == "probe":
                self.canvas.set_mode("select")
            self.probe_point = None
            self._refresh_attention()

    def _on_probe(self, x: float, y: float) -> None:
        self.probe_point = (x, y)
        self.canvas.scene().clearSelection()
        self._refresh_attention()

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        action = self.actions_by_name[f"layer_{layer}"]
        if action.isChecked() != visible:
            action.setChecked(visible)  # comes back here through toggled
            return
        self.canvas.set_layer_visible(layer, visible)
        if layer == PREDICTIONS:
            self._refresh_masks()

    def _set_dark(self, on: bool) -> None:
        self.theme = "dark" if on else "light"
        self.settings.setValue("theme", self.theme)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, self.theme)

    # ------------------------------------------------------------------------------------------------------
    # selection and inspector

    def _on_selection_changed(self) -> None:
        self._refresh_attention()
        self._update_inspector()

    def _update_inspector(self) -> None:
        text = "Select a detection to see its query, top classes and no-object probability."
        iid = self.current_image_id
        predicted = self.canvas.selected_prediction_ids()
        annotated = self.canvas.selected_annotation_ids()
        entry = self.store.get(iid) if iid is not None else None
        if len(predicted) == 1 and entry is not None:
            row = self.store.row_of(iid, predicted[0])
            dets = entry.detections
            x0, y0, x1, y1 = (float(v) for v in dets.boxes[row])
            lines = [f"<b>Query {predicted[0]}</b> — score {float(dets.scores[row]):.3f}"]
            lines += [f"{self.label_name(c)}: {p:.3f}" for c, p in dets.top_classes(row, k=3)]
            lines.append(f"no object: {float(dets.no_object[row]):.3f}")
            lines.append(f"box {x0:.0f}, {y0:.0f} – {x1:.0f}, {y1:.0f}")
            text = "<br>".join(lines)
        elif len(annotated) == 1 and self.doc is not None and not self.doc.is_panoptic:
            ann = self.doc.annotation(annotated[0])
            x, y, w, h = ann.bbox
            lines = [
                f"<b>Annotation {ann.id}</b> — {self.palette().category_name(ann.category_id)}",
                f"source: {ann.source}",
            ]
            if ann.model:
                lines.append(f"model: {ann.model}")
            if ann.score is not None:
                lines.append(f"score: {ann.score:.3f}")
            lines.append(f"review: {ann.review}")
            lines.append(f"box {x:.0f}, {y:.0f}, {w:.0f} × {h:.0f}")
            text = "<br>".join(lines)
        elif predicted or annotated:
            text = f"{len(annotated)} annotations and {len(predicted)} predictions selected"
        self.review_panel.inspector.setText(text)

    # ------------------------------------------------------------------------------------------------------
    # editing (every change goes through History)

    def _apply(self, edit: Edit, text: str, **kwargs) -> bool:
        if self.history is None:
            return False
        return self.history.apply(edit, text, **kwargs)

    def _editable(self) -> bool:
        if self.doc is None or self.current_image_id is None:
            return False
        if self.doc.is_panoptic:
            self.statusBar().showMessage("Panoptic datasets are shown read-only in this version", 5_000)
            return False
        return True

    def start_drawing(self) -> None:
        if self._editable():
            self.set_layer_visible(ANNOTATIONS, True)
            self.canvas.set_mode("draw")

    def new_box_category(self) -> int | None:
        data = self.review_panel.class_combo.currentData()
        return int(data) if data is not None else None

    def add_box(self, rect: QRectF, category_id: int | None = None) -> int | None:
        """Add a human box (image pixels) of ``category_id`` (default: the panel's class); returns its id."""
        if not self._editable():
            return None
        assert self.doc is not None and self.current_image_id is not None
        steps: list[Edit] = []
        cid = category_id if category_id is not None else self.new_box_category()
        if cid is None:  # a new project without classes: start one
            cid = 1
            steps.append(AddCategory({"id": cid, "name": "object"}))
        record = self.doc.new_annotation(self.current_image_id, cid, _bbox(rect))
        steps.append(AddAnnotations([record]))
        edit = steps[0] if len(steps) == 1 else Batch(steps, "draw box")
        if not self._apply(edit, "draw box"):
            return None
        self.canvas.select(ANNOTATIONS, [record["id"]])
        return int(record["id"])

    def _on_box_drawn(self, rect: QRectF) -> None:
        self.add_box(rect)

    def _box_fields(self, annotation_id: int, bbox: list[float]) -> dict:
        assert self.doc is not None
        fields: dict = {"bbox": bbox}
        if not self.doc.annotation(annotation_id).segmentation:
            fields["area"] = round(bbox[2] * bbox[3], 4)
        return fields

    def move_box(self, annotation_id: int, rect: QRectF) -> bool:
        """Give an annotation a new box (image pixels): a move or a resize."""
        if not self._editable():
            return False
        fields = self._box_fields(annotation_id, _bbox(rect))
        return self._apply(UpdateAnnotation(annotation_id, fields), "move box")

    def _on_box_edited(self, annotation_id: int, rect: QRectF) -> None:
        if not self.move_box(annotation_id, rect):
            self.refresh_boxes()

    def nudge_selected(self, dx: float, dy: float) -> None:
        ids = self.canvas.selected_annotation_ids()
        if not ids or not self._editable():
            return
        assert self.doc is not None and self.current_image_id is not None
        info = self.doc.image(self.current_image_id)
        steps: list[Edit] = []
        for aid in ids:
            x, y, w, h = self.doc.annotation(aid).bbox
            x = min(max(x + dx, 0.0), max(info.width - w, 0.0))
            y = min(max(y + dy, 0.0), max(info.height - h, 0.0))
            steps.append(UpdateAnnotation(aid, {"bbox": [round(x, 2), round(y, 2), w, h]}))
        edit = steps[0] if len(steps) == 1 else Batch(steps, "nudge")
        self._apply(edit, "nudge", merge_key=(NUDGE_MERGE, tuple(sorted(ids))))

    def delete_selected(self) -> None:
        ids = self.canvas.selected_annotation_ids()
        if ids and self._editable():
            self._apply(RemoveAnnotations(ids), f"delete {len(ids)} boxes")

    def duplicate_selected(self) -> None:
        ids = self.canvas.selected_annotation_ids()
        if not ids or not self._editable():
            return
        assert self.doc is not None and self.current_image_id is not None
        info = self.doc.image(self.current_image_id)
        records = []
        for aid in ids:
            ann = self.doc.annotation(aid)
            x, y, w, h = ann.bbox
            x, y = min(x + 10.0, max(info.width - w, 0.0)), min(y + 10.0, max(info.height - h, 0.0))
            records.append(self.doc.new_annotation(ann.image_id, ann.category_id, (x, y, w, h)))
        if self._apply(AddAnnotations(records), "duplicate"):
            self.canvas.select(ANNOTATIONS, [r["id"] for r in records])

    def relabel_selected(self, category_id: int) -> bool:
        ids = self.canvas.selected_annotation_ids()
        if not ids or not self._editable():
            return False
        ok = self._apply(Relabel(ids, category_id), f"relabel to {self.palette().category_name(category_id)}")
        if ok:
            self.review_panel.class_combo.setCurrentIndex(self.review_panel.class_combo.findData(category_id))
        return ok

    def relabel_to_index(self, index: int) -> None:
        if self.doc is None:
            return
        categories = self.doc.categories
        if 0 <= index < len(categories):
            self.relabel_selected(categories[index].id)

    def relabel_dialog(self) -> None:
        if self.doc is None or not self.canvas.selected_annotation_ids():
            return
        names = [c.name for c in self.doc.categories]
        current = self.doc.annotation(self.canvas.selected_annotation_ids()[0]).category_id
        start = next((i for i, c in enumerate(self.doc.categories) if c.id == current), 0)
        name, ok = QInputDialog.getItem(
            self, "Relabel", "Class (type to search, or a new name):", names, start, True
        )
        if not ok or not name.strip():
            return
        name = name.strip()
        match = next((c for c in self.doc.categories if c.name == name), None)
        if match is not None:
            self.relabel_selected(match.id)
            return
        cid = max([c.id for c in self.doc.categories] + [0]) + 1
        ids = self.canvas.selected_annotation_ids()
        self._apply(
            Batch([AddCategory({"id": cid, "name": name}), Relabel(ids, cid)], "relabel"),
            f"relabel to {name}",
        )

    def toggle_reviewed(self) -> None:
        if self.doc is None or self.current_image_id is None:
            return
        reviewed = self.doc.image(self.current_image_id).reviewed
        self._apply(SetImageReviewed(self.current_image_id, not reviewed), "mark reviewed")

    def undo(self) -> None:
        if self.history is not None:
            self.history.undo()

    def redo(self) -> None:
        if self.history is not None:
            self.history.redo()

    def manage_classes(self) -> ClassManager:
        """Show the class manager (add, rename, merge, colour; each change is an undoable edit)."""
        if self.class_manager is None:
            undo_redo = [self.actions_by_name["undo"], self.actions_by_name["redo"]]
            self.class_manager = ClassManager(self, lambda: self.doc, self._apply, self.palette, undo_redo)
        self.class_manager.show()
        self.class_manager.raise_()
        self.class_manager.activateWindow()
        return self.class_manager

    def edit_shortcuts(self) -> bool:
        """Let the user rebind the actions' keys (stored in the settings); True when OK was pressed."""
        dialog = ShortcutDialog(self.actions_by_name, self.default_shortcuts, self.settings, self)
        return dialog.exec() == ShortcutDialog.DialogCode.Accepted

    def _on_doc_changed(self) -> None:
        self._refresh_categories()
        self.refresh_boxes()
        self._refresh_masks()
        self._update_inspector()
        self.image_panel.model.refresh([self.current_image_id] if self.current_image_id is not None else None)
        self._update_title()

    # ------------------------------------------------------------------------------------------------------
    # predictions

    def choose_model(self) -> None:
        dialog = ModelDialog(self, self.model_choice)
        if dialog.exec() != ModelDialog.DialogCode.Accepted:
            return
        choice = dialog.choice()
        if choice is None:
            self.report_error("Choose a zoo model or a checkpoint file")
            return
        self.load_model_choice(choice)

    def load_model(
        self,
        source: str | Path,
        device: str | None = None,
        precision: str = "fp32",
        size: int = 800,
        max_size: int | None = 1333,
    ) -> None:
        """Load a checkpoint file or zoo entry in the worker; ``worker.model_loaded`` says when it is ready."""
        self.load_model_choice(ModelChoice(str(source), device, precision, size, max_size))

    def load_model_choice(self, choice: ModelChoice) -> None:
        self.model_choice = choice
        self.model_status.setText(f"loading {choice.name}…")
        self.review_panel.model_label.setText(f"Loading {choice.name}…")
        self.worker.load(choice)

    def _on_model_loaded(self, info: ModelInfo) -> None:
        self.model_info = info
        self.store.clear()
        self.model_status.setText(f"model: {info.name}")
        self.device_label.setText(info.description)
        self.review_panel.model_label.setText(
            f"<b>{info.name}</b><br>{info.num_queries} queries, {len(info.class_names)} classes"
            + (", mask head" if info.supports_masks else "")
            + ("" if info.has_attention else "<br>(ONNX: no attention maps)")
        )
        self.review_panel.set_heads(info.num_heads)
        self.image_panel.model.predicted_names = dict(info.class_names)
        self.image_panel.refilter()
        self.refresh_boxes()
        self._refresh_overlays()

    def _on_model_failed(self, message: str) -> None:
        self.model_status.setText("no model")
        self.review_panel.model_label.setText("No model loaded")
        self.report_error(f"Cannot load the model: {message}")

    def predict_current(self) -> None:
        if self.doc is None or self.current_image_id is None:
            return
        if self.model_info is None and self.model_choice is None:
            self.report_error("No model is loaded: choose one first (Model > Choose Model)")
            return
        self.statusBar().showMessage("Predicting…")
        self.worker.predict(self.current_image_id, self.doc.image_path(self.current_image_id))

    def predict_all(self, batch_size: int = 2) -> None:
        """Predict every image of the project in the background (the window stays usable)."""
        if self.doc is None:
            return
        if self.model_info is None and self.model_choice is None:
            self.report_error("No model is loaded: choose one first (Model > Choose Model)")
            return
        items = [(img.id, self.doc.image_path(img.id)) for img in self.doc.images]
        self._batch_started = time.monotonic()
        self.progress.setRange(0, len(items))
        self.progress.setValue(0)
        self.eta_label.setText("")
        self.progress_box.setVisible(True)
        self.actions_by_name["predict_all"].setEnabled(False)
        self.worker.predict_all(items, batch_size)

    def cancel_batch(self) -> None:
        self.worker.cancel_batch()

    def _belongs_here(self, image_id: int, dets: Detections) -> bool:
        """Whether a result is for an image of the open project (not one opened before it)."""
        if self.doc is None:
            return False
        try:
            return str(self.doc.image_path(image_id)) == dets.source
        except KeyError:
            return False

    def _on_predicted(self, image_id: int, dets: Detections, model: str) -> None:
        if not self._belongs_here(image_id, dets):
            return
        self.store.put(image_id, dets, model)
        self.statusBar().showMessage(
            f"{len(dets.above(self.threshold))} detections above {self.threshold:.2f}", 5_000
        )
        if image_id == self.current_image_id:
            self.refresh_boxes()
            self._refresh_overlays()
            self._update_inspector()
        self.image_panel.model.refresh([image_id])
        self.predictions_changed.emit(image_id)

    def _on_predict_failed(self, image_id: int, message: str) -> None:
        self.report_error(f"Prediction failed: {message}")

    def _on_batch_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        elapsed = time.monotonic() - self._batch_started
        if done:
            remaining = elapsed / done * (total - done)
            self.eta_label.setText(f"{done / max(elapsed, 1e-6):.1f} img/s, ETA {duration_text(remaining)}")

    def _on_batch_results(self, results: dict, model: str) -> None:
        for image_id, dets in results.items():
            if self._belongs_here(image_id, dets):
                self.store.put(image_id, dets, model)
        if self.current_image_id in results:
            self.refresh_boxes()
            self._refresh_masks()
            self._update_inspector()
        self.image_panel.model.refresh()  # rows are re-filtered once, when the batch ends

    def _on_batch_finished(self, summary: BatchSummary) -> None:
        self.progress_box.setVisible(False)
        self.actions_by_name["predict_all"].setEnabled(self.doc is not None)
        if summary.failure:
            self.report_error(f"Batch prediction stopped: {summary.failure}")
        elif summary.errors:
            shown = "\n".join(summary.errors[:5])
            more = f"\n… and {len(summary.errors) - 5} more" if len(summary.errors) > 5 else ""
            self.report_error(f"{len(summary.errors)} images could not be predicted:\n{shown}{more}")
        self.image_panel.refilter()
        state = "cancelled" if summary.cancelled else "done"
        self.statusBar().showMessage(f"Predict all {state}: {summary.done} of {summary.total} images", 10_000)
        self.predictions_changed.emit(-1)

    def set_threshold(self, threshold: float) -> None:
        """Re-filter the cached predictions (no model run)."""
        self.threshold = min(max(float(threshold), 0.0), 1.0)
        slider = self.review_panel.threshold_slider
        if slider.value() != round(self.threshold * 100):
            slider.blockSignals(True)
            slider.setValue(round(self.threshold * 100))
            slider.blockSignals(False)
        self.review_panel.threshold_label.setText(f"{self.threshold:.2f}")
        self.image_panel.model.threshold = self.threshold
        self.refresh_boxes()
        self._refresh_masks()
        self.image_panel.refilter()

    def _set_ghosts(self, on: bool) -> None:
        self.show_ghosts = on
        self.refresh_boxes()

    def accept_selected(self) -> None:
        """Turn the selected predictions (and ghosts) into annotations with the model's provenance."""
        self._accept(self.canvas.selected_prediction_ids(), "accept prediction")

    def accept_all(self) -> None:
        iid = self.current_image_id
        if iid is None:
            return
        dets = self.store.visible(iid, self.threshold)
        if dets is not None and len(dets):
            self._accept([int(q) for q in dets.query_ids], f"accept {len(dets)} predictions")

    def _accept(self, query_ids: list[int], text: str) -> bool:
        iid = self.current_image_id
        entry = self.store.get(iid) if iid is not None else None
        if not query_ids or entry is None or not self._editable():
            return False
        assert self.doc is not None and iid is not None
        rows = [self.store.row_of(iid, q) for q in query_ids]
        names = self.model_info.class_names if self.model_info is not None else {}
        edit = accept_edit(self.doc, iid, entry.detections, rows, entry.model, names)

        def mark() -> None:
            self.store.mark(iid, query_ids, ACCEPTED)

        def unmark() -> None:
            self.store.mark(iid, query_ids, None)

        return self._apply(edit, text, after_redo=mark, after_undo=unmark)

    def reject_selected(self) -> None:
        """Hide the selected predictions; undoable, like every edit."""
        iid = self.current_image_id
        query_ids = self.canvas.selected_prediction_ids()
        if iid is None or not query_ids or self.history is None:
            return

        def reject() -> None:  # the stack's index change redraws
            self.store.mark(iid, query_ids, REJECTED)

        def restore() -> None:
            self.store.mark(iid, query_ids, None)

        self.history.push_callback(f"reject {len(query_ids)} predictions", reject, restore)

    # ------------------------------------------------------------------------------------------------------
    # keys that reach the window (focus on a slider or list): Space still accepts

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.accept_selected()
            event.accept()
            return
        super().keyReleaseEvent(event)

    # ------------------------------------------------------------------------------------------------------
    # drag and drop, closing

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        images = [p for p in paths if p.is_file() and is_image_file(p)]
        if len(paths) == 1 and not images:
            self.open_path(paths[0])
        elif images:
            self.open_images(images)
        else:
            self.report_error("Drop a folder, a COCO JSON file or image files")

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._may_discard_changes():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop the background threads (the window is going away)."""
        self._autosave_timer.stop()
        self.training_dock.panel.shutdown()  # the training child saves its position and stops
        self.export_dock.panel.shutdown()
        self.worker.shutdown()
        for runner in (self.tasks, self.pixels, self.overlay_tasks):
            runner.shutdown()
        self.image_panel.model.stop_background_work()
        if self._collector_held:
            self._collector_held = False
            MainThreadCollector.release()


def start_window(
    args: Sequence[str] = (), settings: QSettings | None = None, demo: bool = True
) -> MainWindow:
    """Build and show the window as ``detr-studio`` does (a QApplication must exist): open ``args[1]`` when
    given, else, when ``demo`` and there is no recent project, the demo project."""
    window = MainWindow(settings)
    app = QApplication.instance()
    if isinstance(app, QApplication):
        apply_theme(app, window.theme)
    window.setWindowIcon(demo_project.app_icon())
    window.show()
    if len(args) > 1:
        window.open_path(args[1])
    elif demo and not window.recent_projects():
        demo_project.open_demo(window)
    return window


def run_app(argv: Sequence[str] | None = None, smoke_test: bool = False) -> int:
    """Start the window (``argv[1]``, when given, is a folder, COCO JSON file or image to open). With
    ``smoke_test`` it opens nothing, prints "ok" once the window is painted and quits."""
    args = list(sys.argv if argv is None else argv)
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(args or [APP_NAME])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORGANISATION)
    app.setWindowIcon(demo_project.app_icon())
    window = start_window(args if not smoke_test else args[:1], demo=not smoke_test)
    if smoke_test:
        demo_project.FirstPaintCheck(app, window)
    return int(app.exec())
