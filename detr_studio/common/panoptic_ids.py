"""The COCO panoptic PNG id codec: a segment id is stored as the colour R + 256 G + 256² B."""

from __future__ import annotations

import numpy as np

MAX_ID = 256**3 - 1  # the largest id a 24-bit colour holds


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] colours of a panoptic PNG -> [H, W] int32 segment ids (id = R + 256 G + 256² B)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"rgb2id needs an [H, W, 3] array, got shape {tuple(rgb.shape)}")
    c = rgb[..., :3].astype(np.int32)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """[H, W] segment ids (0 … 256³ − 1) -> [H, W, 3] uint8 colours, the inverse of `rgb2id`."""
    ids = np.asarray(ids)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > MAX_ID):
        raise ValueError(f"id2rgb: panoptic ids must lie in 0 … {MAX_ID}")
    wide = ids.astype(np.int64)
    return np.stack([(wide >> shift) & 0xFF for shift in (0, 8, 16)], axis=-1).astype(np.uint8)
