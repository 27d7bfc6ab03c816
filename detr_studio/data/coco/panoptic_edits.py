"""The edits of panoptic documents: changing segment pixels and ``segments_info``, each with its inverse.

Four small edits, which `segment_edits` combines into what the user does (relabel, merge, split, paint,
delete, accept predicted segments):

- `PaintIds(image_id, box, runs)`: set the ids of the pixels inside ``box`` ``[x, y, w, h]``; ``runs`` is the
  box's new ids run-length coded in row-major order (``[id, count, id, count, ...]``), id -1 meaning "leave
  the pixel as it is". Its inverse is a `PaintIds` with the old ids of the pixels it changed only: an undo
  step holds the region a stroke touched, never a copy of the image.
- `SetSegments(image_id, segments_info, refresh)`: replace the entry's ``segments_info``; the segments
  listed in ``refresh`` get their ``area`` and ``bbox`` recomputed from the id map (COCO's rules: pixel
  count, pixel bounds). Its inverse restores the old list exactly.
- `AddPanopticEntry(entry)` / `RemovePanopticEntry(image_id)`: an image gets (or loses) its panoptic entry;
  a new entry starts with an empty id map (every pixel void, id 0).

The id maps live in the document's index (`id_maps.IdMaps`), read from the PNGs on the first edit of each
image; saving writes the changed ones (`panoptic_save`). Every edit here is journaled and replayed like the
instance edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from detr_studio.common.panoptic_ids import MAX_ID

from .edits import Edit, register_edits
from .index import CocoIndex
from .problems import CocoEditError
from .values import as_int, as_int_list, describe, plain

KEEP = -1  # a run of pixels PaintIds leaves alone


def run_code(values: np.ndarray) -> list[int]:
    """``[value, count, value, count, ...]`` of a flat int array (consecutive equal values as one run)."""
    flat = np.asarray(values).reshape(-1)
    if not flat.size:
        return []
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    return np.stack([flat[starts], counts], 1).reshape(-1).astype(np.int64).tolist()


def run_decode(runs: list[int], size: int) -> np.ndarray:
    """The flat int64 array [size] of `run_code` output; `CocoEditError` when the runs do not fill it."""
    pairs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    if int(pairs[:, 1].sum()) != size or (pairs[:, 1] < 0).any():
        raise CocoEditError(f"the runs cover {int(pairs[:, 1].sum())} pixels, the box has {size}")
    return np.repeat(pairs[:, 0], pairs[:, 1])


def _entry(index: CocoIndex, image_id: int, what: str) -> dict:
    index.require_panoptic(what)
    entry = index.panoptic.get(image_id)
    if entry is None:
        raise CocoEditError(f"image {image_id} has no panoptic annotation")
    return entry


def segment_stats(ids: np.ndarray, segment_id: int) -> tuple[list[int], int]:
    """(bbox [x, y, w, h], area) of one segment of an id map [H, W], by COCO's rules."""
    pixels = ids == segment_id
    area = int(np.count_nonzero(pixels))
    if not area:
        return [0, 0, 0, 0], 0
    cols = np.flatnonzero(pixels.any(0))
    rows = np.flatnonzero(pixels.any(1))
    x0, y0 = int(cols[0]), int(rows[0])
    return [x0, y0, int(cols[-1]) - x0 + 1, int(rows[-1]) - y0 + 1], area


@dataclass
class PaintIds(Edit):
    """Set segment ids inside a box (see the module docstring)."""

    op: ClassVar[str] = "paint_ids"
    image_id: int
    box: list[int]
    runs: list[int]

    def __post_init__(self) -> None:
        self.image_id = as_int(self.image_id, "image_id")
        self.box = as_int_list(self.box, "box")
        self.runs = as_int_list(self.runs, "runs")
        if len(self.box) != 4 or self.box[2] < 0 or self.box[3] < 0:
            raise CocoEditError(f"box must be [x, y, width, height], got {describe(self.box)}")
        if len(self.runs) % 2:
            raise CocoEditError("runs must be pairs of [id, count]")

    def apply(self, index: CocoIndex) -> Edit:
        _entry(index, self.image_id, "paint segment pixels")
        ids = index.id_maps.get(self.image_id)
        x, y, w, h = self.box
        if x < 0 or y < 0 or x + w > ids.shape[1] or y + h > ids.shape[0]:
            raise CocoEditError(f"box {self.box} is outside the {ids.shape[1]}x{ids.shape[0]} image")
        values = run_decode(self.runs, w * h)
        if values.size and (int(values.min()) < KEEP or int(values.max()) > MAX_ID):
            raise CocoEditError(f"segment ids must lie in 0 … {MAX_ID}")
        region = ids[y : y + h, x : x + w]
        old = region.reshape(-1).astype(np.int64)
        changed = (values != KEEP) & (values != old)
        inverse = np.where(changed, old, KEEP)
        region[...] = np.where(changed, values, old).reshape(h, w)
        index.id_maps.touched(self.image_id)
        return PaintIds(self.image_id, list(self.box), run_code(inverse))


