"""Brush and eraser strokes on a bitmap mask, region by region: what the window calls on every mouse move.

A stroke event paints a capsule (every pixel whose centre lies within ``radius`` of the segment from the
previous mouse position to this one) into a `MaskCanvas`. Only the capsule's bounding box is touched, so an
event costs what the brush covers, never what the image is: a 30 px brush on a 4,000 x 3,000 image touches
a few thousand pixels. The canvas keeps the union of the touched boxes (``dirty``) so that the window redraws
just that part, and nothing is encoded while the user paints: ``to_segmentation`` encodes once, when the
stroke ends (RLE from the mask's bounding box, or polygons), and `mask_edits.mask_edit` makes it an edit.

The same footprint (`stroke_footprint`) paints panoptic segment ids (`panoptic_edits`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from .contours import BRIDGE, DEFAULT_TOLERANCE
from .mask_geometry import RLE, decode, to_form


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle: columns ``x .. x + width - 1``, rows ``y .. y + height - 1``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def union(self, other: Rect | None) -> Rect:
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.width, other.x + other.width)
        y1 = max(self.y + self.height, other.y + other.height)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) of the rectangle, for indexing an [H, W] array."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


EMPTY = Rect(0, 0, 0, 0)


def stroke_footprint(
    x0: float, y0: float, x1: float, y1: float, radius: float, height: int, width: int
) -> tuple[Rect, np.ndarray]:
    """(the box inside the [height, width] image, its [h, w] bool pixels) of a brush dragged from (x0, y0) to
    (x1, y1): pixels whose centre is within ``radius`` of the segment (a single click: x1, y1 = x0, y0)."""
    r = max(float(radius), 0.5)
    left = max(0, math.floor(min(x0, x1) - r))
    top = max(0, math.floor(min(y0, y1) - r))
    right = min(width, math.ceil(max(x0, x1) + r) + 1)
    bottom = min(height, math.ceil(max(y0, y1) + r) + 1)
    if right <= left or bottom <= top:
        return EMPTY, np.zeros((0, 0), dtype=bool)
    cx = np.arange(left, right, dtype=np.float64) + 0.5 - x0  # [w] centres relative to the start
    cy = np.arange(top, bottom, dtype=np.float64) + 0.5 - y0  # [h]
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    if length2 == 0.0:
        d2 = cx[None, :] ** 2 + cy[:, None] ** 2
    else:
        t = np.clip((cx[None, :] * dx + cy[:, None] * dy) / length2, 0.0, 1.0)  # [h, w]
        d2 = (cx[None, :] - t * dx) ** 2 + (cy[:, None] - t * dy) ** 2
    return Rect(left, top, right - left, bottom - top), d2 <= r * r


def polygon_footprint(polygon: Sequence[float], height: int, width: int) -> tuple[Rect, np.ndarray]:
    """(box, pixels) of a closed polygon [x1, y1, ...] inside the image, rasterised as pycocotools does."""
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return EMPTY, np.zeros((0, 0), dtype=bool)
    left, top = max(0, math.floor(pts[:, 0].min())), max(0, math.floor(pts[:, 1].min()))
    right, bottom = min(width, math.ceil(pts[:, 0].max()) + 1), min(height, math.ceil(pts[:, 1].max()) + 1)
    if right <= left or bottom <= top:
        return EMPTY, np.zeros((0, 0), dtype=bool)
    local = (pts - [left, top]).reshape(-1).tolist()
    h, w = bottom - top, right - left
    pixels = coco_mask.decode(coco_mask.frPyObjects([local], h, w))[:, :, 0].astype(bool)
    return Rect(left, top, w, h), pixels


class MaskCanvas:
    """A bitmap mask being painted (see the module docstring). ``mask`` [H, W] bool is the canvas's own."""

    def __init__(self, mask: np.ndarray):
        self.mask = np.array(mask, dtype=bool)  # a copy: painting never changes the caller's array
        self.dirty: Rect | None = None  # the union of every box painted so far

    @classmethod
    def empty(cls, height: int, width: int) -> MaskCanvas:
        return cls(np.zeros((height, width), dtype=bool))

    @classmethod
    def from_segmentation(cls, segmentation: Any, height: int, width: int) -> MaskCanvas:
        """A canvas holding a stored mask (polygons or RLE); empty for none."""
        return cls(decode(segmentation, height, width))

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def _put(self, rect: Rect, pixels: np.ndarray, paint: bool) -> Rect:
        if rect.empty or not pixels.any():
            return EMPTY
        view = self.mask[rect.slices()]
        if paint:
            view |= pixels
        else:
            view &= ~pixels
        self.dirty = rect.union(self.dirty)
        return rect

    def stroke(self, x0: float, y0: float, x1: float, y1: float, radius: float, paint: bool = True) -> Rect:
        """Paint (``paint``) or erase a brush segment; returns the box it touched (empty: nothing)."""
        rect, pixels = stroke_footprint(x0, y0, x1, y1, radius, self.height, self.width)
        return self._put(rect, pixels, paint)

    def polygon(self, polygon: Sequence[float], paint: bool = True) -> Rect:
        """Paint or erase the inside of a closed polygon [x1, y1, ...]; returns the box it touched."""
        rect, pixels = polygon_footprint(polygon, self.height, self.width)
        return self._put(rect, pixels, paint)

    def region(self, rect: Rect) -> np.ndarray:
        """The canvas pixels inside ``rect`` (a view: read it, for redrawing that part)."""
        return self.mask[rect.slices()]

    def to_segmentation(
        self, form: str = RLE, tolerance: float = DEFAULT_TOLERANCE, holes: str = BRIDGE
    ) -> Any:
        """The canvas in a stored form (RLE, uncompressed RLE or polygons; see `mask_geometry.to_form`)."""
        return to_form(self.mask, form, tolerance, holes)
