"""Checks of instance masks (COCO polygons and run-length encodings) before anything rasterises them.

pycocotools trusts its input: a compressed RLE whose ``counts`` string holds other characters or ends in the
middle of a number is read past its end, run lengths that do not add up to ``height x width`` make
``decode`` write outside its buffer, and a polygon with a NaN or a far-away point asks for gigabytes. So
every RLE is decoded here (vectorised, a few microseconds) and every polygon bounded before the document
accepts it; a mask that passes can be drawn, trained on and evaluated.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .values import NUMERIC_TYPES, describe, is_int, short

_RLE_TEXT = re.compile(r"[0-o]*")  # each character is 48 + 6 bits (5 of value, 1 "more follows")
_NOT_RLE = "'segmentation' is an object but not an RLE with 'counts' and 'size' [height, width]"
_UNSIZED_REACH = 1_000_000  # how far polygon points may reach while the image size is not known
_MAX_DIGITS = 7  # characters in one run length (35 bits): more cannot be a run of any image


def rle_counts(counts: str) -> np.ndarray | None:
    """The run lengths of a compressed COCO RLE string ([N] int64), None when it is not one."""
    if not _RLE_TEXT.fullmatch(counts):
        return None
    codes = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48  # [L]
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = np.flatnonzero((codes & 0x20) == 0)  # the final character of each number
    if last.size == 0 or last[-1] != codes.size - 1:
        return None  # ends in the middle of a number
    first = np.concatenate(([0], last[:-1] + 1))
    digits = last - first + 1
    if int(digits.max()) > _MAX_DIGITS:
        return None
    number = np.repeat(np.arange(last.size), digits)  # [L] which number each character belongs to
    shift = 5 * (np.arange(codes.size) - first[number])
    values = np.zeros(last.size, dtype=np.int64)
    np.add.at(values, number, (codes & 0x1F) << shift)
    negative = (codes[last] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * digits[negative])
    runs = values.copy()  # from the third run on, each is stored as the change from the run two before
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def rle_problem(rle: dict) -> str | None:
    """Why ``rle`` ({"size": [h, w], "counts": str | [int]}) is not a mask pycocotools can decode safely,
    None when it is. (Whether its size is its image's is checked where it is drawn, against the decoded
    image.)"""
    rle_size, counts = rle.get("size"), rle.get("counts")
    if not (
        isinstance(rle_size, list) and len(rle_size) == 2 and all(is_int(v) and v >= 0 for v in rle_size)
    ):
        return _NOT_RLE
    height, width = rle_size
    if isinstance(counts, str):
        runs = rle_counts(counts)
        if runs is None:
            return f"the RLE 'counts' {short(counts, 40)} is not a COCO run-length string"
        total = int(runs.sum()) if runs.size else 0
        bad_run = runs.size and int(runs.min()) < 0
    elif isinstance(counts, list) and all(is_int(v) for v in counts):
        total = sum(counts)
        bad_run = any(v < 0 for v in counts)
    else:
        return _NOT_RLE
    if bad_run:
        return "the RLE 'counts' hold a negative run length"
    if total != height * width:
        return f"the RLE runs cover {total} pixels, but a {width}x{height} mask has {height * width}"
    return None


def polygons_problem(polygons: list, size: tuple[int, int] | None) -> str | None:
    """Why ``polygons`` ([[x1, y1, x2, y2, ...], ...]) is not a usable outline in an image of ``size``
    (width, height), None when it is. Every number must be finite, and the points may lie outside the image
    but, on average, no farther from its corner than twice its larger side (a million pixels while the size is
    not known): that bounds what drawing the polygon costs (pycocotools walks its outline at 5 steps a
    pixel)."""
    reach = 2 * max(size) if size is not None else _UNSIZED_REACH
    for poly in polygons:
        # One test for the common case; the sum is not below the bound for NaN and infinities either.
        if (
            type(poly) is list
            and NUMERIC_TYPES.issuperset(map(type, poly))
            and sum(map(abs, poly)) < len(poly) * reach
        ):
            continue
        if type(poly) is not list or not NUMERIC_TYPES.issuperset(map(type, poly)):
            return "'segmentation' must be a list of polygons, each a list of numbers [x1, y1, x2, ...]"
        if not poly:
            continue
        try:
            finite = all(map(math.isfinite, poly))
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            return f"a polygon holds a non-finite or overflowing number ({short(poly, 40)})"
        image = f"the {size[0]}x{size[1]} image" if size is not None else "any image"
        return f"a polygon reaches far outside {image} ({short(poly, 40)})"
    return None


def segmentation_problem(value: Any, size: tuple[int, int] | None) -> str | None:
    """Why an annotation's ``segmentation`` is not a usable mask, None when it is."""
    if type(value) is list:
        return polygons_problem(value, size)
    if isinstance(value, dict):
        return rle_problem(value)
    return f"'segmentation' must be a list of polygons or an RLE object, got {describe(value)}"
