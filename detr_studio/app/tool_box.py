"""The box tool: press, drag and release draws a box (W: a new annotation; M: a box for "mask from box",
whose mask the model's mask head gives). A box smaller than `MIN_BOX_PX` is a click and draws nothing."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from .box_items import MIN_BOX_PX
from .tools import Tool, ToolHost


class BoxTool(Tool):
    """Draws one box; ``drawn(rect)`` gets it in image pixels. ``colour`` is the draft's dashed outline."""

    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, host: ToolHost, name: str, drawn: Callable[[QRectF], None], colour: QColor):
        super().__init__(host)
        self.name = name
        self.drawn = drawn
        self.colour = colour
        self._draft: QGraphicsRectItem | None = None
        self._start: QPointF | None = None

    def press(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not self.has_image:
            return False
        self._start = self.host.clamped(pos)
        self._draft = QGraphicsRectItem(QRectF(self._start, self._start))
        pen = QPen(self.colour, 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._draft.setPen(pen)
        self._draft.setZValue(100)
        self.host.scene().addItem(self._draft)
        return True

    def move(self, event: QMouseEvent, pos: QPointF) -> bool:
        if self._draft is None or self._start is None:
            return False
        self._draft.setRect(QRectF(self._start, self.host.clamped(pos)).normalized())
        return True

    def release(self, event: QMouseEvent, pos: QPointF) -> bool:
        if self._draft is None:
            return False
        rect = self._draft.rect()
        self.deactivate()
        if rect.width() >= MIN_BOX_PX and rect.height() >= MIN_BOX_PX:
            self.drawn(rect)
        return True

    def deactivate(self) -> None:
        if self._draft is not None:
            self.host.scene().removeItem(self._draft)
        self._draft = self._start = None
