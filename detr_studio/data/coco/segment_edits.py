"""What the user does to panoptic segments, each as one undoable edit built from plain numbers and masks.

Every function reads the document (its id map of the image, read from the PNG on first use) and returns an
`Edit` (a `Batch` of `panoptic_edits` steps) without changing anything; apply it with ``doc.apply`` or
``Session.apply``. Masks are [H, W] bool arrays over the image (a `brush.MaskCanvas`'s ``mask``, a polygon's
pixels from `brush.polygon_footprint`, a predicted segment), optionally with the `brush.Rect` outside which
they are empty (the canvas's ``dirty``), so that a stroke is read only where it painted.

- `relabel_segment_edit`: another category (thing or stuff); a stuff class the image already has a segment
  of is merged into that segment, as COCO panoptic keeps one segment per stuff class and image.
- `merge_segments_edit`: segments become one (the first's id and category).
- `split_segment_edit`: the pixels of a segment under a mask become a new segment.
- `paint_segment_edit`: pixels under a mask join a segment (id 0: they become void, the eraser).
- `new_segment_edit`: pixels under a mask become a new segment of a category.
- `delete_segments_edit`: segments go, their pixels become void (id 0).
- `add_segments_edit`: several new segments at once from one label map (accepting predicted segments),
  giving the image a panoptic entry when it has none.

Every segment whose pixels change gets its area and bbox recomputed; a segment left without pixels leaves
``segments_info``, so the PNG's ids and ``segments_info`` always agree.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from detr_studio.common.panoptic_ids import MAX_ID

from .brush import Rect
from .edits import Batch, Edit
from .mask_geometry import pixel_bounds
from .panoptic_edits import KEEP, AddPanopticEntry, PaintIds, SetSegments, run_code
from .problems import CocoEditError

if TYPE_CHECKING:
    from .document import CocoDocument


def _segments(doc: CocoDocument, image_id: int) -> list[dict[str, Any]]:
    """Copies of the image's segment records (empty without a panoptic entry)."""
    entry = doc.panoptic_record(image_id)
    return [dict(s) for s in entry["segments_info"]] if entry is not None else []


def _ids(doc: CocoDocument, image_id: int) -> np.ndarray:
    """The image's id map as edited (all void for an image without an entry yet)."""
    if doc.panoptic_record(image_id) is None:
        width, height = doc.image_size(image_id)
        return np.zeros((height, width), dtype=np.int32)
    return doc.index.id_maps.get(image_id)


def _find(segments: list[dict], segment_id: int, image_id: int) -> dict:
    for seg in segments:
        if seg["id"] == segment_id:
            return seg
    raise CocoEditError(f"image {image_id} has no segment {segment_id}")


def _fresh_ids(segments: list[dict], count: int) -> list[int]:
    start = max((s["id"] for s in segments), default=0) + 1
    if start + count - 1 > MAX_ID:
        raise CocoEditError(f"no segment ids are left below {MAX_ID}")
    return list(range(start, start + count))


def _rect_of(pixels: np.ndarray, rect: Rect | None) -> Rect | None:
    """Where ``pixels`` [H, W] bool is set (searched inside ``rect`` when given); None when nowhere."""
    if rect is not None:
        inner = pixel_bounds(pixels[rect.slices()])
        if inner is None:
            return None
        x0, y0, x1, y1 = inner
        return Rect(rect.x + x0, rect.y + y0, x1 - x0, y1 - y0)
    bounds = pixel_bounds(pixels)
    return (
        None if bounds is None else Rect(bounds[0], bounds[1], bounds[2] - bounds[0], bounds[3] - bounds[1])
    )


def _check_shape(doc: CocoDocument, image_id: int, pixels: np.ndarray) -> np.ndarray:
    width, height = doc.image_size(image_id)
    pixels = np.asarray(pixels, dtype=bool)
    if pixels.shape != (height, width):
        raise CocoEditError(
            f"a {pixels.shape[1]}x{pixels.shape[0]} mask on the {width}x{height} image {image_id}"
        )
    return pixels


