"""The one rule that maps a model's labels to a document's categories, and which labels are trusted."""

from __future__ import annotations

from detr_studio.data.coco import Annotation, Category
from detr_studio.data.labels import category_for_label, is_trusted, label_name, same_class
from detr_studio.model.classes import UNUSED_NAME

CATS = [Category(id=1, name="cat"), Category(id=2, name="dog")]


def test_a_named_label_matches_by_name_and_an_unnamed_one_by_id():
    names = {7: "dog", 3: UNUSED_NAME}
    assert same_class(7, CATS[1], names) and not same_class(7, CATS[0], names)
    assert same_class(2, CATS[1], {}) and not same_class(1, CATS[1], {})
    assert same_class(3, Category(id=3, name="anything"), names)  # the table's unused slot: by id
    assert (
        label_name(names, 7) == "dog" and label_name(names, 3) == "class 3" and label_name({}, 9) == "class 9"
    )


def test_accepting_a_label_finds_the_category_or_plans_one_new_category_per_name():
    new: dict[int, dict] = {}
    names = {7: "dog", 8: "bird", 9: "bird"}
    assert category_for_label(CATS, 7, names, new) == 2
    assert category_for_label(CATS, 8, names, new) == 8  # a new class keeps the label's free id
    assert category_for_label(CATS, 9, names, new) == 8  # the same name again: the planned category
    assert category_for_label(CATS, 1, {1: "fish"}, new) == 9  # id 1 is taken: one above the largest
    assert new == {8: {"id": 8, "name": "bird"}, 9: {"id": 9, "name": "fish"}}
    assert category_for_label(CATS, 1, {}, {}) == 1  # no names: the category with the same id


def test_rejected_labels_and_unreviewed_model_proposals_are_not_trusted():
    def ann(source: str, review: str) -> Annotation:
        return Annotation(1, 1, 1, (0, 0, 1, 1), 1.0, False, source=source, review=review)

    assert is_trusted(ann("human", "accepted")) and is_trusted(ann("model", "accepted"))
    assert not is_trusted(ann("human", "rejected")) and not is_trusted(ann("model", "pending"))
