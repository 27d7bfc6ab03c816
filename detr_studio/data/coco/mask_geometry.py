"""Instance mask geometry on the stored COCO forms: decoding, encoding, COCO's box and area, moving with a box.

A mask stays in the form its file uses (`mask_form`): `POLYGONS` (``[[x1, y1, ...], ...]``), `RLE` (compressed
``{"size": [h, w], "counts": "..."}``) or `RLE_COUNTS` (uncompressed, ``counts`` a list of run lengths, as
crowd annotations are stored). Everything is computed as pycocotools computes it:

- `coco_rle(segmentation, height, width)`: the RLE ``COCO.annToRLE`` makes (polygons rasterised by
  ``frPyObjects`` and merged as a union); `decode` gives its pixels [H, W] bool.
- `mask_stats(...)` -> (bbox, area): ``mask.toBbox`` and ``mask.area`` of that RLE: COCO's rules for a
  mask's box (its pixel bounds) and area (its pixel count).
- `encode_rle(region, x, y, height, width)`: an RLE from the pixels of a region only (a brush stroke's
  bounding box, not the whole image), in time proportional to the region.
- `transform(segmentation, old_box, new_box, height, width)`: the mask carried along when its box moves or
  is resized: polygons exactly (each point mapped by the affine map from ``old_box`` onto ``new_box``), RLE
  by nearest-pixel resampling of the mapped region (an integer move is an exact shift).
- `fill_holes`: polygons get one exact polygon per hole added (the union then covers it, and the user's
  vertices stay as they were); an RLE is filled in place.
- `to_form(mask, form, tolerance, holes)`: pixels into a stored form (polygons traced by `contours`).

Boxes are COCO ``[x, y, w, h]`` in pixels; a pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask
from scipy import ndimage

from .contours import BRIDGE, DEFAULT_TOLERANCE, mask_to_polygons, trace_rings

POLYGONS, RLE, RLE_COUNTS = "polygons", "rle", "rle-counts"
FORMS = (POLYGONS, RLE, RLE_COUNTS)
Box = Sequence[float]


def mask_form(segmentation: Any) -> str | None:
    """`POLYGONS`, `RLE`, `RLE_COUNTS`, or None when there is no mask (missing, or an empty list)."""
    if isinstance(segmentation, list):
        return POLYGONS if segmentation else None
    if isinstance(segmentation, dict):
        return RLE_COUNTS if isinstance(segmentation.get("counts"), list) else RLE
    return None


def rle_size(segmentation: Any, height: int, width: int) -> tuple[int, int]:
    """(height, width) of the mask's own frame: an RLE's ``size``, else the image's."""
    if isinstance(segmentation, dict):
        h, w = segmentation["size"]
        return int(h), int(w)
    return height, width


def coco_rle(segmentation: Any, height: int, width: int) -> dict:
    """The compressed RLE (``counts`` bytes) pycocotools' ``annToRLE`` makes of a stored segmentation; an
    empty one for no mask."""
    form = mask_form(segmentation)
    if form is None:
        return coco_mask.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    if form == POLYGONS:
        return coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    h, w = rle_size(segmentation, height, width)
    if form == RLE_COUNTS:
        return coco_mask.frPyObjects(segmentation, h, w)
    counts = segmentation["counts"]
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """[H, W] bool pixels of a stored segmentation (all False for no mask)."""
    return coco_mask.decode(coco_rle(segmentation, height, width)).astype(bool)


def mask_stats(segmentation: Any, height: int, width: int) -> tuple[list[float], int]:
    """(bbox [x, y, w, h], area) by COCO's rules: ``toBbox`` and ``area`` of the encoded mask."""
    rle = coco_rle(segmentation, height, width)
    return [float(v) for v in coco_mask.toBbox(rle)], int(coco_mask.area(rle))


def _rle_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii")}


def run_lengths(region: np.ndarray, x: int, y: int, height: int, width: int) -> list[int]:
    """Uncompressed COCO run lengths (column-major, zeros first) of a [height, width] mask that is False
    everywhere but in ``region`` [h, w] bool, placed with its top-left pixel at (``x``, ``y``)."""
    h, w = region.shape
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"a {w}x{h} region at ({x}, {y}) does not fit a {width}x{height} mask")
    padded = np.zeros((w, h + 2), dtype=bool)  # column-major: one row per image column
    padded[:, 1:-1] = np.asarray(region, dtype=bool).T
    cols, rows = np.nonzero(padded[:, 1:] != padded[:, :-1])  # [T] in (column, row) order
    bounds = (x + cols).astype(np.int64) * height + y + rows
    if len(bounds) > 1:  # a run ending at a column's foot and one starting at the next column's head join
        same = np.flatnonzero(bounds[1:] == bounds[:-1])
        if len(same):
            drop = np.zeros(len(bounds), dtype=bool)
            drop[same] = drop[same + 1] = True
            bounds = bounds[~drop]
    if len(bounds) and bounds[-1] == height * width:
        bounds = bounds[:-1]  # the mask runs to the last pixel: no empty run of zeros after it
    edges = np.concatenate([[0], bounds, [height * width]])
    return np.diff(edges).tolist()


