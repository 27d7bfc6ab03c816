"""Property tests: random corruptions of valid COCO files never raise anything but CocoFormatError, and any
file that does load is fully usable (read, edit, undo, save, reload unchanged)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from detr_studio.data.coco import CocoDocument, CocoFormatError, id2rgb

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def valid_instances() -> dict:
    return {
        "info": {"year": 2024},
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 20, "height": 20, "detr_studio": {"reviewed": False}},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "area": 100, "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [5.5, 5, 20, 20],
                "area": 300.5,
                "iscrowd": 0,
                "segmentation": [[5, 5, 25, 5, 25, 25]],
                "detr_studio": {"source": "model", "score": 0.5, "review": "pending", "model": "m"},
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 20, 20],
                "iscrowd": 1,
                "segmentation": {"size": [20, 20], "counts": "0`<"},  # the whole image
            },
        ],
        "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog"}],
    }


def valid_panoptic() -> dict:
    return {
        "images": [{"id": 1, "file_name": "p.jpg", "width": 4, "height": 3}],
        "annotations": [
            {
                "image_id": 1,
                "file_name": "p.png",
                "segments_info": [
                    {"id": 1, "category_id": 1, "bbox": [0, 0, 2, 3], "area": 6, "iscrowd": 0},
                    {"id": 513, "category_id": 2, "bbox": [2, 0, 2, 3], "area": 6, "iscrowd": 0},
                ],
            }
        ],
        "categories": [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "wall", "isthing": 0}],
    }


def panoptic_png() -> np.ndarray:
    ids = np.ones((3, 4), dtype=np.int64)  # [H, W]
    ids[:, 2:] = 513
    return ids


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["1", "3", "", "NaN"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nodes(data: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside ``data`` (the root excluded)."""
    found = []
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return found
    for key, value in items:
        found.append((*path, key))
        found.extend(_nodes(value, (*path, key)))
    return found


def _parent(data: Any, path: tuple) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


def corrupt(draw: st.DrawFn, data: dict) -> dict:
    """One to three changes: drop a key or item, replace a value, duplicate a record, or add a field we do
    not interpret (which must then survive the round trip)."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["drop", "replace", "replace", "duplicate", "add unknown", "add unknown"])
        )
        nodes = _nodes(data)
        if not nodes:
            break
        path = draw(st.sampled_from(nodes))
        parent = _parent(data, path)
        if kind == "add unknown":
            dicts = [data] + [
                _parent(data, p)[p[-1]] for p in nodes if isinstance(_parent(data, p)[p[-1]], dict)
            ]
            draw(st.sampled_from(dicts))["zz_" + draw(st.text(max_size=5))] = draw(json_value)
        elif kind == "drop":
            del parent[path[-1]]
        elif kind == "replace":
            parent[path[-1]] = draw(json_value)
        else:
            lists = [
                p for p in nodes if isinstance(_parent(data, p)[p[-1]], list) and _parent(data, p)[p[-1]]
            ]
            if lists:
                target = _parent(data, (*draw(st.sampled_from(lists)), 0))
                target.append(copy.deepcopy(draw(st.sampled_from(target))))
    return data


def to_bytes(draw: st.DrawFn, data: dict) -> bytes:
    """Serialise, then sometimes damage the bytes: truncate, overwrite a few, or replace everything."""
    raw = json.dumps(data).encode("utf-8")
    mode = draw(st.sampled_from(["keep", "keep", "keep", "keep", "truncate", "flip", "random"]))
    if mode == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if mode == "flip":
        out = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if mode == "random":
        return draw(st.binary(max_size=200))
    return raw


def exercise(doc: CocoDocument, folder: Path) -> None:
    """Everything a loaded document offers must work."""
    images, categories = doc.images, doc.categories
    assert doc.num_classes == max((c.id for c in categories), default=-1) + 1
    assert len(doc.class_names) == doc.num_classes
    doc.annotation_counts()
    for image in images:
        if doc.is_panoptic:
            doc.segments_for(image.id)
        else:
            for ann in doc.annotations_for(image.id):
                assert ann.image_id == image.id
    before = json.dumps(doc.to_json())
    if images and categories and not doc.is_panoptic:
        undo = doc.add(images[0].id, categories[0].id, [0, 0, 1, 1])
        doc.apply(undo)
        assert json.dumps(doc.to_json()) == before
    if images:
        doc.apply(doc.set_image_reviewed(images[0].id, True))
        assert json.dumps(doc.to_json()) == before
    if doc.is_panoptic:
        try:
            inst = doc.panoptic_to_instances()
        except CocoFormatError:
            pass  # a segment without a box, and no PNG folder
        else:
            assert not inst.is_panoptic
    out = doc.save(folder / "saved.json")
    again = CocoDocument.load(out, check_masks=False)
    assert json.dumps(again.to_json()) == before


def load_or_format_error(raw: bytes, folder: Path, name: str) -> CocoDocument | None:
    path = folder / name
    path.write_bytes(raw)
    try:
        doc = CocoDocument.load(path)
    except CocoFormatError as exc:
        assert str(path) in str(exc)
        assert exc.problems
        event("refused")
        return None
    event("loaded with warnings" if doc.warnings else "loaded")
    return doc


@FUZZ
@given(st.data())
def test_corrupted_instances_file_raises_only_format_error(data: st.DataObject) -> None:
    damaged = corrupt(data.draw, valid_instances())
    raw = to_bytes(data.draw, damaged)
    with tempfile.TemporaryDirectory() as tmp:
        doc = load_or_format_error(raw, Path(tmp), "instances.json")
        if doc is not None:
            exercise(doc, Path(tmp))


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_corrupted_panoptic_file_raises_only_format_error(data: st.DataObject) -> None:
    damaged = corrupt(data.draw, valid_panoptic())
    raw = to_bytes(data.draw, damaged)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "panoptic").mkdir()
        ids = panoptic_png()
        if data.draw(st.booleans()):
            ids[data.draw(st.integers(0, 2)), data.draw(st.integers(0, 3))] = data.draw(
                st.integers(0, 2**24 - 1)
            )
        Image.fromarray(id2rgb(ids)).save(folder / "panoptic" / "p.png")
        doc = load_or_format_error(raw, folder, "panoptic.json")
        if doc is not None:
            exercise(doc, folder)


def test_the_files_the_corruptions_start_from_load_cleanly(tmp_path: Path) -> None:
    (tmp_path / "instances.json").write_text(json.dumps(valid_instances()))
    doc = CocoDocument.load(tmp_path / "instances.json")
    assert doc.warnings == []
    exercise(doc, tmp_path)
    (tmp_path / "panoptic").mkdir()
    Image.fromarray(id2rgb(panoptic_png())).save(tmp_path / "panoptic" / "p.png")
    (tmp_path / "panoptic.json").write_text(json.dumps(valid_panoptic()))
    doc = CocoDocument.load(tmp_path / "panoptic.json")
    assert doc.warnings == [] and doc.is_panoptic
    exercise(doc, tmp_path)
