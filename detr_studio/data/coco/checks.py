"""The checks of single COCO records and fields, shared by loading a file and by every edit.

Each check reports to a `Checker` under the record's name (``annotation id 17``), so one message names the
file, the record and the problem. What is an error and what a warning:

- boxes: not four numbers, non-finite, negative width or height, entirely outside the image, or reaching
  past an edge by more than 10 % of the image are errors (the last is usually ``[x0, y0, x1, y1]`` stored
  where ``[x, y, w, h]`` belongs); reaching past by more than 1 px but less is a warning (training clips
  it), and so is zero area (training skips it);
- ``area`` negative or non-finite, ``iscrowd`` / ``isthing`` not 0/1, a ``segmentation`` that is neither
  polygons nor RLE or that pycocotools could not read safely (`masks`), category ``name`` / ``color`` /
  ``supercategory`` of the wrong type, and a malformed ``detr_studio`` object are errors;
- image ``file_name`` missing, absolute or climbing out of the image folder (`paths`), and ``width`` /
  ``height`` that are not positive integers are errors; integral floats (``640.0``) are a warning.
"""

from __future__ import annotations

import math
from typing import Any

from .paths import name_problem
from .problems import Checker
from .records import OUR_KEY, REVIEW_STATES, SOURCES
from .values import MISSING, NUMERIC_TYPES, describe, is_finite, is_int, is_number, num, short

EDGE_SLACK_PX = 1.0  # overhang past an image edge that counts as rounding, not a problem
EDGE_TOLERANCE = 0.1  # overhang (fraction of the image side) still accepted with a warning


def _report_malformed_box(box: Any, where: str, ck: Checker, key: str) -> None:
    if box is MISSING:
        ck.error(where, f"missing '{key}' ([x, y, width, height])")
    elif not isinstance(box, list) or len(box) != 4:
        ck.error(where, f"'{key}' must be a list of 4 numbers [x, y, width, height], got {describe(box)}")
    else:
        strings = " (numbers written as strings)" if any(isinstance(v, str) for v in box) else ""
        ck.error(where, f"'{key}' must hold 4 numbers, got {short(box)}{strings}")


def check_box(box: Any, size: tuple[int, int] | None, where: str, ck: Checker, key: str = "bbox") -> None:
    """A COCO [x, y, width, height] box, against its image's (width, height) when known."""
    if not (type(box) is list and len(box) == 4 and NUMERIC_TYPES.issuperset(map(type, box))):
        _report_malformed_box(box, where, ck, key)
        return
    try:
        x, y, w, h = map(float, box)
    except OverflowError:  # an integer too large for a float
        x = y = w = h = math.inf
    if not math.isfinite(x + y + w + h):
        ck.error(where, f"'{key}' {short(box)} contains a non-finite or overflowing number")
        return
    if w > 0 and h > 0 and size is not None:
        width, height = size
        slack = EDGE_SLACK_PX
        if x >= -slack and y >= -slack and x + w <= width + slack and y + h <= height + slack:
            return  # the common case: a proper box inside its image
    shown = f"[{num(x)}, {num(y)}, {num(w)}, {num(h)}]"
    if w < 0 or h < 0:
        ck.error(
            where, f"'{key}' {shown} has a negative width or height; COCO boxes are [x, y, width, height]"
        )
        return
    if w == 0 or h == 0:
        ck.warn(where, f"'{key}' {shown} has zero area; training skips it")
        return
    if size is None:
        return
    width, height = size
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        ck.error(where, f"'{key}' {shown} lies entirely outside the {width}x{height} image")
        return
    over_x = max(-x, x + w - width, 0.0)
    over_y = max(-y, y + h - height, 0.0)
    if over_x > EDGE_TOLERANCE * width or over_y > EDGE_TOLERANCE * height:
        ck.error(
            where,
            f"'{key}' {shown} reaches {num(max(over_x, over_y))} px past the edge of the {width}x{height} image"
            f" (more than {EDGE_TOLERANCE:.0%} of its size); if your boxes are [x0, y0, x1, y1],"
            " convert them to [x, y, width, height]",
        )
    elif over_x > EDGE_SLACK_PX or over_y > EDGE_SLACK_PX:
        ck.warn(
            where,
            f"'{key}' {shown} reaches {num(max(over_x, over_y))} px past the edge of the {width}x{height} image;"
            " training clips it",
        )


def check_count(record: dict, key: str, where: str, ck: Checker) -> None:
    """Optional non-negative finite number (area)."""
    value = record.get(key, MISSING)
    if value is MISSING:
        return
    if not is_number(value):
        ck.error(where, f"'{key}' must be a number, got {describe(value)}")
    elif not is_finite(value):
        ck.error(where, f"'{key}' is not a finite number ({short(value)})")
    elif value < 0:
        ck.error(where, f"'{key}' must not be negative, got {num(value)}")


