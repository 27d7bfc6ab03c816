"""The canvas: a QGraphicsView that shows one image with its boxes and overlays, and turns mouse and keys into
requests (draw, move, resize, nudge, delete, accept, reject).

Scene coordinates are image pixels. The canvas never changes the document: it emits `box_drawn`,
`box_edited` and friends, the window turns them into undoable edits, and then hands the canvas fresh
`BoxSpec`s. Layers (annotations, predictions, masks, attention) show and hide as groups; pens are cosmetic and
labels and handles ignore the zoom, so they stay readable at any scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

ANNOTATIONS, PREDICTIONS, MASKS, ATTENTION = "annotations", "predictions", "masks", "attention"
LAYERS = (ANNOTATIONS, PREDICTIONS, MASKS, ATTENTION)
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0
MIN_BOX_PX = 2.0  # a drawn box smaller than this (image pixels) is a click, not a box
HANDLE_PX = 8.0

# Edges a handle moves: (left, top, right, bottom).
_HANDLES = {
    "top-left": (1, 1, 0, 0),
    "top": (0, 1, 0, 0),
    "top-right": (0, 1, 1, 0),
    "right": (0, 0, 1, 0),
    "bottom-right": (0, 0, 1, 1),
    "bottom": (0, 0, 0, 1),
    "bottom-left": (1, 0, 0, 1),
    "left": (1, 0, 0, 0),
}
_CURSORS = {
    "top-left": Qt.CursorShape.SizeFDiagCursor,
    "bottom-right": Qt.CursorShape.SizeFDiagCursor,
    "top-right": Qt.CursorShape.SizeBDiagCursor,
    "bottom-left": Qt.CursorShape.SizeBDiagCursor,
    "top": Qt.CursorShape.SizeVerCursor,
    "bottom": Qt.CursorShape.SizeVerCursor,
    "left": Qt.CursorShape.SizeHorCursor,
    "right": Qt.CursorShape.SizeHorCursor,
}


@dataclass(frozen=True)
class BoxSpec:
    """One box to show: ``key`` is the annotation id (annotations) or the query id (predictions)."""

    key: int
    xyxy: tuple[float, float, float, float]
    colour: tuple[int, int, int]
    label: str
    tooltip: str = ""
    editable: bool = True


_TABS: dict[tuple[str, int, float], QPixmap] = {}  # label tabs by (text, colour, pixel ratio)


def label_tab(text: str, colour: QColor, ratio: float = 1.0) -> QPixmap:
    """The coloured tab with ``text`` (drawn once per text and colour, then shared by every label)."""
    key = (text, colour.rgba(), ratio)
    tab = _TABS.get(key)
    if tab is None:
        if len(_TABS) > 4096:
            _TABS.clear()
        font = QFont()
        font.setPointSizeF(8.5)
        metrics = QFontMetricsF(font)
        w, h = metrics.horizontalAdvance(text) + 8.0, metrics.height() + 2.0
        tab = QPixmap(int(w * ratio + 0.999), int(h * ratio + 0.999))
        tab.setDevicePixelRatio(ratio)
        tab.fill(Qt.GlobalColor.transparent)
        painter = QPainter(tab)
        rect = QRectF(0.0, 0.0, w, h)
        painter.fillRect(rect, colour)
        painter.setPen(QPen(colour.darker(170), 1.0))
        painter.drawRect(rect.adjusted(0.5, 0.5, -0.5, -0.5))
        painter.setFont(font)
        light = colour.lightnessF() > 0.6 and colour.alphaF() > 0.5
        painter.setPen(QColor(0, 0, 0) if light else QColor(255, 255, 255))
        painter.drawText(rect.adjusted(4.0, 0.0, -4.0, 0.0), Qt.AlignmentFlag.AlignVCenter, text)
        painter.end()
        _TABS[key] = tab
    return tab


class LabelItem(QGraphicsPixmapItem):
    """Class name and score on a coloured tab; constant size on screen. A plain pixmap item: Qt paints it
    without calling Python. Labels sit above their box's top-left corner (inside it when the box touches the
    image's top); predictions sit below the bottom-left corner instead, so that a prediction and the label
    it matches never cover each other's tabs."""

    def __init__(self, text: str, colour: QColor, parent: QGraphicsItem):
        app = QGuiApplication.instance()
        tab = label_tab(text, colour, app.devicePixelRatio() if isinstance(app, QGuiApplication) else 1.0)
        super().__init__(tab, parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.text = text
        self.colour = colour
        self.set_inside(False)

    def set_inside(self, inside: bool) -> None:
        tab = self.pixmap()
        self.setOffset(0.0, 0.0 if inside else -tab.height() / tab.devicePixelRatio())


class HandleItem(QGraphicsRectItem):
    """A resize handle of a selected box; dragging it moves that box's edges."""

    def __init__(self, name: str, box: BoxItem):
        half = HANDLE_PX / 2
        super().__init__(-half, -half, HANDLE_PX, HANDLE_PX, box)
        self.name = name
        self.box = box
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setBrush(QBrush(QColor(255, 255, 255)))
        pen = QPen(box.colour, 1.5)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setCursor(_CURSORS[name])
        self.setZValue(1)

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            event.ignore()
            return
        self.box.begin_edit(event.scenePos(), self.name)
        event.accept()

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        self.box.drag_to(event.scenePos())

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        self.box.finish_edit()


class BoxItem(QGraphicsRectItem):
    """An annotation, prediction or ghost (below-threshold prediction) box."""

    def __init__(self, canvas: Canvas, kind: str, spec: BoxSpec):
        x0, y0, x1, y1 = spec.xyxy
        super().__init__(QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized())
        self.canvas = canvas
        self.kind = kind
        self.key = spec.key
        self.spec = spec
        self.colour = QColor(*spec.colour)
        self.editable = spec.editable and kind == ANNOTATIONS
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        if spec.tooltip:
            self.setToolTip(spec.tooltip)
        self._handles: list[HandleItem] = []
        self._drag: tuple[QPointF, QRectF, str | None] | None = None
        tab = QColor(self.colour)
        if kind == "ghost":
            tab.setAlpha(110)
        self.label = LabelItem(spec.label, tab, self) if spec.label else None
        self._style()
        self._layout_children()

    # ---- looks -------------------------------------------------------------------------------------------

    def _style(self) -> None:
        selected = self.isSelected()
        colour = QColor(self.colour)
        if self.kind == "ghost":
            colour.setAlpha(140 if selected else 90)
        pen = QPen(colour, 3.0 if selected else 2.0)
        pen.setCosmetic(True)
        if self.kind == PREDICTIONS:
            pen.setStyle(Qt.PenStyle.DashLine)
        elif self.kind == "ghost":
            pen.setStyle(Qt.PenStyle.DotLine)
        self.setPen(pen)
        fill = QColor(self.colour)
        fill.setAlpha(60 if selected else (22 if self.kind == ANNOTATIONS else 0))
        self.setBrush(QBrush(fill))

    def _layout_children(self) -> None:
        rect = self.rect()
        if self.label is not None and self.kind == ANNOTATIONS:
            self.label.setPos(rect.topLeft())
            self.label.set_inside(rect.top() < 1.0)
        elif self.label is not None:
            self.label.setPos(rect.bottomLeft())
            self.label.setOffset(0.0, 0.0)
        for handle in self._handles:
            left, top, right, bottom = _HANDLES[handle.name]
            x = rect.left() if left else rect.right() if right else rect.center().x()
            y = rect.top() if top else rect.bottom() if bottom else rect.center().y()
            handle.setPos(x, y)

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemSelectedHasChanged:
            self._style()
            if value and self.editable and not self._handles:
                self._handles = [HandleItem(name, self) for name in _HANDLES]
                self._layout_children()
            elif not value:
                for handle in self._handles:
                    handle.setParentItem(None)
                    if handle.scene() is not None:
                        handle.scene().removeItem(handle)
                self._handles = []
        return super().itemChange(change, value)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setPen(self.pen())  # our own selected look (see _style), not Qt's dashed outline
        painter.setBrush(self.brush())
        painter.drawRect(self.rect())

    def image_rect(self) -> QRectF:
        return QRectF(self.rect())

    # ---- moving and resizing -----------------------------------------------------------------------------

    def begin_edit(self, scene_pos: QPointF, handle: str | None) -> None:
        if self.editable:
            self._drag = (QPointF(scene_pos), QRectF(self.rect()), handle)

    def drag_to(self, scene_pos: QPointF) -> None:
        if self._drag is None:
            return
        start, rect, handle = self._drag
        bounds = self.canvas.image_bounds()
        if handle is None:
            delta = scene_pos - start
            moved = rect.translated(delta)
            dx = max(bounds.left() - moved.left(), 0.0) + min(bounds.right() - moved.right(), 0.0)
            dy = max(bounds.top() - moved.top(), 0.0) + min(bounds.bottom() - moved.bottom(), 0.0)
            new = moved.translated(dx, dy)
        else:
            left, top, right, bottom = _HANDLES[handle]
            x = min(max(scene_pos.x(), bounds.left()), bounds.right())
            y = min(max(scene_pos.y(), bounds.top()), bounds.bottom())
            new = QRectF(rect)
            if left:
                new.setLeft(x)
            if right:
                new.setRight(x)
            if top:
                new.setTop(y)
            if bottom:
                new.setBottom(y)
            new = new.normalized()
        self.prepareGeometryChange()
        self.setRect(new)
        self._layout_children()

    def finish_edit(self) -> None:
        if self._drag is None:
            return
        _, before, _ = self._drag
        self._drag = None
        if self.rect() != before:
            self.canvas.box_edited.emit(self.key, QRectF(self.rect()))

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        super().mousePressEvent(event)  # selection, with Ctrl to add
        if event.button() == Qt.MouseButton.LeftButton:
            self.begin_edit(event.scenePos(), None)
            event.accept()

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self._drag is not None:
            self.drag_to(event.scenePos())
        else:
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        super().mouseReleaseEvent(event)
        self.finish_edit()

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self.kind == ANNOTATIONS:
            self.canvas.relabel_requested.emit()
        elif self.kind in (PREDICTIONS, "ghost"):
            self.canvas.accept_requested.emit()
        event.accept()


class Canvas(QGraphicsView):
    """Shows one image; see the module docstring. Modes: "select", "draw" (W) and "probe" (click a pixel to
    see where the encoder looks from there)."""

    box_drawn = Signal(QRectF)
    box_edited = Signal(int, QRectF)  # annotation id, new rect in image pixels
    selection_changed = Signal()
    delete_requested = Signal()
    accept_requested = Signal()
    reject_requested = Signal()
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
        self._pixmap_item.setPixmap(QPixmap())
        blank = QPixmap(max(width, 1), max(height, 1))
        blank.fill(QColor(30, 30, 34))
        self._pixmap_item.setPixmap(blank)
        self.set_mask_overlay(None)
        self.set_attention(None)
        self.set_annotations([])
        self.set_predictions([], [])
        self.scene().setSceneRect(QRectF(0, 0, width, height))
        self.fit()

    def set_pixmap(self, image_id: int, image: QImage) -> None:
        if image_id != self.image_id:
            return
        self._pixmap_item.setPixmap(QPixmap.fromImage(image))
        self.has_pixmap = True
        self._update_pixmap_mode()

    def image_bounds(self) -> QRectF:
        return QRectF(0, 0, self.image_size[0], self.image_size[1])

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

    def ghost_items(self) -> list[BoxItem]:
        return [b for b in self._boxes[PREDICTIONS] if b.kind == "ghost"]

    def annotation_item(self, annotation_id: int) -> BoxItem | None:
        return next((b for b in self._boxes[ANNOTATIONS] if b.key == annotation_id), None)

    def selected_annotation_ids(self) -> list[int]:
        return [b.key for b in self._boxes[ANNOTATIONS] if b.isSelected()]

    def selected_prediction_ids(self) -> list[int]:
        return [b.key for b in self._boxes[PREDICTIONS] if b.isSelected()]

    def select(self, layer: str, keys: list[int]) -> None:
        wanted = set(keys)
        scene = self.scene()
        scene.blockSignals(True)
        scene.clearSelection()
        for box in self._boxes[layer]:
            if box.key in wanted and box.isVisible():
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
