"""COCO datasets in memory: read with validation, edit with undo, save atomically, recover after a crash.

`CocoDocument` holds one COCO file, either *instances* (boxes, polygons, RLE) or *panoptic* (one PNG of
segment ids per image plus ``segments_info``). It keeps the parsed JSON exactly as read, so every field it does
not understand, at every level, survives a load -> save round trip (same content, same key order).

What ``CocoDocument.load`` checks
---------------------------------
Errors raise ``CocoFormatError`` (a ``ValueError``) carrying every ``Problem(path, record, message)`` found:

- unreadable file, text that is not UTF-8, broken JSON (with line and column), nesting too deep, a top level
  that is not an object;
- missing ``images`` / ``annotations`` / ``categories``, or any of them not a list; records that are not objects;
- missing or mistyped required fields: image ``id``, ``file_name``, ``width``/``height`` (positive integers);
  category ``id`` (not negative), ``name``; annotation ``id``, ``image_id``, ``category_id``, ``bbox``
  (4 numbers). Ids written as strings (``"3"``) are named as such, since string category ids are a known cause
  of DETR training that never learns (class_error 100, AP 0);
- duplicate image, annotation and category ids (and, for panoptic, two entries for one image or duplicate
  segment ids within an image);
- annotations (or panoptic entries and segments) pointing at unknown images or categories;
- non-finite numbers (NaN, Infinity, overflowing literals) in bbox, area, width, height or score;
- boxes with negative width or height, boxes entirely outside their image, and boxes reaching past an edge by
  more than 10 % of the image size (usually ``[x0, y0, x1, y1]`` boxes stored where ``[x, y, w, h]`` belongs);
- known optional fields holding impossible values: ``iscrowd`` not 0/1, ``area`` negative, ``segmentation``
  neither polygons nor RLE, category ``isthing``/``color``/``supercategory`` of the wrong type, and a malformed
  ``detr_studio`` object (our own fields, below);
- panoptic, when the PNG folder is given or found (``<json without .json>/`` beside the file): a missing or
  unreadable PNG, a PNG whose size differs from its image, ``segments_info`` ids absent from the PNG, and ids
  in the PNG that ``segments_info`` does not list (0 is "unlabelled" unless listed).

Warnings load anyway and are listed in ``doc.warnings`` (``strict=True`` turns them into errors):

- boxes reaching past an edge by more than 1 px but at most 10 % of the image size (training clips them);
- zero-width or zero-height boxes (training skips them);
- ``width``/``height`` written as integral floats (``640.0``);
- duplicate file names, duplicate category names; annotation id 0 (pycocotools' evaluation reads 0 as "no
  match");
- NaN/Infinity in fields we do not interpret (kept as they are);
- a journal that cannot be used (see below).

Our own fields
--------------
Per annotation, under one key: ``"detr_studio": {"source": "model"|"human", "score": float|None,
"review": "pending"|"accepted"|"rejected", "model": str|None}``. Per image: ``"detr_studio": {"reviewed": bool}``.
Annotations without the key count as human-made and accepted.

Edits, saving, journal
----------------------
Every change is an `Edit` (a small dataclass) whose ``apply(doc)`` makes the change and returns the edit that
undoes it; ``doc.apply(edit)`` does that, marks the document dirty, bumps ``revision`` and appends the edit to
``<file>.journal`` beside the file. An edit that is refused raises ``CocoEditError`` and changes nothing.
``save()`` writes a temporary file in the same folder, fsyncs it, keeps the previous file as ``<file>.bak`` and
moves the new one into place with ``os.replace``; a failure raises ``CocoSaveError`` and leaves the old file
and the dirty flag as they were. A successful save removes the journal. ``load`` reads a journal written
against the very same file content (its SHA-256 is in the journal's first line) into ``doc.pending_journal``;
``doc.replay_journal()`` applies it. A journal left unreplayed is moved aside to ``<file>.journal.old`` by the
next edit or save, never silently deleted. A document without a file yet (a folder of images) journals beside
the file its first save will write once ``start_journal(target)`` is called; its journal is tied to the
document's content at that moment.

Image sizes read lazily
-----------------------
``CocoDocument.from_images(..., read_sizes=False)`` lists image files without opening them (a header read
costs ~0.15 ms, 15 s for 100,000 images): records have no ``width``/``height`` and ``ImageInfo`` reports 0 x 0
until the size is known. ``image_size(id)`` reads one header on demand, ``set_image_sizes`` takes sizes from
whoever decoded the images, and ``save``/``to_json`` read the rest first, so files on disk always carry sizes.
An image whose header cannot be read then is left out of the saved file, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import stat
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from detr_studio.data.images import ImageReadError, image_size

OUR_KEY = "detr_studio"
SOURCES = ("model", "human")
REVIEW_STATES = ("pending", "accepted", "rejected")
EDGE_SLACK_PX = 1.0  # overhang past an image edge that counts as rounding, not a problem
EDGE_TOLERANCE = 0.1  # overhang (fraction of the image side) still accepted with a warning
JOURNAL_FORMAT = 1
_SHOWN_PROBLEMS = 12
_MISSING = object()
_NUMERIC_TYPES = frozenset((int, float))  # exact types: bool is not a number here
_LARGE = 1e300  # below this, a JSON number converts to a finite float


# --------------------------------------------------------------------------------------------------------------
# Problems and exceptions


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: which file, which record in it, and what."""

    path: str
    record: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.record}: {self.message}" if self.record else f"{self.path}: {self.message}"
        )


class CocoFormatError(ValueError):
    """A COCO file (or data handed to `CocoDocument.new`) that cannot be used; ``problems`` lists why."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:_SHOWN_PROBLEMS]]
        if len(self.problems) > _SHOWN_PROBLEMS:
            lines.append(f"... and {len(self.problems) - _SHOWN_PROBLEMS} more problems")
        if len(self.problems) > 1:
            lines.insert(0, f"{self.problems[0].path}: {len(self.problems)} problems:")
        super().__init__("\n".join(lines) if lines else "invalid COCO data")


class CocoSaveError(OSError):
    """Saving failed; the message names the file. The previous file and the document's dirty state are kept."""


class CocoEditError(ValueError):
    """An edit or request the document refuses (unknown id, invalid value, wrong kind of document)."""


class _MaskReadError(Exception):
    """A panoptic PNG that cannot be read (internal; becomes a Problem)."""


class _Checker:
    """Collects errors and warnings about one source while records are checked."""

    def __init__(self, source: str):
        self.source = source
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, record: str, message: str) -> None:
        self.errors.append(Problem(self.source, record, message))

    def warn(self, record: str, message: str) -> None:
        self.warnings.append(Problem(self.source, record, message))

    def raise_edit_error(self) -> None:
        if self.errors:
            raise CocoEditError("; ".join(f"{p.record}: {p.message}" for p in self.errors))


# --------------------------------------------------------------------------------------------------------------
# Typed, read-only views of records


@dataclass(frozen=True)
class ImageInfo:
    id: int
    file_name: str
    width: int
    height: int
    reviewed: bool = False


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    supercategory: str | None = None
    isthing: bool | None = None
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Annotation:
    """An instance annotation. ``segmentation`` is the stored object itself: read it, do not change it."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # x, y, width, height in pixels
    area: float
    iscrowd: bool
    segmentation: Any = None
    source: str = "human"
    score: float | None = None
    review: str = "accepted"
    model: str | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic annotation; ``bbox`` and ``area`` are None where the file does not give them."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float] | None
    area: float | None
    iscrowd: bool
    isthing: bool | None


# --------------------------------------------------------------------------------------------------------------
# Small helpers


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
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


def _describe(value: Any) -> str:
    return "null" if value is None else f"{_json_type(value)} ({_short(value)})"


def _num(value: float) -> str:
    return f"{value:g}"


def _plain(value: Any) -> Any:
    """A fresh copy of ``value`` made of JSON types only (numpy/torch scalars and arrays become numbers/lists)."""
    if value is None or isinstance(value, str):
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
            out[key] = _plain(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    to_list = getattr(value, "tolist", None)
    if callable(to_list):
        return _plain(to_list())
    raise CocoEditError(f"a value of type {type(value).__name__} cannot be stored in a COCO file")


def _as_int(value: Any, what: str) -> int:
    if _is_int(value):
        return int(value)
    to_item = getattr(value, "item", None)  # numpy / torch integer scalars
    if callable(to_item) and _is_int(to_item()):
        return int(to_item())
    raise CocoEditError(f"{what} must be an integer, got {_describe(value)}")


def _as_int_list(values: Any, what: str) -> list[int]:
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
        raise CocoEditError(f"{what} must be a list of integers, got {_describe(values)}")
    return [_as_int(v, what) for v in values]


def _id_problem(value: Any, key: str, *, category: bool = False) -> str | None:
    """Why ``value`` is not a usable id (None when it is)."""
    if value is _MISSING:
        return f"missing '{key}'"
    if _is_int(value):
        return None
    if isinstance(value, str):
        text = f"'{key}' is the string {_short(value)}, not a number; COCO ids must be JSON integers"
        if value.strip().lstrip("-").isdigit():
            text += f" ({value.strip()}, not {_short(value)})"
        if category:
            text += (
                ". String category ids are a known cause of DETR training that never learns"
                " (class_error stuck at 100, AP 0)"
            )
        return text
    if isinstance(value, float) and value.is_integer():
        return f"'{key}' is {value!r}; ids must be integers ({int(value)})"
    return f"'{key}' must be an integer, got {_describe(value)}"


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] colours of a panoptic PNG -> [H, W] int64 segment ids (id = R + 256 G + 256² B)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"rgb2id needs an [H, W, 3] array, got shape {tuple(rgb.shape)}")
    c = rgb[..., :3].astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """[H, W] segment ids -> [H, W, 3] uint8 colours (the inverse of `rgb2id`)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def _read_id_png(path: Path) -> np.ndarray:
    """Segment ids of a panoptic PNG, [H, W] int64."""
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))  # [H, W, 3]
    except FileNotFoundError:
        raise _MaskReadError(f"panoptic PNG {path} not found") from None
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise _MaskReadError(f"cannot read panoptic PNG {path} ({exc})") from None
    return rgb2id(rgb)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable on POSIX; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _find_non_finite(data: Any, limit: int = 5) -> list[str]:
    """JSON paths of the first ``limit`` NaN/Infinity values in ``data``."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(found) < limit:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append(where or "top level")
        elif isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where else k, v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return found


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def _default_ours(review: str | None = None, source: str = "human") -> dict[str, Any]:
    if review is None:
        review = "pending" if source == "model" else "accepted"
    return {"source": source, "score": None, "review": review, "model": None}


# --------------------------------------------------------------------------------------------------------------
# Field checks shared by loading and editing


def _report_malformed_box(box: Any, where: str, ck: _Checker, key: str) -> None:
    if box is _MISSING:
        ck.error(where, f"missing '{key}' ([x, y, width, height])")
    elif not isinstance(box, list) or len(box) != 4:
        ck.error(where, f"'{key}' must be a list of 4 numbers [x, y, width, height], got {_describe(box)}")
    else:
        strings = " (numbers written as strings)" if any(isinstance(v, str) for v in box) else ""
        ck.error(where, f"'{key}' must hold 4 numbers, got {_short(box)}{strings}")


def _check_box(box: Any, size: tuple[int, int] | None, where: str, ck: _Checker, key: str = "bbox") -> None:
    """A COCO [x, y, width, height] box, against its image's (width, height) when known."""
    if not (type(box) is list and len(box) == 4 and _NUMERIC_TYPES.issuperset(map(type, box))):
        _report_malformed_box(box, where, ck, key)
        return
    try:
        x, y, w, h = map(float, box)
    except OverflowError:  # an integer too large for a float
        x = y = w = h = math.inf
    if not math.isfinite(x + y + w + h):
        ck.error(where, f"'{key}' {_short(box)} contains a non-finite or overflowing number")
        return
    if w > 0 and h > 0 and size is not None:
        width, height = size
        slack = EDGE_SLACK_PX
        if x >= -slack and y >= -slack and x + w <= width + slack and y + h <= height + slack:
            return  # the common case: a proper box inside its image
    shown = f"[{_num(x)}, {_num(y)}, {_num(w)}, {_num(h)}]"
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
            f"'{key}' {shown} reaches {_num(max(over_x, over_y))} px past the edge of the {width}x{height} image"
            f" (more than {EDGE_TOLERANCE:.0%} of its size); if your boxes are [x0, y0, x1, y1],"
            " convert them to [x, y, width, height]",
        )
    elif over_x > EDGE_SLACK_PX or over_y > EDGE_SLACK_PX:
        ck.warn(
            where,
            f"'{key}' {shown} reaches {_num(max(over_x, over_y))} px past the edge of the {width}x{height} image;"
            " training clips it",
        )


