"""The brush (B) and the eraser (Shift+B): a circle of the brush's size follows the cursor; a press, drag and
release paints one stroke, which goes to ``finished(Stroke)`` as the points the cursor passed and the radius,
in image pixels. The window adds the stroke to the selected annotation's mask (the eraser takes it away), or,
panoptic, paints it into the selected segment; the pixels are worked out by the core when the stroke ends.

While the stroke is drawn only its newest piece is painted: `StrokePreview` keeps the pieces and repaints the
small rectangle each new one covers, so a stroke costs the same on a 4,000 x 3,000 image as on a small one.
[ and ] make the brush smaller and larger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from .tools import Tool, ToolHost

MIN_RADIUS, MAX_RADIUS = 0.5, 1000.0
STEP = 1.25  # [ and ] scale the radius by this
PAINT = QColor(255, 255, 255, 150)
ERASE = QColor(20, 20, 20, 170)


@dataclass(frozen=True)
class Stroke:
    """One brush stroke: the centre line ``points`` [(x, y), ...] and the ``radius`` (image pixels); every
    pixel within ``radius`` of the line is painted (or, ``erase``, cleared)."""

    points: tuple[tuple[float, float], ...]
    radius: float
    erase: bool = False


class StrokePreview(QGraphicsItem):
    """The stroke being drawn: round-capped pieces of its width, each repainted once when it is added."""

    def __init__(self, radius: float, colour: QColor):
        super().__init__()
        self.radius = radius
        self.pen = QPen(colour, 2 * radius, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
        self.pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self.pieces: list[tuple[QRectF, QLineF]] = []
        self._bounds = QRectF()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(90)

    def add(self, a: QPointF, b: QPointF) -> None:
        r = self.radius + 1.0
        rect = QRectF(a, b).normalized().adjusted(-r, -r, r, r)
        if not self._bounds.contains(rect):
            self.prepareGeometryChange()
            self._bounds = self._bounds.united(rect) if not self._bounds.isNull() else rect
        self.pieces.append((rect, QLineF(a, b)))
        self.update(rect)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        exposed = option.exposedRect  # type: ignore[attr-defined]
        lines = [line for rect, line in self.pieces if rect.intersects(exposed)]
        if not lines:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setPen(self.pen)
        painter.drawLines(lines)


class BrushTool(Tool):
    """See the module docstring. ``erase`` makes it the eraser; ``radius()`` is the canvas's brush size."""

    cursor = Qt.CursorShape.BlankCursor

    def __init__(
        self, host: ToolHost, erase: bool, radius: Callable[[], float], finished: Callable[[Stroke], None]
    ):
        super().__init__(host)
        self.name = "erase" if erase else "brush"
        self.erase = erase
        self.radius = radius
        self.finished = finished
        self.points: list[QPointF] = []
        self.preview: StrokePreview | None = None
        self.circle = QGraphicsEllipseItem()
        pen = QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine if erase else Qt.PenStyle.SolidLine)
        pen.setCosmetic(True)
        self.circle.setPen(pen)
        self.circle.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.circle.setZValue(110)
        self.circle.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.circle.setVisible(False)

    # ---- the cursor circle -------------------------------------------------------------------------------

    def activate(self) -> None:
        if self.circle.scene() is None:
            self.host.scene().addItem(self.circle)
        self.resize_circle()

    def deactivate(self) -> None:
        self.circle.setVisible(False)
        self.points = []
        self.drop_preview()

    def resize_circle(self) -> None:
        r = self.radius()
        self.circle.setRect(QRectF(-r, -r, 2 * r, 2 * r))

    def place_circle(self, pos: QPointF) -> None:
        if self.circle.scene() is None:
            self.host.scene().addItem(self.circle)
        self.circle.setPos(pos)
        self.circle.setVisible(self.has_image)

    def drop_preview(self) -> None:
        """Remove the drawn stroke (when the mask it went into is drawn, or the stroke was dropped)."""
        if self.preview is not None and self.preview.scene() is not None:
            self.preview.scene().removeItem(self.preview)
        self.preview = None

    # ---- strokes -----------------------------------------------------------------------------------------

    def press(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not self.has_image:
            return False
        self.drop_preview()
        pos = self.host.clamped(pos)
        self.points = [pos]
        self.preview = StrokePreview(self.radius(), ERASE if self.erase else PAINT)
        self.host.scene().addItem(self.preview)
        self.preview.add(pos, pos)
        self.place_circle(pos)
        return True

    def move(self, event: QMouseEvent, pos: QPointF) -> bool:
        self.place_circle(pos)
        if not self.points or self.preview is None:
            return True
        pos = self.host.clamped(pos)
        last = self.points[-1]
        if QLineF(last, pos).length() < max(self.radius() / 4, 0.5):
            return True  # closer than a quarter of the radius adds nothing visible
        self.points.append(pos)
        self.preview.add(last, pos)
        return True

    def release(self, event: QMouseEvent, pos: QPointF) -> bool:
        if event.button() != Qt.MouseButton.LeftButton or not self.points:
            return False
        points = tuple((round(p.x(), 2), round(p.y(), 2)) for p in self.points)
        self.points = []
        self.finished(Stroke(points, float(self.radius()), self.erase))
        return True