def check_flag(record: dict, key: str, where: str, ck: Checker) -> None:
    """Optional 0/1 flag (iscrowd, isthing)."""
    value = record.get(key, MISSING)
    if value is not MISSING and value not in (0, 1):  # True/False compare equal to 1/0
        ck.error(where, f"'{key}' must be 0 or 1, got {describe(value)}")


def check_our_annotation_fields(value: Any, where: str, ck: Checker) -> None:
    if value is MISSING:
        return
    if not isinstance(value, dict):
        ck.error(where, f"'{OUR_KEY}' must be an object, got {describe(value)}")
        return
    source = value.get("source", MISSING)
    if source is not MISSING and source not in SOURCES:
        ck.error(where, f"'{OUR_KEY}.source' must be one of {list(SOURCES)}, got {describe(source)}")
    review = value.get("review", MISSING)
    if review is not MISSING and review not in REVIEW_STATES:
        ck.error(where, f"'{OUR_KEY}.review' must be one of {list(REVIEW_STATES)}, got {describe(review)}")
    score = value.get("score")
    if score is not None and not (is_number(score) and is_finite(score)):
        ck.error(where, f"'{OUR_KEY}.score' must be a finite number or null, got {describe(score)}")
    model = value.get("model")
    if model is not None and not isinstance(model, str):
        ck.error(where, f"'{OUR_KEY}.model' must be a string or null, got {describe(model)}")
    mask = value.get("mask", MISSING)
    if mask is not MISSING and mask != "box":
        ck.error(
            where,
            f"'{OUR_KEY}.mask' can only be \"box\" (the mask is the box's outline), got {describe(mask)}",
        )


def check_category_fields(cat: dict, where: str, ck: Checker) -> None:
    name = cat.get("name", MISSING)
    if name is MISSING:
        ck.error(where, "missing 'name'")
    elif not isinstance(name, str) or not name.strip():
        ck.error(where, f"'name' must be a non-empty string, got {describe(name)}")
    sup = cat.get("supercategory", MISSING)
    if sup is not MISSING and not isinstance(sup, str):
        ck.error(where, f"'supercategory' must be a string, got {describe(sup)}")
    check_flag(cat, "isthing", where, ck)
    color = cat.get("color", MISSING)
    if color is not MISSING and not (
        isinstance(color, list) and len(color) == 3 and all(is_int(c) and 0 <= c <= 255 for c in color)
    ):
        ck.error(where, f"'color' must be [r, g, b] with values 0-255, got {describe(color)}")


def check_file_name(record: dict, where: str, ck: Checker, folder: str, what: str = "") -> None:
    """A record's ``file_name``: a non-empty relative name inside the ``folder``."""
    name = record.get("file_name", MISSING)
    if name is MISSING:
        ck.error(where, f"missing 'file_name'{what}")
    elif not isinstance(name, str) or not name:
        ck.error(where, f"'file_name' must be a non-empty string, got {describe(name)}")
    else:
        problem = name_problem(name, folder)
        if problem is not None:
            ck.error(where, f"'file_name' {problem}")


def check_image_fields(img: dict, where: str, ck: Checker, *, lazy_sizes: bool = False) -> None:
    """``lazy_sizes``: a record may lack both ``width`` and ``height`` (read from the image later)."""
    check_file_name(img, where, ck, "image folder")
    unsized = lazy_sizes and "width" not in img and "height" not in img
    for key in () if unsized else ("width", "height"):
        value = img.get(key, MISSING)
        if value is MISSING:
            ck.error(where, f"missing '{key}'")
        elif is_int(value):
            if value <= 0:
                ck.error(where, f"'{key}' must be positive, got {value}")
        elif isinstance(value, float) and is_finite(value) and value.is_integer() and value > 0:
            ck.warn(where, f"'{key}' is {value!r}, a float; image sizes should be integers")
        elif isinstance(value, str):
            ck.error(where, f"'{key}' is the string {short(value)}, not a number")
        else:
            ck.error(where, f"'{key}' must be a positive integer, got {describe(value)}")
    ours = img.get(OUR_KEY, MISSING)
    if ours is not MISSING:
        if not isinstance(ours, dict):
            ck.error(where, f"'{OUR_KEY}' must be an object, got {describe(ours)}")
        elif "reviewed" in ours and not isinstance(ours["reviewed"], bool):
            ck.error(where, f"'{OUR_KEY}.reviewed' must be true or false, got {describe(ours['reviewed'])}")


def image_size_of(img: dict) -> tuple[int, int] | None:
    """(width, height) of an image record when both are usable."""
    w, h = img.get("width"), img.get("height")
    if is_number(w) and is_number(h) and is_finite(w) and is_finite(h) and w > 0 and h > 0:
        return int(w), int(h)
    return None