def _check_count(record: dict, key: str, where: str, ck: _Checker) -> None:
    """Optional non-negative finite number (area)."""
    value = record.get(key, _MISSING)
    if value is _MISSING:
        return
    if not _is_number(value):
        ck.error(where, f"'{key}' must be a number, got {_describe(value)}")
    elif not _is_finite(value):
        ck.error(where, f"'{key}' is not a finite number ({_short(value)})")
    elif value < 0:
        ck.error(where, f"'{key}' must not be negative, got {_num(value)}")


def _check_flag(record: dict, key: str, where: str, ck: _Checker) -> None:
    """Optional 0/1 flag (iscrowd, isthing)."""
    value = record.get(key, _MISSING)
    if value is not _MISSING and value not in (0, 1):  # True/False compare equal to 1/0
        ck.error(where, f"'{key}' must be 0 or 1, got {_describe(value)}")


def _check_segmentation(value: Any, where: str, ck: _Checker) -> None:
    if value is _MISSING:
        return
    if isinstance(value, dict):
        counts, size = value.get("counts", _MISSING), value.get("size", _MISSING)
        size_ok = isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v >= 0 for v in size)
        counts_ok = isinstance(counts, str) or (isinstance(counts, list) and all(_is_int(v) for v in counts))
        if not (size_ok and counts_ok):
            ck.error(
                where, "'segmentation' is an object but not an RLE with 'counts' and 'size' [height, width]"
            )
        return
    if isinstance(value, list):
        for poly in value:
            if type(poly) is not list or not _NUMERIC_TYPES.issuperset(map(type, poly)):
                ck.error(
                    where,
                    "'segmentation' must be a list of polygons, each a list of numbers [x1, y1, x2, ...]",
                )
                return
        return
    ck.error(where, f"'segmentation' must be a list of polygons or an RLE object, got {_describe(value)}")


def _check_our_annotation_fields(value: Any, where: str, ck: _Checker) -> None:
    if value is _MISSING:
        return
    if not isinstance(value, dict):
        ck.error(where, f"'{OUR_KEY}' must be an object, got {_describe(value)}")
        return
    source = value.get("source", _MISSING)
    if source is not _MISSING and source not in SOURCES:
        ck.error(where, f"'{OUR_KEY}.source' must be one of {list(SOURCES)}, got {_describe(source)}")
    review = value.get("review", _MISSING)
    if review is not _MISSING and review not in REVIEW_STATES:
        ck.error(where, f"'{OUR_KEY}.review' must be one of {list(REVIEW_STATES)}, got {_describe(review)}")
    score = value.get("score")
    if score is not None and not (_is_number(score) and _is_finite(score)):
        ck.error(where, f"'{OUR_KEY}.score' must be a finite number or null, got {_describe(score)}")
    model = value.get("model")
    if model is not None and not isinstance(model, str):
        ck.error(where, f"'{OUR_KEY}.model' must be a string or null, got {_describe(model)}")


def _check_category_fields(cat: dict, where: str, ck: _Checker) -> None:
    name = cat.get("name", _MISSING)
    if name is _MISSING:
        ck.error(where, "missing 'name'")
    elif not isinstance(name, str) or not name.strip():
        ck.error(where, f"'name' must be a non-empty string, got {_describe(name)}")
    sup = cat.get("supercategory", _MISSING)
    if sup is not _MISSING and not isinstance(sup, str):
        ck.error(where, f"'supercategory' must be a string, got {_describe(sup)}")
    _check_flag(cat, "isthing", where, ck)
    color = cat.get("color", _MISSING)
    if color is not _MISSING and not (
        isinstance(color, list) and len(color) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in color)
    ):
        ck.error(where, f"'color' must be [r, g, b] with values 0-255, got {_describe(color)}")


def _check_image_fields(img: dict, where: str, ck: _Checker, *, lazy_sizes: bool = False) -> None:
    """``lazy_sizes``: a record may lack both ``width`` and ``height`` (read from the image later)."""
    name = img.get("file_name", _MISSING)
    if name is _MISSING:
        ck.error(where, "missing 'file_name'")
    elif not isinstance(name, str) or not name:
        ck.error(where, f"'file_name' must be a non-empty string, got {_describe(name)}")
    unsized = lazy_sizes and "width" not in img and "height" not in img
    for key in () if unsized else ("width", "height"):
        value = img.get(key, _MISSING)
        if value is _MISSING:
            ck.error(where, f"missing '{key}'")
        elif _is_int(value):
            if value <= 0:
                ck.error(where, f"'{key}' must be positive, got {value}")
        elif isinstance(value, float) and _is_finite(value) and value.is_integer() and value > 0:
            ck.warn(where, f"'{key}' is {value!r}, a float; image sizes should be integers")
        elif isinstance(value, str):
            ck.error(where, f"'{key}' is the string {_short(value)}, not a number")
        else:
            ck.error(where, f"'{key}' must be a positive integer, got {_describe(value)}")
    ours = img.get(OUR_KEY, _MISSING)
    if ours is not _MISSING:
        if not isinstance(ours, dict):
            ck.error(where, f"'{OUR_KEY}' must be an object, got {_describe(ours)}")
        elif "reviewed" in ours and not isinstance(ours["reviewed"], bool):
            ck.error(where, f"'{OUR_KEY}.reviewed' must be true or false, got {_describe(ours['reviewed'])}")


def _image_size_of(img: dict) -> tuple[int, int] | None:
    """(width, height) of an image record when both are usable."""
    w, h = img.get("width"), img.get("height")
    if _is_number(w) and _is_number(h) and _is_finite(w) and _is_finite(h) and w > 0 and h > 0:
        return int(w), int(h)
    return None


# --------------------------------------------------------------------------------------------------------------
# The document


