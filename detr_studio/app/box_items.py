"""The items the canvas draws for boxes: `BoxItem` (an annotation, panoptic segment, prediction or ghost),
its resize `HandleItem`s and its `LabelItem` tab, with what a box is made from (`BoxSpec`) and the layer names.

Scene coordinates are image pixels. A box never changes the document: when the user drags it (the select
tool moves it, its handles resize it), it tells its `BoxHost` (the canvas), which turns that into a request
for the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QGuiApplication, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsSceneMouseEvent,
    QStyleOptionGraphicsItem,
    QWidget,
)

ANNOTATIONS, PREDICTIONS, MASKS, ATTENTION = "annotations", "predictions", "masks", "attention"
LAYERS = (ANNOTATIONS, PREDICTIONS, MASKS, ATTENTION)
SEGMENTS = "segments"  # the kind of a panoptic segment's box (in the annotations layer)
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
    """One box to show: ``key`` is the annotation id (annotations), segment id (segments) or query id
    (predictions); ``area`` (default: the box's) orders the objects under the cursor, smallest first."""

    key: int
    xyxy: tuple[float, float, float, float]
    colour: tuple[int, int, int]
    label: str
    tooltip: str = ""
    editable: bool = True
    area: float | None = None

    @property
    def size(self) -> float:
        """The area that orders picking: ``area``, else the box's."""
        if self.area is not None:
            return self.area
        x0, y0, x1, y1 = self.xyxy
        return abs(x1 - x0) * abs(y1 - y0)


class BoxHost(Protocol):
    """What a box needs from the view it is shown in (``zoom``: screen pixels per image pixel)."""

    zoom: float

    def image_bounds(self) -> QRectF: ...

    def box_changed(self, key: int, rect: QRectF) -> None: ...


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
    without calling Python. Labels sit above their box's top-left corner; predictions sit below the
    bottom-left corner instead, so that a prediction and the label it matches never cover each other's tabs.
    A tab that would leave the image there (a box at its top or bottom edge) goes inside the box instead."""

    def __init__(self, text: str, colour: QColor, parent: QGraphicsItem):
        app = QGuiApplication.instance()
        tab = label_tab(text, colour, app.devicePixelRatio() if isinstance(app, QGuiApplication) else 1.0)
        super().__init__(tab, parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.text = text
        self.colour = colour

    @property
    def height_px(self) -> float:
        """The tab's height on screen."""
        tab = self.pixmap()
        return tab.height() / tab.devicePixelRatio()


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
    """An annotation, segment, prediction or ghost (below-threshold prediction) box. Selection and moving come
    from the select tool (`tool_select`); the item only draws itself and follows `begin_edit`, `drag_to` and
    `finish_edit`."""

    def __init__(self, host: BoxHost, kind: str, spec: BoxSpec):
        x0, y0, x1, y1 = spec.xyxy
        super().__init__(QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized())
        self.host = host
        self.kind = kind
        self.key = spec.key
        self.spec = spec
        self.colour = QColor(*spec.colour)
        self.editable = spec.editable and kind == ANNOTATIONS
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # the select tool picks and drags boxes
        if spec.tooltip:
            self.setToolTip(spec.tooltip)
        self._handles: list[HandleItem] = []
        self._drag: tuple[QPointF, QRectF, str | None] | None = None
        tab = QColor(self.colour)
        if kind == "ghost":
            tab.setAlpha(110)
        self.label = LabelItem(spec.label, tab, self) if spec.label else None
        self._label_inside: bool | None = None
        self._style()
        self._layout_children()

    # ---- looks -------------------------------------------------------------------------------------------

    def _style(self) -> None:
        selected = self.isSelected()
        colour = QColor(self.colour)
        if self.kind == "ghost":
            colour.setAlpha(140 if selected else 90)
        pen = QPen(colour, 3.0 if selected else (1.0 if self.kind == SEGMENTS else 2.0))
        pen.setCosmetic(True)
        if self.kind == SEGMENTS:
            pen.setStyle(Qt.PenStyle.SolidLine if selected else Qt.PenStyle.DotLine)
        elif self.kind == PREDICTIONS:
            pen.setStyle(Qt.PenStyle.DashLine)
        elif self.kind == "ghost":
            pen.setStyle(Qt.PenStyle.DotLine)
        self.setPen(pen)
        fill = QColor(self.colour)
        fill.setAlpha(60 if selected else (22 if self.kind == ANNOTATIONS else 0))
        if self.kind == SEGMENTS:
            fill.setAlpha(0)  # a segment's pixels show its selection (the highlight layer), not its box
        self.setBrush(QBrush(fill))

    def place_label(self) -> None:
        """Put the tab above the box (annotations) or below it (predictions), or inside the box where it
        would leave the image at the view's zoom."""
        if self.label is None:
            return
        rect, bounds = self.rect(), self.host.image_bounds()
        tab = self.label.height_px / max(self.host.zoom, 1e-6)  # in image pixels
        if self.kind in (ANNOTATIONS, SEGMENTS):
            inside = rect.top() - tab < bounds.top() - 0.5
            offset = 0.0 if inside else -self.label.height_px
        else:
            inside = rect.bottom() + tab > bounds.bottom() + 0.5
            offset = -self.label.height_px if inside else 0.0
        if inside != self._label_inside:
            self._label_inside = inside
            self.label.setOffset(0.0, offset)

    def _layout_children(self) -> None:
        rect = self.rect()
        if self.label is not None:
            self.label.setPos(rect.topLeft() if self.kind in (ANNOTATIONS, SEGMENTS) else rect.bottomLeft())
            self._label_inside = None
            self.place_label()
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

    # ---- moving and resizing -----------------------------------------------------------------------------

    def begin_edit(self, scene_pos: QPointF, handle: str | None) -> None:
        if self.editable:
            self._drag = (QPointF(scene_pos), QRectF(self.rect()), handle)

    def drag_to(self, scene_pos: QPointF) -> None:
        if self._drag is None:
            return
        start, rect, handle = self._drag
        bounds = self.host.image_bounds()
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
            self.host.box_changed(self.key, QRectF(self.rect()))