def encode_rle(
    region: np.ndarray, x: int, y: int, height: int, width: int, *, compressed: bool = True
) -> dict:
    """A stored RLE (JSON-ready) of a [height, width] mask that is set only inside ``region`` (see
    `run_lengths`); ``compressed`` False keeps the counts as a list."""
    counts = run_lengths(region, x, y, height, width)
    if not compressed:
        return {"size": [height, width], "counts": counts}
    return _rle_json(coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width))


def pixel_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the set pixels of [H, W] ``mask``; None when none is set."""
    cols = np.flatnonzero(mask.any(0))
    if not len(cols):
        return None
    rows = np.flatnonzero(mask.any(1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def to_form(
    mask: np.ndarray, form: str, tolerance: float = DEFAULT_TOLERANCE, holes: str = BRIDGE
) -> list[list[float]] | dict:
    """[H, W] bool pixels in a stored form: polygons traced to ``tolerance`` px (see `contours` for
    ``holes``), or an RLE encoded from the mask's bounding region."""
    if form == POLYGONS:
        return mask_to_polygons(mask, tolerance, holes).polygons
    if form not in FORMS:
        raise ValueError(f"form must be one of {list(FORMS)}, got {form!r}")
    height, width = mask.shape
    bounds = pixel_bounds(mask)
    if bounds is None:
        return encode_rle(np.zeros((0, 0), dtype=bool), 0, 0, height, width, compressed=form == RLE)
    x0, y0, x1, y1 = bounds
    return encode_rle(mask[y0:y1, x0:x1], x0, y0, height, width, compressed=form == RLE)


def box_polygons(box: Box) -> list[list[float]]:
    """A box's outline as COCO polygons (what a box without a mask gets in a dataset with masks)."""
    x, y, w, h = (float(v) for v in box)
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _axis_map(old_start: float, old_size: float, new_start: float, new_size: float) -> tuple[float, float]:
    """(scale, offset) of new = offset + scale * old along one axis; a zero-sized side only moves."""
    scale = new_size / old_size if old_size > 0 and new_size > 0 else 1.0
    return scale, new_start - scale * old_start


def transform(segmentation: Any, old_box: Box, new_box: Box, height: int, width: int) -> Any:
    """The segmentation carried from ``old_box`` to ``new_box`` (see the module docstring), in its form."""
    form = mask_form(segmentation)
    if form is None:
        return segmentation
    sx, ox = _axis_map(old_box[0], old_box[2], new_box[0], new_box[2])
    sy, oy = _axis_map(old_box[1], old_box[3], new_box[1], new_box[3])
    if form == POLYGONS:
        out = []
        for poly in segmentation:
            pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            moved = np.stack([ox + sx * pts[:, 0], oy + sy * pts[:, 1]], 1)
            out.append([round(float(v), 2) for v in moved.reshape(-1)])
        return out
    h, w = rle_size(segmentation, height, width)
    old = decode(segmentation, h, w)
    bounds = pixel_bounds(old)
    if bounds is None:
        return segmentation
    bx0, by0, bx1, by1 = bounds  # where the mask is; its image lies in the mapped range
    x0 = max(0, math.floor(ox + sx * bx0) - 1)
    x1 = min(w, math.ceil(ox + sx * bx1) + 1)
    y0 = max(0, math.floor(oy + sy * by0) - 1)
    y1 = min(h, math.ceil(oy + sy * by1) + 1)
    if x1 <= x0 or y1 <= y0:
        return encode_rle(np.zeros((0, 0), dtype=bool), 0, 0, h, w, compressed=form == RLE)
    src_x = np.floor((np.arange(x0, x1) + 0.5 - ox) / sx).astype(np.int64)  # the pixel each centre falls in
    src_y = np.floor((np.arange(y0, y1) + 0.5 - oy) / sy).astype(np.int64)
    ok_x, ok_y = (src_x >= 0) & (src_x < w), (src_y >= 0) & (src_y < h)
    region = old[np.ix_(np.clip(src_y, 0, h - 1), np.clip(src_x, 0, w - 1))] & ok_y[:, None] & ok_x[None, :]
    return encode_rle(region, x0, y0, h, w, compressed=form == RLE)


def fill_holes(segmentation: Any, height: int, width: int) -> Any:
    """The segmentation with its holes filled, in its form (see the module docstring)."""
    form = mask_form(segmentation)
    if form is None:
        return segmentation
    h, w = rle_size(segmentation, height, width)
    mask = decode(segmentation, h, w)
    filled = ndimage.binary_fill_holes(mask, structure=np.ones((3, 3), dtype=bool))
    holes = filled & ~mask
    if not holes.any():
        return segmentation
    if form == POLYGONS:
        added = [r.points for r in trace_rings(holes) if not r.hole]
        return [*segmentation, *([round(float(v), 2) for v in p.reshape(-1)] for p in added)]
    return to_form(filled, form)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two [H, W] bool masks (0 when both are empty)."""
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0
