"""Category edits as the class manager makes them (add with a colour, rename, merge, recolour, remove): each
undoes exactly, survives save and reload, travels through the crash journal, and refuses bad input without
changing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detr_studio.data.coco import (
    AddCategory,
    Batch,
    CocoDocument,
    CocoEditError,
    Edit,
    MergeCategories,
    RemoveCategory,
    RenameCategory,
    UpdateCategory,
)


def make_doc(tmp_path: Path) -> CocoDocument:
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [9, 9, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0},
        ],
        "categories": [
            {"id": 1, "name": "cat", "supercategory": "animal"},
            {"id": 2, "name": "kitten", "supercategory": "animal"},
            {"id": 3, "name": "dog", "supercategory": "animal", "color": [10, 20, 30]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return CocoDocument.load(path)


def state(doc: CocoDocument) -> str:
    return json.dumps(doc.to_json(), sort_keys=False)


def labels(doc: CocoDocument) -> dict[int, int]:
    return {a.id: a.category_id for a in doc.annotations}


def test_a_session_of_category_edits_undoes_to_the_start_and_redoes_to_the_end(tmp_path: Path) -> None:
    doc = make_doc(tmp_path)
    states, undo = [state(doc)], []
    for edit in (
        AddCategory({"id": 4, "name": "bird", "color": [200, 0, 0]}),
        RenameCategory(1, "adult cat"),
        UpdateCategory(2, {"color": [0, 128, 255]}),
        MergeCategories([2], 1),
        UpdateCategory(3, drop=["color"]),
        RemoveCategory(4),
    ):
        undo.append(doc.apply(edit))
        states.append(state(doc))
    assert [c.name for c in doc.categories] == ["adult cat", "dog"]
    assert labels(doc) == {1: 1, 2: 1, 3: 1, 4: 3}
    redo = []
    for expected in reversed(states[:-1]):
        redo.append(doc.apply(undo.pop()))
        assert state(doc) == expected
    for expected in states[1:]:
        doc.apply(redo.pop())
        assert state(doc) == expected


def test_merge_relabels_every_annotation_and_its_undo_puts_the_class_back_in_place(tmp_path: Path) -> None:
    doc = make_doc(tmp_path)
    before = state(doc)
    undo = doc.merge_categories([2], 3)
    assert [c.id for c in doc.categories] == [1, 3]
    assert labels(doc) == {1: 1, 2: 3, 3: 3, 4: 3}
    assert doc.annotation_counts() == {1: 1, 3: 3}
    doc.apply(undo)
    assert state(doc) == before
    assert [c.name for c in doc.categories] == ["cat", "kitten", "dog"]


def test_colour_is_stored_as_rgb_in_the_category_and_survives_save_and_reload(tmp_path: Path) -> None:
    doc = make_doc(tmp_path)
    doc.set_category_color(1, (255, 128, 0))
    doc.add_category("bird", color=[1, 2, 3])
    doc.rename_category(2, "kitty")
    doc.save()
    raw = json.loads(doc.path.read_text(encoding="utf-8"))["categories"]
    assert raw[0] == {"id": 1, "name": "cat", "supercategory": "animal", "color": [255, 128, 0]}
    assert raw[1]["name"] == "kitty" and raw[3] == {"id": 4, "name": "bird", "color": [1, 2, 3]}
    again = CocoDocument.load(doc.path)
    assert again.category(1).color == (255, 128, 0) and again.category(4).color == (1, 2, 3)
    undo = again.set_category_color(3, None)
    assert again.category(3).color is None
    again.apply(undo)
    assert again.category(3).color == (10, 20, 30)


def test_category_edits_made_before_a_crash_replay_from_the_journal(tmp_path: Path) -> None:
    doc = make_doc(tmp_path)
    doc.add_category("bird")
    doc.rename_category(3, "hound")
    doc.set_category_color(1, (9, 9, 9))
    doc.merge_categories([2], 1)
    expected = state(doc)
    survivor = CocoDocument.load(doc.path)  # the first process died without saving
    assert len(survivor.pending_journal) == 4
    assert survivor.replay_journal() == 4
    assert state(survivor) == expected and survivor.dirty


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (RenameCategory(1, "dog"), "a category named 'dog' already exists (id 3); merge instead"),
        (AddCategory({"id": 9, "name": "kitten"}), "already exists"),
        (AddCategory({"id": 2, "name": "lion"}), "category id 2 is already used by 'kitten'"),
        (MergeCategories([2], 2), "cannot be merged into itself"),
        (MergeCategories([7], 1), "no category with id 7"),
        (MergeCategories([1], 7), "no category with id 7"),
        (UpdateCategory(1, {"color": [300, 0, 0]}), "'color' must be [r, g, b] with values 0-255"),
        (UpdateCategory(1, {"color": "#ff0000"}), "'color' must be [r, g, b]"),
        (UpdateCategory(1, {"name": ""}), "'name' must be a non-empty string"),
        (RemoveCategory(2), "used by 2 annotations; merge it into another category"),
        (Batch([RenameCategory(1, "lion"), MergeCategories([2], 9)], "both"), "no category with id 9"),
    ],
)
def test_refused_category_edits_say_why_and_change_nothing(tmp_path: Path, edit: Edit, message: str) -> None:
    doc = make_doc(tmp_path)
    before = state(doc)
    with pytest.raises(CocoEditError) as info:
        doc.apply(edit)
    assert message in str(info.value)
    assert state(doc) == before and not doc.dirty


def test_category_edits_travel_as_json_and_revive_equal(tmp_path: Path) -> None:
    doc = make_doc(tmp_path)
    for edit in (
        AddCategory({"id": 4, "name": "bird", "color": [1, 2, 3]}, 0),
        RenameCategory(1, "lion"),
        MergeCategories([2, 3], 1),
        UpdateCategory(1, {"color": [4, 5, 6]}, drop=["supercategory"]),
    ):
        revived = Edit.from_json(json.loads(json.dumps(edit.to_json())))
        assert revived == edit
        undo = doc.apply(revived)
        assert Edit.from_json(json.loads(json.dumps(undo.to_json()))) == undo
