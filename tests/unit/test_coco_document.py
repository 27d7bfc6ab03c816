"""Tests for CocoDocument: validation messages, lossless round trips, edits with exact undo, atomic saving,
the crash journal, new documents, panoptic documents and load speed."""

from __future__ import annotations

import copy
import errno
import json
import os
import random
import stat
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from detr_studio.data import coco as coco_module
from detr_studio.data.coco import (
    OUR_KEY,
    AddAnnotations,
    AddCategory,
    Annotation,
    Batch,
    CocoDocument,
    CocoEditError,
    CocoFormatError,
    CocoSaveError,
    Edit,
    MergeCategories,
    Problem,
    Relabel,
    RemoveAnnotations,
    RemoveCategory,
    RenameCategory,
    SetImageReviewed,
    SetReviewState,
    UpdateAnnotation,
    UpdateCategory,
    UpdateImage,
    id2rgb,
    rgb2id,
)

# ----------------------------------------------------------------------------------------------------------------
# Fixtures


def base_data() -> dict:
    """A small valid instances file with fields we do not interpret at every level."""
    return {
        "info": {"description": "test set", "year": 2024},
        "licenses": [{"id": 1, "name": "CC-BY", "url": "http://example.org"}],
        "images": [
            {"license": 1, "id": 1, "file_name": "a.jpg", "width": 100, "height": 80, "flickr_url": "u"},
            {"id": 2, "file_name": "sub/b.jpg", "width": 60, "height": 60, "date_captured": "2024-01-01"},
            {"id": 3, "file_name": "c.jpg", "width": 50, "height": 40},
        ],
        "annotations": [
            {
                "segmentation": [[10, 10, 30, 10, 30, 40]],
                "area": 600.0,
                "iscrowd": 0,
                "image_id": 1,
                "bbox": [10, 10, 20, 30],
                "category_id": 1,
                "id": 10,
                "note": "keep me",
            },
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [50, 20, 10, 10], "area": 100, "iscrowd": 0},
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 60, 60],
                "area": 3600,
                "iscrowd": 0,
                OUR_KEY: {"source": "model", "score": 0.9, "review": "pending", "model": "detr-r50", "x": 1},
            },
        ],
        "categories": [
            {"supercategory": "animal", "id": 1, "name": "cat", "extra": True},
            {"supercategory": "animal", "id": 2, "name": "dog"},
            {"supercategory": "animal", "id": 5, "name": "bird"},
        ],
        "unknown_top": {"nested": [1, 2, {"a": None}]},
    }


