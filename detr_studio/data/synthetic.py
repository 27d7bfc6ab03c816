"""A small synthetic dataset of shapes on textured backgrounds, for demos and quick training runs.

Each image has bands of stuff (sky, grass, water) with wavy borders and a handful of shapes (circle,
square, triangle, star, ring) of very different sizes, overlapping one another and cut by the image
edge. The generator writes COCO instance annotations (polygons for shapes seen whole, RLE for the rest)
and COCO panoptic annotations (id PNGs plus segment lists) that describe exactly the same pixels: shapes
are rasterised the way COCO tools decode polygons, so a polygon annotation decodes to its panoptic mask.

Everything is drawn from a seeded numpy generator per image, so the same seed gives the same bytes, and
the first N images do not depend on how many are asked for.
"""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from ..common.panoptic_ids import id2rgb

THING_CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "square", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
    {"id": 4, "name": "star", "supercategory": "shape"},
    {"id": 5, "name": "ring", "supercategory": "shape"},
)
STUFF_CATEGORIES = (
    {"id": 6, "name": "sky", "supercategory": "background"},
    {"id": 7, "name": "grass", "supercategory": "background"},
    {"id": 8, "name": "water", "supercategory": "background"},
)
CATEGORY_COLORS = {1: (220, 20, 60), 2: (0, 130, 200), 3: (255, 180, 0), 4: (145, 30, 180), 5: (70, 240, 240)}
CATEGORY_COLORS.update({6: (135, 190, 235), 7: (60, 150, 60), 8: (30, 80, 160)})
SKY, GRASS, WATER = 6, 7, 8
CIRCLE, SQUARE, TRIANGLE, STAR, RING = 1, 2, 3, 4, 5

SPLITS = ("train", "val")
MIN_VISIBLE_PIXELS = 16  # a shape showing fewer pixels is not placed
MAX_HIDDEN_FRACTION = 0.5  # a new shape may hide at most this much of an earlier one
JPEG_QUALITY = 90


@dataclass
class Segment:
    """One panoptic segment of a synthetic image."""

    id: int  # value in the panoptic id map
    category_id: int
    isthing: bool
    mask: np.ndarray  # [H, W] bool, the visible pixels
    polygon: list[float] | None = None  # the drawn outline [x0, y0, x1, y1, ...] when seen whole

    def bbox(self) -> list[int]:
        """COCO [x, y, w, h] around the visible pixels."""
        xs = np.flatnonzero(self.mask.any(0))
        ys = np.flatnonzero(self.mask.any(1))
        return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]

    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class SyntheticImage:
    image: np.ndarray  # [H, W, 3] uint8
    ids: np.ndarray  # [H, W] int32, panoptic segment id of every pixel
    segments: list[Segment]


