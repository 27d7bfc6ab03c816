"""Editing COCO polygons vertex by vertex: what the polygon tool of the window calls while the user drags,
inserts and deletes vertices.

Polygons are COCO's ``[[x1, y1, x2, y2, ...], ...]`` (image pixels). Every function returns a new list and
leaves its input alone; only the polygon that changes is copied, so dragging a vertex of a 1,000-vertex
polygon costs one list copy of 2,000 numbers a frame. A polygon is closed (its last vertex joins its
first) and keeps at least 3 vertices: deleting one of the last 3 removes the polygon. Give the result to
`mask_edits.polygons_edit` when the drag or click ends, to make it an undoable edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Polygons = list[list[float]]
MIN_VERTICES = 3


@dataclass(frozen=True)
class VertexHit:
    """The vertex ``index`` of polygon ``polygon`` and its distance from the point asked about."""

    polygon: int
    index: int
    distance: float


@dataclass(frozen=True)
class EdgeHit:
    """The edge from vertex ``index`` to the next of polygon ``polygon``: its closest point (x, y) and its
    distance; a vertex inserted there goes at ``index + 1``."""

    polygon: int
    index: int
    distance: float
    x: float
    y: float


def _points(poly: Sequence[float]) -> np.ndarray:
    return np.asarray(poly, dtype=np.float64).reshape(-1, 2)  # [K, 2]


def nearest_vertex(polygons: Polygons, x: float, y: float) -> VertexHit | None:
    """The vertex closest to (x, y); None without vertices."""
    best: VertexHit | None = None
    for p, poly in enumerate(polygons):
        pts = _points(poly)
        if not len(pts):
            continue
        d = np.hypot(pts[:, 0] - x, pts[:, 1] - y)
        k = int(np.argmin(d))
        if best is None or d[k] < best.distance:
            best = VertexHit(p, k, float(d[k]))
    return best


def nearest_edge(polygons: Polygons, x: float, y: float) -> EdgeHit | None:
    """The edge closest to (x, y) (each polygon closed); None without edges."""
    best: EdgeHit | None = None
    point = np.array([x, y])
    for p, poly in enumerate(polygons):
        a = _points(poly)
        if len(a) < 2:
            continue
        b = np.roll(a, -1, axis=0)
        ab = b - a
        length2 = (ab**2).sum(1)
        t = np.where(length2 > 0, ((point - a) * ab).sum(1) / np.maximum(length2, 1e-12), 0.0)
        closest = a + np.clip(t, 0.0, 1.0)[:, None] * ab
        d = np.hypot(closest[:, 0] - x, closest[:, 1] - y)
        k = int(np.argmin(d))
        if best is None or d[k] < best.distance:
            best = EdgeHit(p, k, float(d[k]), float(closest[k, 0]), float(closest[k, 1]))
    return best


def _replace(polygons: Polygons, p: int, poly: list[float] | None) -> Polygons:
    out = list(polygons)
    if poly is None:
        del out[p]
    else:
        out[p] = poly
    return out


def _check(polygons: Polygons, p: int, index: int, *, insert: bool = False) -> None:
    if not 0 <= p < len(polygons):
        raise IndexError(f"there is no polygon {p} (the mask has {len(polygons)})")
    count = len(polygons[p]) // 2
    if not 0 <= index < count + (1 if insert else 0):
        raise IndexError(f"polygon {p} has no vertex {index} (it has {count})")


def move_vertex(polygons: Polygons, p: int, index: int, x: float, y: float) -> Polygons:
    """Vertex ``index`` of polygon ``p`` moved to (x, y)."""
    _check(polygons, p, index)
    poly = list(polygons[p])
    poly[2 * index], poly[2 * index + 1] = round(float(x), 2), round(float(y), 2)
    return _replace(polygons, p, poly)


def insert_vertex(polygons: Polygons, p: int, index: int, x: float, y: float) -> Polygons:
    """A vertex (x, y) inserted in polygon ``p`` before vertex ``index`` (its count: at the end)."""
    _check(polygons, p, index, insert=True)
    poly = list(polygons[p])
    poly[2 * index : 2 * index] = [round(float(x), 2), round(float(y), 2)]
    return _replace(polygons, p, poly)


def delete_vertex(polygons: Polygons, p: int, index: int) -> Polygons:
    """Polygon ``p`` without vertex ``index``; without the polygon when fewer than 3 vertices would be left."""
    _check(polygons, p, index)
    poly = list(polygons[p])
    del poly[2 * index : 2 * index + 2]
    return _replace(polygons, p, poly if len(poly) >= 2 * MIN_VERTICES else None)


def move_polygon(polygons: Polygons, p: int, dx: float, dy: float) -> Polygons:
    """Polygon ``p`` shifted by (dx, dy)."""
    if not 0 <= p < len(polygons):
        raise IndexError(f"there is no polygon {p} (the mask has {len(polygons)})")
    poly = [round(float(v) + (dx if i % 2 == 0 else dy), 2) for i, v in enumerate(polygons[p])]
    return _replace(polygons, p, poly)


def closed_polygon(points: Sequence[tuple[float, float]]) -> list[float]:
    """A polygon from the clicked points [(x, y), ...] (at least 3), as COCO stores it."""
    if len(points) < MIN_VERTICES:
        raise ValueError(f"a polygon needs at least {MIN_VERTICES} vertices, got {len(points)}")
    return [round(float(v), 2) for pt in points for v in pt]