class CocoDocument:
    """One COCO dataset in memory. Make it with `load`, `new` or `from_images`."""

    def __init__(
        self,
        data: Any,
        *,
        source: str = "<new document>",
        path: Path | None = None,
        image_root: Path | None = None,
        panoptic_root: Path | None = None,
        strict: bool = False,
        check_masks: bool = True,
        notes: Sequence[str] = (),
        lazy_sizes: bool = False,
    ):
        self._data: dict[str, Any] = data
        self._source = source
        self.path: Path | None = path
        self.image_root: Path | None = image_root
        self.panoptic_root: Path | None = panoptic_root
        self.warnings: list[Problem] = []
        self.dirty = False
        self.revision = 0
        self.is_panoptic = False
        self.pending_journal: list[Edit] = []
        self.journal_error: str | None = None
        self._base_sha256: str | None = None
        self._journal_adopted = False  # the journal beside the file describes this document's edits
        self._journal_incomplete = False  # the journal found at load had lines we could not read
        self._journal_target: Path | None = None  # where the journal of a document without a file goes
        self._lazy_sizes = lazy_sizes  # image records may lack width/height until read from the image
        self._unreadable: set[int] = set()  # lazily sized images whose header could not be read
        self._images: dict[int, dict] = {}
        self._image_infos: dict[int, ImageInfo] = {}  # made on first read, dropped when the record changes
        self._images_by_name: dict[str, dict] = {}
        self._sizes: dict[int, tuple[int, int] | None] = {}  # image id -> (width, height) when valid
        self._categories: dict[int, dict] = {}
        self._anns: dict[int, dict] = {}
        self._anns_by_image: dict[int, list[int]] = {}
        self._panoptic: dict[int, dict] = {}
        self._next_ann_id = 1

        ck = _Checker(source)
        for note in notes:
            ck.warn("", note)
        self._index_all(ck)
        if not ck.errors and self.is_panoptic and panoptic_root is not None and check_masks:
            self._check_pngs(panoptic_root, ck)
        if ck.errors or (strict and ck.warnings):
            raise CocoFormatError(ck.errors + (ck.warnings if strict else []))
        self.warnings = ck.warnings

    # ---- reading -----------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        image_root: str | os.PathLike[str] | None = None,
        *,
        panoptic_root: str | os.PathLike[str] | None = None,
        strict: bool = False,
        check_masks: bool = True,
    ) -> CocoDocument:
        """Read and check a COCO instances or panoptic JSON file; raise `CocoFormatError` naming every problem.

        ``image_root`` defaults to a guess (the file's folder, or ``../<split>`` for the official layout);
        ``panoptic_root`` to the folder named like the file without ``.json``, when it exists. ``check_masks``
        False skips reading the panoptic PNGs.
        """
        path = Path(path)
        raw = cls._read_bytes(path)
        data, notes = cls._parse(raw, path)
        if panoptic_root is None and path.with_suffix("").is_dir():
            panoptic_root = path.with_suffix("")
        doc = cls(
            data,
            source=str(path),
            path=path,
            image_root=Path(image_root) if image_root is not None else None,
            panoptic_root=Path(panoptic_root) if panoptic_root is not None else None,
            strict=strict,
            check_masks=check_masks,
            notes=notes,
        )
        if image_root is None:
            doc.image_root = doc._guess_image_root(path)
        doc._base_sha256 = hashlib.sha256(raw).hexdigest()
        doc._look_for_journal()
        return doc

    @staticmethod
    def _read_bytes(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            reason = "no such file"
        except IsADirectoryError:
            reason = "is a folder, not a COCO JSON file"
        except PermissionError:
            reason = "permission denied"
        except OSError as exc:
            reason = f"cannot read ({_os_reason(exc)})"
        raise CocoFormatError([Problem(str(path), "", reason)])

    @staticmethod
    def _parse(raw: bytes, path: Path) -> tuple[Any, list[str]]:
        """(parsed JSON, notes about it)."""

        def fail(message: str) -> CocoFormatError:
            return CocoFormatError([Problem(str(path), "", message)])

        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise fail("the file is UTF-16 text; COCO JSON files must be UTF-8")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise fail(
                f"not UTF-8 text (invalid byte at offset {exc.start}); is this really a JSON file?"
            ) from None
        constants: list[str] = []

        def constant(name: str) -> float:
            constants.append(name)
            return float(name)

        try:
            data = json.loads(text, parse_constant=constant)
        except json.JSONDecodeError as exc:
            if not text.strip():
                raise fail("the file is empty") from None
            hint = " (the file ends early: it may be truncated)" if exc.pos >= len(text.rstrip()) else ""
            raise fail(f"broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}") from None
        except RecursionError:
            raise fail("the JSON is nested too deeply to read") from None
        notes = []
        if constants:
            where = ", ".join(_find_non_finite(data))
            notes.append(f"NaN or Infinity (not valid JSON; kept as is) at {where}")
        return data, notes

    def _guess_image_root(self, path: Path) -> Path:
        folder = path.parent.absolute()
        first = next((img["file_name"] for img in self._images.values()), None)
        candidates = [folder]
        split = path.stem.rsplit("_", 1)[-1]
        if split and split != path.stem:
            candidates += [folder.parent / split, folder / split]
        if first is not None:
            for candidate in candidates:
                if (candidate / first).is_file():
                    return candidate
        return folder

    # ---- checking and indexing ---------------------------------------------------------------------------

    def _index_all(self, ck: _Checker) -> None:
        data = self._data
        if not isinstance(data, dict):
            ck.error(
                "top level",
                "must be a JSON object with 'images', 'annotations' and 'categories',"
                f" got {_json_type(data)}",
            )
            return
        for key in ("images", "annotations", "categories"):
            if key not in data:
                ck.error("top level", f"missing required key '{key}'")
            elif not isinstance(data[key], list):
                ck.error("top level", f"'{key}' must be a list, got {_describe(data[key])}")
        if ck.errors:
            return
        self._index_categories(ck)
        self._index_images(ck)
        self.is_panoptic = any(isinstance(a, dict) and "segments_info" in a for a in data["annotations"])
        if self.is_panoptic:
            self._index_panoptic(ck)
        else:
            self._index_annotations(ck)

    def _index_categories(self, ck: _Checker) -> None:
        first_at: dict[int, int] = {}
        names: dict[str, int] = {}
        for i, cat in enumerate(self._data["categories"]):
            where = f"categories[{i}]"
            if not isinstance(cat, dict):
                ck.error(where, f"must be an object, got {_describe(cat)}")
                continue
            cid = cat.get("id", _MISSING)
            problem = _id_problem(cid, "id", category=True)
            if problem:
                ck.error(where, problem)
                continue
            if cid < 0:
                ck.error(where, f"category id {cid} is negative; DETR uses the id as the class index")
                continue
            if cid in first_at:
                ck.error(where, f"duplicate category id {cid} (also categories[{first_at[cid]}])")
                continue
            first_at[cid] = i
            where = f"category id {cid}"
            _check_category_fields(cat, where, ck)
            name = cat.get("name")
            if isinstance(name, str):
                if name in names:
                    ck.warn(where, f"name {name!r} is also used by category id {names[name]}")
                names.setdefault(name, cid)
            self._categories[cid] = cat

    def _index_images(self, ck: _Checker) -> None:
        first_at: dict[int, int] = {}
        for i, img in enumerate(self._data["images"]):
            where = f"images[{i}]"
            if not isinstance(img, dict):
                ck.error(where, f"must be an object, got {_describe(img)}")
                continue
            iid = img.get("id", _MISSING)
            problem = _id_problem(iid, "id")
            if problem:
                ck.error(where, problem)
                continue
            if iid in first_at:
                ck.error(where, f"duplicate image id {iid} (also images[{first_at[iid]}])")
                continue
            first_at[iid] = i
            where = f"image id {iid}"
            _check_image_fields(img, where, ck, lazy_sizes=self._lazy_sizes)
            self._images[iid] = img
            self._sizes[iid] = _image_size_of(img)
            self._anns_by_image[iid] = []
            name = img.get("file_name")
            if isinstance(name, str):
                if name in self._images_by_name:
                    other = self._images_by_name[name]["id"]
                    ck.warn(where, f"file_name {name!r} is also used by image id {other}")
                else:
                    self._images_by_name[name] = img

    def _check_annotation(self, ann: dict, where: str, ck: _Checker) -> None:
        """Everything about one instance annotation except its id (fast paths first: this runs per record)."""
        size = None
        iid = ann.get("image_id", _MISSING)
        if type(iid) is int and iid in self._images:
            size = self._sizes[iid]
        else:
            problem = _id_problem(iid, "image_id")
            ck.error(where, problem or f"image_id {iid} is not in 'images'")
        cid = ann.get("category_id", _MISSING)
        if not (type(cid) is int and cid in self._categories):
            problem = _id_problem(cid, "category_id", category=True)
            ck.error(
                where,
                problem or f"category_id {cid} is not in 'categories' (known: {self._known_categories()})",
            )
        _check_box(ann.get("bbox", _MISSING), size, where, ck)
        area = ann.get("area", 0)
        if not (type(area) in _NUMERIC_TYPES and 0 <= area < _LARGE):
            _check_count(ann, "area", where, ck)
        _check_flag(ann, "iscrowd", where, ck)
        if "segmentation" in ann:
            _check_segmentation(ann["segmentation"], where, ck)
        if OUR_KEY in ann:
            _check_our_annotation_fields(ann[OUR_KEY], where, ck)

    def _known_categories(self) -> str:
        ids = sorted(self._categories)
        shown = ", ".join(str(i) for i in ids[:10])
        return (shown + ", ...") if len(ids) > 10 else (shown or "none")

    def _index_annotations(self, ck: _Checker) -> None:
        first_at: dict[int, int] = {}
        for i, ann in enumerate(self._data["annotations"]):
            where = f"annotations[{i}]"
            if not isinstance(ann, dict):
                ck.error(where, f"must be an object, got {_describe(ann)}")
                continue
            aid = ann.get("id", _MISSING)
            if type(aid) is not int:
                ck.error(where, _id_problem(aid, "id") or "")
                continue
            if aid in first_at:
                ck.error(where, f"duplicate annotation id {aid} (also annotations[{first_at[aid]}])")
                continue
            first_at[aid] = i
            where = f"annotation id {aid}"
            if aid == 0:
                ck.warn(
                    where,
                    "id 0: pycocotools' evaluation reads 0 as 'no match', which skews AP; use ids from 1",
                )
            self._check_annotation(ann, where, ck)
            self._anns[aid] = ann
            iid = ann.get("image_id")
            if type(iid) is int and iid in self._anns_by_image:
                self._anns_by_image[iid].append(aid)
        self._next_ann_id = max(self._anns, default=0) + 1

    def _index_panoptic(self, ck: _Checker) -> None:
        first_at: dict[int, int] = {}
        for i, ann in enumerate(self._data["annotations"]):
            where = f"annotations[{i}]"
            if not isinstance(ann, dict):
                ck.error(where, f"must be an object, got {_describe(ann)}")
                continue
            if "segments_info" not in ann:
                ck.error(
                    where,
                    "has no 'segments_info' although other entries do (a panoptic file needs it on all)",
                )
                continue
            iid = ann.get("image_id", _MISSING)
            problem = _id_problem(iid, "image_id")
            if problem:
                ck.error(where, problem)
                continue
            if iid not in self._images:
                ck.error(where, f"image_id {iid} is not in 'images'")
                continue
            if iid in first_at:
                ck.error(
                    where, f"a second panoptic annotation for image {iid} (also annotations[{first_at[iid]}])"
                )
                continue
            first_at[iid] = i
            where = f"panoptic annotation for image {iid}"
            name = ann.get("file_name", _MISSING)
            if name is _MISSING:
                ck.error(where, "missing 'file_name' (the PNG of segment ids)")
            elif not isinstance(name, str) or not name:
                ck.error(where, f"'file_name' must be a non-empty string, got {_describe(name)}")
            segments = ann["segments_info"]
            if not isinstance(segments, list):
                ck.error(where, f"'segments_info' must be a list, got {_describe(segments)}")
                continue
            self._check_segments(segments, iid, where, ck)
            self._panoptic[iid] = ann

    def _check_segments(self, segments: list, iid: int, where: str, ck: _Checker) -> None:
        size = self._sizes[iid]
        seen: dict[int, int] = {}
        for j, seg in enumerate(segments):
            swhere = f"{where}, segments_info[{j}]"
            if not isinstance(seg, dict):
                ck.error(swhere, f"must be an object, got {_describe(seg)}")
                continue
            sid = seg.get("id", _MISSING)
            problem = _id_problem(sid, "id")
            if problem:
                ck.error(swhere, problem)
                continue
            if not 0 <= sid < 256**3:
                ck.error(swhere, f"segment id {sid} cannot be stored as a PNG colour (0 to 16777215)")
                continue
            if sid in seen:
                ck.error(swhere, f"duplicate segment id {sid} (also segments_info[{seen[sid]}])")
                continue
            seen[sid] = j
            swhere = f"{where}, segment id {sid}"
            cid = seg.get("category_id", _MISSING)
            problem = _id_problem(cid, "category_id", category=True)
            if problem:
                ck.error(swhere, problem)
            elif cid not in self._categories:
                ck.error(
                    swhere, f"category_id {cid} is not in 'categories' (known: {self._known_categories()})"
                )
            if "bbox" in seg:
                _check_box(seg["bbox"], size, swhere, ck)
            _check_count(seg, "area", swhere, ck)
            _check_flag(seg, "iscrowd", swhere, ck)
            _check_flag(seg, "isthing", swhere, ck)

    def _check_pngs(self, root: Path, ck: _Checker) -> None:
        for iid, ann in self._panoptic.items():
            where = f"panoptic annotation for image {iid}"
            png = root / ann["file_name"]
            try:
                ids = _read_id_png(png)  # [H, W]
            except _MaskReadError as exc:
                ck.error(where, str(exc))
                continue
            size = self._sizes[iid]
            if size is not None and (ids.shape[1], ids.shape[0]) != size:
                ck.error(
                    where, f"{png} is {ids.shape[1]}x{ids.shape[0]} but the image is {size[0]}x{size[1]}"
                )
                continue
            present = {int(v) for v in np.unique(ids)}
            listed = {seg["id"] for seg in ann["segments_info"]}
            missing = sorted(listed - present)
            if missing:
                ck.error(where, f"segments_info ids {missing[:10]} do not appear in {png}")
            extra = sorted(present - listed - {0})
            if extra:
                ck.error(where, f"{png} contains segment ids {extra[:10]} that segments_info does not list")

    # ---- creating ----------------------------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        categories: Iterable[str | dict[str, Any]],
        images: Iterable[dict[str, Any]] = (),
        *,
        image_root: str | os.PathLike[str] | None = None,
    ) -> CocoDocument:
        """An empty instances dataset. Categories given as names get ids 1, 2, ... (COCO counts from 1)."""
        cats = []
        for i, cat in enumerate(categories, start=1):
            cats.append({"id": i, "name": cat} if isinstance(cat, str) else _plain_input(cat))
        data = {"images": [_plain_input(img) for img in images], "annotations": [], "categories": cats}
        return cls(data, image_root=Path(image_root) if image_root is not None else None)

    @classmethod
    def from_images(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        categories: Iterable[str | dict[str, Any]] = (),
        *,
        image_root: str | os.PathLike[str] | None = None,
        read_sizes: bool = True,
    ) -> CocoDocument:
        """An empty dataset over image files. ``file_name`` is relative to ``image_root`` (default: the folder
        common to all files).

        ``read_sizes`` True reads every header now and skips unreadable files with a warning. False (what a
        folder of 100,000 images needs) leaves ``width``/``height`` out of the records: they are read when
        first asked for (`image_size`), can be given by whoever decodes the image (`set_image_sizes`), and
        are read for the rest before saving (`save`, `to_json`)."""
        files = [os.path.abspath(os.fspath(p)) for p in paths]
        if image_root is not None:
            root: str | None = os.path.abspath(os.fspath(image_root))
        elif files:
            root = os.path.commonpath([os.path.dirname(f) for f in files])
        else:
            root = None
        prefix = root.rstrip(os.sep) + os.sep if root is not None else None
        names = []
        for f in files:
            if prefix is not None and f.startswith(prefix):
                names.append(f[len(prefix) :].replace(os.sep, "/"))
            else:
                names.append(Path(f).as_posix())
        return cls.from_image_names(names, categories, image_root=root, read_sizes=read_sizes)

    @classmethod
    def from_image_names(
        cls,
        file_names: Iterable[str],
        categories: Iterable[str | dict[str, Any]] = (),
        *,
        image_root: str | os.PathLike[str] | None = None,
        read_sizes: bool = True,
    ) -> CocoDocument:
        """`from_images` for names already relative to ``image_root`` (``/``-separated), in the order given:
        image ids are 1, 2, ... The records are made here, so they are indexed without the checks `load`
        runs (100,000 names take a tenth of a second)."""
        root = Path(image_root) if image_root is not None else None
        cats = [
            {"id": i, "name": c} if isinstance(c, str) else _plain_input(c)
            for i, c in enumerate(categories, 1)
        ]
        doc = cls(
            {"images": [], "annotations": [], "categories": cats},
            image_root=root,
            lazy_sizes=not read_sizes,
        )
        records: list[dict[str, Any]] = []
        for name in file_names:
            record: dict[str, Any] = {"id": len(records) + 1, "file_name": name}
            if read_sizes:
                path = str(root / name) if root is not None else name
                try:
                    record["width"], record["height"] = image_size(path)
                except ImageReadError as exc:
                    doc.warnings.append(Problem(path, "skipped", str(exc).removeprefix(f"{path}: ")))
                    continue
            records.append(record)
        doc._data["images"] = records
        for rec in records:
            iid = rec["id"]
            doc._images[iid] = rec
            doc._sizes[iid] = (rec["width"], rec["height"]) if read_sizes else None
            doc._anns_by_image[iid] = []
            doc._images_by_name.setdefault(rec["file_name"], rec)
        return doc

    # ---- image sizes read lazily -------------------------------------------------------------------------

    def has_size(self, image_id: int) -> bool:
        """Whether the image's width and height are known (always, unless made with ``read_sizes=False``)."""
        self._image_record(image_id)
        return self._sizes.get(image_id) is not None

    def missing_sizes(self) -> list[tuple[int, str]]:
        """(image id, file_name) of the images whose size has not been read yet, in document order."""
        return [(iid, self._images[iid]["file_name"]) for iid, size in self._sizes.items() if size is None]

    def image_size(self, image_id: int) -> tuple[int, int]:
        """(width, height) of an image, read from its header (and kept) when not known yet. Raises
        `ImageReadError` naming the file when the header cannot be read."""
        size = self._sizes.get(image_id)
        if size is None:
            self._image_record(image_id)
            size = image_size(self.image_path(image_id))
            self.set_image_sizes({image_id: size})
        return size

    def set_image_sizes(self, sizes: dict[int, tuple[int, int]]) -> None:
        """Record sizes found by whoever decoded the images (after EXIF orientation). Only images without a
        size take one; unknown ids and sizes that are not two positive integers are ignored. This is not an
        edit: the size belongs to the file, so nothing becomes dirty or journaled."""
        for iid, size in sizes.items():
            rec = self._images.get(iid)
            if rec is None or self._sizes.get(iid) is not None:
                continue
            width, height = size
            if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
                continue
            ordered = {
                "id": rec["id"],
                "file_name": rec["file_name"],
                "width": int(width),
                "height": int(height),
            }
            ordered.update((k, v) for k, v in rec.items() if k not in ordered)
            _replace_contents(rec, ordered)
            self._image_infos.pop(iid, None)
            self._sizes[iid] = (int(width), int(height))
            self._unreadable.discard(iid)

    def read_missing_sizes(self) -> list[Problem]:
        """Read the header of every image whose size is not known yet; returns the files that failed (each
        also added to ``warnings`` once). Such images are left out of what `save` writes."""
        problems = []
        for iid, _name in self.missing_sizes():
            path = self.image_path(iid)
            try:
                self.set_image_sizes({iid: image_size(path)})
            except ImageReadError as exc:
                problem = Problem(str(path), f"image id {iid}", str(exc).removeprefix(f"{path}: "))
                problems.append(problem)
                if iid not in self._unreadable:
                    self._unreadable.add(iid)
                    self.warnings.append(
                        Problem(
                            problem.path, problem.record, f"{problem.message}; left out of the saved file"
                        )
                    )
        return problems

    def _output(self) -> dict[str, Any]:
        """What `save` writes: the document, after reading missing image sizes; images whose header cannot
        be read are left out (refused when they have annotations: that would lose them)."""
        self.read_missing_sizes()
        unsized = {iid for iid, _name in self.missing_sizes()}
        if not unsized:
            return self._data
        labelled = sorted(iid for iid in unsized if self._anns_by_image.get(iid) or iid in self._panoptic)
        if labelled:
            raise CocoEditError(
                f"{self.image_path(labelled[0])} (image id {labelled[0]}) has annotations but its size cannot be"
                " read from the file"
            )
        out = dict(self._data)
        out["images"] = [img for img in self._data["images"] if img["id"] not in unsized]
        return out

    # ---- read access -------------------------------------------------------------------------------------

    @property
    def images(self) -> list[ImageInfo]:
        return [self._image_info(img) for img in self._data["images"]]

    @property
    def image_ids(self) -> list[int]:
        """Image ids in document order (cheaper than `images` when only ids are needed)."""
        return list(self._images)

    def reviewed_image_ids(self) -> list[int]:
        """Ids of the images marked reviewed, in document order, read without building `ImageInfo`s (a
        100,000-image project answers in milliseconds)."""
        ids = []
        for img in self._data["images"]:
            ours = img.get(OUR_KEY)
            if isinstance(ours, dict) and ours.get("reviewed", False):
                ids.append(img["id"])
        return ids

    @property
    def categories(self) -> list[Category]:
        return [self._category_info(cat) for cat in self._data["categories"]]

    @property
    def annotations(self) -> list[Annotation]:
        self._require_instances("list annotations")
        return [_annotation_info(ann) for ann in self._data["annotations"]]

    @property
    def num_classes(self) -> int:
        """Max category id + 1, as in official DETR: the head has num_classes + 1 outputs, the last no-object."""
        return max(self._categories, default=-1) + 1

    @property
    def class_names(self) -> list[str]:
        """Names indexed by category id, length `num_classes`; ids no category uses read "N/A"."""
        names = ["N/A"] * self.num_classes
        for cid, cat in self._categories.items():
            names[cid] = cat["name"]
        return names

    @property
    def journal_path(self) -> Path | None:
        target = self.path or self._journal_target
        return _journal_path(target) if target is not None else None

    def image(self, image_id: int) -> ImageInfo:
        return self._image_info(self._image_record(image_id))

    def category(self, category_id: int) -> Category:
        return self._category_info(self._category_record(category_id))

    def annotation(self, annotation_id: int) -> Annotation:
        return _annotation_info(self._annotation_record(annotation_id))

    def annotations_for(self, image_id: int) -> list[Annotation]:
        self._require_instances("list annotations")
        self._image_record(image_id)
        return [_annotation_info(self._anns[aid]) for aid in self._anns_by_image[image_id]]

    def image_by_file_name(self, file_name: str) -> ImageInfo | None:
        img = self._images_by_name.get(file_name)
        return self._image_info(img) if img is not None else None

    def image_path(self, image_id: int) -> Path:
        name = self._image_record(image_id)["file_name"]
        return (self.image_root or Path(".")) / name

    def annotation_counts(self) -> dict[int, int]:
        """Number of annotations (panoptic: segments) per category id, every category included."""
        counts = dict.fromkeys(self._categories, 0)
        for cid in self._category_uses():
            counts[cid] += 1
        return counts

    def segments_for(self, image_id: int) -> list[Segment]:
        self._require_panoptic("list segments")
        self._image_record(image_id)
        ann = self._panoptic.get(image_id)
        if ann is None:
            return []
        return [self._segment_info(image_id, seg) for seg in ann["segments_info"]]

    def panoptic_png(self, image_id: int) -> Path | None:
        """Where the PNG of segment ids for ``image_id`` is (None without a panoptic folder or entry)."""
        self._require_panoptic("find panoptic PNGs")
        ann = self._panoptic.get(image_id)
        if ann is None or self.panoptic_root is None:
            return None
        return self.panoptic_root / ann["file_name"]

    def to_json(self) -> dict[str, Any]:
        """A deep copy of the whole document as JSON data, as `save` would write it."""
        return json.loads(json.dumps(self._output()))

    def __repr__(self) -> str:
        kind = "panoptic" if self.is_panoptic else "instances"
        count = len(self._panoptic) if self.is_panoptic else len(self._anns)
        return (
            f"CocoDocument({str(self.path) if self.path else '<unsaved>'}, {kind}, {len(self._images)} images,"
            f" {count} annotations, {len(self._categories)} categories{', dirty' if self.dirty else ''})"
        )

    def _image_info(self, img: dict) -> ImageInfo:
        info = self._image_infos.get(img["id"])
        if info is None:
            info = self._image_infos[img["id"]] = self._make_image_info(img)
        return info

    @staticmethod
    def _make_image_info(img: dict) -> ImageInfo:
        ours = img.get(OUR_KEY)
        reviewed = bool(ours.get("reviewed", False)) if isinstance(ours, dict) else False
        width, height = img.get("width", 0), img.get("height", 0)  # 0: not read yet (lazy sizes)
        return ImageInfo(img["id"], img["file_name"], int(width), int(height), reviewed)

    @staticmethod
    def _category_info(cat: dict) -> Category:
        sup = cat.get("supercategory")
        isthing = cat.get("isthing")
        color = cat.get("color")
        return Category(
            cat["id"],
            cat["name"],
            sup if isinstance(sup, str) else None,
            bool(isthing) if isthing is not None else None,
            (color[0], color[1], color[2]) if isinstance(color, list) else None,
        )

    def _segment_info(self, image_id: int, seg: dict) -> Segment:
        box = seg.get("bbox")
        area = seg.get("area")
        isthing = seg.get("isthing", self._categories[seg["category_id"]].get("isthing"))
        return Segment(
            seg["id"],
            image_id,
            seg["category_id"],
            (float(box[0]), float(box[1]), float(box[2]), float(box[3])) if box is not None else None,
            float(area) if area is not None else None,
            bool(seg.get("iscrowd", 0)),
            bool(isthing) if isthing is not None else None,
        )

    def _image_record(self, image_id: int) -> dict:
        img = self._images.get(image_id)
        if img is None:
            raise KeyError(f"no image with id {image_id!r}")
        return img

    def _category_record(self, category_id: int) -> dict:
        cat = self._categories.get(category_id)
        if cat is None:
            raise KeyError(f"no category with id {category_id!r}")
        return cat

    def _annotation_record(self, annotation_id: int) -> dict:
        self._require_instances("read annotations")
        ann = self._anns.get(annotation_id)
        if ann is None:
            raise KeyError(f"no annotation with id {annotation_id!r}")
        return ann

    def _require_instances(self, what: str) -> None:
        if self.is_panoptic:
            raise CocoEditError(
                f"{self._source} is a panoptic dataset: cannot {what}; use segments_for() or panoptic_to_instances()"
            )

    def _require_panoptic(self, what: str) -> None:
        if not self.is_panoptic:
            raise CocoEditError(f"{self._source} is not a panoptic dataset: cannot {what}")

    def _category_uses(self) -> Iterable[int]:
        if self.is_panoptic:
            for ann in self._panoptic.values():
                for seg in ann["segments_info"]:
                    yield seg["category_id"]
        else:
            for ann in self._anns.values():
                yield ann["category_id"]

    # ---- panoptic -> instances ---------------------------------------------------------------------------

    def panoptic_to_instances(self, panoptic_root: str | os.PathLike[str] | None = None) -> CocoDocument:
        """An instances document with one annotation per segment: box from ``segments_info`` (or from the mask),
        mask as RLE from the PNG when the PNG folder is known. Images and categories are copied."""
        from pycocotools import mask as mask_utils

        self._require_panoptic("convert to instances")
        root = Path(panoptic_root) if panoptic_root is not None else self.panoptic_root
        anns: list[dict[str, Any]] = []
        for iid, ann in self._panoptic.items():
            where = f"panoptic annotation for image {iid}"
            ids = None
            if root is not None:
                try:
                    ids = _read_id_png(root / ann["file_name"])  # [H, W]
                except _MaskReadError as exc:
                    raise CocoFormatError([Problem(self._source, where, str(exc))]) from None
            for seg in ann["segments_info"]:
                rec: dict[str, Any] = {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": seg["category_id"],
                }
                rle = None
                if ids is not None:
                    mask = np.asfortranarray((ids == seg["id"]).astype(np.uint8))  # [H, W]
                    rle = mask_utils.encode(mask)
                    rle["counts"] = rle["counts"].decode("ascii")
                    box = seg.get("bbox") or [float(v) for v in mask_utils.toBbox(rle)]
                    area = seg.get("area", int(mask.sum()))
                elif "bbox" in seg:
                    box = seg["bbox"]
                    area = seg.get("area", float(box[2]) * float(box[3]))
                else:
                    raise CocoFormatError(
                        [
                            Problem(
                                self._source,
                                f"{where}, segment id {seg['id']}",
                                "no 'bbox' and no PNG folder",
                            )
                        ]
                    )
                rec.update(bbox=_plain(box), area=area, iscrowd=int(seg.get("iscrowd", 0)))
                if rle is not None:
                    rec["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}
                anns.append(rec)
        data = {key: (anns if key == "annotations" else _plain(value)) for key, value in self._data.items()}
        return CocoDocument(data, source=f"{self._source} (as instances)", image_root=self.image_root)

    # ---- editing -----------------------------------------------------------------------------------------

    def apply(self, edit: Edit) -> Edit:
        """Make ``edit``, mark the document dirty, journal it, and return the edit that undoes it."""
        inverse = edit.apply(self)
        self.revision += 1
        self.dirty = True
        self._append_to_journal(edit)
        return inverse

    def next_annotation_id(self) -> int:
        """A fresh annotation id; ids are never handed out twice by one document."""
        aid = self._next_ann_id
        self._next_ann_id += 1
        return aid

    def new_annotation(
        self,
        image_id: int,
        category_id: int,
        bbox: Sequence[float],
        *,
        source: str = "human",
        score: float | None = None,
        review: str | None = None,
        model: str | None = None,
        segmentation: Any = None,
    ) -> dict[str, Any]:
        """An annotation record with a fresh id, ready for `AddAnnotations` (nothing is changed yet).
        ``review`` defaults to "pending" for model boxes and "accepted" for human ones."""
        x, y, w, h = (float(v) for v in _plain(list(bbox)))
        ann: dict[str, Any] = {
            "id": self.next_annotation_id(),
            "image_id": _as_int(image_id, "image_id"),
            "category_id": _as_int(category_id, "category_id"),
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
        }
        if segmentation is not None:
            ann["segmentation"] = _plain(segmentation)
        ours = _default_ours(review, source)
        ours.update(score=float(score) if score is not None else None, model=model)
        ann[OUR_KEY] = ours
        return ann

    def add(self, image_id: int, category_id: int, bbox: Sequence[float], **kwargs: Any) -> Edit:
        """Add one annotation (see `new_annotation` for the options); returns the undo edit, whose
        ``annotation_ids`` holds the new id."""
        return self.apply(AddAnnotations([self.new_annotation(image_id, category_id, bbox, **kwargs)]))

    def update(self, annotation_id: int, **fields: Any) -> Edit:
        """Set fields of an annotation. A new ``bbox`` also sets ``area`` when the annotation has no mask."""
        ann = self._anns.get(annotation_id)
        if ann is not None and "bbox" in fields and "area" not in fields and not ann.get("segmentation"):
            box = _plain(fields["bbox"])
            if isinstance(box, list) and len(box) == 4 and all(_is_number(v) and _is_finite(v) for v in box):
                fields["area"] = float(box[2]) * float(box[3])
        return self.apply(UpdateAnnotation(annotation_id, fields))

    def remove(self, *annotation_ids: int) -> Edit:
        return self.apply(RemoveAnnotations(list(annotation_ids)))

    def relabel(self, annotation_ids: Iterable[int], category_id: int) -> Edit:
        return self.apply(Relabel(list(annotation_ids), category_id))

    def set_review_state(self, annotation_ids: Iterable[int], review: str) -> Edit:
        return self.apply(SetReviewState(list(annotation_ids), review))

    def set_image_reviewed(self, image_id: int, reviewed: bool = True) -> Edit:
        return self.apply(SetImageReviewed(image_id, reviewed))

    def add_category(self, name: str, *, category_id: int | None = None, **fields: Any) -> Edit:
        """Add a category (id: one above the largest by default); returns the undo edit."""
        cid = category_id if category_id is not None else max(max(self._categories, default=0) + 1, 1)
        return self.apply(AddCategory({"id": cid, "name": name, **fields}))

    def rename_category(self, category_id: int, name: str) -> Edit:
        return self.apply(RenameCategory(category_id, name))

    def set_category_color(self, category_id: int, color: Sequence[int] | None) -> Edit:
        """Give a category its own colour ``[r, g, b]`` (kept in the file, as COCO panoptic categories do), or
        drop it with None; returns the undo edit."""
        if color is None:
            return self.apply(UpdateCategory(category_id, drop=["color"]))
        return self.apply(UpdateCategory(category_id, {"color": _plain(list(color))}))

    def merge_categories(self, source_ids: Iterable[int], target_id: int) -> Edit:
        return self.apply(MergeCategories(list(source_ids), target_id))

    def remove_category(self, category_id: int) -> Edit:
        return self.apply(RemoveCategory(category_id))

    # ---- primitive changes used by the edits (they assume the edit has checked everything) ----------------

    def _insert_annotations(self, records: list[dict], indices: list[int] | None) -> None:
        lst = self._data["annotations"]
        for rec in records:
            self._anns[rec["id"]] = rec
            self._next_ann_id = max(self._next_ann_id, rec["id"] + 1)
        if indices is None:
            lst.extend(records)
            for rec in records:
                self._anns_by_image[rec["image_id"]].append(rec["id"])
            return
        for index, rec in sorted(zip(indices, records), key=lambda pair: pair[0]):
            lst.insert(index, rec)
        self._reindex_images({rec["image_id"] for rec in records})

    def _delete_annotations(self, ids: set[int]) -> tuple[list[dict], list[int]]:
        """Remove annotations; returns the records and their former list positions, in list order."""
        lst = self._data["annotations"]
        kept, removed, positions = [], [], []
        for i, rec in enumerate(lst):
            if rec["id"] in ids:
                removed.append(rec)
                positions.append(i)
            else:
                kept.append(rec)
        lst[:] = kept
        for rec in removed:
            del self._anns[rec["id"]]
        touched = {rec["image_id"] for rec in removed}
        for iid in touched:
            self._anns_by_image[iid] = [aid for aid in self._anns_by_image[iid] if aid not in ids]
        return removed, positions

    def _reindex_images(self, image_ids: set[int]) -> None:
        for iid in image_ids:
            self._anns_by_image[iid] = []
        for rec in self._data["annotations"]:
            if rec["image_id"] in image_ids:
                self._anns_by_image[rec["image_id"]].append(rec["id"])

    def _reindex_file_names(self) -> None:
        self._images_by_name = {}
        for img in self._images.values():
            self._images_by_name.setdefault(img["file_name"], img)

    # ---- saving ------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the document atomically (to ``path``: save-as). Keeps the previous file as ``<name>.bak``.

        Raises `CocoSaveError` naming the file on failure; then the old file is intact and the document
        stays dirty. Returns the path written.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise CocoSaveError("this document has never been saved: give save() a file name")
        try:
            payload = json.dumps(self._output(), ensure_ascii=False).encode("utf-8")
        except CocoEditError as exc:
            raise CocoSaveError(f"{target}: cannot save: {exc}") from None
        except (TypeError, ValueError, RecursionError) as exc:
            raise CocoSaveError(f"{target}: cannot encode the document as JSON ({exc})") from None
        real = target.resolve() if target.is_symlink() else target  # replace the file, not the link
        tmp = real.with_name(f".{real.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            if real.exists():
                with contextlib.suppress(OSError):
                    os.chmod(tmp, stat.S_IMODE(real.stat().st_mode))
                _keep_backup(real)
            os.replace(tmp, real)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise CocoSaveError(
                f"{target}: could not save ({_os_reason(exc)}); the previous file is unchanged"
            ) from exc
        _fsync_folder(real.parent)
        own = self.journal_path
        if own is not None and own.exists():
            if self._journal_adopted:
                with contextlib.suppress(OSError):
                    own.unlink()
            else:
                _set_aside(own)  # a journal found at load and never replayed: keep it, out of the way
        other = _journal_path(target)
        if other != own and other.exists():
            _set_aside(other)  # it described the file we just replaced
        self.path = target
        self._source = str(target)
        self._base_sha256 = hashlib.sha256(payload).hexdigest()
        self._journal_adopted = False
        self.journal_error = None
        self.pending_journal = []
        self.dirty = False
        return target

    # ---- journal -----------------------------------------------------------------------------------------

    def start_journal(self, target: str | os.PathLike[str]) -> None:
        """Journal the edits of a document that has no file yet (made by `new` or `from_images`) beside
        ``target``, the file its first save will write, so that a crash before that save loses nothing. The
        journal is tied to the document's content now; one found there for the same content (the same
        images, in the same order) is read into ``pending_journal`` for `replay_journal`."""
        if self.path is not None:
            raise CocoEditError(f"{self.path}: a document read from a file already journals beside it")
        self._journal_target = Path(target)
        payload = json.dumps(self._data, ensure_ascii=False).encode("utf-8")
        self._base_sha256 = hashlib.sha256(payload).hexdigest()
        self._look_for_journal()

    def _journal_header(self) -> str:
        return json.dumps({"detr_studio_journal": JOURNAL_FORMAT, "base_sha256": self._base_sha256})

    def _append_to_journal(self, edit: Edit) -> None:
        jpath = self.journal_path
        if jpath is None or self._base_sha256 is None or self.journal_error is not None:
            return  # after a failed write the journal stays a valid prefix; it restarts with the next save
        line = json.dumps(edit.to_json(), ensure_ascii=False) + "\n"
        try:
            if self._journal_adopted:
                with open(jpath, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
            else:
                if jpath.exists():
                    _set_aside(jpath)
                self.pending_journal = []
                with open(jpath, "w", encoding="utf-8") as f:
                    f.write(self._journal_header() + "\n" + line)
                    f.flush()
                self._journal_adopted = True
        except OSError as exc:
            self.journal_error = (
                f"{jpath}: cannot write the journal ({_os_reason(exc)}); until the next save, a crash would lose"
                " the edits made from now on"
            )

    def _look_for_journal(self) -> None:
        jpath = self.journal_path
        if jpath is None or not jpath.exists():
            return
        edits, problems, matches = _read_journal(jpath, self._base_sha256)
        self.warnings.extend(problems)
        self._journal_incomplete = bool(problems)
        if matches and not edits and not problems:
            self._journal_adopted = True  # an empty journal for this very file: keep appending to it
        self.pending_journal = edits

    def replay_journal(self) -> int:
        """Apply the edits found in the journal at load; returns how many were applied. The document is then
        dirty and the journal keeps recording. An edit that no longer applies stops the replay with a warning."""
        edits, self.pending_journal = self.pending_journal, []
        applied = []
        for edit in edits:
            try:
                edit.apply(self)
            except CocoEditError as exc:
                skipped = len(edits) - len(applied)
                self.warnings.append(
                    Problem(
                        str(self.journal_path),
                        f"journal edit {len(applied) + 1}",
                        f"cannot be replayed ({exc}); it and the {skipped - 1} edits after it are skipped",
                    )
                )
                break
            applied.append(edit)
        if not edits:
            return 0
        self.revision += len(applied)
        self.dirty = self.dirty or bool(applied)
        jpath = self.journal_path
        if jpath is not None:
            if self._journal_incomplete or len(applied) < len(edits):
                with contextlib.suppress(OSError):
                    shutil.copyfile(jpath, jpath.with_name(jpath.name + ".old"))
            text = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in applied)
            tmp = jpath.with_name(f".{jpath.name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                tmp.write_text(self._journal_header() + "\n" + text, encoding="utf-8")
                os.replace(tmp, jpath)
                self._journal_adopted = True
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                self.journal_error = f"{jpath}: cannot rewrite the journal ({_os_reason(exc)})"
        return len(applied)

    def discard_journal(self) -> None:
        """Forget the journal found at load; the file is moved aside to ``<file>.journal.old``."""
        if self.pending_journal and self.journal_path is not None:
            _set_aside(self.journal_path)
        self.pending_journal = []


def _annotation_info(ann: dict) -> Annotation:
    x, y, w, h = (float(v) for v in ann["bbox"])
    area = ann.get("area")
    ours = ann.get(OUR_KEY)
    ours = ours if isinstance(ours, dict) else {}
    source = ours.get("source", "human")
    score = ours.get("score")
    return Annotation(
        id=ann["id"],
        image_id=ann["image_id"],
        category_id=ann["category_id"],
        bbox=(x, y, w, h),
        area=float(area) if area is not None else w * h,
        iscrowd=bool(ann.get("iscrowd", 0)),
        segmentation=ann.get("segmentation"),
        source=source,
        score=float(score) if score is not None else None,
        review=ours.get("review", "pending" if source == "model" else "accepted"),
        model=ours.get("model"),
    )


def _plain_input(value: Any) -> Any:
    """`_plain` for data handed to `CocoDocument.new`; a value that is not JSON is a format problem."""
    try:
        return _plain(value)
    except CocoEditError as exc:
        raise CocoFormatError([Problem("<new document>", "", str(exc))]) from None


def _keep_backup(target: Path) -> None:
    """Make ``<target>.bak`` a copy of ``target`` (a hard link where possible), replacing any older one."""
    bak = target.with_name(target.name + ".bak")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.bak.tmp")
    try:
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copy2(target, tmp)
        os.replace(tmp, bak)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _set_aside(jpath: Path) -> None:
    with contextlib.suppress(OSError):
        os.replace(jpath, jpath.with_name(jpath.name + ".old"))


def _read_journal(jpath: Path, base_sha256: str | None) -> tuple[list[Edit], list[Problem], bool]:
    """(edits, problems, header matches) of a journal file. Never raises."""
    where = str(jpath)
    try:
        text = jpath.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], [Problem(where, "", f"cannot read the journal ({_os_reason(exc)}); ignored")], False
    lines = text.split("\n")
    try:
        header = json.loads(lines[0])
        ok = isinstance(header, dict) and header.get("detr_studio_journal") == JOURNAL_FORMAT
    except (ValueError, RecursionError):
        ok = False
    if not ok:
        return (
            [],
            [Problem(where, "line 1", "not a DETR Studio journal header; the journal is ignored")],
            False,
        )
    if header.get("base_sha256") != base_sha256:
        message = (
            "records edits to a different version of the file; ignored (it is moved aside on the next edit)"
        )
        return [], [Problem(where, "", message)], False
    edits: list[Edit] = []
    problems: list[Problem] = []
    body = lines[1:]
    while body and body[-1] == "":
        body.pop()
    for n, line in enumerate(body, start=2):
        try:
            edits.append(Edit.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError, RecursionError):
            if n == len(body) + 1:
                message = (
                    "the last line is incomplete (the program probably stopped while writing it); ignored"
                )
            else:
                message = f"unreadable; it and the {len(body) + 1 - n} lines after it are ignored"
            problems.append(Problem(where, f"line {n}", message))
            break
    return edits, problems, True


# --------------------------------------------------------------------------------------------------------------
# Edits


class Edit:
    """One change to a document. ``apply(doc)`` makes it and returns the edit that undoes it; an edit that is
    refused raises `CocoEditError` and changes nothing. Edits travel as JSON (``to_json`` / ``from_json``)."""

    op: ClassVar[str] = ""

    def apply(self, doc: CocoDocument) -> Edit:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _plain(getattr(self, f.name))
        return out

    @staticmethod
    def from_json(data: Any) -> Edit:
        if not isinstance(data, dict) or data.get("op") not in _EDIT_TYPES:
            raise CocoEditError(f"not an edit: {_short(data)}")
        cls = _EDIT_TYPES[data["op"]]
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"op"}
        if unknown:
            raise CocoEditError(f"edit {data['op']!r} has unknown fields {sorted(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k != "op"})
        except TypeError as exc:  # a required field is missing
            raise CocoEditError(f"edit {data['op']!r}: {exc}") from None


@dataclass
class AddAnnotations(Edit):
    """Add annotation records (each with its own unused ``id``), at list ``indices`` when given."""

    op: ClassVar[str] = "add_annotations"
    annotations: list[dict[str, Any]]
    indices: list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.annotations, (list, tuple)):
            raise CocoEditError(f"annotations must be a list, got {_describe(self.annotations)}")
        self.annotations = [_plain(a) for a in self.annotations]
        if self.indices is not None:
            self.indices = _as_int_list(self.indices, "indices")
            if len(self.indices) != len(self.annotations):
                raise CocoEditError("indices must give one position per annotation")

    def apply(self, doc: CocoDocument) -> Edit:
        doc._require_instances("add annotations")
        records = [_plain(a) for a in self.annotations]
        ck = _Checker(doc._source)
        new_ids: set[int] = set()
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                ck.error(f"new annotation {i}", f"must be an object, got {_describe(rec)}")
                continue
            aid = rec.get("id", _MISSING)
            problem = _id_problem(aid, "id")
            if problem:
                ck.error(f"new annotation {i}", problem)
                continue
            if aid in doc._anns or aid in new_ids:
                ck.error(f"annotation id {aid}", "this id is already used")
                continue
            new_ids.add(aid)
            doc._check_annotation(rec, f"annotation id {aid}", ck)
        ck.raise_edit_error()
        if self.indices is not None:
            size = len(doc._data["annotations"])
            for k, index in enumerate(sorted(self.indices)):
                if not 0 <= index <= size + k:
                    raise CocoEditError(f"position {index} is outside the annotation list")
        doc._insert_annotations(records, self.indices)
        return RemoveAnnotations([rec["id"] for rec in records])


@dataclass
class RemoveAnnotations(Edit):
    """Remove annotations; the undo puts each back at its old list position."""

    op: ClassVar[str] = "remove_annotations"
    annotation_ids: list[int]

    def __post_init__(self) -> None:
        self.annotation_ids = _as_int_list(self.annotation_ids, "annotation_ids")

    def apply(self, doc: CocoDocument) -> Edit:
        doc._require_instances("remove annotations")
        ids = set(self.annotation_ids)
        if len(ids) != len(self.annotation_ids):
            raise CocoEditError("an annotation id is listed twice")
        unknown = sorted(ids - doc._anns.keys())
        if unknown:
            raise CocoEditError(f"no annotation with id {unknown[0]}")
        removed, positions = doc._delete_annotations(ids)
        return AddAnnotations(removed, positions)


def _updated_record(
    rec: dict, fields: dict[str, Any], drop: list[str], key_order: list[str] | None
) -> tuple[dict, dict[str, Any], list[str], list[str] | None]:
    """The record after the update, and the (fields, drop, key_order) that undo it."""
    both = set(fields) & set(drop)
    if both:
        raise CocoEditError(f"fields {sorted(both)} are both set and dropped")
    new = dict(rec)
    for key in drop:
        new.pop(key, None)
    for key, value in fields.items():
        new[key] = _plain(value)
    if key_order is not None:
        ordered = {k: new[k] for k in key_order if k in new}
        ordered.update((k, v) for k, v in new.items() if k not in ordered)
        new = ordered
    undo_fields = {k: _plain(rec[k]) for k in [*fields, *drop] if k in rec}
    undo_drop = [k for k in fields if k not in rec]
    undo_order = list(rec) if any(k in rec for k in drop) or key_order is not None else None
    return new, undo_fields, undo_drop, undo_order


def _normalise_update(edit: UpdateAnnotation | UpdateImage | UpdateCategory) -> None:
    if not isinstance(edit.fields, dict):
        raise CocoEditError(f"fields must be an object, got {_describe(edit.fields)}")
    edit.fields = _plain(edit.fields)
    if isinstance(edit.drop, (str, bytes)) or not isinstance(edit.drop, (list, tuple)):
        raise CocoEditError(f"drop must be a list of field names, got {_describe(edit.drop)}")
    edit.drop = [str(k) for k in edit.drop]
    if edit.key_order is not None:
        if not isinstance(edit.key_order, (list, tuple)):
            raise CocoEditError(f"key_order must be a list, got {_describe(edit.key_order)}")
        edit.key_order = [str(k) for k in edit.key_order]
    if "id" in edit.fields or "id" in edit.drop:
        raise CocoEditError("a record's 'id' cannot be changed")


def _replace_contents(rec: dict, new: dict) -> None:
    rec.clear()
    rec.update(new)


@dataclass
class UpdateAnnotation(Edit):
    """Set ``fields`` of an annotation and ``drop`` others; ``key_order`` (used by undo) restores key order."""

    op: ClassVar[str] = "update_annotation"
    annotation_id: int
    fields: dict[str, Any] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    key_order: list[str] | None = None

    def __post_init__(self) -> None:
        self.annotation_id = _as_int(self.annotation_id, "annotation_id")
        _normalise_update(self)

    def apply(self, doc: CocoDocument) -> Edit:
        doc._require_instances("update annotations")
        rec = doc._anns.get(self.annotation_id)
        if rec is None:
            raise CocoEditError(f"no annotation with id {self.annotation_id}")
        new, fields, drop, order = _updated_record(rec, self.fields, self.drop, self.key_order)
        ck = _Checker(doc._source)
        doc._check_annotation(new, f"annotation id {self.annotation_id}", ck)
        ck.raise_edit_error()
        old_image = rec["image_id"]
        _replace_contents(rec, new)
        if rec["image_id"] != old_image:
            doc._reindex_images({old_image, rec["image_id"]})
        return UpdateAnnotation(self.annotation_id, fields, drop, order)


@dataclass
class UpdateImage(Edit):
    """Set ``fields`` of an image record and ``drop`` others (its id cannot change)."""

    op: ClassVar[str] = "update_image"
    image_id: int
    fields: dict[str, Any] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    key_order: list[str] | None = None

    def __post_init__(self) -> None:
        self.image_id = _as_int(self.image_id, "image_id")
        _normalise_update(self)

    def apply(self, doc: CocoDocument) -> Edit:
        rec = doc._images.get(self.image_id)
        if rec is None:
            raise CocoEditError(f"no image with id {self.image_id}")
        new, fields, drop, order = _updated_record(rec, self.fields, self.drop, self.key_order)
        ck = _Checker(doc._source)
        _check_image_fields(new, f"image id {self.image_id}", ck, lazy_sizes=doc._lazy_sizes)
        ck.raise_edit_error()
        renamed = new.get("file_name") != rec.get("file_name")
        _replace_contents(rec, new)
        doc._image_infos.pop(self.image_id, None)
        doc._sizes[self.image_id] = _image_size_of(rec)
        if renamed:
            doc._reindex_file_names()
        return UpdateImage(self.image_id, fields, drop, order)


@dataclass
class UpdateCategory(Edit):
    """Set ``fields`` of a category (name, supercategory, color, ...) and ``drop`` others."""

    op: ClassVar[str] = "update_category"
    category_id: int
    fields: dict[str, Any] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    key_order: list[str] | None = None

    def __post_init__(self) -> None:
        self.category_id = _as_int(self.category_id, "category_id")
        _normalise_update(self)

    def apply(self, doc: CocoDocument) -> Edit:
        rec = doc._categories.get(self.category_id)
        if rec is None:
            raise CocoEditError(f"no category with id {self.category_id}")
        new, fields, drop, order = _updated_record(rec, self.fields, self.drop, self.key_order)
        ck = _Checker(doc._source)
        _check_category_fields(new, f"category id {self.category_id}", ck)
        ck.raise_edit_error()
        _replace_contents(rec, new)
        return UpdateCategory(self.category_id, fields, drop, order)


@dataclass
class Batch(Edit):
    """Several edits as one undo step; if one is refused, the ones before it are undone."""

    op: ClassVar[str] = "batch"
    edits: list[Edit]
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.edits, (list, tuple)):
            raise CocoEditError(f"edits must be a list, got {_describe(self.edits)}")
        self.edits = [e if isinstance(e, Edit) else Edit.from_json(e) for e in self.edits]
        self.label = str(self.label)

    def apply(self, doc: CocoDocument) -> Edit:
        undo: list[Edit] = []
        try:
            for edit in self.edits:
                undo.append(edit.apply(doc))
        except Exception:
            for inverse in reversed(undo):
                inverse.apply(doc)
            raise
        return Batch(list(reversed(undo)), self.label)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "edits": [e.to_json() for e in self.edits], "label": self.label}


