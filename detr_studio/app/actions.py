"""The window's actions (every menu entry, toolbar button and shortcut), its menus and its toolbar.

`ActionRegistry` makes each QAction with its default keys, or the keys the user bound it to
(``shortcuts/<name>`` in the settings, see `shortcuts`), and keeps them by name. `define_actions` is the one
table of what the window can do, each entry bound to the part of the window that does it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QWidget

from detr_studio.session import Session

from .canvas import ANNOTATIONS, ATTENTION, MASKS, PREDICTIONS, Canvas
from .edit_commands import EditController
from .mask_commands import MaskController
from .navigation import Navigator
from .opening import ProjectController
from .panoptic_commands import PanopticController
from .predicting import PredictionController
from .presenter import ScenePresenter
from .shortcuts import saved_keys

Slot = Callable[..., object]
TOOLS = {"select": "select_tool", "draw": "draw", "polygon": "polygon", "brush": "brush", "erase": "eraser",
         "mask_box": "mask_from_box"}  # fmt: skip
NEEDS_PROJECT = ("save", "save_as", "mark_reviewed", "next", "previous", "next_unreviewed", "predict_all")


class ActionRegistry:
    """QActions by name (``by_name``) with their default keys (``defaults``), added to ``window`` so their
    shortcuts work wherever the focus is in it; ``built_in`` are keys the canvas handles itself (Space
    accepts), shown with the action but not rebindable."""

    def __init__(self, window: QMainWindow, settings: QSettings):
        self.window = window
        self.settings = settings
        self.by_name: dict[str, QAction] = {}
        self.defaults: dict[str, list[str]] = {}
        self.built_in: dict[str, list[str]] = {}

    def __getitem__(self, name: str) -> QAction:
        return self.by_name[name]

    def add(
        self,
        name: str,
        text: str,
        slot: Slot | None = None,
        shortcut: str | Sequence[str] | None = None,
        *,
        checkable: bool = False,
        checked: bool = False,
        tip: str = "",
        built_in: str | None = None,
        widget: QWidget | None = None,
    ) -> QAction:
        """One action; ``widget`` given, its keys work only while that widget has the focus (Tab on the
        canvas steps through objects, and still moves the focus everywhere else)."""
        action = QAction(text, self.window)
        keys = [shortcut] if isinstance(shortcut, str) else list(shortcut or [])
        self.defaults[name] = keys
        if built_in is not None:
            self.built_in[name] = [built_in]
        keys = saved_keys(self.settings, name, keys)  # rebound in the settings: shortcuts/<name>
        if keys:
            action.setShortcuts([QKeySequence(k) for k in keys])
        action.setCheckable(checkable)
        if checkable:
            action.setChecked(checked)
        shown = keys[0] if keys else built_in
        if tip or shown:
            action.setToolTip(f"{tip or text.replace('&', '')}" + (f" ({shown})" if shown else ""))
        if slot is not None:
            if checkable:
                action.toggled.connect(slot)
            else:
                action.triggered.connect(lambda _checked=False: slot())
        if widget is not None:
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            widget.addAction(action)
        else:
            self.window.addAction(action)
        self.by_name[name] = action
        return action

    def set_enabled(self, names: Sequence[str], enabled: bool) -> None:
        for name in names:
            self.by_name[name].setEnabled(enabled)


@dataclass(frozen=True)
class WindowParts:
    """The parts of the window that actions are bound to, and the window's own slots."""

    projects: ProjectController
    navigation: Navigator
    editing: EditController
    masks: MaskController
    segments: PanopticController
    predictions: PredictionController
    presenter: ScenePresenter
    canvas: Canvas
    set_autosave: Slot
    set_dark: Slot
    edit_shortcuts: Slot
    open_demo: Slot
    choose_image_root: Slot
    quit: Slot


