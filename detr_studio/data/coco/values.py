"""JSON values as the COCO checks see them: type tests, short descriptions for messages, ids, and the
conversion of what callers hand in (numpy and torch scalars and arrays) into plain JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from .problems import CocoEditError

MISSING: Any = object()  # a key that is absent (``None`` is JSON null)
NUMERIC_TYPES = frozenset((int, float))  # exact types: bool is not a number here
LARGE = 1e300  # below this, a JSON number converts to a finite float


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def short(value: Any, limit: int = 60) -> str:
    """``value`` as JSON text, cut to ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def describe(value: Any) -> str:
    """What a value is, for a message: ``a string ("3")``."""
    return "null" if value is None else f"{json_type(value)} ({short(value)})"


def num(value: float) -> str:
    return f"{value:g}"


def plain(value: Any) -> Any:
    """A fresh copy of ``value`` made of JSON types only (numpy/torch scalars and arrays become numbers/lists)."""
    if value is None:
        return value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise CocoEditError(
                    f"{short(value)} holds an unpaired surrogate, which no UTF-8 file can store"
                ) from None
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CocoEditError(f"object keys must be strings, got {key!r}")
            out[plain(key)] = plain(item)
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    to_list = getattr(value, "tolist", None)
    if callable(to_list):
        return plain(to_list())
    raise CocoEditError(f"a value of type {type(value).__name__} cannot be stored in a COCO file")


def as_int(value: Any, what: str) -> int:
    """``value`` as an int (numpy and torch integer scalars too), or `CocoEditError`."""
    if is_int(value):
        return int(value)
    to_item = getattr(value, "item", None)  # numpy / torch integer scalars
    if callable(to_item) and is_int(to_item()):
        return int(to_item())
    raise CocoEditError(f"{what} must be an integer, got {describe(value)}")


def as_int_list(values: Any, what: str) -> list[int]:
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
        raise CocoEditError(f"{what} must be a list of integers, got {describe(values)}")
    return [as_int(v, what) for v in values]


def id_problem(value: Any, key: str, *, category: bool = False) -> str | None:
    """Why ``value`` is not a usable id (None when it is)."""
    if value is MISSING:
        return f"missing '{key}'"
    if is_int(value):
        return None
    if isinstance(value, str):
        text = f"'{key}' is the string {short(value)}, not a number; COCO ids must be JSON integers"
        if value.strip().lstrip("-").isdigit():
            text += f" ({value.strip()}, not {short(value)})"
        if category:
            text += (
                ". String category ids are a known cause of DETR training that never learns"
                " (class_error stuck at 100, AP 0)"
            )
        return text
    if isinstance(value, float) and value.is_integer():
        return f"'{key}' is {value!r}; ids must be integers ({int(value)})"
    return f"'{key}' must be an integer, got {describe(value)}"