def _require_annotations(doc: CocoDocument, ids: list[int], what: str) -> None:
    doc._require_instances(what)
    for aid in ids:
        if aid not in doc._anns:
            raise CocoEditError(f"no annotation with id {aid}")


@dataclass
class Relabel(Edit):
    """Give annotations another category."""

    op: ClassVar[str] = "relabel"
    annotation_ids: list[int]
    category_id: int

    def __post_init__(self) -> None:
        self.annotation_ids = _as_int_list(self.annotation_ids, "annotation_ids")
        self.category_id = _as_int(self.category_id, "category_id")

    def apply(self, doc: CocoDocument) -> Edit:
        _require_annotations(doc, self.annotation_ids, "relabel annotations")
        if self.category_id not in doc._categories:
            raise CocoEditError(f"no category with id {self.category_id}")
        changes = [UpdateAnnotation(aid, {"category_id": self.category_id}) for aid in self.annotation_ids]
        return Batch(changes, f"relabel to {self.category_id}").apply(doc)


@dataclass
class SetReviewState(Edit):
    """Mark annotations pending, accepted or rejected (in their ``detr_studio`` fields)."""

    op: ClassVar[str] = "set_review_state"
    annotation_ids: list[int]
    review: str

    def __post_init__(self) -> None:
        self.annotation_ids = _as_int_list(self.annotation_ids, "annotation_ids")
        if self.review not in REVIEW_STATES:
            raise CocoEditError(f"review must be one of {list(REVIEW_STATES)}, got {_describe(self.review)}")

    def apply(self, doc: CocoDocument) -> Edit:
        _require_annotations(doc, self.annotation_ids, "review annotations")
        changes = []
        for aid in self.annotation_ids:
            ours = doc._anns[aid].get(OUR_KEY)
            new = dict(ours) if isinstance(ours, dict) else _default_ours()
            new["review"] = self.review
            changes.append(UpdateAnnotation(aid, {OUR_KEY: new}))
        return Batch(changes, f"mark {self.review}").apply(doc)