@dataclass(frozen=True)
class SyntheticLayout:
    """Where ``generate`` puts each file under ``root``."""

    root: Path

    def images_dir(self, split: str) -> Path:
        return self.root / split

    def instances_json(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{split}.json"

    def panoptic_json(self, split: str) -> Path:
        return self.root / "annotations" / f"panoptic_{split}.json"

    def panoptic_dir(self, split: str) -> Path:
        return self.root / "annotations" / f"panoptic_{split}"


# ---------------------------------------------------------------- drawing


def _image_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(height, width): the longer side is ``size``, the shorter 75-100 % of it, either orientation."""
    short = max(8, round(size * rng.uniform(0.75, 1.0)))
    return (size, short) if rng.random() < 0.5 else (short, size)


def _stuff_layout(rng: np.random.Generator, h: int, w: int) -> tuple[list[int], np.ndarray]:
    """One to three horizontal bands with wavy borders: (their stuff categories from the top, [H, W] band
    index of every pixel)."""
    count = int(rng.integers(1, 4))
    classes = [int(c) for c in rng.choice([SKY, GRASS, WATER], size=count, replace=False)]
    if SKY in classes:
        classes.remove(SKY)
        classes.insert(0, SKY)
    x = np.arange(w, dtype=np.float32)
    y = np.arange(h, dtype=np.float32)[:, None]
    band = np.zeros((h, w), dtype=np.uint8)
    for base in np.sort(rng.uniform(0.2, 0.8, size=count - 1)):
        amplitude = rng.uniform(0.0, 0.08) * h
        period = rng.uniform(0.3, 1.5) * w
        border = base * h + amplitude * np.sin(2 * np.pi * x / period + rng.uniform(0, 2 * np.pi))
        band += y >= border[None, :]
    return classes, band


def _stuff_texture(rng: np.random.Generator, category: int, noise: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 colours of one stuff class over the whole image, from [H, W, 3] unit noise."""
    h, w = noise.shape[:2]
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    if category == SKY:
        top = np.array([70.0, 120.0, 210.0], dtype=np.float32)
        bottom = np.array([175.0, 205.0, 240.0], dtype=np.float32)
        return top + (bottom - top) * y + 4 * noise[..., :1]
    if category == GRASS:
        streaks = 18 * rng.standard_normal((1, w, 1), dtype=np.float32)
        scale = np.array([13.0, 22.0, 11.0], dtype=np.float32)
        return np.array([70.0, 140.0, 50.0], dtype=np.float32) + streaks + noise * scale
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    cols = np.arange(w, dtype=np.float32)[None, :, None]
    waves = 22 * np.sin(rows * rng.uniform(0.3, 0.7) + 3 * np.sin(cols * rng.uniform(0.02, 0.06)))
    tint = np.array([0.4, 0.7, 1.0], dtype=np.float32)
    return np.array([35.0, 85.0, 155.0], dtype=np.float32) + waves * tint + 6 * noise[..., 2:]


def _outline(category: int, cx: float, cy: float, radius: float, angle: float) -> list[float]:
    """The outline polygon [x0, y0, x1, y1, ...] of a shape (for a ring: its outer edge), to 0.01 px."""
    if category in (CIRCLE, RING):
        corners = [(radius, 2 * math.pi * k / 48) for k in range(48)]
    elif category == STAR:
        corners = [(radius if k % 2 == 0 else 0.45 * radius, angle + math.pi * k / 5) for k in range(10)]
    else:
        count = 4 if category == SQUARE else 3
        corners = [(radius, angle + 2 * math.pi * k / count) for k in range(count)]
    flat: list[float] = []
    for r, a in corners:
        flat += [round(cx + r * math.cos(a), 2), round(cy + r * math.sin(a), 2)]
    return flat


def _rasterise(outline: list[float], h: int, w: int) -> np.ndarray:
    """[H, W] bool pixels inside a polygon, rasterised exactly as COCO tools decode polygon annotations."""
    return coco_mask.decode(coco_mask.frPyObjects([outline], h, w))[:, :, 0] > 0


def _draw_shape(
    category: int, h: int, w: int, cx: float, cy: float, radius: float, angle: float, hole: float
) -> tuple[np.ndarray, list[float]]:
    """([H, W] bool pixels of the shape inside the image, its outline polygon)."""
    outline = _outline(category, cx, cy, radius, angle)
    drawn = _rasterise(outline, h, w)
    if category == RING:
        drawn &= ~_rasterise(_outline(CIRCLE, cx, cy, radius * hole, 0.0), h, w)
    return drawn, outline


# Each shape class has its own colour family (hue, saturation range, value range), chosen away from the
# blues and greens of the backgrounds: a model trained from scratch learns colour long before shape.
THING_PALETTE = {
    CIRCLE: (0.0, (0.7, 1.0), (0.7, 1.0)),  # red
    SQUARE: (0.15, (0.7, 1.0), (0.8, 1.0)),  # yellow
    TRIANGLE: (0.84, (0.6, 1.0), (0.6, 1.0)),  # magenta
    STAR: (0.0, (0.0, 0.12), (0.85, 1.0)),  # white
    RING: (0.0, (0.0, 0.3), (0.08, 0.25)),  # black
}


def _thing_colour(rng: np.random.Generator, category: int) -> np.ndarray:
    hue, saturation, value = THING_PALETTE[category]
    r, g, b = colorsys.hsv_to_rgb(
        (hue + rng.uniform(-0.03, 0.03)) % 1.0, rng.uniform(*saturation), rng.uniform(*value)
    )
    return np.array([r, g, b]) * 255.0


def _paint_thing(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, category: int) -> None:
    """Fill ``mask`` on ``canvas`` ([H, W, 3] float32) with a noisy colour, striped half the time."""
    ys, xs = np.nonzero(mask)
    fill = _thing_colour(rng, category).astype(np.float32) + 9 * rng.standard_normal(
        (ys.size, 1), dtype=np.float32
    )
    if rng.random() < 0.5:
        stripes = (((xs + ys) / rng.uniform(3.0, 10.0)).astype(np.int64) % 2)[:, None]
        fill *= 1.0 - 0.35 * stripes
    canvas[ys, xs] = fill


def _place_things(
    rng: np.random.Generator, canvas: np.ndarray, max_things: int
) -> list[tuple[int, np.ndarray, list[float] | None]]:
    """Draw shapes on ``canvas`` one over another: [(category, [H, W] visible pixels, polygon or None)].

    A shape keeps its polygon only while it is wholly inside the image and nothing covers it.
    """
    h, w = canvas.shape[:2]
    things: list[tuple[int, np.ndarray, list[float] | None]] = []
    smallest, largest = max(4.0, 0.06 * min(h, w)), 0.3 * min(h, w)
    for _ in range(int(rng.integers(1, max_things + 1))):
        category = int(rng.integers(CIRCLE, RING + 1))
        for _attempt in range(10):
            radius = math.exp(rng.uniform(math.log(smallest), math.log(largest)))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            angle, hole = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.7)
            drawn, outline = _draw_shape(category, h, w, cx, cy, radius, angle, hole)
            if drawn.sum() < MIN_VISIBLE_PIXELS:
                continue
            if all((seen & ~drawn).sum() >= (1 - MAX_HIDDEN_FRACTION) * seen.sum() for _, seen, _ in things):
                break
        else:
            continue
        things = [(c, seen & ~drawn, None if (seen & drawn).any() else poly) for c, seen, poly in things]
        inside = all(0 <= v <= w - 1 for v in outline[0::2]) and all(0 <= v <= h - 1 for v in outline[1::2])
        things.append((category, drawn, outline if inside and category != RING else None))
        _paint_thing(rng, canvas, drawn, category)
    return [thing for thing in things if thing[1].any()]