def _paint(
    doc: CocoDocument,
    image_id: int,
    ids: np.ndarray,
    rect: Rect,
    values: np.ndarray,
    segments: list[dict],
    refresh: set[int],
) -> PaintIds | None:
    """The `PaintIds` setting ``values`` [h, w] (KEEP: unchanged) inside ``rect``; the segments losing pixels
    are refreshed, or leave ``segments`` when they lose all."""
    region = ids[rect.slices()].astype(np.int64)
    changes = (values != KEEP) & (values != region)
    if not changes.any():
        return None
    lost, lost_counts = np.unique(region[changes], return_counts=True)
    for sid, count in zip(lost.tolist(), lost_counts.tolist()):
        if sid == 0:
            continue
        if int(np.count_nonzero(ids == sid)) == count:
            segments[:] = [s for s in segments if s["id"] != sid]
            refresh.discard(sid)
        else:
            refresh.add(sid)
    refresh.update(int(v) for v in np.unique(values[changes]).tolist() if v != 0)
    runs = run_code(np.where(changes, values, KEEP))
    return PaintIds(image_id, [rect.x, rect.y, rect.width, rect.height], runs)


def _batch(steps: list[Edit | None], label: str) -> Batch:
    return Batch([s for s in steps if s is not None], label)


def _set(image_id: int, segments: list[dict], refresh: set[int]) -> SetSegments:
    listed = {s["id"] for s in segments}
    return SetSegments(image_id, segments, sorted(refresh & listed))


def _paint_mask(
    doc: CocoDocument, image_id: int, pixels: np.ndarray, rect: Rect | None, value: int, label: str,
    segments: list[dict], where: np.ndarray | None = None,
) -> Batch:  # fmt: skip
    """Pixels under ``pixels`` (and ``where``, when given) become ``value``; ``segments`` is the list the
    entry gets (new segments already in it)."""
    pixels = _check_shape(doc, image_id, pixels)
    ids = _ids(doc, image_id)
    chosen = pixels if where is None else pixels & where
    area = _rect_of(chosen, rect)
    if area is None:
        raise CocoEditError(
            "the mask covers no pixel of the image" if where is None else "the mask misses the segment"
        )
    refresh: set[int] = set()
    values = np.where(chosen[area.slices()], int(value), KEEP)
    paint = _paint(doc, image_id, ids, area, values, segments, refresh)
    return _batch([paint, _set(image_id, segments, refresh)], label)


def relabel_segment_edit(doc: CocoDocument, image_id: int, segment_id: int, category_id: int) -> Batch:
    """The segment gets ``category_id`` (see the module docstring for stuff classes)."""
    segments = _segments(doc, image_id)
    seg = _find(segments, segment_id, image_id)
    category = doc.index.categories.get(category_id)
    if category is None:
        raise CocoEditError(f"no category with id {category_id}")
    if not category.get("isthing", 1):
        other = next((s for s in segments if s["category_id"] == category_id and s["id"] != segment_id), None)
        if other is not None:
            return merge_segments_edit(doc, image_id, [other["id"], segment_id])
    seg["category_id"] = category_id
    if "isthing" in seg:  # predicted entries carry it; keep its type
        thing = bool(category.get("isthing", 1))
        seg["isthing"] = thing if isinstance(seg["isthing"], bool) else int(thing)
    return Batch([SetSegments(image_id, segments)], f"relabel segment to {category_id}")


def merge_segments_edit(doc: CocoDocument, image_id: int, segment_ids: Sequence[int]) -> Batch:
    """The segments become one: the first of ``segment_ids`` keeps its id and category."""
    if len(set(segment_ids)) < 2:
        raise CocoEditError("merging needs two segments or more")
    segments = _segments(doc, image_id)
    target, *others = [_find(segments, sid, image_id)["id"] for sid in segment_ids]
    ids = _ids(doc, image_id)
    sources = np.isin(ids, others)
    return _paint_mask(doc, image_id, sources, None, target, f"merge {len(segment_ids)} segments", segments)


def split_segment_edit(
    doc: CocoDocument,
    image_id: int,
    segment_id: int,
    pixels: np.ndarray,
    category_id: int | None = None,
    rect: Rect | None = None,
) -> tuple[Batch, int]:
    """(the edit, the new segment's id): the segment's pixels under ``pixels`` become a new segment (of
    ``category_id``, default the segment's own)."""
    segments = _segments(doc, image_id)
    seg = _find(segments, segment_id, image_id)
    ids = _ids(doc, image_id)
    own = ids == segment_id
    pixels = _check_shape(doc, image_id, pixels)
    if not (own & ~pixels).any():
        raise CocoEditError(f"the mask covers all of segment {segment_id}: relabel it instead")
    (new_id,) = _fresh_ids(segments, 1)
    cid = seg["category_id"] if category_id is None else category_id
    segments.append({"id": new_id, "category_id": cid, "iscrowd": 0})
    edit = _paint_mask(doc, image_id, pixels, rect, new_id, "split segment", segments, where=own)
    return edit, new_id


