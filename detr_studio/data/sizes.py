"""The reference training recipe's image sizes, and the same recipe scaled for small images.

Plain numbers, without torch, so that the window can plan a training run (the ``--scales`` of
``detr-studio train``) without importing torch on its own thread. `data.transforms` builds its pipelines
from these.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SCALES = tuple(range(480, 801, 32))  # shorter side choices: 480, 512, ..., 800
DEFAULT_MAX_SIZE = 1333
DEFAULT_CROP = (384, 600)  # crop width and height are each drawn from [min, min(image side, max)]
DEFAULT_CROP_SCALES = (400, 500, 600)  # shorter side before the crop
REFERENCE_SHORT_SIDE = 800


def scaled_recipe(short_side: int) -> dict[str, Any]:
    """The reference sizes scaled so that the largest shorter side is ``short_side`` instead of 800.

    Use as ``make_transforms(split, **scaled_recipe(320))`` for quick runs on small images.
    """
    if short_side <= 0:
        raise ValueError(f"scaled_recipe: short_side must be positive, got {short_side}")
    factor = short_side / REFERENCE_SHORT_SIDE
    return {
        "scales": tuple(sorted({max(1, round(s * factor)) for s in DEFAULT_SCALES})),
        "max_size": max(1, round(DEFAULT_MAX_SIZE * factor)),
        "crop": (max(1, round(DEFAULT_CROP[0] * factor)), max(1, round(DEFAULT_CROP[1] * factor))),
        "crop_scales": tuple(max(1, round(s * factor)) for s in DEFAULT_CROP_SCALES),
        "val_size": short_side,
    }
