"""What a canvas tool is: the base `Tool`, which turns the mouse and keys of one canvas mode into requests, and
the `ToolHost` it works on (the canvas). One module per tool: `tool_select` (pick, drag, Tab through objects),
`tool_box` (draw a box, or a box for "mask from box"), `tool_polygon` (draw a polygon), `tool_brush` (brush
and eraser). Probing the encoder's attention, a click that names a pixel, is `ProbeTool` below.

A tool never changes the document: it emits the canvas's signals (``box_drawn``, ``polygon_drawn``,
``stroke_finished``, ...), which the window's controllers turn into undoable edits. Positions are scene
coordinates, which are image pixels.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView


class ToolHost(Protocol):
    """What a tool needs from the canvas it works on."""

    image_id: int | None

    def scene(self) -> QGraphicsScene: ...

    def image_bounds(self) -> QRectF: ...

    def clamped(self, pos: QPointF) -> QPointF: ...

    def view_tolerance(self, pixels: float = ...) -> float: ...


class Tool:
    """One canvas mode. Each handler gets the event and its position in image pixels and returns True when
    it took the event (else the view handles it: rubber-band selection in the select tool)."""

    name = ""
    cursor = Qt.CursorShape.ArrowCursor
    drag_mode = QGraphicsView.DragMode.NoDrag

    def __init__(self, host: ToolHost):
        self.host = host

    @property
    def has_image(self) -> bool:
        return self.host.image_id is not None

    def activate(self) -> None:
        """The canvas switched to this tool."""

    def deactivate(self) -> None:
        """The canvas leaves this tool (another mode, another image): drop what is half drawn."""

    def press(self, event: QMouseEvent, pos: QPointF) -> bool:
        return False

    def move(self, event: QMouseEvent, pos: QPointF) -> bool:
        return False

    def release(self, event: QMouseEvent, pos: QPointF) -> bool:
        return False

    def double_click(self, event: QMouseEvent, pos: QPointF) -> bool:
        return False

    def key(self, event: QKeyEvent) -> bool:
        return False


class ProbeTool(Tool):
    """A click names a pixel (``clicked(x, y)``): where the encoder looks from there."""

    name = "probe"
    cursor = Qt.CursorShape.PointingHandCursor

    def __init__(self, host: ToolHost, clicked):
        super().__init__(host)
        self.clicked = clicked

    def press(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not self.has_image:
            return False
        pos = self.host.clamped(pos)
        self.clicked.emit(pos.x(), pos.y())
        return True
