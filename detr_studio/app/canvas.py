"""The canvas: a QGraphicsView that shows one image with its boxes and overlays, and turns mouse and keys into
requests (draw, move, resize, nudge, delete, accept).

Scene coordinates are image pixels. The canvas never changes the document: it emits `box_drawn`,
`box_edited` and friends, the window turns them into undoable edits, and then hands the canvas fresh
`BoxSpec`s. Layers (annotations, predictions, masks, attention) show and hide as groups; pens are cosmetic and
labels and handles ignore the zoom, so they stay readable at any scale. The box items: `box_items`.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene, QGraphicsView, QWidget

from .box_items import ANNOTATIONS, ATTENTION, LAYERS, MASKS, MIN_BOX_PX, PREDICTIONS, BoxItem, BoxSpec

__all__ = ["ANNOTATIONS", "ATTENTION", "LAYERS", "MASKS", "PREDICTIONS", "BoxSpec", "Canvas"]
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0


class Canvas(QGraphicsView):
    """Shows one image; see the module docstring. Modes: "select", "draw" (W) and "probe" (click a pixel to
    see where the encoder looks from there)."""

    box_drawn = Signal(QRectF)
    box_edited = Signal(int, QRectF)  # annotation id, new rect in image pixels
    selection_changed = Signal()
    delete_requested = Signal()
    accept_requested = Signal()
    relabel_requested = Signal()
    nudge_requested = Signal(float, float)
    zoom_changed = Signal(float)
    mode_changed = Signal(str)
    pixel_clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        # no antialiasing: boxes are axis-aligned, and antialiased translucent fills cost 3x with 1,000 boxes
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setBackgroundBrush(QBrush(QColor(48, 48, 52)))
        self.scene().selectionChanged.connect(self.selection_changed)

        self.image_id: int | None = None
        self.image_size: tuple[int, int] = (0, 0)  # width, height
        self.mode = "select"
        self.visible_layers = dict.fromkeys(LAYERS, True)
        self.mask_opacity = 0.45
        self.has_pixmap = False
        self.notice: str | None = None
        self._pixmap_item = QGraphicsPixmapItem()
        self._pixmap_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._mask_item = QGraphicsPixmapItem()
        self._attention_item = QGraphicsPixmapItem()
        for z, item in enumerate((self._pixmap_item, self._mask_item, self._attention_item)):
            item.setZValue(z)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.scene().addItem(item)
        self._mask_item.setOpacity(self.mask_opacity)
        self._attention_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._boxes: dict[str, list[BoxItem]] = {ANNOTATIONS: [], PREDICTIONS: []}
        self._draft: QGraphicsRectItem | None = None
        self._draft_start: QPointF | None = None
        self._pan_from: QPointF | None = None
        self._space_down = False
        self._space_panned = False

    # ---- content -----------------------------------------------------------------------------------------

    def show_image(self, image_id: int | None, width: int, height: int) -> None:
        """Start showing an image of this size (its pixels come later with `set_pixmap`)."""
        self.image_id = image_id
        self.image_size = (width, height)
        self.has_pixmap = False
        self.set_notice(None)
        self._pixmap_item.setPixmap(QPixmap())
        if width > 0 and height > 0:
            blank = QPixmap(width, height)
            blank.fill(QColor(30, 30, 34))
            self._pixmap_item.setPixmap(blank)
        self.set_mask_overlay(None)
        self.set_attention(None)
        self.set_annotations([])
        self.set_predictions([], [])
        self.scene().setSceneRect(QRectF(0, 0, max(width, 1), max(height, 1)))
        if width > 0 and height > 0:
            self.fit()
        else:
            self.set_zoom(1.0)  # nothing to fit: an image whose size is not known

    def set_notice(self, text: str | None) -> None:
        """A message drawn over the middle of the view (an image that cannot be shown); None removes it."""
        self.notice = text
        self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawForeground(painter, rect)
        if not self.notice:
            return
        painter.save()
        painter.resetTransform()  # viewport pixels
        area = QRectF(self.viewport().rect()).adjusted(24, 24, -24, -24)
        painter.setPen(QColor(235, 235, 235))
        painter.drawText(area, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.notice)
        painter.restore()

    def set_pixmap(self, image_id: int, image: QImage) -> None:
        if image_id != self.image_id:
            return
        self._pixmap_item.setPixmap(QPixmap.fromImage(image))
        self.has_pixmap = True
        self._update_pixmap_mode()

    def image_bounds(self) -> QRectF:
        return QRectF(0, 0, self.image_size[0], self.image_size[1])

    def box_changed(self, key: int, rect: QRectF) -> None:
        """A box was moved or resized by the user (`BoxHost`)."""
        self.box_edited.emit(key, rect)

    def box_double_clicked(self, kind: str) -> None:
        """A double click on a box: relabel an annotation, accept a prediction (`BoxHost`)."""
        if kind == ANNOTATIONS:
            self.relabel_requested.emit()
        else:
            self.accept_requested.emit()

    def set_annotations(self, specs: list[BoxSpec]) -> None:
        self._replace_boxes(ANNOTATIONS, [(ANNOTATIONS, s) for s in specs], z=10)

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
        self._mask_item.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
        self._mask_item.setVisible(image is not None and self.visible_layers[MASKS])

    def set_mask_opacity(self, opacity: float) -> None:
        self.mask_opacity = min(max(opacity, 0.0), 1.0)
        self._mask_item.setOpacity(self.mask_opacity)

    def set_attention(self, image: QImage | None, cell: tuple[float, float] = (1.0, 1.0)) -> None:
        """An attention map of feature cells; ``cell`` is the (x, y) image pixels one cell covers."""
        if image is None:
            self._attention_item.setPixmap(QPixmap())
            self._attention_item.setVisible(False)
            return
        self._attention_item.setPixmap(QPixmap.fromImage(image))
        self._attention_item.setTransform(QTransform.fromScale(cell[0], cell[1]))
        self._attention_item.setVisible(self.visible_layers[ATTENTION])

    @property
    def has_attention(self) -> bool:
        return not self._attention_item.pixmap().isNull()

    @property
    def has_mask_overlay(self) -> bool:
        return not self._mask_item.pixmap().isNull()

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        self.visible_layers[layer] = visible
        if layer in self._boxes:
            for box in self._boxes[layer]:
                box.setVisible(visible)
                if not visible:
                    box.setSelected(False)
        elif layer == MASKS:
            self._mask_item.setVisible(visible and self.has_mask_overlay)
        elif layer == ATTENTION:
            self._attention_item.setVisible(visible and self.has_attention)

    # ---- finding things ----------------------------------------------------------------------------------

    def boxes(self, layer: str) -> list[BoxItem]:
        """Items of a layer: ANNOTATIONS, or PREDICTIONS (which includes ghosts)."""
        return list(self._boxes[layer])

    def prediction_items(self) -> list[BoxItem]:
        return [b for b in self._boxes[PREDICTIONS] if b.kind == PREDICTIONS]

    def selected_annotation_ids(self) -> list[int]:
        return [b.key for b in self._boxes[ANNOTATIONS] if b.isSelected()]

    def selected_prediction_ids(self) -> list[int]:
        return [b.key for b in self._boxes[PREDICTIONS] if b.isSelected()]

    def select(self, layer: str, keys: list[int]) -> None:
        """Select the boxes ``keys`` of ``layer`` (and nothing else)."""
        if layer == ANNOTATIONS:
            self.select_keys(keys, ())
        else:
            self.select_keys((), keys)

    def select_keys(self, annotation_ids: Iterable[int], query_ids: Iterable[int]) -> None:
        """Select these annotations and predictions (shown ones only) and nothing else."""
        wanted = {ANNOTATIONS: set(annotation_ids), PREDICTIONS: set(query_ids)}
        scene = self.scene()
        scene.blockSignals(True)
        scene.clearSelection()
        for layer, keys in wanted.items():
            for box in self._boxes[layer]:
                if box.key in keys and box.isVisible():
                    box.setSelected(True)
        scene.blockSignals(False)
        self.selection_changed.emit()

    # ---- zoom and pan ------------------------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float) -> None:
        factor = min(max(factor, MIN_ZOOM), MAX_ZOOM)
        self.setTransform(QTransform.fromScale(factor, factor))
        self._zoomed()

    def zoom_by(self, step: float) -> None:
        target = min(max(self.zoom * step, MIN_ZOOM), MAX_ZOOM)
        ratio = target / self.zoom
        self.scale(ratio, ratio)
        self._zoomed()

    def fit(self) -> None:
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._zoomed()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def _zoomed(self) -> None:
        self._update_pixmap_mode()
        for layer in (ANNOTATIONS, PREDICTIONS):
            for box in self._boxes[layer]:
                box.place_label()  # a tab at the image's edge goes inside its box at this zoom
        self.zoom_changed.emit(self.zoom)

    def _update_pixmap_mode(self) -> None:
        mode = Qt.TransformationMode.FastTransformation  # crisp pixels when zoomed in
        if self.zoom < 1.0:
            mode = Qt.TransformationMode.SmoothTransformation
        self._pixmap_item.setTransformationMode(mode)
        self._mask_item.setTransformationMode(mode)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps)
        event.accept()

    # ---- modes -------------------------------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        if mode not in ("select", "draw", "probe"):
            raise ValueError(f"unknown canvas mode {mode!r}")
        self.mode = mode
        self.setDragMode(
            QGraphicsView.DragMode.RubberBandDrag if mode == "select" else QGraphicsView.DragMode.NoDrag
        )
        cursor = {"select": Qt.CursorShape.ArrowCursor, "draw": Qt.CursorShape.CrossCursor}
        self.viewport().setCursor(cursor.get(mode, Qt.CursorShape.PointingHandCursor))
        self.mode_changed.emit(mode)

    def _clamped(self, pos: QPointF) -> QPointF:
        b = self.image_bounds()
        return QPointF(min(max(pos.x(), b.left()), b.right()), min(max(pos.y(), b.top()), b.bottom()))

    # ---- mouse -------------------------------------------------------------------------------------------

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
        if button == Qt.MouseButton.LeftButton and self.mode == "draw" and self.image_id is not None:
            self._draft_start = self._clamped(self.mapToScene(event.position().toPoint()))
            self._draft = QGraphicsRectItem(QRectF(self._draft_start, self._draft_start))
            pen = QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            self._draft.setPen(pen)
            self._draft.setZValue(100)
            self.scene().addItem(self._draft)
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self.mode == "probe" and self.image_id is not None:
            pos = self._clamped(self.mapToScene(event.position().toPoint()))
            self.pixel_clicked.emit(pos.x(), pos.y())
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
        if self._draft is not None and self._draft_start is not None:
            end = self._clamped(self.mapToScene(event.position().toPoint()))
            self._draft.setRect(QRectF(self._draft_start, end).normalized())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self.set_mode(self.mode)  # restore the mode's cursor
            event.accept()
            return
        if self._draft is not None:
            rect = self._draft.rect()
            self.scene().removeItem(self._draft)
            self._draft = self._draft_start = None
            event.accept()
            if rect.width() >= MIN_BOX_PX and rect.height() >= MIN_BOX_PX:
                self.set_mode("select")
                self.box_drawn.emit(rect)
            return
        super().mouseReleaseEvent(event)

    # ---- keys --------------------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
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
