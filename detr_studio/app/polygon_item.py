"""The polygon of the selected annotation, with its vertices: drag a vertex to move it, press on an edge to
insert a vertex there (and drag it), right-click a vertex or press Del over it to delete it.

One item draws every ring's outline and every vertex (a thousand small squares in one call, in screen
pixels), so that a 1,000-vertex polygon is one item and dragging a vertex rebuilds only its own ring. The
item changes nothing in the document: when an edit ends it hands the new polygons (COCO's flat lists) to its
host, which makes the undoable edit. Which vertex or edge a point picks, and the new polygons after a move,
an insert or a delete, are `data.coco.polygons`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from detr_studio.data.coco.polygons import (
    MIN_VERTICES,
    EdgeHit,
    VertexHit,
    delete_vertex,
    insert_vertex,
    move_vertex,
    nearest_edge,
    nearest_vertex,
)

VERTEX_PX = 6.0  # a vertex square's side on screen
PICK_PX = 7.0  # how near (screen pixels) a press must be to a vertex or edge


class PolygonHost(Protocol):
    """What the polygon needs from the canvas."""

    def view_tolerance(self, pixels: float = ...) -> float: ...

    def clamped(self, pos: QPointF) -> QPointF: ...

    def polygon_changed(self, key: int, polygons: list[list[float]]) -> None: ...

    def report(self, message: str) -> None: ...


def _ring(polygon: list[float]) -> np.ndarray:
    return np.asarray(polygon, dtype=np.float64).reshape(-1, 2)  # [N, 2] (x, y)


def _qpolygon(ring: np.ndarray) -> QPolygonF:
    return QPolygonF([QPointF(x, y) for x, y in ring.tolist()])


class PolygonItem(QGraphicsItem):
    """The editable polygons of annotation ``key``; ``editable`` False (a locked annotation) only draws
    them. ``active`` is the vertex under the cursor or being dragged, (polygon, index): what Del deletes."""

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
        self.polygons = [list(map(float, p)) for p in polygons]
        self._rings = [_ring(p) for p in self.polygons]
        self._outlines = [_qpolygon(r) for r in self._rings]
        self._bounds = QRectF()
        self.active: tuple[int, int] | None = None
        self._dragging = False
        self._changed = False
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # the select tool hands it the mouse
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self.setZValue(60)
        self._update_bounds()

    def vertex_count(self) -> int:
        return sum(len(r) for r in self._rings)

    # ---- geometry on screen ------------------------------------------------------------------------------

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
        scale, shift = (t.m11(), t.m22()), (t.dx(), t.dy())
        exposed = option.exposedRect  # type: ignore[attr-defined]
        half = VERTEX_PX / 2
        squares = []
        for ring in self._rings:
            inside = (
                (ring[:, 0] >= exposed.left())
                & (ring[:, 0] <= exposed.right())
                & (ring[:, 1] >= exposed.top())
                & (ring[:, 1] <= exposed.bottom())
            )
            xy = ring[inside] * scale + shift  # [K, 2] screen pixels
            squares += [QRectF(x - half, y - half, VERTEX_PX, VERTEX_PX) for x, y in xy.tolist()]
        painter.save()
        painter.resetTransform()  # vertices are squares of the same size on screen at any zoom
        painter.setPen(QPen(self.colour.darker(160), 1.0))
        painter.setBrush(QBrush(QColor(255, 255, 255)))
        painter.drawRects(squares)
        if self.active is not None:
            x, y = self._rings[self.active[0]][self.active[1]] * scale + shift
            painter.setBrush(QBrush(self.colour))
            painter.drawRect(QRectF(x - half - 2, y - half - 2, VERTEX_PX + 4, VERTEX_PX + 4))
        painter.restore()

    # ---- picking -----------------------------------------------------------------------------------------

    def hit(self, pos: QPointF) -> VertexHit | EdgeHit | None:
        """The vertex, else the edge, within reach of a press at ``pos`` (None: neither)."""
        if not self.editable:
            return None
        reach = self.host.view_tolerance(PICK_PX)
        vertex = nearest_vertex(self.polygons, pos.x(), pos.y())
        if vertex is not None and vertex.distance <= reach:
            return vertex
        edge = nearest_edge(self.polygons, pos.x(), pos.y())
        return edge if edge is not None and edge.distance <= reach else None

    def hover(self, pos: QPointF) -> None:
        hit = self.hit(pos)
        active = (hit.polygon, hit.index) if isinstance(hit, VertexHit) else None
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
                self.active = (hit.polygon, hit.index)
                self.delete_active_vertex()
            return True
        if isinstance(hit, EdgeHit):
            self._set(insert_vertex(self.polygons, hit.polygon, hit.index + 1, hit.x, hit.y), hit.polygon)
            self.active = (hit.polygon, hit.index + 1)
            self._changed = True
        else:
            self.active = (hit.polygon, hit.index)
        self._dragging = True
        self.update()
        return True

    def drag(self, pos: QPointF) -> None:
        if not self._dragging or self.active is None:
            return
        pos = self.host.clamped(pos)
        p, index = self.active
        self._set(move_vertex(self.polygons, p, index, pos.x(), pos.y()), p)
        self._changed = True

    def release(self) -> None:
        self._dragging = False
        if self._changed:
            self._changed = False
            self.host.polygon_changed(self.key, [list(p) for p in self.polygons])

    def delete_active_vertex(self) -> bool:
        """Delete the hovered vertex (a polygon left with fewer than three goes); False when there is none, or
        it is one of the last three of the annotation's only polygon."""
        if self.active is None or not self.editable:
            return False
        p, index = self.active
        if len(self.polygons) == 1 and len(self._rings[0]) <= MIN_VERTICES:
            self.host.report("A polygon keeps three vertices at least: delete the annotation instead (Del)")
            return False
        polygons = delete_vertex(self.polygons, p, index)
        self.active = None
        if len(polygons) == len(self.polygons):
            self._set(polygons, p)
        else:
            self.polygons = polygons
            self._rings = [_ring(q) for q in polygons]
            self._outlines = [_qpolygon(r) for r in self._rings]
            self._update_bounds()
            self.update()
        self.host.polygon_changed(self.key, [list(q) for q in self.polygons])
        return True

    def _set(self, polygons: list[list[float]], changed: int) -> None:
        """Take the new ``polygons``, of which only polygon ``changed`` differs, and redraw."""
        self.polygons = polygons
        self._rings[changed] = _ring(polygons[changed])
        self._outlines[changed] = _qpolygon(self._rings[changed])
        self._update_bounds()
        self.update()