def write_json(folder: Path, data: object, name: str = "instances.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def dumps(doc_or_data: CocoDocument | dict) -> str:
    """Canonical text of a document's JSON: equal strings mean equal content *and* key order everywhere."""
    data = doc_or_data.to_json() if isinstance(doc_or_data, CocoDocument) else doc_or_data
    return json.dumps(data)


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    return write_json(tmp_path, base_data())


@pytest.fixture
def doc(coco_file: Path) -> CocoDocument:
    return CocoDocument.load(coco_file)


def assert_indexes_match(doc: CocoDocument) -> None:
    """The document's indexes agree with a document built afresh from its JSON."""
    fresh = CocoDocument(doc.to_json())
    assert doc.images == fresh.images
    assert doc.categories == fresh.categories
    assert doc.annotations == fresh.annotations
    assert doc.num_classes == fresh.num_classes
    for image in fresh.images:
        assert doc.annotations_for(image.id) == fresh.annotations_for(image.id)
        assert doc.image_by_file_name(image.file_name) == fresh.image_by_file_name(image.file_name)


# ----------------------------------------------------------------------------------------------------------------
# Malformed input: one clear message per problem, naming the file and the record


def _set(path: list, value: object) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(path: list) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def _append(key: str, record: dict) -> Callable[[dict], None]:
    return lambda data: data[key].append(record)


MALFORMED = [
    ("missing images", _delete(["images"]), ["top level", "missing required key 'images'"]),
    ("missing annotations", _delete(["annotations"]), ["missing required key 'annotations'"]),
    ("missing categories", _delete(["categories"]), ["missing required key 'categories'"]),
    ("images not a list", _set(["images"], {"id": 1}), ["'images' must be a list, got an object"]),
    ("image not an object", _set(["images", 2], "c.jpg"), ["images[2]", "must be an object"]),
    ("image without id", _delete(["images", 1, "id"]), ["images[1]", "missing 'id'"]),
    ("image without file_name", _delete(["images", 1, "file_name"]), ["image id 2", "missing 'file_name'"]),
    ("image without width", _delete(["images", 0, "width"]), ["image id 1", "missing 'width'"]),
    ("width as string", _set(["images", 0, "width"], "100"), ["image id 1", "'width' is the string \"100\""]),
    ("zero height", _set(["images", 0, "height"], 0), ["image id 1", "'height' must be positive"]),
    ("string image id", _set(["images", 2, "id"], "3"), ["images[2]", "'id' is the string \"3\""]),
    ("annotation not an object", _set(["annotations", 0], [1, 2]), ["annotations[0]", "must be an object"]),
    ("annotation without id", _delete(["annotations", 1, "id"]), ["annotations[1]", "missing 'id'"]),
    ("without image_id", _delete(["annotations", 1, "image_id"]), ["annotation id 11", "missing 'image_id'"]),
    (
        "without category_id",
        _delete(["annotations", 1, "category_id"]),
        ["annotation id 11", "'category_id'"],
    ),
    ("without bbox", _delete(["annotations", 1, "bbox"]), ["annotation id 11", "missing 'bbox'"]),
    ("bbox of 3", _set(["annotations", 1, "bbox"], [1, 2, 3]), ["annotation id 11", "list of 4 numbers"]),
    (
        "bbox of strings",
        _set(["annotations", 1, "bbox"], ["1", "2", "3", "4"]),
        ["annotation id 11", "numbers written as strings"],
    ),
    (
        "duplicate image id",
        _append("images", {"id": 1, "file_name": "d.jpg", "width": 5, "height": 5}),
        ["images[3]", "duplicate image id 1 (also images[0])"],
    ),
    (
        "duplicate annotation id",
        _append("annotations", {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}),
        ["annotations[3]", "duplicate annotation id 10 (also annotations[0])"],
    ),
    (
        "duplicate category id",
        _append("categories", {"id": 2, "name": "wolf"}),
        ["categories[3]", "duplicate category id 2"],
    ),
    (
        "unknown image",
        _set(["annotations", 1, "image_id"], 99),
        ["annotation id 11", "image_id 99 is not in"],
    ),
    (
        "unknown category",
        _set(["annotations", 1, "category_id"], 7),
        ["annotation id 11", "category_id 7 is not in 'categories' (known: 1, 2, 5)"],
    ),
    (
        "string category_id",
        _set(["annotations", 1, "category_id"], "2"),
        ["annotation id 11", "'category_id' is the string \"2\"", '(2, not "2")', "class_error"],
    ),
    (
        "string category id in categories",
        _set(["categories", 1, "id"], "2"),
        ["categories[1]", "'id' is the string \"2\"", "class_error"],
    ),
    ("negative category id", _set(["categories", 2, "id"], -1), ["categories[2]", "negative"]),
    ("category without name", _delete(["categories", 1, "name"]), ["category id 2", "missing 'name'"]),
    (
        "box far outside (xyxy)",
        _set(["annotations", 1, "bbox"], [50, 20, 90, 60]),
        ["annotation id 11", "past the edge of the 100x80 image", "[x0, y0, x1, y1]"],
    ),
    (
        "box entirely outside",
        _set(["annotations", 1, "bbox"], [120, 20, 10, 10]),
        ["annotation id 11", "entirely outside the 100x80 image"],
    ),
    (
        "negative box size",
        _set(["annotations", 1, "bbox"], [50, 20, -10, 10]),
        ["annotation id 11", "negative width or height"],
    ),
    (
        "NaN in bbox",
        _set(["annotations", 1, "bbox"], [50, 20, float("nan"), 10]),
        ["annotation id 11", "non-finite"],
    ),
    (
        "infinite area",
        _set(["annotations", 1, "area"], float("inf")),
        ["annotation id 11", "'area' is not a finite"],
    ),
    ("iscrowd 2", _set(["annotations", 1, "iscrowd"], 2), ["annotation id 11", "'iscrowd' must be 0 or 1"]),
    (
        "segmentation string",
        _set(["annotations", 1, "segmentation"], "poly"),
        ["annotation id 11", "'segmentation'"],
    ),
    (
        "bad review state",
        _set(["annotations", 2, OUR_KEY, "review"], "maybe"),
        ["annotation id 12", "'detr_studio.review' must be one of"],
    ),
]


@pytest.mark.parametrize(
    "change,expected", [(c, e) for _, c, e in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_file_raises_clear_message_naming_file_and_record(
    tmp_path: Path, change: Callable[[dict], None], expected: list[str]
) -> None:
    data = base_data()
    change(data)
    path = write_json(tmp_path, data)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message
    assert isinstance(info.value, ValueError)
    assert info.value.problems and all(p.path == str(path) for p in info.value.problems)


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b'{"images": [\n  1,\n  }', "broken JSON at line 3, column 3"),
        (b'{"images": [], "annotations": [', "may be truncated"),
        (b"", "the file is empty"),
        (b"   \n", "the file is empty"),
        (b'{"images": "\xe9t\xe9"}', "not UTF-8 text"),
        ('{"images": []}'.encode("utf-16"), "UTF-16"),
        (b"[1, 2, 3]", "top level: must be a JSON object"),
        (b'"just a string"', "got a string"),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["broken", "truncated", "empty", "blank", "latin1", "utf16", "list", "string", "deep"],
)
def test_unreadable_json_is_named_with_position(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(raw)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_missing_file_and_folder_raise_format_error(tmp_path: Path) -> None:
    with pytest.raises(CocoFormatError, match="no such file"):
        CocoDocument.load(tmp_path / "nope.json")
    with pytest.raises(CocoFormatError, match="is a folder"):
        CocoDocument.load(tmp_path)


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    data = base_data()
    data["annotations"][0]["category_id"] = "1"
    data["annotations"][1]["image_id"] = 42
    data["images"][2]["width"] = -3
    path = write_json(tmp_path, data)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    records = {p.record for p in info.value.problems}
    assert {"annotation id 10", "annotation id 11", "image id 3"} <= records
    assert str(info.value).startswith(f"{path}: 3 problems:")


# ----------------------------------------------------------------------------------------------------------------
# Recoverable problems: warnings, or errors with strict=True


WARNINGS = [
    (
        "box slightly outside",
        _set(["annotations", 1, "bbox"], [50, 20, 55, 10]),
        "annotation id 11",
        "clips it",
    ),
    ("zero-area box", _set(["annotations", 1, "bbox"], [50, 20, 0, 10]), "annotation id 11", "zero area"),
    ("float width", _set(["images", 0, "width"], 100.0), "image id 1", "a float"),
    (
        "duplicate file name",
        _set(["images", 2, "file_name"], "a.jpg"),
        "image id 3",
        "also used by image id 1",
    ),
    ("duplicate category name", _set(["categories", 2, "name"], "cat"), "category id 5", "also used by"),
    ("annotation id 0", _set(["annotations", 1, "id"], 0), "annotation id 0", "pycocotools"),
    ("NaN in unknown field", _set(["info", "score"], float("nan")), "", "NaN or Infinity"),
]


@pytest.mark.parametrize("change,record,expected", [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_recoverable_problem_loads_with_warning_and_strict_refuses(
    tmp_path: Path, change: Callable[[dict], None], record: str, expected: str
) -> None:
    data = base_data()
    change(data)
    path = write_json(tmp_path, data)
    doc = CocoDocument.load(path)
    matching = [w for w in doc.warnings if w.record == record and expected in w.message]
    assert matching, doc.warnings
    assert all(w.path == str(path) for w in doc.warnings)
    with pytest.raises(CocoFormatError, match=expected):
        CocoDocument.load(path, strict=True)


def test_valid_file_loads_without_warnings(doc: CocoDocument) -> None:
    assert doc.warnings == []
    assert not doc.dirty and doc.revision == 0
    assert not doc.is_panoptic


# ----------------------------------------------------------------------------------------------------------------
# Round trip


def test_load_then_save_keeps_every_field_and_key_order(tmp_path: Path, coco_file: Path) -> None:
    original = json.loads(coco_file.read_text())
    doc = CocoDocument.load(coco_file)
    out = doc.save(tmp_path / "copy.json")
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved == original
    assert list(saved) == list(original)
    assert json.dumps(saved) == json.dumps(original)  # key order at every level


def test_round_trip_keeps_non_finite_values_in_unknown_fields(tmp_path: Path) -> None:
    data = base_data()
    data["info"]["threshold"] = float("inf")
    path = write_json(tmp_path, data)
    doc = CocoDocument.load(path)
    doc.save()
    assert path.read_text(encoding="utf-8") == json.dumps(data, ensure_ascii=False)


def test_round_trip_keeps_unicode_and_utf8_bom_content(tmp_path: Path) -> None:
    data = base_data()
    data["categories"][0]["name"] = "chat noir 猫"
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data, ensure_ascii=False).encode("utf-8"))
    doc = CocoDocument.load(path)
    assert doc.category(1).name == "chat noir 猫"
    doc.save()
    assert json.loads(path.read_text(encoding="utf-8")) == data


# ----------------------------------------------------------------------------------------------------------------
# Typed access


def test_typed_accessors_read_records(doc: CocoDocument) -> None:
    assert [i.id for i in doc.images] == [1, 2, 3]
    assert doc.image(2).file_name == "sub/b.jpg" and (doc.image(2).width, doc.image(2).height) == (60, 60)
    assert doc.category(1).name == "cat" and doc.category(1).supercategory == "animal"
    assert doc.category(1).isthing is None and doc.category(1).color is None
    first = doc.annotation(10)
    assert first == Annotation(
        id=10,
        image_id=1,
        category_id=1,
        bbox=(10.0, 10.0, 20.0, 30.0),
        area=600.0,
        iscrowd=False,
        segmentation=[[10, 10, 30, 10, 30, 40]],
    )
    assert first.source == "human" and first.review == "accepted" and first.score is None
    assert first.xyxy == (10.0, 10.0, 30.0, 40.0)
    model_box = doc.annotation(12)
    assert (model_box.source, model_box.score, model_box.review, model_box.model) == (
        "model",
        0.9,
        "pending",
        "detr-r50",
    )


def test_num_classes_is_max_category_id_plus_one(doc: CocoDocument) -> None:
    assert doc.num_classes == 6
    assert doc.class_names == ["N/A", "cat", "dog", "N/A", "N/A", "bird"]
    assert CocoDocument.new([]).num_classes == 0
    assert CocoDocument.new(["only"]).num_classes == 2  # a single class with id 1 needs num_classes 2


def test_annotations_for_image_and_lookup_by_file_name(doc: CocoDocument) -> None:
    assert [a.id for a in doc.annotations_for(1)] == [10, 11]
    assert [a.id for a in doc.annotations_for(3)] == []
    assert doc.image_by_file_name("sub/b.jpg").id == 2
    assert doc.image_by_file_name("missing.jpg") is None
    assert doc.annotation_counts() == {1: 2, 2: 1, 5: 0}
    with pytest.raises(KeyError):
        doc.annotations_for(99)


def test_image_root_resolves_image_paths(tmp_path: Path, coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file, image_root=tmp_path / "imgs")
    assert doc.image_path(2) == tmp_path / "imgs" / "sub" / "b.jpg"


def test_image_root_is_guessed_for_the_official_layout(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    Image.new("RGB", (100, 80)).save(tmp_path / "val2017" / "a.jpg")
    path = write_json(tmp_path / "annotations", base_data(), "instances_val2017.json")
    assert CocoDocument.load(path).image_root == (tmp_path / "val2017").absolute()


# ----------------------------------------------------------------------------------------------------------------
# Edits and their inverses


def _add(doc: CocoDocument) -> Edit:
    return AddAnnotations([doc.new_annotation(3, 2, [1, 2, 10, 10], source="model", score=0.5, model="m")])


EDITS: list[tuple[str, Callable[[CocoDocument], Edit]]] = [
    ("add", _add),
    ("add two at positions", lambda d: AddAnnotations([d.new_annotation(1, 1, [0, 0, 5, 5])] * 1, [1])),
    ("remove one", lambda d: RemoveAnnotations([11])),
    ("remove several", lambda d: RemoveAnnotations([12, 10])),
    ("update bbox and category", lambda d: UpdateAnnotation(10, {"bbox": [0, 0, 5, 5], "category_id": 2})),
    ("update adds a field", lambda d: UpdateAnnotation(11, {"attributes": {"occluded": True}})),
    ("update drops a middle field", lambda d: UpdateAnnotation(10, drop=["area", "note"])),
    ("update moves to another image", lambda d: UpdateAnnotation(10, {"image_id": 3, "bbox": [1, 1, 5, 5]})),
    ("relabel", lambda d: Relabel([10, 11, 12], 5)),
    ("review without our key", lambda d: SetReviewState([10, 11], "rejected")),
    ("review with our key", lambda d: SetReviewState([12], "accepted")),
    ("image reviewed", lambda d: SetImageReviewed(2, True)),
    ("update image", lambda d: UpdateImage(3, {"file_name": "renamed.jpg"}, drop=["width"] * 0)),
    ("update category", lambda d: UpdateCategory(2, {"color": [1, 2, 3]}, drop=["supercategory"])),
    ("add category", lambda d: AddCategory({"id": 7, "name": "fish", "supercategory": "water"})),
    ("add category at position", lambda d: AddCategory({"id": 3, "name": "cow"}, 0)),
    ("rename category", lambda d: RenameCategory(2, "hound")),
    ("merge categories", lambda d: MergeCategories([2, 5], 1)),
    ("remove unused category", lambda d: RemoveCategory(5)),
    ("batch", lambda d: Batch([RemoveAnnotations([11]), Relabel([10], 2), SetImageReviewed(1)], "mixed")),
]


@pytest.mark.parametrize("make", [m for _, m in EDITS], ids=[n for n, _ in EDITS])
def test_edit_inverse_restores_exact_json_and_redo_reapplies(doc: CocoDocument, make) -> None:
    edit = make(doc)
    before = dumps(doc)
    undo = doc.apply(edit)
    after = dumps(doc)
    assert after != before
    assert_indexes_match(doc)
    redo = doc.apply(undo)
    assert dumps(doc) == before
    assert_indexes_match(doc)
    doc.apply(redo)
    assert dumps(doc) == after
    assert_indexes_match(doc)


@pytest.mark.parametrize("make", [m for _, m in EDITS], ids=[n for n, _ in EDITS])
def test_edit_and_inverse_survive_json(doc: CocoDocument, make) -> None:
    edit = make(doc)
    revived = Edit.from_json(json.loads(json.dumps(edit.to_json())))
    assert revived == edit
    undo = doc.apply(revived)
    assert Edit.from_json(json.loads(json.dumps(undo.to_json()))) == undo


def test_undo_redo_sequence_walks_back_and_forth_through_states(doc: CocoDocument) -> None:
    states = [dumps(doc)]
    undo_stack: list[Edit] = []
    undo_stack.append(doc.add(3, 1, [5, 5, 10, 10]))
    states.append(dumps(doc))
    new_id = undo_stack[-1].annotation_ids[0]
    undo_stack.append(doc.update(new_id, bbox=[6, 6, 12, 12]))
    states.append(dumps(doc))
    undo_stack.append(doc.relabel([10, new_id], 2))
    states.append(dumps(doc))
    undo_stack.append(doc.set_review_state([12], "rejected"))
    states.append(dumps(doc))
    undo_stack.append(doc.merge_categories([1], 2))
    states.append(dumps(doc))
    undo_stack.append(doc.remove(11, 12))
    states.append(dumps(doc))

    redo_stack: list[Edit] = []
    for expected in reversed(states[:-1]):
        redo_stack.append(doc.apply(undo_stack.pop()))
        assert dumps(doc) == expected
        assert_indexes_match(doc)
    for expected in states[1:]:
        undo_stack.append(doc.apply(redo_stack.pop()))
        assert dumps(doc) == expected
    assert doc.revision == 3 * (len(states) - 1)


def test_update_of_bbox_keeps_area_in_step_for_boxes_without_masks(doc: CocoDocument) -> None:
    doc.update(11, bbox=[0, 0, 4, 5])
    assert doc.annotation(11).area == 20.0
    doc.update(10, bbox=[0, 0, 4, 5])  # has a polygon: its area is the polygon's, left alone
    assert doc.annotation(10).area == 600.0


def test_model_annotations_accept_numpy_values_and_start_pending(doc: CocoDocument) -> None:
    undo = doc.add(
        1,
        np.int64(2),
        np.array([1.5, 2.5, 10.0, 12.0], dtype=np.float32),
        source="model",
        score=np.float32(0.75),
    )
    ann = doc.annotation(undo.annotation_ids[0])
    assert ann.bbox == (1.5, 2.5, 10.0, 12.0) and ann.area == 120.0
    assert (ann.source, ann.review) == ("model", "pending")
    assert ann.score == pytest.approx(0.75)
    json.dumps(doc.to_json())


def test_image_review_state_lives_under_our_key(doc: CocoDocument) -> None:
    assert doc.image(1).reviewed is False
    doc.set_image_reviewed(1)
    assert doc.image(1).reviewed is True
    assert doc.to_json()["images"][0][OUR_KEY] == {"reviewed": True}


def test_reviewed_image_ids_follow_edits_and_undo(doc: CocoDocument) -> None:
    assert doc.reviewed_image_ids() == []
    undo_1 = doc.set_image_reviewed(1)
    doc.set_image_reviewed(2)
    assert doc.reviewed_image_ids() == [img.id for img in doc.images if img.reviewed] == [1, 2]
    doc.apply(undo_1)
    assert doc.reviewed_image_ids() == [2]


REFUSED: list[tuple[str, Callable[[CocoDocument], Edit], str]] = [
    ("remove unknown", lambda d: RemoveAnnotations([99]), "no annotation with id 99"),
    ("add duplicate id", lambda d: AddAnnotations([{**d.to_json()["annotations"][0]}]), "already used"),
    (
        "add to unknown image",
        lambda d: AddAnnotations([d.new_annotation(42, 1, [0, 0, 1, 1])]),
        "image_id 42",
    ),
    (
        "add unknown category",
        lambda d: AddAnnotations([d.new_annotation(1, 9, [0, 0, 1, 1])]),
        "category_id 9",
    ),
    ("negative size", lambda d: UpdateAnnotation(10, {"bbox": [0, 0, -1, 5]}), "negative width"),
    ("string category", lambda d: UpdateAnnotation(10, {"category_id": "2"}), "is the string"),
    ("change id", lambda d: UpdateAnnotation(10, {"id": 5}), "'id' cannot be changed"),
    ("relabel to unknown", lambda d: Relabel([10], 9), "no category with id 9"),
    ("category in use", lambda d: RemoveCategory(1), "used by 2 annotations; merge it"),
    ("merge into itself", lambda d: MergeCategories([1], 1), "into itself"),
    ("rename to existing", lambda d: RenameCategory(1, "dog"), "already exists"),
    ("add existing category", lambda d: AddCategory({"id": 2, "name": "x"}), "already used"),
    (
        "batch fails late",
        lambda d: Batch([RemoveAnnotations([11]), Relabel([10], 2), RemoveAnnotations([11])]),
        "11",
    ),
]


@pytest.mark.parametrize("make,expected", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_edit_raises_and_changes_nothing(doc: CocoDocument, make, expected: str) -> None:
    before = dumps(doc)
    with pytest.raises(CocoEditError, match=expected):
        doc.apply(make(doc))
    assert dumps(doc) == before
    assert not doc.dirty and doc.revision == 0
    assert_indexes_match(doc)


def test_remove_category_works_once_its_annotations_moved(doc: CocoDocument) -> None:
    doc.relabel([11], 1)
    doc.remove_category(2)
    assert [c.id for c in doc.categories] == [1, 5]


def test_merge_relabels_annotations_and_removes_sources(doc: CocoDocument) -> None:
    doc.merge_categories([1], 2)
    assert {a.category_id for a in doc.annotations} == {2}
    assert [c.id for c in doc.categories] == [2, 5]


def test_bad_edit_json_is_refused_with_edit_error() -> None:
    for bad in [
        {"op": "explode"},
        {"op": "relabel", "annotation_ids": "x", "category_id": 1},
        [1],
        {"op": "relabel"},
    ]:
        with pytest.raises(CocoEditError):
            Edit.from_json(bad)


def test_dirty_flag_and_revision_follow_edits_and_saves(doc: CocoDocument) -> None:
    undo = doc.relabel([10], 2)
    assert doc.dirty and doc.revision == 1
    doc.apply(undo)
    assert doc.dirty and doc.revision == 2
    doc.save()
    assert not doc.dirty and doc.revision == 2


# ----------------------------------------------------------------------------------------------------------------
# Saving


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_save_replaces_atomically_and_keeps_previous_version_as_bak(coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    doc.save()
    bak = coco_file.with_name("instances.json.bak")
    assert bak.read_bytes() == original
    assert json.loads(coco_file.read_text())["annotations"][0]["category_id"] == 2
    first_save = coco_file.read_bytes()
    doc.relabel([10], 5)
    doc.save()
    assert bak.read_bytes() == first_save
    assert _leftovers(coco_file.parent) == []


def test_save_as_writes_new_file_and_leaves_original(tmp_path: Path, coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.remove(11)
    target = tmp_path / "out" / "edited.json"
    target.parent.mkdir()
    assert doc.save(target) == target
    assert doc.path == target and not doc.dirty
    assert coco_file.read_bytes() == original
    assert not target.with_name("edited.json.bak").exists()
    assert [a["id"] for a in json.loads(target.read_text())["annotations"]] == [10, 12]


def test_save_through_a_symlink_replaces_the_linked_file(tmp_path: Path, coco_file: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(coco_file)
    doc = CocoDocument.load(link)
    doc.relabel([10], 2)
    doc.save()
    assert link.is_symlink()
    assert json.loads(coco_file.read_text())["annotations"][0]["category_id"] == 2


def test_save_keeps_file_permissions(coco_file: Path) -> None:
    os.chmod(coco_file, 0o640)
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    doc.save()
    assert stat.S_IMODE(coco_file.stat().st_mode) == 0o640


def test_failed_replace_raises_save_error_and_keeps_old_file_and_dirty(monkeypatch, coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CocoSaveError) as info:
        doc.save()
    assert str(coco_file) in str(info.value) and "Permission denied" in str(info.value)
    assert isinstance(info.value, OSError)
    monkeypatch.undo()
    assert coco_file.read_bytes() == original
    assert doc.dirty
    assert _leftovers(coco_file.parent) == []
    doc.save()  # works again once the cause is gone
    assert not doc.dirty


def test_disk_full_during_save_keeps_old_file(monkeypatch, coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.remove(10)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CocoSaveError, match="No space left on device"):
        doc.save()
    monkeypatch.undo()
    assert coco_file.read_bytes() == original
    assert doc.dirty and _leftovers(coco_file.parent) == []


def test_read_only_folder_keeps_old_file_and_dirty_state(monkeypatch, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = write_json(folder, base_data())
    original = path.read_bytes()
    doc = CocoDocument.load(path)
    doc.relabel([10], 2)
    os.chmod(folder, 0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            writable = (
                True  # running as root: chmod does not stop us, so fail the way a read-only folder would
            )
        except OSError:
            writable = False
        if writable:

            def refuse(src, dst):
                raise PermissionError(errno.EACCES, "Permission denied", str(dst))

            monkeypatch.setattr(os, "replace", refuse)
        with pytest.raises(CocoSaveError, match=r"instances\.json.*Permission denied"):
            doc.save()
    finally:
        monkeypatch.undo()
        os.chmod(folder, 0o755)
    assert path.read_bytes() == original
    assert doc.dirty
    assert _leftovers(folder) == []


def test_new_document_needs_a_name_to_save(tmp_path: Path) -> None:
    doc = CocoDocument.new(["a"])
    with pytest.raises(CocoSaveError, match="give save"):
        doc.save()
    doc.save(tmp_path / "new.json")
    assert CocoDocument.load(tmp_path / "new.json").categories[0].name == "a"


# ----------------------------------------------------------------------------------------------------------------
# Journal


def _journal_lines(path: Path) -> list[str]:
    return path.with_name(path.name + ".journal").read_text(encoding="utf-8").splitlines()


def test_each_edit_is_appended_to_the_journal_and_save_removes_it(coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    doc.remove(11)
    lines = _journal_lines(coco_file)
    assert len(lines) == 3 and json.loads(lines[0])["detr_studio_journal"] == 1
    assert json.loads(lines[2]) == {"op": "remove_annotations", "annotation_ids": [11]}
    doc.save()
    assert not doc.journal_path.exists()


def _crash_after_edits(coco_file: Path) -> str:
    doc = CocoDocument.load(coco_file)
    undo = doc.add(3, 5, [1, 1, 8, 8], source="model", score=0.4)
    doc.update(undo.annotation_ids[0], bbox=[2, 2, 9, 9])
    doc.set_review_state([12], "accepted")
    doc.merge_categories([2], 1)
    doc.apply(doc.remove(10))  # undo of a removal
    doc.rename_category(5, "sparrow")
    return dumps(doc)  # the process dies here without saving


def test_journal_replays_edits_after_a_crash(coco_file: Path) -> None:
    original = coco_file.read_bytes()
    expected = _crash_after_edits(coco_file)
    assert coco_file.read_bytes() == original
    doc = CocoDocument.load(coco_file)
    assert len(doc.pending_journal) == 7 and not doc.dirty
    assert dumps(doc) == dumps(json.loads(original))
    assert doc.replay_journal() == 7
    assert dumps(doc) == expected
    assert doc.dirty and doc.pending_journal == []
    doc.relabel([12], 5)  # journaling goes on after a replay
    expected = dumps(doc)
    again = CocoDocument.load(coco_file)
    again.replay_journal()
    assert dumps(again) == expected
    again.save()
    assert not again.journal_path.exists()
    final = CocoDocument.load(coco_file)
    assert final.pending_journal == [] and dumps(final) == expected


def test_corrupt_last_journal_line_is_ignored_with_a_warning(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    journal = coco_file.with_name("instances.json.journal")
    with open(journal, "a", encoding="utf-8") as f:
        f.write('{"op": "relabel", "annotation_ids": [1')  # the crash hit mid-write
    doc = CocoDocument.load(coco_file)
    assert len(doc.pending_journal) == 7
    warning = doc.warnings[-1]
    assert warning.path == str(journal) and warning.record == "line 9" and "incomplete" in warning.message
    assert doc.replay_journal() == 7
    assert (journal.parent / "instances.json.journal.old").exists()  # the raw journal is kept


def test_unreadable_middle_journal_line_stops_replay_there(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    journal = coco_file.with_name("instances.json.journal")
    lines = journal.read_text().splitlines()
    lines[3] = "garbage"
    journal.write_text("\n".join(lines) + "\n")
    doc = CocoDocument.load(coco_file)
    assert len(doc.pending_journal) == 2
    assert doc.warnings[-1].record == "line 4" and "lines after it are ignored" in doc.warnings[-1].message


def test_journal_of_another_file_version_is_ignored_and_kept_aside(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    data = base_data()
    data["info"]["year"] = 1999  # the file changed behind our back
    write_json(coco_file.parent, data)
    doc = CocoDocument.load(coco_file)
    assert doc.pending_journal == []
    assert "different version" in doc.warnings[-1].message
    doc.relabel([10], 2)
    assert (coco_file.parent / "instances.json.journal.old").exists()
    assert len(_journal_lines(coco_file)) == 2


def test_editing_without_replaying_moves_the_old_journal_aside(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    old_text = coco_file.with_name("instances.json.journal").read_text()
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    assert coco_file.with_name("instances.json.journal.old").read_text() == old_text
    assert doc.pending_journal == [] and len(_journal_lines(coco_file)) == 2


def test_journal_write_failure_keeps_the_edit_and_reports(monkeypatch, coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(coco_module, "open", full, raising=False)  # the journal cannot be written
    doc.relabel([10], 2)
    assert doc.annotation(10).category_id == 2 and doc.dirty
    assert doc.journal_error and "cannot write the journal (No space left on device)" in doc.journal_error
    monkeypatch.undo()
    doc.relabel([10], 1)  # no journal lines after a gap: a replay would apply them to the wrong state
    assert not doc.journal_path.exists()
    doc.save()
    assert doc.journal_error is None
    doc.relabel([10], 2)
    assert len(_journal_lines(coco_file)) == 2


def test_failing_journal_edit_stops_replay_with_warning(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    data = json.loads(coco_file.read_text())
    doc = CocoDocument.load(coco_file)
    doc.pending_journal.insert(0, RemoveAnnotations([404]))
    assert doc.replay_journal() == 0
    assert "cannot be replayed" in doc.warnings[-1].message
    assert dumps(doc) == dumps(data)


# ----------------------------------------------------------------------------------------------------------------
# New documents


def test_new_document_from_category_names(tmp_path: Path) -> None:
    doc = CocoDocument.new(["cat", "dog"], [{"id": 1, "file_name": "x.png", "width": 10, "height": 10}])
    assert [(c.id, c.name) for c in doc.categories] == [(1, "cat"), (2, "dog")]
    assert doc.num_classes == 3 and not doc.dirty and doc.path is None
    doc.add(1, 2, [1, 1, 3, 3])
    path = doc.save(tmp_path / "new.json")
    assert CocoDocument.load(path).annotations_for(1)[0].category_id == 2


def test_new_document_with_bad_records_raises_format_error() -> None:
    with pytest.raises(CocoFormatError, match="missing 'width'"):
        CocoDocument.new(["a"], [{"id": 1, "file_name": "x.png", "height": 3}])


def test_from_images_reads_sizes_from_headers(tmp_path: Path) -> None:
    (tmp_path / "day").mkdir()
    (tmp_path / "night").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "day" / "a.png")
    rotated = Image.new("RGB", (30, 12))
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    rotated.save(tmp_path / "night" / "b.jpg", exif=exif)
    (tmp_path / "night" / "broken.jpg").write_bytes(b"not an image")
    paths = [tmp_path / "day" / "a.png", tmp_path / "night" / "broken.jpg", tmp_path / "night" / "b.jpg"]
    doc = CocoDocument.from_images(paths, ["thing"])
    assert [(i.id, i.file_name, i.width, i.height) for i in doc.images] == [
        (1, "day/a.png", 20, 10),
        (2, "night/b.jpg", 12, 30),
    ]
    assert doc.image_path(2) == (tmp_path / "night" / "b.jpg").absolute()
    assert len(doc.warnings) == 1 and doc.warnings[0].path.endswith("broken.jpg")
    assert doc.annotations == []


# ----------------------------------------------------------------------------------------------------------------
# Panoptic


SEGMENT_IDS = (5, 300, 70000)  # exercises all three colour channels


def panoptic_data() -> dict:
    return {
        "info": {"description": "panoptic"},
        "images": [
            {"id": 1, "file_name": "one.jpg", "width": 8, "height": 6},
            {"id": 2, "file_name": "two.jpg", "width": 8, "height": 6},
        ],
        "annotations": [
            {
                "image_id": 1,
                "file_name": "one.png",
                "segments_info": [
                    {"id": 5, "category_id": 1, "bbox": [0, 0, 4, 6], "area": 24, "iscrowd": 0, "extra": "x"},
                    {"id": 300, "category_id": 2, "bbox": [4, 0, 4, 3], "area": 12, "iscrowd": 0},
                    {"id": 70000, "category_id": 200, "bbox": [4, 3, 4, 3], "area": 12, "iscrowd": 1},
                ],
            },
            {"image_id": 2, "file_name": "two.png", "segments_info": [], "note": "empty"},
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
            {"id": 2, "name": "car", "supercategory": "vehicle", "isthing": 1, "color": [0, 0, 142]},
            {"id": 200, "name": "sky", "supercategory": "sky", "isthing": 0, "color": [70, 130, 180]},
        ],
    }


def panoptic_ids() -> np.ndarray:
    ids = np.zeros((6, 8), dtype=np.int64)  # [H, W]
    ids[:, :4] = 5
    ids[:3, 4:] = 300
    ids[3:, 4:] = 70000
    return ids


def write_panoptic(folder: Path, data: dict | None = None, ids: np.ndarray | None = None) -> Path:
    path = write_json(folder, data or panoptic_data(), "panoptic_val.json")
    png_folder = folder / "panoptic_val"
    png_folder.mkdir(exist_ok=True)
    Image.fromarray(id2rgb(panoptic_ids() if ids is None else ids)).save(png_folder / "one.png")
    Image.fromarray(id2rgb(np.zeros((6, 8), dtype=np.int64))).save(png_folder / "two.png")
    return path


def test_rgb2id_inverts_id2rgb() -> None:
    ids = np.array([[0, 1, 255], [256, 65535, 16777215]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    assert rgb2id(np.array([[[1, 2, 3]]], dtype=np.uint8))[0, 0] == 1 + 2 * 256 + 3 * 65536


def test_panoptic_document_is_detected_with_segments(tmp_path: Path) -> None:
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path)
    assert doc.is_panoptic and doc.warnings == []
    assert doc.panoptic_root == tmp_path / "panoptic_val"
    assert doc.panoptic_png(1) == tmp_path / "panoptic_val" / "one.png"
    segments = doc.segments_for(1)
    assert [s.id for s in segments] == list(SEGMENT_IDS)
    assert segments[2].category_id == 200 and segments[2].iscrowd and segments[2].isthing is False
    assert segments[0].bbox == (0.0, 0.0, 4.0, 6.0) and segments[0].area == 24.0
    assert doc.segments_for(2) == []
    assert doc.category(200).color == (70, 130, 180) and doc.category(1).isthing is True
    assert doc.num_classes == 201
    assert doc.annotation_counts() == {1: 1, 2: 1, 200: 1}


def test_panoptic_round_trip_is_lossless(tmp_path: Path) -> None:
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path)
    doc.apply(doc.set_image_reviewed(2))  # an edit and its undo
    doc.save()
    assert json.dumps(json.loads(path.read_text())) == json.dumps(panoptic_data())


def test_panoptic_segment_missing_from_png_is_an_error(tmp_path: Path) -> None:
    ids = panoptic_ids()
    ids[ids == 300] = 5
    path = write_panoptic(tmp_path, ids=ids)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    assert str(path) in str(info.value)
    assert "panoptic annotation for image 1" in str(info.value)
    assert "segments_info ids [300] do not appear in" in str(info.value)
    assert CocoDocument.load(path, check_masks=False).is_panoptic


def test_png_segment_missing_from_segments_info_is_an_error(tmp_path: Path) -> None:
    ids = panoptic_ids()
    ids[0, 0] = 12345
    path = write_panoptic(tmp_path, ids=ids)
    with pytest.raises(CocoFormatError, match=r"one\.png contains segment ids \[12345\] that segments_info"):
        CocoDocument.load(path)


def test_missing_or_wrong_size_png_is_an_error(tmp_path: Path) -> None:
    path = write_panoptic(tmp_path)
    (tmp_path / "panoptic_val" / "one.png").unlink()
    with pytest.raises(
        CocoFormatError, match=r"panoptic_val\.json: panoptic annotation for image 1: .*not found"
    ):
        CocoDocument.load(path)
    Image.fromarray(id2rgb(np.zeros((3, 3), dtype=np.int64))).save(tmp_path / "panoptic_val" / "one.png")
    with pytest.raises(CocoFormatError, match="is 3x3 but the image is 8x6"):
        CocoDocument.load(path)


def test_panoptic_structure_errors_are_named(tmp_path: Path) -> None:
    data = panoptic_data()
    data["annotations"][0]["segments_info"][1]["category_id"] = 77
    data["annotations"][0]["segments_info"].append({"id": 5, "category_id": 1})
    data["annotations"].append({"image_id": 1, "file_name": "again.png", "segments_info": []})
    path = write_json(tmp_path, data)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    text = str(info.value)
    assert "panoptic annotation for image 1, segment id 300: category_id 77 is not in 'categories'" in text
    assert "segments_info[3]: duplicate segment id 5" in text
    assert "annotations[2]: a second panoptic annotation for image 1" in text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2
def test_panoptic_to_instances_gives_boxes_and_rle_masks(tmp_path: Path) -> None:
    doc = CocoDocument.load(write_panoptic(tmp_path))
    inst = doc.panoptic_to_instances()
    assert not inst.is_panoptic
    anns = inst.annotations
    assert [a.category_id for a in anns] == [1, 2, 200]
    assert [a.bbox for a in anns] == [(0, 0, 4, 6), (4, 0, 4, 3), (4, 3, 4, 3)]
    assert [a.iscrowd for a in anns] == [False, False, True]
    ids = panoptic_ids()
    for ann, sid in zip(anns, SEGMENT_IDS):
        decoded = mask_utils.decode(copy.deepcopy(ann.segmentation))  # [H, W]
        assert np.array_equal(decoded.astype(bool), ids == sid)
    assert inst.categories == doc.categories
    json.dumps(inst.to_json())


def test_panoptic_to_instances_without_pngs_uses_segment_boxes(tmp_path: Path) -> None:
    path = write_json(tmp_path, panoptic_data())
    doc = CocoDocument.load(path)
    assert doc.panoptic_root is None
    inst = doc.panoptic_to_instances()
    assert [a.bbox for a in inst.annotations] == [(0, 0, 4, 6), (4, 0, 4, 3), (4, 3, 4, 3)]
    assert all(a.segmentation is None for a in inst.annotations)
    data = panoptic_data()
    del data["annotations"][0]["segments_info"][0]["bbox"]
    with pytest.raises(CocoFormatError, match="segment id 5: no 'bbox' and no PNG folder"):
        CocoDocument.load(write_json(tmp_path, data)).panoptic_to_instances()


def test_panoptic_document_refuses_instance_edits_clearly(tmp_path: Path) -> None:
    doc = CocoDocument.load(write_panoptic(tmp_path))
    with pytest.raises(CocoEditError, match="panoptic"):
        doc.add(1, 1, [0, 0, 2, 2])
    with pytest.raises(CocoEditError, match="panoptic"):
        _ = doc.annotations
    with pytest.raises(CocoEditError, match="used by 1 segments"):
        doc.remove_category(200)
    doc.rename_category(200, "sky-other")
    assert doc.category(200).name == "sky-other"


# ----------------------------------------------------------------------------------------------------------------
# Speed


def test_loading_5000_images_and_36000_annotations_is_fast_and_silent(tmp_path: Path, capsys) -> None:
    rng = random.Random(0)
    images = [
        {"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480, "license": 1}
        for i in range(1, 5001)
    ]
    annotations = []
    for aid in range(1, 36001):
        x, y = rng.uniform(0, 500), rng.uniform(0, 380)
        w, h = rng.uniform(5, 130), rng.uniform(5, 95)
        poly = [round(v, 2) for v in (x, y, x + w, y, x + w, y + h, x, y + h, x + w / 2, y + h / 2)]
        annotations.append(
            {
                "segmentation": [poly],
                "area": round(w * h, 2),
                "iscrowd": 0,
                "image_id": rng.randint(1, 5000),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "category_id": rng.randint(1, 90),
                "id": aid,
            }
        )
    categories = [{"supercategory": "s", "id": i, "name": f"class {i}"} for i in range(1, 91)]
    path = write_json(
        tmp_path, {"info": {}, "images": images, "annotations": annotations, "categories": categories}
    )
    start = time.perf_counter()
    doc = CocoDocument.load(path)
    elapsed = time.perf_counter() - start
    assert len(doc.images) == 5000 and sum(doc.annotation_counts().values()) == 36000
    assert elapsed < 6.0, f"loading took {elapsed:.2f} s"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_problem_reads_as_path_record_message() -> None:
    assert str(Problem("/x/a.json", "annotation id 17", "bad")) == "/x/a.json: annotation id 17: bad"
    assert str(Problem("/x/a.json", "", "empty")) == "/x/a.json: empty"
