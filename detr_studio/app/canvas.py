"""The canvas: the view (`image_view.ImageView`) that shows one image with its boxes, segments, masks and overlays, and turns
mouse and keys into requests (draw, move, resize, nudge, delete, accept, polygons, brush strokes).

Scene coordinates are image pixels. The canvas never changes the document: it emits `box_drawn`,
`box_edited`, `polygon_drawn`, `polygon_edited`, `stroke_finished` and friends, the window turns them into
undoable edits, and then hands the canvas fresh `BoxSpec`s. What the mouse does depends on the mode, one tool
each (`tools`: select, draw, mask_box, polygon, brush, erase, probe). Layers (annotations, predictions, masks,
attention) show and hide as groups; pens are cosmetic and labels and handles ignore the zoom, so they stay
readable at any scale. The items: `box_items` (boxes), `polygon_item` (the selected annotation's polygon).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QWidget

from .box_items import (
    ANNOTATIONS,
    ATTENTION,
    LAYERS,
    MASKS,
    PREDICTIONS,
    SEGMENTS,
    BoxItem,
    BoxSpec,
    HandleItem,
    LabelItem,
)
from .image_view import ImageView
from .polygon_item import PolygonItem
from .tool_box import BoxTool
from .tool_brush import MAX_RADIUS, MIN_RADIUS, BrushTool, Stroke
from .tool_polygon import PolygonTool
from .tool_select import SelectTool, step_through
from .tools import ProbeTool, Tool

__all__ = [
    "ANNOTATIONS",
    "ATTENTION",
    "LAYERS",
    "MASKS",
    "MODES",
    "PREDICTIONS",
    "BoxSpec",
    "Canvas",
    "Stroke",
]
MODES = ("select", "draw", "mask_box", "polygon", "brush", "erase", "probe")


class Canvas(ImageView):
    """Shows one image; see the module docstring. Modes (`MODES`): "select", "draw" (a box, W), "mask_box" (a
    box whose mask the model gives, M), "polygon" (N), "brush" (B), "erase" (Shift+B) and "probe" (click a
    pixel to see where the encoder looks from there)."""

    box_drawn = Signal(QRectF)
    mask_box_drawn = Signal(QRectF)
    polygon_drawn = Signal(list)  # [(x, y), ...] image pixels
    polygon_edited = Signal(int, list)  # annotation id, its new polygons [[x1, y1, ...], ...]
    stroke_finished = Signal(object)  # Stroke
    brush_changed = Signal(float)  # the brush radius, image pixels
    message = Signal(str)
    box_edited = Signal(int, QRectF)  # annotation id, new rect in image pixels
    selection_changed = Signal()
    delete_requested = Signal()
    accept_requested = Signal()
    relabel_requested = Signal()
    nudge_requested = Signal(float, float)
    mode_changed = Signal(str)
    pixel_clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.scene().selectionChanged.connect(self.selection_changed)
        self.mode = "select"
        self._boxes: dict[str, list[BoxItem]] = {ANNOTATIONS: [], PREDICTIONS: []}
        self._segment_ids: np.ndarray | None = None  # [H, W] panoptic segment id of each pixel, when shown
        self._polygon: PolygonItem | None = None
        self._pan_from: QPointF | None = None
        self._space_down = False
        self._space_panned = False
        self._cursor_pos = QPointF(-1.0, -1.0)  # where the mouse last was (image pixels): Tab picks there
        self.brush_radius = 10.0
        self.tools: dict[str, Tool] = {
            "select": SelectTool(self),
            "draw": BoxTool(
                self, "draw", lambda rect: self._drawn(self.box_drawn, rect), QColor(255, 255, 255)
            ),
            "mask_box": BoxTool(
                self, "mask_box", lambda rect: self._drawn(self.mask_box_drawn, rect), QColor(255, 210, 60)
            ),
            "polygon": PolygonTool(self, lambda points: self._drawn(self.polygon_drawn, points)),
            "brush": BrushTool(self, False, lambda: self.brush_radius, self.stroke_finished.emit),
            "erase": BrushTool(self, True, lambda: self.brush_radius, self.stroke_finished.emit),
            "probe": ProbeTool(self, self.pixel_clicked),
        }
        self.tool: Tool = self.tools["select"]

    # ---- content -----------------------------------------------------------------------------------------

    def show_image(self, image_id: int | None, width: int, height: int) -> None:
        """Start showing an image of this size (its pixels come later with `set_pixmap`)."""
        self.tool.deactivate()
        self.show_blank(image_id, width, height)
        self.set_segment_map(None)
        self.set_polygon(None)
        self.set_annotations([])
        self.set_predictions([], [])
        if width > 0 and height > 0:
            self.fit()
        else:
            self.set_zoom(1.0)  # nothing to fit: an image whose size is not known

    def box_changed(self, key: int, rect: QRectF) -> None:
        """A box was moved or resized by the user (`BoxHost`)."""
        self.box_edited.emit(key, rect)

    def item_double_clicked(self, item: BoxItem) -> None:
        """A double click on a box: relabel an annotation or segment, accept a prediction."""
        if item.kind in (ANNOTATIONS, SEGMENTS):
            self.relabel_requested.emit()
        else:
            self.accept_requested.emit()

    def set_annotations(self, specs: list[BoxSpec], kind: str = ANNOTATIONS) -> None:
        """The annotations' boxes (``kind`` SEGMENTS: a panoptic image's segments, picked by their pixels)."""
        self._replace_boxes(ANNOTATIONS, [(kind, s) for s in specs], z=10)

    def set_predictions(self, specs: list[BoxSpec], ghosts: list[BoxSpec]) -> None:
        items = [("ghost", s) for s in ghosts] + [(PREDICTIONS, s) for s in specs]
        self._replace_boxes(PREDICTIONS, items, z=5)

    def _replace_boxes(self, layer: str, items: list[tuple[str, BoxSpec]], z: float) -> None:
        selected = {(b.kind, b.key) for b in self._boxes[layer] if b.isSelected()}
        scene = self.scene()
        scene.blockSignals(True)
        for box in self._boxes[layer]:
            scene.removeItem(box)
        new = []
        for kind, spec in items:
            box = BoxItem(self, kind, spec)
            box.setZValue(z + (0.5 if kind != "ghost" else 0.0))
            box.setVisible(self.visible_layers[layer])
            scene.addItem(box)
            if (kind, spec.key) in selected:
                box.setSelected(True)
            new.append(box)
        self._boxes[layer] = new
        scene.blockSignals(False)
        self.selection_changed.emit()

    def set_mask_overlay(self, image: QImage | None) -> None:
        super().set_mask_overlay(image)
        self.drop_stroke_preview()  # the stroke is in the mask now

    def drop_stroke_preview(self) -> None:
        """Remove the last brush or eraser stroke drawn over the masks."""
        for name in ("brush", "erase"):
            self.tools[name].drop_preview()  # type: ignore[attr-defined]

    def set_segment_map(self, ids: np.ndarray | None) -> None:
        """The [H, W] segment ids of the panoptic image shown (None: none): a click on a segment's pixels
        picks it."""
        self._segment_ids = ids

    def segment_at(self, pos: QPointF) -> int | None:
        """The id of the segment whose pixel is at ``pos`` (None: no map, void, or outside the image)."""
        ids = self._segment_ids
        x, y = int(np.floor(pos.x())), int(np.floor(pos.y()))
        if ids is None or not (0 <= y < ids.shape[0] and 0 <= x < ids.shape[1]):
            return None
        sid = int(ids[y, x])
        return sid or None

    def set_polygon(
        self,
        key: int | None,
        polygons: list[list[float]] | None = None,
        colour: tuple[int, int, int] = (255, 255, 255),
        editable: bool = True,
    ) -> None:
        """Show the polygon of annotation ``key`` with its vertices (None: no polygon)."""
        if self._polygon is not None:
            self.scene().removeItem(self._polygon)
            self._polygon = None
        if key is not None and polygons:
            self._polygon = PolygonItem(self, key, polygons, colour, editable)
            self._polygon.setVisible(self.visible_layers[ANNOTATIONS])
            self.scene().addItem(self._polygon)

    def polygon(self) -> PolygonItem | None:
        """The polygon shown for editing (None: none)."""
        return self._polygon if self._polygon is not None and self._polygon.isVisible() else None

    def polygon_changed(self, key: int, polygons: list[list[float]]) -> None:
        """The user moved, inserted or deleted a vertex (`PolygonHost`)."""
        self.polygon_edited.emit(key, polygons)

    def delete_vertex(self) -> bool:
        """Del over a vertex of the polygon shown: delete it (or say why not); False when the cursor is over
        no vertex (then Del is for the selected annotations)."""
        polygon = self.polygon()
        if polygon is None or polygon.active is None:
            return False
        polygon.delete_active_vertex()
        return True

    def report(self, message: str) -> None:
        self.message.emit(message)

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        self.set_picture_visible(layer, visible)
        if layer in self._boxes:
            for box in self._boxes[layer]:
                box.setVisible(visible)
                if not visible:
                    box.setSelected(False)
        if layer == ANNOTATIONS and self._polygon is not None:
            self._polygon.setVisible(visible)

    def _zoomed(self) -> None:
        if self._polygon is not None:
            self._polygon.zoom_changed()
        for layer in (ANNOTATIONS, PREDICTIONS):
            for box in self._boxes[layer]:
                box.place_label()  # a tab at the image's edge goes inside its box at this zoom
        super()._zoomed()

    # ---- finding things ----------------------------------------------------------------------------------

    def boxes(self, layer: str) -> list[BoxItem]:
        """Items of a layer: ANNOTATIONS, or PREDICTIONS (which includes ghosts)."""
        return list(self._boxes[layer])

    def prediction_items(self) -> list[BoxItem]:
        return [b for b in self._boxes[PREDICTIONS] if b.kind == PREDICTIONS]

    def selected_annotation_ids(self) -> list[int]:
        return [b.key for b in self._boxes[ANNOTATIONS] if b.kind == ANNOTATIONS and b.isSelected()]

    def selected_prediction_ids(self) -> list[int]:
        return [b.key for b in self._boxes[PREDICTIONS] if b.isSelected()]

    def selected_segment_ids(self) -> list[int]:
        return [b.key for b in self._boxes[ANNOTATIONS] if b.kind == SEGMENTS and b.isSelected()]

    def selected_items(self) -> list[BoxItem]:
        return [b for layer in self._boxes.values() for b in layer if b.isSelected()]

    def select_items(self, items: Sequence[BoxItem]) -> None:
        """Select these items and nothing else (one selection change)."""
        scene = self.scene()
        scene.blockSignals(True)
        scene.clearSelection()
        for item in items:
            item.setSelected(True)
        scene.blockSignals(False)
        self.selection_changed.emit()

    def objects_at(self, pos: QPointF) -> list[BoxItem]:
        """The shown objects under ``pos``, smallest first: the segment whose pixel it is and every box
        (annotation, prediction, ghost) containing it, by area (a segment's is its pixel count)."""
        found: list[BoxItem] = []
        sid = self.segment_at(pos)
        if sid is not None:
            found += [
                b for b in self._boxes[ANNOTATIONS] if b.kind == SEGMENTS and b.key == sid and b.isVisible()
            ]
        found += [
            item
            for item in self.scene().items(pos)
            if isinstance(item, BoxItem)
            and item.kind != SEGMENTS
            and item.isVisible()
            and item.rect().contains(pos)
        ]
        found.sort(key=lambda b: (b.spec.size, b.kind == "ghost"))
        return found

    def tab_owner_at(self, event: QMouseEvent) -> BoxItem | None:
        """The box whose label tab is under the mouse (None: no tab there)."""
        for item in self.items(event.position().toPoint()):
            if isinstance(item, LabelItem) and isinstance(item.parentItem(), BoxItem) and item.isVisible():
                return item.parentItem()  # type: ignore[return-value]
        return None

    def handle_at(self, event: QMouseEvent) -> bool:
        return any(isinstance(i, HandleItem) for i in self.items(event.position().toPoint()))

    def cycle(self, step: int = 1) -> BoxItem | None:
        """Tab (1) / Shift+Tab (-1): select the next (previous) object under the cursor; returns it."""
        target = step_through(self.objects_at(self._cursor_pos), self.selected_items(), step)
        if target is None:
            self.message.emit("Nothing under the cursor to step through (Tab picks among the objects there)")
            return None
        self.select_items([target])
        self.ensureVisible(target)
        return target

    def select(self, layer: str, keys: list[int]) -> None:
        """Select the boxes ``keys`` of ``layer`` (and nothing else); in a panoptic image, ANNOTATIONS are
        its segments."""
        if layer == ANNOTATIONS:
            self.select_keys(keys, (), keys)
        else:
            self.select_keys((), keys)

    def select_keys(
        self, annotation_ids: Iterable[int], query_ids: Iterable[int], segment_ids: Iterable[int] = ()
    ) -> None:
        """Select these annotations, predictions and segments (shown ones only) and nothing else."""
        wanted = {ANNOTATIONS: set(annotation_ids), PREDICTIONS: set(query_ids), SEGMENTS: set(segment_ids)}
        items = [
            box
            for layer in self._boxes.values()
            for box in layer
            if box.key in wanted[PREDICTIONS if box.kind == "ghost" else box.kind] and box.isVisible()
        ]
        self.select_items(items)

    # ---- modes -------------------------------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        if mode not in self.tools:
            raise ValueError(f"unknown canvas mode {mode!r}")
        self.tool.deactivate()
        self.mode = mode
        self.tool = self.tools[mode]
        self.setDragMode(self.tool.drag_mode)
        self.viewport().setCursor(self.tool.cursor)
        self.tool.activate()
        self.mode_changed.emit(mode)

    def _drawn(self, signal, value) -> None:
        """A box or polygon tool finished a shape: back to selecting, then the request."""
        self.set_mode("select")
        signal.emit(value)

    def scale_brush(self, factor: float) -> float:
        """Make the brush ``factor`` times larger ([ and ]); returns the new radius (image pixels)."""
        self.brush_radius = min(max(self.brush_radius * factor, MIN_RADIUS), MAX_RADIUS)
        for name in ("brush", "erase"):
            self.tools[name].resize_circle()  # type: ignore[attr-defined]
        self.brush_changed.emit(self.brush_radius)
        return self.brush_radius

    # ---- mouse -------------------------------------------------------------------------------------------

    def _scene_pos(self, event: QMouseEvent) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_down
        ):
            self._pan_from = event.position()
            self._space_panned = self._space_panned or self._space_down
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if self.tool.press(event, self._scene_pos(event)):
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            event.accept()
            return
        pos = self._scene_pos(event)
        self._cursor_pos = pos
        if self.tool.move(event, pos):
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self.viewport().setCursor(self.tool.cursor)
            event.accept()
            return
        if self.tool.release(event, self._scene_pos(event)):
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.tool.double_click(event, self._scene_pos(event)):
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    # ---- keys --------------------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if self.tool.key(event):
            event.accept()
            return
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_down = True
                self._space_panned = False
            event.accept()
            return
        arrows = {
            Qt.Key.Key_Left: (-1.0, 0.0),
            Qt.Key.Key_Right: (1.0, 0.0),
            Qt.Key.Key_Up: (0.0, -1.0),
            Qt.Key.Key_Down: (0.0, 1.0),
        }
        if key in arrows and self.selected_annotation_ids():
            step = 10.0 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else 1.0
            dx, dy = arrows[key]
            self.nudge_requested.emit(dx * step, dy * step)
            event.accept()
            return
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            if not self.delete_vertex():
                self.delete_requested.emit()
            event.accept()
            return
        if key == Qt.Key.Key_Escape:
            if self.mode != "select":
                self.set_mode("select")
            else:
                self.scene().clearSelection()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            tapped = self._space_down and not self._space_panned
            self._space_down = False
            if tapped:
                self.accept_requested.emit()  # a tap accepts; a hold with a drag pans
            self._space_panned = False
            event.accept()
            return
        super().keyReleaseEvent(event)
