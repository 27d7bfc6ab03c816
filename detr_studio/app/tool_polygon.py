"""The polygon tool (N): each click adds a vertex; a click on the first vertex, a double click or Enter closes
the polygon (three vertices at least), Backspace takes the last vertex back, Esc drops the draft. The closed
polygon goes to ``drawn(points)`` as [(x, y), ...] in image pixels: a new annotation's mask, or (panoptic)
the region that splits or paints a segment."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QLineF, QPointF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from .tools import Tool, ToolHost

CLOSE_PX = 8.0  # a click this close (screen pixels) to the first vertex closes the polygon
MIN_VERTICES = 3

Points = list[tuple[float, float]]


class PolygonTool(Tool):
    """See the module docstring."""

    name = "polygon"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, host: ToolHost, drawn: Callable[[Points], None]):
        super().__init__(host)
        self.drawn = drawn
        self.points: list[QPointF] = []
        self._cursor: QPointF | None = None
        self._draft: QGraphicsPathItem | None = None

    # ---- the draft ---------------------------------------------------------------------------------------

    def _redraw(self) -> None:
        if not self.points:
            return
        if self._draft is None:
            self._draft = QGraphicsPathItem()
            pen = QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            self._draft.setPen(pen)
            self._draft.setZValue(100)
            self.host.scene().addItem(self._draft)
        path = QPainterPath(self.points[0])
        for point in self.points[1:]:
            path.lineTo(point)
        if self._cursor is not None:
            path.lineTo(self._cursor)
        # the first vertex as a small square, so that the user sees where to click to close
        half = self.host.view_tolerance(4.0)
        path.addRect(self.points[0].x() - half, self.points[0].y() - half, 2 * half, 2 * half)
        self._draft.setPath(path)

    def _near_first(self, pos: QPointF) -> bool:
        return bool(self.points) and QLineF(self.points[0], pos).length() <= self.host.view_tolerance(
            CLOSE_PX
        )

    def close(self) -> bool:
        """Finish the polygon (False, and nothing drawn, with fewer than three vertices)."""
        if len(self.points) < MIN_VERTICES:
            return False
        points = [(round(p.x(), 2), round(p.y(), 2)) for p in self.points]
        self.deactivate()
        self.drawn(points)
        return True

    def deactivate(self) -> None:
        if self._draft is not None:
            self.host.scene().removeItem(self._draft)
        self._draft = None
        self.points = []
        self._cursor = None

    # ---- input -------------------------------------------------------------------------------------------

    def press(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not self.has_image:
            return False
        pos = self.host.clamped(pos)
        if len(self.points) >= MIN_VERTICES and self._near_first(pos):
            self.close()
            return True
        if self.points and QLineF(self.points[-1], pos).length() <= self.host.view_tolerance(2.0):
            return True  # the second press of a double click, or a click in place
        self.points.append(pos)
        self._redraw()
        return True

    def move(self, event: QMouseEvent, pos: QPointF) -> bool:
        if not self.points:
            return False
        self._cursor = self.host.clamped(pos)
        self._redraw()
        return True

    def double_click(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not self.points:
            return False
        self.close()
        return True

    def key(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.points:
            self.close()
            return True
        if key == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            if self.points:
                self._redraw()
            else:
                self.deactivate()
            return True
        return False
