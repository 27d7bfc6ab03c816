"""Edits: every change has an exact inverse, survives JSON, and a refused edit changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from detr_studio.data.coco import (
    OUR_KEY,
    AddAnnotations,
    AddCategory,
    Batch,
    CocoDocument,
    CocoEditError,
    Edit,
    MergeCategories,
    Relabel,
    RemoveAnnotations,
    RemoveCategory,
    RenameCategory,
    SetImageReviewed,
    SetReviewState,
    UpdateAnnotation,
    UpdateCategory,
    UpdateImage,
)

from .helpers import assert_indexes_match, dumps

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
