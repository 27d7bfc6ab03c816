"""Lossless round trips, the typed views of records and lookups, and new documents made from names or image
files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from detr_studio.data.coco import Annotation, CocoDocument, CocoFormatError

from .helpers import base_data, write_json

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
