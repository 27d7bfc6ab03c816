"""Which vertex or edge of a polygon mask a point picks: the hit-testing behind dragging, inserting and
deleting polygon vertices in the window.

A polygon mask is one or more rings, each an [N, 2] array of (x, y) vertices in image pixels (COCO's flat
``[x1, y1, x2, y2, ...]`` lists reshaped). Distances are in the same pixels; the window passes its click
tolerance already divided by the zoom. Both searches are vectorised: a 1,000-vertex ring answers in
microseconds, so hovering follows the mouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VertexHit:
    """Vertex ``vertex`` of ring ``ring``."""

    ring: int
    vertex: int


@dataclass(frozen=True)
class EdgeHit:
    """The edge from vertex ``vertex`` to the next one (the last edge closes the ring) of ring ``ring``;
    ``point`` is where on it the picked point lies."""

    ring: int
    vertex: int
    point: tuple[float, float]


def rings_of(polygons: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` -> rings, each [N, 2] float64."""
    return [np.asarray(poly, dtype=np.float64).reshape(-1, 2) for poly in polygons]


def nearest_vertex(
    rings: Sequence[np.ndarray], point: tuple[float, float], tolerance: float
) -> VertexHit | None:
    """The vertex nearest to ``point`` within ``tolerance``, None when no vertex is that close."""
    best: tuple[float, int, int] | None = None
    p = np.asarray(point, dtype=np.float64)
    for r, ring in enumerate(rings):
        if not len(ring):
            continue
        d = np.hypot(*(ring - p).T)  # [N]
        k = int(np.argmin(d))
        if d[k] <= tolerance and (best is None or d[k] < best[0]):
            best = (float(d[k]), r, k)
    return VertexHit(best[1], best[2]) if best is not None else None


def nearest_edge(rings: Sequence[np.ndarray], point: tuple[float, float], tolerance: float) -> EdgeHit | None:
    """The edge nearest to ``point`` within ``tolerance`` and where on it ``point`` falls, None when none is
    that close. Rings of fewer than two vertices have no edges."""
    best: tuple[float, int, int, np.ndarray] | None = None
    p = np.asarray(point, dtype=np.float64)
    for r, ring in enumerate(rings):
        if len(ring) < 2:
            continue
        a, b = ring, np.roll(ring, -1, axis=0)  # [N, 2] each edge from a[k] to b[k]
        ab = b - a
        length2 = np.einsum("ij,ij->i", ab, ab)  # [N]
        t = np.einsum("ij,ij->i", p - a, ab) / np.where(length2 > 0, length2, 1.0)
        t = np.clip(np.where(length2 > 0, t, 0.0), 0.0, 1.0)
        foot = a + t[:, None] * ab  # [N, 2]
        d = np.hypot(*(foot - p).T)
        k = int(np.argmin(d))
        if d[k] <= tolerance and (best is None or d[k] < best[0]):
            best = (float(d[k]), r, k, foot[k])
    if best is None:
        return None
    _, r, k, foot = best
    return EdgeHit(r, k, (float(foot[0]), float(foot[1])))