def render_image(rng: np.random.Generator, size: int = 256, max_things: int = 6) -> SyntheticImage:
    """Draw one image with its panoptic segments (things first, then stuff)."""
    h, w = _image_shape(rng, size)
    stuff_classes, band = _stuff_layout(rng, h, w)
    noise = rng.standard_normal((h, w, 3), dtype=np.float32)
    canvas = np.empty((h, w, 3), dtype=np.float32)
    for k, category in enumerate(stuff_classes):
        np.copyto(canvas, _stuff_texture(rng, category, noise), where=(band == k)[..., None])
    things = _place_things(rng, canvas, max_things)

    segments = [Segment(k + 1, category, True, seen, poly) for k, (category, seen, poly) in enumerate(things)]
    ids = np.zeros((h, w), dtype=np.int32)
    for segment in segments:
        ids[segment.mask] = segment.id
    for k, category in enumerate(stuff_classes):
        visible = (band == k) & (ids == 0)
        if visible.any():
            segments.append(Segment(len(segments) + 1, category, False, visible))
            ids[visible] = len(segments)
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return SyntheticImage(image=image, ids=ids, segments=segments)


# ---------------------------------------------------------------- writing


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a [H, W] mask: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    if flat.size == 0:
        return []
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return [0, *runs] if flat[0] else runs


def _category_tables() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    instances = [dict(c) for c in THING_CATEGORIES]
    panoptic = [
        {**c, "isthing": int(c in THING_CATEGORIES), "color": list(CATEGORY_COLORS[c["id"]])}
        for c in (*THING_CATEGORIES, *STUFF_CATEGORIES)
    ]
    return instances, panoptic


def generate_split(
    layout: SyntheticLayout,
    split: str,
    count: int,
    size: int = 256,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``count`` images of ``split`` with their instance and panoptic annotations."""
    images_dir, png_dir = layout.images_dir(split), layout.panoptic_dir(split)
    images_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    instance_categories, panoptic_categories = _category_tables()
    info = {"description": f"DETR Studio synthetic shapes, {split} split", "version": "1", "seed": seed}
    images: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    panoptic: list[dict[str, Any]] = []
    for index in range(count):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        drawn = render_image(rng, size)
        h, w = drawn.ids.shape
        image_id = index + 1
        stem = f"{image_id:06d}"
        Image.fromarray(drawn.image).save(images_dir / f"{stem}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(id2rgb(drawn.ids)).save(png_dir / f"{stem}.png")
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": w, "height": h})
        segments_info = []
        for segment in drawn.segments:
            bbox, area = segment.bbox(), segment.area()
            segments_info.append(
                {
                    "id": segment.id,
                    "category_id": segment.category_id,
                    "iscrowd": 0,
                    "isthing": int(segment.isthing),
                    "bbox": bbox,
                    "area": area,
                }
            )
            if not segment.isthing:
                continue
            if segment.polygon is not None:
                segmentation: Any = [segment.polygon]
            else:
                segmentation = {"size": [h, w], "counts": rle_counts(segment.mask)}
            instances.append(
                {
                    "id": len(instances) + 1,
                    "image_id": image_id,
                    "category_id": segment.category_id,
                    "bbox": bbox,
                    "area": area,
                    "iscrowd": 0,
                    "segmentation": segmentation,
                }
            )
        panoptic.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments_info})
        if progress is not None:
            progress(index + 1)
    layout.instances_json(split).parent.mkdir(parents=True, exist_ok=True)
    _write_json(
        layout.instances_json(split),
        {"info": info, "images": images, "annotations": instances, "categories": instance_categories},
    )
    _write_json(
        layout.panoptic_json(split),
        {"info": info, "images": images, "annotations": panoptic, "categories": panoptic_categories},
    )


def generate(
    out_dir: str | Path,
    num_train: int = 200,
    num_val: int = 50,
    size: int = 256,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SyntheticLayout:
    """Write the train and val splits under ``out_dir``; ``progress`` gets the running image count."""
    if num_train < 0 or num_val < 0:
        raise ValueError("image counts must not be negative")
    if size < 32:
        raise ValueError(f"image size must be at least 32 pixels, got {size}")
    layout = SyntheticLayout(Path(out_dir))
    done = 0
    for split, count in zip(SPLITS, (num_train, num_val)):
        offset = done

        def report(n: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + n)

        generate_split(layout, split, count, size, seed, report)
        done += count
    return layout


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        fh.write("\n")
