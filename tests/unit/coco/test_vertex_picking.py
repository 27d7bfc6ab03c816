"""Picking polygon vertices and edges: the nearest within the tolerance, nothing beyond it."""

from __future__ import annotations

import numpy as np
import pytest

from detr_studio.data.coco.vertex_picking import EdgeHit, VertexHit, nearest_edge, nearest_vertex, rings_of

SQUARE = [0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]
FAR_SQUARE = [100.0, 100.0, 110.0, 100.0, 110.0, 110.0]


def test_rings_of_reshapes_flat_coco_lists():
    (ring,) = rings_of([SQUARE])
    assert ring.shape == (4, 2) and ring[2].tolist() == [10.0, 10.0]


def test_the_nearest_vertex_within_the_tolerance_is_picked_across_rings():
    rings = rings_of([SQUARE, FAR_SQUARE])
    assert nearest_vertex(rings, (9.0, 9.5), 2.0) == VertexHit(0, 2)
    assert nearest_vertex(rings, (109.0, 101.0), 2.0) == VertexHit(1, 1)
    assert nearest_vertex(rings, (5.0, 5.0), 2.0) is None


def test_the_nearest_edge_gives_the_foot_of_the_point_and_includes_the_closing_edge():
    rings = rings_of([SQUARE])
    hit = nearest_edge(rings, (5.0, 1.0), 1.5)
    assert hit == EdgeHit(0, 0, (5.0, 0.0))
    closing = nearest_edge(rings, (0.5, 4.0), 1.0)
    assert closing is not None and closing.vertex == 3 and closing.point == pytest.approx((0.0, 4.0))
    assert nearest_edge(rings, (5.0, 5.0), 1.0) is None


def test_a_thousand_vertex_ring_is_picked_exactly():
    angles = np.linspace(0, 2 * np.pi, 1000, endpoint=False)
    ring = np.stack([500 + 300 * np.cos(angles), 400 + 300 * np.sin(angles)], axis=1)
    assert nearest_vertex([ring], tuple(ring[637] + 0.3), 1.0) == VertexHit(0, 637)
    middle = (ring[10] + ring[11]) / 2
    hit = nearest_edge([ring], tuple(middle), 0.5)
    assert hit is not None and hit.vertex == 10
