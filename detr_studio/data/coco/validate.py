"""Checking a whole COCO document while indexing it: every problem found is named (file, record, message).

`index_document` reads parsed JSON into a `CocoIndex` and reports to a `Checker`:

- a top level that is not an object; missing ``images`` / ``annotations`` / ``categories``, or any of them
  not a list; records that are not objects;
- missing or mistyped ids (ids written as strings, ``"3"``, are named as such: string category ids are a
  known cause of DETR training that never learns), duplicate image, annotation and category ids, and for
  panoptic files two entries for one image or duplicate segment ids within an image;
- annotations (or panoptic entries and segments) pointing at unknown images or categories;
- the fields of each record (`checks`); duplicate file names and category names, and annotation id 0
  (pycocotools' evaluation reads 0 as "no match"), are warnings.

A file is *panoptic* when its annotations carry ``segments_info`` (or when the caller says so).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from detr_studio.common.panoptic_ids import MAX_ID as MAX_SEGMENT_ID

from .checks import (
    check_box,
    check_category_fields,
    check_count,
    check_file_name,
    check_flag,
    check_image_fields,
    check_our_annotation_fields,
)
from .index import CocoIndex
from .masks import segmentation_problem
from .problems import Checker
from .records import OUR_KEY
from .values import LARGE, MISSING, NUMERIC_TYPES, describe, id_problem, json_type

PNG_FOLDER = "folder of panoptic PNGs"


def index_document(
    data: Any, source: str, *, lazy_sizes: bool = False, panoptic: bool | None = None
) -> tuple[CocoIndex, Checker]:
    """The index of ``data`` and what its check found (errors and warnings, not raised)."""
    ck = Checker(source)
    index = CocoIndex(data, source, lazy_sizes=lazy_sizes)
    if not isinstance(data, dict):
        ck.error(
            "top level",
            f"must be a JSON object with 'images', 'annotations' and 'categories', got {json_type(data)}",
        )
        return index, ck
    for key in ("images", "annotations", "categories"):
        if key not in data:
            ck.error("top level", f"missing required key '{key}'")
        elif not isinstance(data[key], list):
            ck.error("top level", f"'{key}' must be a list, got {describe(data[key])}")
    if ck.errors:
        return index, ck
    _index_categories(index, ck)
    _index_images(index, ck)
    if panoptic is None:
        panoptic = any(isinstance(a, dict) and "segments_info" in a for a in data["annotations"])
    index.is_panoptic = panoptic
    if panoptic:
        _index_panoptic(index, ck)
    else:
        _index_annotations(index, ck)
    return index, ck


def _unique_records(
    items: list, list_name: str, kind: str, ck: Checker, *, prefix: str = "", category: bool = False
) -> Iterator[tuple[dict, int]]:
    """(record, id) of each record of ``items`` that is an object with a usable id not seen before in the
    list; the others are reported (``prefix`` names what holds the list). Runs once per record of a file."""
    first_at: dict[int, int] = {}
    low = 0 if kind in ("category", "segment") else -math.inf
    high = MAX_SEGMENT_ID if kind == "segment" else math.inf
    for i, rec in enumerate(items):
        rid = rec.get("id", MISSING) if type(rec) is dict else MISSING
        if type(rid) is int and low <= rid <= high and rid not in first_at:
            first_at[rid] = i  # the common case, decided without building a message
            yield rec, rid
            continue
        where = f"{prefix}{list_name}[{i}]"
        if not isinstance(rec, dict):
            ck.error(where, f"must be an object, got {describe(rec)}")
        elif (problem := id_problem(rid, "id", category=category)) is not None:
            ck.error(where, problem)
        elif kind == "category" and rid < 0:
            ck.error(where, f"category id {rid} is negative; DETR uses the id as the class index")
        elif not low <= rid <= high:
            ck.error(where, f"segment id {rid} cannot be stored as a PNG colour (0 to {MAX_SEGMENT_ID})")
        else:
            ck.error(where, f"duplicate {kind} id {rid} (also {list_name}[{first_at[rid]}])")


def _index_categories(index: CocoIndex, ck: Checker) -> None:
    names: dict[str, int] = {}
    for cat, cid in _unique_records(index.data["categories"], "categories", "category", ck, category=True):
        where = f"category id {cid}"
        check_category_fields(cat, where, ck)
        name = cat.get("name")
        if isinstance(name, str):
            if name in names:
                ck.warn(where, f"name {name!r} is also used by category id {names[name]}")
            names.setdefault(name, cid)
        index.categories[cid] = cat


def _index_images(index: CocoIndex, ck: Checker) -> None:
    for img, iid in _unique_records(index.data["images"], "images", "image", ck):
        where = f"image id {iid}"
        check_image_fields(img, where, ck, lazy_sizes=index.lazy_sizes)
        name = img.get("file_name")
        if isinstance(name, str) and name in index.images_by_name:
            other = index.images_by_name[name]["id"]
            ck.warn(where, f"file_name {name!r} is also used by image id {other}")
        index.add_image(img)


def check_annotation(index: CocoIndex, ann: dict, where: str, ck: Checker) -> None:
    """Everything about one instance annotation except its id (fast paths first: this runs per record)."""
    size = None
    iid = ann.get("image_id", MISSING)
    if type(iid) is int and iid in index.images:
        size = index.sizes[iid]
    else:
        problem = id_problem(iid, "image_id")
        ck.error(where, problem or f"image_id {iid} is not in 'images'")
    cid = ann.get("category_id", MISSING)
    if not (type(cid) is int and cid in index.categories):
        problem = id_problem(cid, "category_id", category=True)
        ck.error(
            where, problem or f"category_id {cid} is not in 'categories' (known: {index.known_categories()})"
        )
    check_box(ann.get("bbox", MISSING), size, where, ck)
    area = ann.get("area", 0)
    if not (type(area) in NUMERIC_TYPES and 0 <= area < LARGE):
        check_count(ann, "area", where, ck)
    check_flag(ann, "iscrowd", where, ck)
    if "segmentation" in ann:
        problem = segmentation_problem(ann["segmentation"], size)
        if problem is not None:
            ck.error(where, problem)
    if OUR_KEY in ann:
        check_our_annotation_fields(ann[OUR_KEY], where, ck)


def _index_annotations(index: CocoIndex, ck: Checker) -> None:
    for ann, aid in _unique_records(index.data["annotations"], "annotations", "annotation", ck):
        where = f"annotation id {aid}"
        if aid == 0:
            ck.warn(
                where, "id 0: pycocotools' evaluation reads 0 as 'no match', which skews AP; use ids from 1"
            )
        check_annotation(index, ann, where, ck)
        index.anns[aid] = ann
        iid = ann.get("image_id")
        if type(iid) is int and iid in index.anns_by_image:
            index.anns_by_image[iid].append(aid)
    index.next_ann_id = max(index.anns, default=0) + 1


def _index_panoptic(index: CocoIndex, ck: Checker) -> None:
    first_at: dict[int, int] = {}
    for i, ann in enumerate(index.data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            ck.error(where, f"must be an object, got {describe(ann)}")
            continue
        if "segments_info" not in ann:
            ck.error(
                where, "has no 'segments_info' although other entries do (a panoptic file needs it on all)"
            )
            continue
        iid = ann.get("image_id", MISSING)
        problem = id_problem(iid, "image_id")
        if problem:
            ck.error(where, problem)
            continue
        if iid not in index.images:
            ck.error(where, f"image_id {iid} is not in 'images'")
            continue
        if iid in first_at:
            ck.error(
                where, f"a second panoptic annotation for image {iid} (also annotations[{first_at[iid]}])"
            )
            continue
        first_at[iid] = i
        where = f"panoptic annotation for image {iid}"
        check_file_name(ann, where, ck, PNG_FOLDER, " (the PNG of segment ids)")
        segments = ann["segments_info"]
        if not isinstance(segments, list):
            ck.error(where, f"'segments_info' must be a list, got {describe(segments)}")
            continue
        _check_segments(index, segments, iid, where, ck)
        index.panoptic[iid] = ann


def _check_segments(index: CocoIndex, segments: list, iid: int, where: str, ck: Checker) -> None:
    size = index.sizes[iid]
    for seg, sid in _unique_records(segments, "segments_info", "segment", ck, prefix=f"{where}, "):
        swhere = f"{where}, segment id {sid}"
        cid = seg.get("category_id", MISSING)
        problem = id_problem(cid, "category_id", category=True)
        if problem:
            ck.error(swhere, problem)
        elif cid not in index.categories:
            ck.error(swhere, f"category_id {cid} is not in 'categories' (known: {index.known_categories()})")
        if "bbox" in seg:
            check_box(seg["bbox"], size, swhere, ck)
        check_count(seg, "area", swhere, ck)
        check_flag(seg, "iscrowd", swhere, ck)
        check_flag(seg, "isthing", swhere, ck)