@dataclass
class SetImageReviewed(Edit):
    op: ClassVar[str] = "set_image_reviewed"
    image_id: int
    reviewed: bool = True

    def __post_init__(self) -> None:
        self.image_id = _as_int(self.image_id, "image_id")
        if not isinstance(self.reviewed, bool):
            raise CocoEditError(f"reviewed must be true or false, got {_describe(self.reviewed)}")

    def apply(self, doc: CocoDocument) -> Edit:
        img = doc._images.get(self.image_id)
        if img is None:
            raise CocoEditError(f"no image with id {self.image_id}")
        ours = img.get(OUR_KEY)
        new = dict(ours) if isinstance(ours, dict) else {}
        new["reviewed"] = self.reviewed
        return UpdateImage(self.image_id, {OUR_KEY: new}).apply(doc)


@dataclass
class AddCategory(Edit):
    """Add a category record (unused id, unused name), at list ``index`` when given."""

    op: ClassVar[str] = "add_category"
    category: dict[str, Any]
    index: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.category, dict):
            raise CocoEditError(f"category must be an object, got {_describe(self.category)}")
        self.category = _plain(self.category)
        if self.index is not None:
            self.index = _as_int(self.index, "index")

    def apply(self, doc: CocoDocument) -> Edit:
        rec = _plain(self.category)
        cid = rec.get("id", _MISSING)
        problem = _id_problem(cid, "id", category=True)
        if problem:
            raise CocoEditError(f"new category: {problem}")
        if cid < 0:
            raise CocoEditError(f"category id {cid} is negative")
        if cid in doc._categories:
            raise CocoEditError(f"category id {cid} is already used by {doc._categories[cid]['name']!r}")
        ck = _Checker(doc._source)
        _check_category_fields(rec, f"category id {cid}", ck)
        ck.raise_edit_error()
        _refuse_duplicate_name(doc, rec["name"], cid)
        lst = doc._data["categories"]
        if self.index is not None and not 0 <= self.index <= len(lst):
            raise CocoEditError(f"position {self.index} is outside the category list")
        lst.insert(self.index if self.index is not None else len(lst), rec)
        doc._categories[cid] = rec
        return RemoveCategory(cid)