def define_actions(a: ActionRegistry, parts: WindowParts, autosave: bool) -> None:
    """Every action of the window, with its default keys."""
    p, nav, ed, pr, view, canvas = (parts.projects, parts.navigation, parts.editing, parts.predictions,
                                    parts.presenter, parts.canvas)  # fmt: skip
    a.add("open_folder", "Open &Folder…", p.choose_folder, "Ctrl+O")
    a.add("open_images", "Open &Images…", p.choose_images, "Ctrl+Shift+O")
    a.add("open_coco", "Open &COCO Dataset…", p.choose_coco, "Ctrl+Alt+O")
    a.add("set_image_root", "Set Image Folder…", parts.choose_image_root)
    a.add("save", "&Save", p.save, "Ctrl+S")
    a.add("save_as", "Save &As…", p.save_as_dialog, "Ctrl+Shift+S")
    a.add("autosave", "Autosave", parts.set_autosave, checkable=True, checked=autosave)
    a.add("quit", "&Quit", parts.quit, "Ctrl+Q")
    a.add("undo", "&Undo", ed.undo, "Ctrl+Z")
    a.add("redo", "&Redo", ed.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
    a.add("select_tool", "Select", lambda: canvas.set_mode("select"),
          tip="Select, move and resize (Esc leaves any other tool)")  # fmt: skip
    a.add("draw", "Draw Box", ed.start_drawing, "W", tip="Draw a box")
    a.add("delete", "Delete", ed.delete_selected, "Del")
    a.add("duplicate", "Duplicate", ed.duplicate_selected, "Ctrl+D")
    a.add("relabel", "Relabel…", ed.relabel_dialog, "L")
    a.add(
        "accept", "Accept (Space)", pr.accept_selected, tip="Accept the selected prediction", built_in="Space"
    )
    a.add("reject", "Reject", pr.reject_selected, "X")
    a.add("accept_all", "Accept All Above Threshold", pr.accept_all, "Ctrl+Return")
    a.add("mark_reviewed", "Mark Reviewed", ed.toggle_reviewed, "R")
    define_mask_actions(a, parts)
    a.add("next", "Next Image", nav.next_image, "D")
    a.add("previous", "Previous Image", nav.previous_image, "A")
    a.add("next_unreviewed", "Next Unreviewed", nav.next_unreviewed, "Shift+D")
    a.add("fit", "Fit", canvas.fit, "F")
    a.add("actual_size", "100%", canvas.actual_size, "Ctrl+1")
    a.add("zoom_in", "Zoom In", lambda: canvas.zoom_by(1.25), "Ctrl+=")
    a.add("zoom_out", "Zoom Out", lambda: canvas.zoom_by(0.8), "Ctrl+-")
    for layer, key in (
        (ANNOTATIONS, "Ctrl+2"),
        (PREDICTIONS, "Ctrl+3"),
        (MASKS, "Ctrl+4"),
        (ATTENTION, "Ctrl+5"),
    ):
        a.add(f"layer_{layer}", layer.capitalize(), lambda on, layer=layer: view.set_layer_visible(layer, on), key,
              checkable=True, checked=True)  # fmt: skip
    a.add("probe", "Probe Encoder Attention", view.set_probe, "E", checkable=True)
    a.add("dark_theme", "Dark Theme", parts.set_dark, checkable=True)
    a.add("choose_model", "Choose Model…", pr.choose_model, "Ctrl+M")
    a.add("predict", "Predict", pr.predict_current, "P")
    a.add("predict_all", "Predict All", pr.predict_all, "Ctrl+P")
    a.add("predict_on_navigate", "Predict Each Image Shown", pr.set_predict_on_navigate, checkable=True)
    a.add("cancel_batch", "Cancel Batch", pr.cancel_batch)
    a.add("classes", "&Classes…", ed.manage_classes, tip="Add, rename, merge and colour classes")
    a.add("shortcuts", "&Keyboard Shortcuts…", parts.edit_shortcuts)
    for k in range(1, 10):
        a.add(f"class_{k}", f"Relabel to Class {k}", lambda k=k: ed.relabel_to_index(k - 1), str(k))
    a.add("open_demo", "Open &Demo Project", parts.open_demo)
    # the other direction: the state shown by checkable actions follows the parts
    view.layer_toggled.connect(lambda layer, on: a[f"layer_{layer}"].setChecked(on))
    canvas.mode_changed.connect(lambda mode: a["probe"].setChecked(mode == "probe"))
    for mode, name in TOOLS.items():  # a tool's button shows whether the canvas is in its mode
        a[name].setCheckable(True)
        a[name].setChecked(mode == canvas.mode)
        canvas.mode_changed.connect(lambda now, mode=mode, name=name: a[name].setChecked(now == mode))
    ed.undo_redo = [a["undo"], a["redo"]]
    pr.predict_all_action = a["predict_all"]


def define_mask_actions(a: ActionRegistry, parts: WindowParts) -> None:
    """The mask tools (in the spirit of labelme and CVAT: N polygon, B brush, [ ] its size)."""
    m, canvas = parts.masks, parts.canvas
    a.add("polygon", "Draw Polygon", lambda: m.start("polygon"), "N",
          tip="Click the vertices; click the first, double-click or press Enter to close")  # fmt: skip
    a.add("brush", "Brush", lambda: m.start("brush"), "B", tip="Paint into the selected mask")
    a.add("eraser", "Eraser", lambda: m.start("erase"), "Shift+B", tip="Erase from the selected mask")
    a.add("brush_smaller", "Smaller Brush", m.brush_smaller, "[")
    a.add("brush_larger", "Larger Brush", m.brush_larger, "]")
    a.add("mask_from_box", "Mask from Box", lambda: m.start("mask_box"), "M",
          tip="Draw a box: the model's mask head gives the mask of the object in it")  # fmt: skip
    a.add("fill_holes", "Fill Holes", m.fill_holes, "H", tip="Fill the holes of the selected masks")
    a.add("to_polygons", "Mask to Polygons", m.to_polygons, "Shift+P",
          tip="Trace the selected masks into polygons (the panel's tolerance)")  # fmt: skip
    a.add("to_rle", "Mask to RLE", m.to_rle, "Shift+R", tip="Store the selected masks as RLE")
    a.add("merge_segments", "Merge Segments", parts.segments.merge, "G",
          tip="Merge the selected panoptic segments into one")  # fmt: skip
    a.add("split_segment", "Split Segment", parts.segments.start_split, "K",
          tip="The next polygon or brush stroke cuts the selected segment in two")  # fmt: skip
    a.add("next_object", "Next Object Under Cursor", m.next_object, "Tab", widget=canvas)
    a.add("previous_object", "Previous Object Under Cursor", m.previous_object, "Shift+Tab", widget=canvas)


def action_states(session: Session) -> dict[str, bool]:
    """Which actions can do something now: editing ones need an editable document (instances: boxes and
    masks; panoptic: segments), and those that act on the selection need one (accept and reject a prediction,
    delete, duplicate and relabel an annotation or segment, the mask commands, merge and split)."""
    editable, selection = session.editable, session.selection
    segments = session.panoptic_editable
    visible = session.visible_predictions() if session.doc is not None else None
    annotations = editable and bool(selection.annotation_ids)
    chosen = annotations or (segments and bool(selection.segment_ids))
    return {
        **dict.fromkeys(NEEDS_PROJECT, session.doc is not None),
        "mark_reviewed": session.doc is not None and not session.doc.read_only,
        "draw": editable,
        "duplicate": annotations,
        **dict.fromkeys(("delete", "relabel"), chosen),
        **dict.fromkeys(("fill_holes", "to_polygons", "to_rle"), annotations),
        **dict.fromkeys(("polygon", "brush", "eraser", "mask_from_box"), editable or segments),
        "merge_segments": segments and len(selection.segment_ids) > 1,
        "split_segment": segments and len(selection.segment_ids) == 1,
        "accept": (editable or segments) and bool(selection.query_ids),
        "reject": bool(selection.query_ids),
        "accept_all": (editable or segments) and visible is not None and len(visible) > 0,
    }


def build_menus(window: QMainWindow, a: ActionRegistry, projects: ProjectController) -> QMenu:
    """The menu bar; returns the Window menu (the docks add their toggles to it)."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    for name in ("open_folder", "open_images", "open_coco"):
        file_menu.addAction(a[name])
    recent_menu = file_menu.addMenu("Recent Projects")
    recent_menu.aboutToShow.connect(lambda: projects.fill_recent_menu(recent_menu))
    file_menu.addAction(a["set_image_root"])
    _fill(file_menu, a, (None, "save", "save_as", "autosave", None, "quit"))
    _fill(bar.addMenu("&Edit"), a, ("undo", "redo", None, "draw", "delete", "duplicate", "relabel", None,
                                    "accept", "reject", "accept_all", "mark_reviewed", None, "classes",
                                    "shortcuts"))  # fmt: skip
    _fill(bar.addMenu("&Tools"), a, ("select_tool", "draw", "polygon", "brush", "eraser", "mask_from_box", None,
                                     "brush_smaller", "brush_larger", "fill_holes", "to_polygons", "to_rle", None,
                                     "merge_segments", "split_segment", None, "next_object",
                                     "previous_object"))  # fmt: skip
    _fill(bar.addMenu("&View"), a, ("fit", "actual_size", "zoom_in", "zoom_out", None, "layer_annotations",
                                    "layer_predictions", "layer_masks", "layer_attention", "probe", None,
                                    "dark_theme"))  # fmt: skip
    _fill(bar.addMenu("&Go"), a, ("next", "previous", "next_unreviewed"))
    _fill(bar.addMenu("&Model"), a, ("choose_model", "predict", "predict_all", "predict_on_navigate",
                                     "cancel_batch"))  # fmt: skip
    docks_menu = bar.addMenu("&Window")
    bar.addMenu("&Help").addAction(a["open_demo"])
    return docks_menu


def build_toolbar(window: QMainWindow, a: ActionRegistry) -> None:
    bar = window.addToolBar("Main")
    bar.setObjectName("main-toolbar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for name in ("open_folder", "open_coco", "save", None, "undo", "redo", None, "fit",
                 "actual_size", None, "choose_model", "predict", "predict_all"):  # fmt: skip
        bar.addAction(a[name]) if name else bar.addSeparator()
    tools = window.addToolBar("Tools")
    tools.setObjectName("tools-toolbar")
    tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for name in ("select_tool", "draw", "polygon", "brush", "eraser", "mask_from_box"):
        tools.addAction(a[name])


def add_dock_toggles(menu: QMenu, docks: Sequence[QDockWidget]) -> None:
    for dock in docks:
        menu.addAction(dock.toggleViewAction())


def _fill(menu: QMenu, a: ActionRegistry, names: Sequence[str | None]) -> None:
    for name in names:
        menu.addAction(a[name]) if name else menu.addSeparator()