def paint_runs(pixels: np.ndarray, value: int) -> list[int]:
    """``runs`` for `PaintIds` that set ``value`` where ``pixels`` [h, w] bool is set and keep the rest."""
    return run_code(np.where(np.asarray(pixels, dtype=bool), int(value), KEEP))


def _check_segments(index: CocoIndex, segments: Any) -> list[dict]:
    if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
        raise CocoEditError(f"segments_info must be a list of objects, got {describe(segments)}")
    seen: set[int] = set()
    for seg in segments:
        sid = seg.get("id")
        if not isinstance(sid, int) or isinstance(sid, bool) or not 0 <= sid <= MAX_ID:
            raise CocoEditError(f"a segment id must be an integer in 0 … {MAX_ID}, got {describe(sid)}")
        if sid in seen:
            raise CocoEditError(f"segment id {sid} is listed twice")
        seen.add(sid)
        if seg.get("category_id") not in index.categories:
            raise CocoEditError(f"segment {sid}: no category with id {describe(seg.get('category_id'))}")
    return segments


@dataclass
class SetSegments(Edit):
    """Replace an entry's ``segments_info``, recomputing ``refresh``'s area and bbox (see the module docstring)."""

    op: ClassVar[str] = "set_segments"
    image_id: int
    segments_info: list[dict[str, Any]]
    refresh: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image_id = as_int(self.image_id, "image_id")
        self.segments_info = plain(self.segments_info)
        self.refresh = as_int_list(self.refresh, "refresh")

    def apply(self, index: CocoIndex) -> Edit:
        _entry(index, self.image_id, "change segments")
        segments = _check_segments(index, plain(self.segments_info))
        if self.refresh:
            ids = index.id_maps.get(self.image_id)
            by_id = {s["id"]: s for s in segments}
            for sid in self.refresh:
                if sid not in by_id:
                    raise CocoEditError(f"segment {sid} to refresh is not listed")
                bbox, area = segment_stats(ids, sid)
                by_id[sid]["bbox"], by_id[sid]["area"] = bbox, area
        old = index.replace_segments(self.image_id, segments)
        return SetSegments(self.image_id, old)


@dataclass
class AddPanopticEntry(Edit):
    """Give an image a panoptic entry (``image_id``, ``file_name``, ``segments_info``), at list ``position``
    when given. Without ``segments_info`` (the common case) its map starts void."""

    op: ClassVar[str] = "add_panoptic_entry"
    entry: dict[str, Any]
    position: int | None = None

    def __post_init__(self) -> None:
        self.entry = plain(self.entry)
        if self.position is not None:
            self.position = as_int(self.position, "position")

    def apply(self, index: CocoIndex) -> Edit:
        index.require_panoptic("add a panoptic entry")
        entry = plain(self.entry)
        iid = entry.get("image_id")
        if iid not in index.images:
            raise CocoEditError(f"no image with id {describe(iid)}")
        if iid in index.panoptic:
            raise CocoEditError(f"image {iid} already has a panoptic annotation")
        name = entry.get("file_name")
        if not isinstance(name, str) or not name.endswith(".png"):
            raise CocoEditError(f"a panoptic entry needs a PNG file_name, got {describe(name)}")
        entry["segments_info"] = _check_segments(index, entry.get("segments_info", []))
        size = index.sizes.get(iid)
        if size is None:
            raise CocoEditError(f"the size of image {iid} is not known yet")
        if entry["segments_info"] and iid not in index.id_maps.maps:
            raise CocoEditError("a new panoptic entry starts without segments; paint them in")
        if iid not in index.id_maps.maps:
            index.id_maps.put(iid, np.zeros((size[1], size[0]), dtype=np.int32))
        index.insert_panoptic_entry(entry, self.position)
        return RemovePanopticEntry(iid)


@dataclass
class RemovePanopticEntry(Edit):
    """Remove an image's panoptic entry; only an entry without segments (undoing `AddPanopticEntry`)."""

    op: ClassVar[str] = "remove_panoptic_entry"
    image_id: int

    def __post_init__(self) -> None:
        self.image_id = as_int(self.image_id, "image_id")

    def apply(self, index: CocoIndex) -> Edit:
        entry = _entry(index, self.image_id, "remove a panoptic entry")
        if entry["segments_info"]:
            raise CocoEditError(f"image {self.image_id} still has segments; delete them first")
        ids = index.id_maps.maps.get(self.image_id)
        if ids is not None and ids.any():
            raise CocoEditError(f"the id map of image {self.image_id} is not void")
        removed, position = index.delete_panoptic_entry(self.image_id)
        index.id_maps.drop(self.image_id)
        return AddPanopticEntry(removed, position)


register_edits(PaintIds, SetSegments, AddPanopticEntry, RemovePanopticEntry)