def paint_segment_edit(
    doc: CocoDocument, image_id: int, pixels: np.ndarray, segment_id: int, rect: Rect | None = None
) -> Batch:
    """Pixels under ``pixels`` join segment ``segment_id`` (0: become void)."""
    segments = _segments(doc, image_id)
    if segment_id != 0:
        _find(segments, segment_id, image_id)
    label = "erase segment pixels" if segment_id == 0 else "paint segment"
    return _paint_mask(doc, image_id, pixels, rect, segment_id, label, segments)


def new_segment_edit(
    doc: CocoDocument, image_id: int, pixels: np.ndarray, category_id: int, rect: Rect | None = None
) -> tuple[Batch, int]:
    """(the edit, the new segment's id): pixels under ``pixels`` become a new segment of ``category_id``."""
    edit, new_ids = add_segments_edit(doc, image_id, [(pixels, category_id)], rect=rect)
    return edit, new_ids[0]


def delete_segments_edit(doc: CocoDocument, image_id: int, segment_ids: Sequence[int]) -> Batch:
    """The segments go; their pixels become void (id 0)."""
    segments = _segments(doc, image_id)
    for sid in segment_ids:
        _find(segments, sid, image_id)
    ids = _ids(doc, image_id)
    gone = np.isin(ids, list(segment_ids))
    label = "delete segment" if len(segment_ids) == 1 else f"delete {len(segment_ids)} segments"
    if not gone.any():
        remaining = [s for s in segments if s["id"] not in set(segment_ids)]
        return Batch([SetSegments(image_id, remaining)], label)
    return _paint_mask(doc, image_id, gone, None, 0, label, segments)


def entry_file_name(doc: CocoDocument, image_id: int) -> str:
    """The PNG name a new panoptic entry of the image gets: the image's name with ``.png`` (COCO's rule)."""
    return PurePosixPath(doc.image(image_id).file_name).with_suffix(".png").name


def add_segments_edit(
    doc: CocoDocument,
    image_id: int,
    parts: Sequence[tuple[np.ndarray, int]],
    rect: Rect | None = None,
    *,
    planned_categories: Collection[int] = (),
) -> tuple[Batch, list[int]]:
    """(the edit, the new segment ids): each (pixels [H, W] bool, category id) of ``parts`` becomes a new
    segment, later ones over earlier ones; an image without a panoptic entry gets one first.
    ``planned_categories``: ids of categories that edits made before this one add."""
    if not parts:
        raise CocoEditError("no segments to add")
    for _, cid in parts:
        if cid not in doc.index.categories and cid not in planned_categories:
            raise CocoEditError(f"no category with id {cid}")
    steps: list[Edit | None] = []
    if doc.panoptic_record(image_id) is None:
        steps.append(
            AddPanopticEntry(
                {"image_id": image_id, "file_name": entry_file_name(doc, image_id), "segments_info": []}
            )
        )
    segments = _segments(doc, image_id)
    new_ids = _fresh_ids(segments, len(parts))
    labels = np.zeros(_ids(doc, image_id).shape, dtype=np.int64)
    for (pixels, _), new_id in zip(parts, new_ids):
        labels[_check_shape(doc, image_id, pixels)] = new_id
    kept = [(new_id, cid) for new_id, (_, cid) in zip(new_ids, parts) if (labels == new_id).any()]
    if not kept:
        raise CocoEditError("the masks cover no pixel of the image")
    segments += [{"id": new_id, "category_id": cid, "iscrowd": 0} for new_id, cid in kept]
    area = _rect_of(labels > 0, rect)
    assert area is not None
    refresh: set[int] = set()
    values = np.where(labels[area.slices()] > 0, labels[area.slices()], KEEP)
    steps.append(_paint(doc, image_id, _ids(doc, image_id), area, values, segments, refresh))
    steps.append(_set(image_id, segments, refresh))
    label = "add segment" if len(kept) == 1 else f"add {len(kept)} segments"
    return _batch(steps, label), [new_id for new_id, _ in kept]
