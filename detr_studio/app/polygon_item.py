"""The polygon of the selected annotation, with its vertices: drag a vertex to move it, press on an edge to
insert a vertex there (and drag it), right-click a vertex or press Del over it to delete it.

One item draws every ring's outline and every vertex (a thousand small squares in one call, in screen
pixels), so that a 1,000-vertex polygon is one item and dragging a vertex rebuilds only its own ring. The
item changes nothing in the document: when an edit ends it hands the new polygons (COCO's flat lists) to its
host, which makes the undoable edit. Which vertex or edge a point picks is `data.coco.vertex_picking`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from detr_studio.data.coco.vertex_picking import EdgeHit, VertexHit, nearest_edge, nearest_vertex, rings_of

VERTEX_PX = 6.0  # a vertex square's side on screen
PICK_PX = 7.0  # how near (screen pixels) a press must be to a vertex or edge
MIN_VERTICES = 3


class PolygonHost(Protocol):
    """What the polygon needs from the canvas."""

    def view_tolerance(self, pixels: float = ...) -> float: ...

    def clamped(self, pos: QPointF) -> QPointF: ...

    def polygon_changed(self, key: int, polygons: list[list[float]]) -> None: ...

    def report(self, message: str) -> None: ...


def _qpolygon(ring: np.ndarray) -> QPolygonF:
    return QPolygonF([QPointF(x, y) for x, y in ring.tolist()])


class PolygonItem(QGraphicsItem):
    """The editable polygon of annotation ``key``; ``editable`` False (a locked annotation) only draws it."""

    def __init__(
        self,
        host: PolygonHost,
        key: int,
        polygons: list[list[float]],
        colour: tuple[int, int, int],
        editable: bool = True,
    ):
        super().__init__()
        self.host = host
        self.key = key
        self.editable = editable
        self.colour = QColor(*colour)
        self.rings = rings_of(polygons)
        self._outlines = [_qpolygon(r) for r in self.rings]
        self._bounds = QRectF()
        self.active: VertexHit | None = None  # hovered or dragged: what Del deletes
        self._dragging: VertexHit | None = None
        self._changed = False
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # the select tool hands it the mouse
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self.setZValue(60)
        self._update_bounds()

    # ---- what it holds -----------------------------------------------------------------------------------

    def polygons(self) -> list[list[float]]:
        """The rings as COCO polygons, rounded to 1/100 px."""
        return [[round(float(v), 2) for v in ring.reshape(-1)] for ring in self.rings]

    def vertex_count(self) -> int:
        return sum(len(r) for r in self.rings)

    def _update_bounds(self) -> None:
        margin = self.host.view_tolerance(VERTEX_PX)
        bounds = QRectF()
        for outline in self._outlines:
            bounds = bounds.united(outline.boundingRect())
        bounds = bounds.adjusted(-margin, -margin, margin, margin)
        if bounds != self._bounds:
            self.prepareGeometryChange()
            self._bounds = bounds

    def zoom_changed(self) -> None:
        """The view's zoom changed: the vertices' margin in image pixels with it."""
        self._update_bounds()

    def boundingRect(self) -> QRectF:
        return self._bounds

    # ---- drawing -----------------------------------------------------------------------------------------

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        pen = QPen(self.colour, 2.0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for outline in self._outlines:
            painter.drawPolygon(outline)
        if not self.editable:
            return
        t = painter.worldTransform()
        exposed = option.exposedRect  # type: ignore[attr-defined]
        half = VERTEX_PX / 2
        squares = []
        for ring in self.rings:
            inside = (
                (ring[:, 0] >= exposed.left())
                & (ring[:, 0] <= exposed.right())
                & (ring[:, 1] >= exposed.top())
                & (ring[:, 1] <= exposed.bottom())
            )
            xy = ring[inside] * (t.m11(), t.m22()) + (t.dx(), t.dy())  # [K, 2] screen pixels
            squares += [QRectF(x - half, y - half, VERTEX_PX, VERTEX_PX) for x, y in xy.tolist()]
        painter.save()
        painter.resetTransform()
        painter.setPen(QPen(self.colour.darker(160), 1.0))
        painter.setBrush(QBrush(QColor(255, 255, 255)))
        painter.drawRects(squares)
        if self.active is not None:
            x, y = self.rings[self.active.ring][self.active.vertex] * (t.m11(), t.m22()) + (t.dx(), t.dy())
            painter.setBrush(QBrush(self.colour))
            painter.drawRect(QRectF(x - half - 2, y - half - 2, VERTEX_PX + 4, VERTEX_PX + 4))
        painter.restore()

    # ---- picking -----------------------------------------------------------------------------------------

    def hit(self, pos: QPointF) -> VertexHit | EdgeHit | None:
        """The vertex, else the edge, that a press at ``pos`` picks."""
        if not self.editable:
            return None
        tolerance = self.host.view_tolerance(PICK_PX)
        point = (pos.x(), pos.y())
        return nearest_vertex(self.rings, point, tolerance) or nearest_edge(self.rings, point, tolerance)

    def hover(self, pos: QPointF) -> None:
        hit = self.hit(pos)
        active = hit if isinstance(hit, VertexHit) else None
        if active != self.active:
            self.active = active
            self.update()

    # ---- editing -----------------------------------------------------------------------------------------

    def press(self, pos: QPointF, button: Qt.MouseButton) -> bool:
        """A press at ``pos``: True when it picked a vertex or an edge (and acted on it)."""
        hit = self.hit(pos)
        if hit is None:
            return False
        if button == Qt.MouseButton.RightButton:
            if isinstance(hit, VertexHit):
                self.active = hit
                self.delete_active_vertex()
            return True
        if isinstance(hit, EdgeHit):
            ring = self.rings[hit.ring]
            self.rings[hit.ring] = np.insert(ring, hit.vertex + 1, hit.point, axis=0)
            hit = VertexHit(hit.ring, hit.vertex + 1)
            self._changed = True
            self._rebuild(hit.ring)
        self.active = self._dragging = hit
        self.update()
        return True

    def drag(self, pos: QPointF) -> None:
        if self._dragging is None:
            return
        pos = self.host.clamped(pos)
        self.rings[self._dragging.ring][self._dragging.vertex] = (pos.x(), pos.y())
        self._changed = True
        self._rebuild(self._dragging.ring)

    def release(self) -> None:
        self._dragging = None
        if self._changed:
            self._changed = False
            self.host.polygon_changed(self.key, self.polygons())

    def delete_active_vertex(self) -> bool:
        """Delete the hovered vertex; False when there is none, or its ring would keep fewer than three."""
        if self.active is None or not self.editable:
            return False
        ring = self.rings[self.active.ring]
        if len(ring) <= MIN_VERTICES:
            self.host.report("A polygon keeps three vertices at least: delete the annotation instead (Del)")
            return False
        self.rings[self.active.ring] = np.delete(ring, self.active.vertex, axis=0)
        ring_index = self.active.ring
        self.active = None
        self._rebuild(ring_index)
        self.host.polygon_changed(self.key, self.polygons())
        return True

    def _rebuild(self, ring: int) -> None:
        self._outlines[ring] = _qpolygon(self.rings[ring])
        self._update_bounds()
        self.update()