def _refuse_duplicate_name(doc: CocoDocument, name: str, category_id: int) -> None:
    for other in doc._categories.values():
        if other["id"] != category_id and other.get("name") == name:
            raise CocoEditError(f"a category named {name!r} already exists (id {other['id']}); merge instead")


@dataclass
class RemoveCategory(Edit):
    """Remove a category no annotation uses (merge or relabel them first)."""

    op: ClassVar[str] = "remove_category"
    category_id: int

    def __post_init__(self) -> None:
        self.category_id = _as_int(self.category_id, "category_id")

    def apply(self, doc: CocoDocument) -> Edit:
        rec = doc._categories.get(self.category_id)
        if rec is None:
            raise CocoEditError(f"no category with id {self.category_id}")
        uses = sum(1 for cid in doc._category_uses() if cid == self.category_id)
        if uses:
            kind = "segments" if doc.is_panoptic else "annotations"
            raise CocoEditError(
                f"category {self.category_id} ({rec['name']!r}) is used by {uses} {kind}; merge it into another"
                " category or relabel them first"
            )
        lst = doc._data["categories"]
        index = next(i for i, cat in enumerate(lst) if cat is rec)
        del lst[index]
        del doc._categories[self.category_id]
        return AddCategory(rec, index)


@dataclass
class RenameCategory(Edit):
    op: ClassVar[str] = "rename_category"
    category_id: int
    name: str

    def __post_init__(self) -> None:
        self.category_id = _as_int(self.category_id, "category_id")
        if not isinstance(self.name, str) or not self.name.strip():
            raise CocoEditError(f"a category name must be a non-empty string, got {_describe(self.name)}")

    def apply(self, doc: CocoDocument) -> Edit:
        rec = doc._categories.get(self.category_id)
        if rec is None:
            raise CocoEditError(f"no category with id {self.category_id}")
        _refuse_duplicate_name(doc, self.name, self.category_id)
        old = rec["name"]
        UpdateCategory(self.category_id, {"name": self.name}).apply(doc)
        return RenameCategory(self.category_id, old)


