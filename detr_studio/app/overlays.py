"""Pictures drawn over the image: class-coloured masks, panoptic segments, attention heatmaps and deformable
attention's sampling points.

The numpy functions build [H, W, 4] RGBA arrays (they run off the Qt thread); `to_qimage` hands one to Qt.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw
from PySide6.QtGui import QImage

Rgb = tuple[int, int, int]

# A perceptual dark-to-bright ramp (black, purple, red, orange, pale yellow) for attention heatmaps.
_HEAT_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEAT_COLOURS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


def masks_rgba(masks: Iterable[tuple[np.ndarray, Rgb]], height: int, width: int) -> np.ndarray:
    """[H, W] bool masks with their colours -> [H, W, 4] RGBA (opaque where covered; later masks on top)."""
    out = np.zeros((height, width, 4), dtype=np.uint8)
    for mask, colour in masks:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (height, width):
            continue
        out[m, :3] = colour
        out[m, 3] = 255
    return out


def segments_rgba(ids: np.ndarray, colours: dict[int, Rgb]) -> np.ndarray:
    """[H, W] segment ids -> [H, W, 4] RGBA; ids without a colour (0: unlabelled) stay transparent."""
    ids = np.asarray(ids)
    values, inverse = np.unique(ids, return_inverse=True)
    lut = np.zeros((len(values), 4), dtype=np.uint8)  # [U, 4]
    for i, v in enumerate(values.tolist()):
        colour = colours.get(int(v))
        if colour is not None:
            lut[i] = (*colour, 255)
    return lut[inverse.reshape(ids.shape)]


def selection_rgba(ids: np.ndarray, selected: Iterable[int]) -> np.ndarray | None:
    """[H, W] segment ids -> [H, W, 4] RGBA of the ``selected`` segments: a light veil over their pixels and a
    dark line along their border; None when none of them is in ``ids``."""
    inside = np.isin(ids, np.fromiter(selected, dtype=np.int64))  # [H, W]
    if not inside.any():
        return None
    ys, xs = np.nonzero(inside)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    part = np.pad(inside[y0:y1, x0:x1], 1)  # only the selection's bounds are worked on
    core = part[1:-1, 1:-1]
    border = core & ~(part[:-2, 1:-1] & part[2:, 1:-1] & part[1:-1, :-2] & part[1:-1, 2:])
    out = np.zeros((*ids.shape, 4), dtype=np.uint8)
    window = out[y0:y1, x0:x1]
    window[core] = (255, 255, 255, 70)
    window[border] = (20, 20, 20, 255)
    return out


def vary(colour: Rgb, index: int) -> Rgb:
    """A slightly different shade of ``colour`` per instance, so touching instances of a class separate."""
    if index == 0:
        return colour
    step = ((index * 37) % 61) - 30  # -30..30
    return tuple(int(min(255, max(0, c + step))) for c in colour)  # type: ignore[return-value]


def heatmap_rgba(values: np.ndarray) -> np.ndarray:
    """[h, w] attention -> [h, w, 4] RGBA: scaled to its own maximum, low values transparent."""
    v = np.asarray(values, dtype=np.float32)
    top = float(v.max()) if v.size else 0.0
    low = float(v.min()) if v.size else 0.0
    norm = (v - low) / (top - low) if top > low else np.zeros_like(v)
    rgb = np.stack([np.interp(norm, _HEAT_STOPS, _HEAT_COLOURS[:, c]) for c in range(3)], axis=-1)
    alpha = np.clip(norm, 0.0, 1.0) ** 1.5 * 190  # the image stays visible where attention is low
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)


# One colour per feature level (finest first) for sampling points.
LEVEL_COLOURS: tuple[Rgb, ...] = (
    (0, 220, 255), (120, 255, 60), (255, 170, 0), (255, 60, 200), (255, 255, 255), (160, 120, 255)
)  # fmt: skip


def sampling_points_rgba(
    reference: np.ndarray,
    locations: np.ndarray,
    weights: np.ndarray,
    size: tuple[int, int],
    head: int | None = None,
) -> np.ndarray:
    """Sampling points over a transparent [H, W, 4] picture (``size`` = (H, W)), in its pixels.

    reference [2] (x, y) or [4] (cx, cy, w, h): a ring, and the box outline for a box; locations [heads, L, P,
    2]; weights [heads, L, P]: each point a disc in its level's colour, its area in proportion to its weight
    (the largest shown at radius 6). ``head`` shows that head only.
    """
    height, width = size
    picture = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    if head is not None:
        locations, weights = locations[head : head + 1], weights[head : head + 1]
    top = float(weights.max()) if weights.size else 0.0
    order = np.argsort(weights, axis=None)  # the heaviest drawn last, on top
    for flat in order.tolist():
        h, level, p = np.unravel_index(flat, weights.shape)
        x, y = (float(v) for v in locations[h, level, p])
        radius = 1.5 + 4.5 * (float(weights[h, level, p]) / top) ** 0.5 if top > 0 else 1.5
        colour = LEVEL_COLOURS[level % len(LEVEL_COLOURS)]
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=(*colour, 220), outline=(0, 0, 0, 160)
        )
    cx, cy = (float(v) for v in reference[:2])
    if reference.shape[0] == 4:
        bw, bh = float(reference[2]), float(reference[3])
        draw.rectangle(
            (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), outline=(255, 255, 255, 200), width=1
        )
    draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), outline=(0, 0, 0, 255), width=3)
    draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), outline=(255, 255, 255, 255), width=2)
    return np.asarray(picture, dtype=np.uint8)


def to_qimage(rgba: np.ndarray) -> QImage:
    """[H, W, 4] uint8 RGBA -> a QImage that owns its pixels."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """[H, W, 3] uint8 RGB -> a QImage that owns its pixels."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
