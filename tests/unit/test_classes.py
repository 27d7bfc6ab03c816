"""Tests for the class tables: the shipped COCO tables and ClassTable's own behaviour."""

from __future__ import annotations

import json

import pytest

from detr_studio.model.classes import (
    UNUSED_NAME,
    ClassTable,
    coco_detection_classes,
    coco_panoptic_classes,
    generated_color,
)

DETECTION_GAPS = [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83]


def test_detection_table_has_91_entries_with_na_exactly_at_the_gaps() -> None:
    table = coco_detection_classes()
    assert table.num_classes == 91
    assert sorted(table.names) == list(range(91))
    assert [i for i in range(91) if table.names[i] == UNUSED_NAME] == DETECTION_GAPS
    assert len(table.ids) == 80


@pytest.mark.parametrize(
    ("cid", "name"),
    [
        (1, "person"),
        (2, "bicycle"),
        (3, "car"),
        (11, "fire hydrant"),
        (13, "stop sign"),
        (18, "dog"),
        (25, "giraffe"),
        (27, "backpack"),
        (44, "bottle"),
        (46, "wine glass"),
        (62, "chair"),
        (67, "dining table"),
        (70, "toilet"),
        (72, "tv"),
        (82, "refrigerator"),
        (84, "book"),
        (90, "toothbrush"),
    ],
)
def test_detection_ids_carry_the_official_names(cid: int, name: str) -> None:
    assert coco_detection_classes().name(cid) == name


def test_detection_label_names_index_like_the_logits() -> None:
    labels = coco_detection_classes().label_names()
    assert len(labels) == 91
    assert labels[0] == UNUSED_NAME
    assert labels[1] == "person"
    assert labels[90] == "toothbrush"


def test_detection_things_use_the_panoptic_colours() -> None:
    det, pan = coco_detection_classes(), coco_panoptic_classes()
    assert det.color(1) == (220, 20, 60)
    assert all(det.color(i) == pan.color(i) for i in det.ids)
    assert all(det.is_thing(i) for i in det.ids)


def test_panoptic_table_has_80_things_and_53_stuff() -> None:
    table = coco_panoptic_classes()
    assert len(table.ids) == 133
    assert len(table.thing_ids) == 80
    assert len(table.stuff_ids) == 53
    assert all(1 <= i <= 90 for i in table.thing_ids)
    assert all(92 <= i <= 200 for i in table.stuff_ids)
    assert min(table.stuff_ids) == 92 and max(table.stuff_ids) == 200


def test_panoptic_things_match_detection() -> None:
    det, pan = coco_detection_classes(), coco_panoptic_classes()
    assert pan.thing_ids == det.ids
    assert all(pan.name(i) == det.name(i) for i in det.ids)


def test_panoptic_lookup_has_250_entries_and_unknown_ids_are_na() -> None:
    table = coco_panoptic_classes()
    assert table.num_classes == 250
    assert sorted(table.names) == list(range(250))
    for cid in (0, 12, 91, 94, 201, 249):
        assert table.name(cid) == UNUSED_NAME
    assert table.name(250) == UNUSED_NAME  # the no-object index


@pytest.mark.parametrize(
    ("cid", "name", "isthing", "color"),
    [
        (1, "person", True, (220, 20, 60)),
        (90, "toothbrush", True, (191, 162, 208)),
        (92, "banner", False, (255, 255, 128)),
        (149, "road", False, (128, 64, 128)),
        (159, "snow", False, (255, 255, 255)),
        (187, "sky-other-merged", False, (70, 130, 180)),
        (200, "rug-merged", False, (250, 141, 255)),
    ],
)
def test_panoptic_entries_carry_name_kind_and_colour(
    cid: int, name: str, isthing: bool, color: tuple[int, int, int]
) -> None:
    table = coco_panoptic_classes()
    assert (table.name(cid), table.is_thing(cid), table.color(cid)) == (name, isthing, color)


def test_panoptic_names_are_unique_and_every_category_has_a_colour() -> None:
    table = coco_panoptic_classes()
    names = [table.names[i] for i in table.ids]
    assert len(set(names)) == 133
    assert set(table.colors) == set(table.ids)


def test_returned_tables_are_copies() -> None:
    coco_detection_classes().names[1] = "changed"
    assert coco_detection_classes().name(1) == "person"


def test_from_names_numbers_classes_from_one() -> None:
    table = ClassTable.from_names(["cat", "dog"])
    assert table.names == {0: UNUSED_NAME, 1: "cat", 2: "dog"}
    assert table.num_classes == 3
    assert table.ids == [1, 2]
    assert table.id_of("dog") == 2


def test_single_class_needs_num_classes_two() -> None:
    assert ClassTable.from_names(["widget"]).num_classes == 2


@pytest.mark.parametrize(
    ("names", "message"),
    [([], "empty"), (["a", "a"], "twice"), (["a", ""], "empty"), (["N/A"], "reserved")],
)
def test_from_names_rejects_bad_lists(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassTable.from_names(names)


def test_num_classes_is_largest_id_plus_one_with_gaps() -> None:
    table = ClassTable.from_categories([{"id": 3, "name": "a"}, {"id": 7, "name": "b"}])
    assert table.num_classes == 8
    assert table.name(5) == UNUSED_NAME
    assert table.ids == [3, 7]


def test_from_categories_can_pad_to_a_larger_head() -> None:
    table = ClassTable.from_categories([{"id": 1, "name": "a"}], num_classes=10)
    assert table.num_classes == 10
    with pytest.raises(ValueError, match="too small"):
        ClassTable.from_categories([{"id": 12, "name": "a"}], num_classes=10)


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        ([{"id": "1", "name": "a"}], "not a non-negative integer"),
        ([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], "appears twice"),
        ([{"name": "a"}], "'id' and 'name'"),
        ([{"id": 1, "name": "a", "color": [1, 2]}], "colour"),
        ([{"id": 1, "name": "a", "color": [1, 2, 300]}], "colour"),
    ],
)
def test_from_categories_rejects_bad_records(categories: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassTable.from_categories(categories)


def test_json_round_trip_keeps_everything() -> None:
    for table in (coco_detection_classes(), coco_panoptic_classes(), ClassTable.from_names(["x", "y"])):
        data = json.loads(json.dumps(table.to_json()))
        again = ClassTable.from_json(data)
        assert again == table
        assert again.num_classes == table.num_classes


def test_json_stores_only_real_categories() -> None:
    data = coco_panoptic_classes().to_json()
    assert data["num_classes"] == 250
    assert len(data["categories"]) == 133


def test_from_json_names_the_source_in_errors() -> None:
    with pytest.raises(ValueError, match=r"model\.json: expected an object"):
        ClassTable.from_json({"classes": []}, source="model.json")
    with pytest.raises(ValueError, match=r"model\.json: category id 2 appears twice"):
        ClassTable.from_json(
            {"categories": [{"id": 2, "name": "a"}, {"id": 2, "name": "b"}]}, source="model.json"
        )


def test_tables_without_colours_get_stable_distinct_generated_ones() -> None:
    table = ClassTable.from_names([f"c{i}" for i in range(20)])
    colors = [table.color(i) for i in table.ids]
    assert colors == [generated_color(i) for i in table.ids]
    assert len(set(colors)) == 20
    assert all(0 <= c <= 255 for color in colors for c in color)


def test_id_of_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError, match="cat, dog"):
        ClassTable.from_names(["cat", "dog"]).id_of("cow")
