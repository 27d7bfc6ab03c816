"""The main window of DETR Studio and `run_app`, what ``detr-studio`` with no arguments runs.

The window only puts the parts together. What it shows and edits is the Qt-free `Session` (``session``);
the parts work on the session and listen to its events:

- ``projects`` (`ProjectController`): opening, recent projects, saving, autosave, the title;
- ``navigation`` (`Navigator`): which image is shown, decoding its pixels;
- ``presenter`` (`ScenePresenter`): drawing the session on the canvas, the canvas's selection;
- ``editing`` (`EditController`): draw, move, nudge, delete, relabel, undo/redo, the class manager;
- ``predictions`` (`PredictionController`): the model, predicting, threshold, accept and reject;
- ``actions`` (`ActionRegistry`): menus, toolbar and rebindable shortcuts;
- the docks (image list, review panel, Training, Export, Review queue), which take the session and
  ``services`` (settings, the inference worker, messages), never the window.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeyEvent
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow, QScrollArea

from detr_studio.data.images import is_image_file
from detr_studio.session import Session
from detr_studio.session.project import Project

from . import demo_project
from .actions import (
    ActionRegistry,
    WindowParts,
    action_states,
    add_dock_toggles,
    build_menus,
    build_toolbar,
    define_actions,
)
from .canvas import PREDICTIONS, Canvas
from .edit_commands import EditController
from .export_panel import ExportDock
from .image_list import ImageListPanel
from .inference import InferenceWorker
from .mask_commands import MaskController
from .navigation import Navigator
from .object_list import ObjectListDock
from .opening import ProjectController
from .panels import ReviewPanel
from .panoptic_commands import PanopticController
from .predicting import PredictionController
from .presenter import ScenePresenter
from .review_queue import ReviewQueueDock
from .services import APP_NAME, ORGANISATION, Services
from .shortcuts import ShortcutDialog
from .status_bar import StatusWidgets
from .theme import apply_theme
from .training_panel import TrainingDock
from .views import Views
from .window_state import keep_window_state, last_image_id, restore_layout, restore_model

__all__ = ["APP_NAME", "ORGANISATION", "MainWindow", "run_app", "start_window"]


class MainWindow(QMainWindow):
    """See the module docstring. ``project_opened`` fires when a project is in place (after the background
    load); ``predictions_changed(image_id)`` when new predictions for an image arrive; ``image_shown(id)``
    when an image is made current; ``overlays_ready`` when its mask layer is drawn."""

    project_opened = Signal()
    predictions_changed = Signal(int)
    image_shown = Signal(int)
    overlays_ready = Signal()

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        settings = settings if settings is not None else QSettings(ORGANISATION, "detr-studio")
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)
        self.resize(1280, 820)
        self.session = session = Session()
        self.worker = InferenceWorker(self)
        self.status = StatusWidgets(self.statusBar(), self.worker.cancel_batch)
        self.services = services = Services(self, settings, self.worker, self.status)
        self.theme = str(settings.value("theme", "light"))

        self.canvas = Canvas(self)
        self.canvas.setAcceptDrops(False)
        self.canvas.viewport().setAcceptDrops(False)
        self.setCentralWidget(self.canvas)
        self.image_panel = ImageListPanel(session, self)
        self.actions = ActionRegistry(self, settings)
        self.review_panel = ReviewPanel(self)
        views = Views(self, self.canvas, self.review_panel, self.image_panel, self.status)
        self.presenter = ScenePresenter(session, services, views, self)
        self.navigation = Navigator(session, services, views, self)
        self.projects = ProjectController(session, services, views, self)
        self.editing = EditController(session, services, views, self.presenter)
        self.segments = PanopticController(session, services, views, self.editing.new_box_category, self)
        self.editing.segments = self.segments
        self.masks = MaskController(
            session, services, views, self.presenter, self.editing, self.segments, self
        )
        self.predictions = PredictionController(session, services, views, self)
        define_actions(self.actions, self._parts(), self.projects.autosave)
        self.actions_by_name = self.actions.by_name
        self.review_panel.add_buttons(self.actions.by_name)
        docks_menu = build_menus(self, self.actions, self.projects)
        build_toolbar(self, self.actions)
        self._make_docks(docks_menu)
        self._connect()
        self._set_editing_enabled()
        self._shut_down = False
        if self.theme == "dark":
            self.actions["dark_theme"].setChecked(True)

    def _parts(self) -> WindowParts:
        return WindowParts(
            projects=self.projects,
            navigation=self.navigation,
            editing=self.editing,
            masks=self.masks,
            segments=self.segments,
            predictions=self.predictions,
            presenter=self.presenter,
            canvas=self.canvas,
            set_autosave=self.projects.set_autosave,
            set_dark=self.set_dark,
            edit_shortcuts=self.edit_shortcuts,
            open_demo=self.open_demo,
            choose_image_root=self.choose_image_root,
            quit=self.close,
        )

    def _make_docks(self, docks_menu) -> None:
        self.images_dock = self._dock(
            "Images", "images-dock", self.image_panel, Qt.DockWidgetArea.LeftDockWidgetArea
        )
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.review_panel)
        self.review_dock = self._dock("Review", "review-dock", scroll, Qt.DockWidgetArea.RightDockWidgetArea)
        self.objects_dock = ObjectListDock(self.session, self.presenter.palette, self)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.objects_dock)
        self.splitDockWidget(self.images_dock, self.objects_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.images_dock, self.review_dock], [250, 320], Qt.Orientation.Horizontal)
        self.training_dock = TrainingDock(self.session, self.services, self)
        self.export_dock = ExportDock(self.session, self.services, self)
        self.queue_dock = ReviewQueueDock(self.session, self.services, self.show_object, self)
        for dock, beside in ((self.training_dock, self.review_dock), (self.export_dock, self.review_dock),
                             (self.queue_dock, self.images_dock)):  # fmt: skip
            self.tabifyDockWidget(beside, dock)
        add_dock_toggles(docks_menu, [self.images_dock, self.review_dock, self.objects_dock, self.training_dock,
                                      self.export_dock, self.queue_dock])  # fmt: skip
        self.review_dock.raise_()
        self.images_dock.raise_()

    def _dock(self, title: str, name: str, widget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self) -> None:
        events = self.session.events
        for event in (events.project, events.selection, events.image, events.edited, events.predictions,
                      events.threshold, events.model, events.saved):  # fmt: skip
            event.connect(lambda _value: self._set_editing_enabled())
        events.saved.connect(lambda _path: self.presenter.refresh_boxes())  # a copy saved is editable
        events.image.connect(lambda iid: self.image_shown.emit(iid) if iid is not None else None)
        events.edited.connect(lambda _change: self._refresh_current_row())
        events.failed.connect(self.services.report_error)
        self.projects.opened.connect(self.project_opened)
        self.predictions.predictions_changed.connect(self.predictions_changed)
        self.presenter.overlays_ready.connect(self.overlays_ready)
        self.canvas.accept_requested.connect(self.predictions.accept_selected)
        self.canvas.zoom_changed.connect(lambda z: self.status.zoom_label.setText(f"zoom {z * 100:.0f}%"))

    def _refresh_current_row(self) -> None:
        iid = self.session.current_image_id
        self.image_panel.model.refresh([iid] if iid is not None else None)

    def _set_editing_enabled(self) -> None:
        for name, enabled in action_states(self.session).items():
            self.actions[name].setEnabled(enabled)

    # ---- the window's own commands ------------------------------------------------------------------------

    def choose_image_root(self) -> None:
        if self.projects.choose_image_root() is not None:
            self.navigation.show_again()

    def show_object(self, image_id: int, layer: str, key: int | None) -> None:
        """Show ``image_id`` and select the box ``key`` of ``layer`` (a prediction below the threshold is shown
        faintly first); the review queue's rows lead here."""
        self.navigation.select_image(image_id)
        if key is None:
            return
        if layer == PREDICTIONS and key not in {b.key for b in self.canvas.prediction_items()}:
            self.session.set_ghosts(True)
        self.presenter.set_layer_visible(layer, True)
        self.canvas.select(layer, [key])
        box = next((b for b in self.canvas.boxes(layer) if b.key == key), None)
        if box is not None:
            self.canvas.ensureVisible(box)

    def return_to_last_image(self) -> None:
        """Show the image the last start showed, when this is the project it showed it in."""
        image_id = last_image_id(self.session, self.services.settings)
        if image_id is not None:
            self.navigation.select_image(image_id)

    def set_dark(self, on: bool) -> None:
        self.theme = "dark" if on else "light"
        self.services.settings.setValue("theme", self.theme)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, self.theme)

    def edit_shortcuts(self) -> bool:
        """Let the user rebind the actions' keys (stored in the settings); True when OK was pressed."""
        dialog = ShortcutDialog(
            self.actions.by_name, self.actions.defaults, self.services.settings, self, self.actions.built_in
        )
        return dialog.exec() == ShortcutDialog.DialogCode.Accepted

    def open_demo(self) -> None:
        """Open the demo project and, when the demo model is installed, predict the image shown (the dataset
        is written and read on the open lane, which also brings in torch, so the Qt thread never waits)."""
        if self.projects.opening:
            return  # another project is on its way in
        root = demo_project.demo_root().absolute()
        self.projects.open_async(
            demo_project.demo_opening_message(root), demo_project.open_demo_project, root,
            then=lambda project: self._use_demo_model(root, project),
        )  # fmt: skip

    def _use_demo_model(self, root: Path, project: Project) -> None:
        if not project.location.absolute().is_relative_to(root):
            return
        weights = demo_project.demo_model_path()
        if weights is None:
            self.services.status(demo_project.NO_MODEL_MESSAGE)
            self.status.model_status.setText("no model (the demo model is not installed)")
            return
        self.session.choose_model(demo_project.demo_model_choice(weights))
        self.predictions.predict_current()
        self.actions["predict_on_navigate"].setChecked(True)

    # ---- keys that reach the window (focus on a slider or list): Space still accepts -----------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.predictions.accept_selected()
            event.accept()
            return
        super().keyReleaseEvent(event)

    # ---- drag and drop, closing ---------------------------------------------------------------------------

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
            self.projects.open_path(paths[0])
        elif images:
            self.projects.open_images(images)
        else:
            self.services.report_error("Drop a folder, a COCO JSON file or image files")

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.projects.may_discard_changes():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Remember the layout and the model for the next start, and stop the background work (the window is
        going away); safe to call twice."""
        if not self._shut_down:
            self._shut_down = True
            keep_window_state(self, self.session, self.services.settings)
        self.projects.shutdown()
        self.training_dock.panel.shutdown()  # the training child saves its position and stops
        self.export_dock.panel.shutdown()
        self.worker.shutdown()
        self.navigation.shutdown()
        self.presenter.overlays.shutdown()
        self.image_panel.model.stop_background_work()


def start_window(
    args: Sequence[str] = (), settings: QSettings | None = None, restore: bool = True
) -> MainWindow:
    """Build and show the window as ``detr-studio`` does (a QApplication must exist). With ``restore`` it
    comes back as the last start left it (size, docks, model) and opens ``args[1]`` when given, else the last
    project, else (a first start) the demo project. Without ``restore`` it opens nothing."""
    window = MainWindow(settings)
    app = QApplication.instance()
    if isinstance(app, QApplication):
        apply_theme(app, window.theme)
    window.setWindowIcon(demo_project.app_icon())
    if restore:
        restore_layout(window, window.services.settings)
    window.show()
    if not restore:
        return window
    if len(args) > 1:
        window.projects.open_path(args[1])
    elif window.projects.reopen_last():
        window.projects.opened.connect(window.return_to_last_image, Qt.ConnectionType.SingleShotConnection)
    else:
        window.open_demo()  # the demo chooses its own model
        return window
    restore_model(window.session, window.services)
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
    window = start_window(args, restore=not smoke_test)
    if smoke_test:
        demo_project.FirstPaintCheck(app, window)
    return int(app.exec())