@dataclass
class MergeCategories(Edit):
    """Relabel every annotation of ``source_ids`` to ``target_id`` and remove the source categories."""

    op: ClassVar[str] = "merge_categories"
    source_ids: list[int]
    target_id: int

    def __post_init__(self) -> None:
        self.source_ids = _as_int_list(self.source_ids, "source_ids")
        self.target_id = _as_int(self.target_id, "target_id")

    def apply(self, doc: CocoDocument) -> Edit:
        doc._require_instances("merge categories (convert with panoptic_to_instances() first)")
        sources = set(self.source_ids)
        if self.target_id not in doc._categories:
            raise CocoEditError(f"no category with id {self.target_id}")
        if self.target_id in sources:
            raise CocoEditError(f"category {self.target_id} cannot be merged into itself")
        for cid in self.source_ids:
            if cid not in doc._categories:
                raise CocoEditError(f"no category with id {cid}")
        moved = [aid for aid, ann in doc._anns.items() if ann["category_id"] in sources]
        steps: list[Edit] = [Relabel(moved, self.target_id)]
        steps += [RemoveCategory(cid) for cid in dict.fromkeys(self.source_ids)]
        return Batch(steps, f"merge into {self.target_id}").apply(doc)


_EDIT_TYPES: dict[str, type[Edit]] = {
    cls.op: cls
    for cls in (
        AddAnnotations,
        RemoveAnnotations,
        UpdateAnnotation,
        UpdateImage,
        UpdateCategory,
        Batch,
        Relabel,
        SetReviewState,
        SetImageReviewed,
        AddCategory,
        RemoveCategory,
        RenameCategory,
        MergeCategories,
    )
}
