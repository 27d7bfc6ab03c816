"""Loading checks every COCO file: one clear message per problem naming the file and the record, warnings
for what can be used, and the speed of a large file."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from detr_studio.data.coco import OUR_KEY, CocoDocument, CocoEditError, CocoFormatError, Problem, UpdateImage

from .helpers import base_data, write_json

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
    # names that leave the dataset's folder
    (
        "absolute image name",
        _set(["images", 1, "file_name"], "/etc/passwd"),
        ["image id 2", "is an absolute path"],
    ),
    (
        "image name climbing out",
        _set(["images", 1, "file_name"], "../../x.jpg"),
        ["image id 2", "climbs out"],
    ),
    (
        "name climbing out midway",
        _set(["images", 1, "file_name"], "sub/../../x.jpg"),
        ["image id 2", "climbs out"],
    ),
    ("Windows absolute name", _set(["images", 1, "file_name"], "C:\\x.jpg"), ["image id 2", "absolute path"]),
    (
        "backslashes climbing out",
        _set(["images", 1, "file_name"], "..\\..\\x.jpg"),
        ["image id 2", "climbs out"],
    ),
    # masks pycocotools could not read safely
    (
        "RLE counts of other characters",
        _set(["annotations", 2, "segmentation"], {"size": [60, 60], "counts": "garbage!!"}),
        ["annotation id 12", "the RLE 'counts' \"garbage!!\" is not a COCO run-length string"],
    ),
    (
        "RLE covering no pixels",
        _set(["annotations", 2, "segmentation"], {"size": [60, 60], "counts": "0PP0"}),
        ["annotation id 12", "the RLE runs cover 0 pixels, but a 60x60 mask has 3600"],
    ),
    (
        "RLE ending in a number",
        _set(["annotations", 2, "segmentation"], {"size": [60, 60], "counts": "P"}),
        ["annotation id 12", "is not a COCO run-length string"],
    ),
    (
        "RLE runs too long",
        _set(["annotations", 2, "segmentation"], {"size": [60, 60], "counts": [3000, 1000]}),
        ["annotation id 12", "the RLE runs cover 4000 pixels"],
    ),
    (
        "RLE negative run",
        _set(["annotations", 2, "segmentation"], {"size": [60, 60], "counts": [4000, -400]}),
        ["annotation id 12", "a negative run length"],
    ),
    (
        "polygon with NaN",
        _set(["annotations", 0, "segmentation"], [[10, 10, float("nan"), 10, 30, 40]]),
        ["annotation id 10", "a polygon holds a non-finite or overflowing number"],
    ),
    (
        "polygon far away",
        _set(["annotations", 0, "segmentation"], [[10, 10, 30, 10, 30, 1e9]]),
        ["annotation id 10", "a polygon reaches far outside the 100x80 image"],
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
        (b"", "the COCO file is empty"),
        (b"   \n", "the COCO file is empty"),
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
    with pytest.raises(CocoFormatError, match="no such COCO file"):
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


# ----------------------------------------------------------------------------------------------------------------
# Names that leave the dataset's folders, masks pycocotools could not read safely, text no file can store


def test_names_that_stay_inside_the_folder_load(tmp_path: Path) -> None:
    data = base_data()
    data["images"][1]["file_name"] = "sub/../b.jpg"
    data["images"][2]["file_name"] = "./deep/er/c.jpg"
    doc = CocoDocument.load(write_json(tmp_path, data), image_root=tmp_path)
    assert doc.image_path(2) == tmp_path / "sub/../b.jpg"


def test_an_edit_cannot_move_an_image_outside_the_folder(doc: CocoDocument) -> None:
    with pytest.raises(CocoEditError, match=r"image id 3: 'file_name' \"/tmp/x.jpg\" is an absolute path"):
        doc.apply(UpdateImage(3, {"file_name": "/tmp/x.jpg"}))
    assert doc.image(3).file_name == "c.jpg" and not doc.dirty


def test_image_files_outside_the_given_image_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "in" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png")
    with pytest.raises(CocoFormatError, match=r"b\.png: is not inside the image folder"):
        CocoDocument.from_images([tmp_path / "in" / "a.png", tmp_path / "b.png"], image_root=tmp_path / "in")
    with pytest.raises(CocoFormatError, match="climbs out of the image folder"):
        CocoDocument.from_image_names(["a.png", "../b.png"], image_root=tmp_path / "in")


def test_a_valid_rle_loads(tmp_path: Path) -> None:
    mask = np.zeros((60, 60), dtype=np.uint8)
    mask[5:40, 10:50] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    data = base_data()
    data["annotations"][2]["segmentation"] = {"size": [60, 60], "counts": rle["counts"].decode("ascii")}
    assert CocoDocument.load(write_json(tmp_path, data)).warnings == []


def test_a_lone_surrogate_is_refused_at_load_naming_where(tmp_path: Path) -> None:
    path = tmp_path / "surrogate.json"
    text = json.dumps(base_data()).replace('"name": "dog"', '"name": "dog\\ud800"')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(
        CocoFormatError, match=r"surrogate\.json: categories\[1\]\.name holds an unpaired surrogate"
    ):
        CocoDocument.load(path)


def test_an_edit_bringing_a_lone_surrogate_is_refused_and_saving_still_works(doc: CocoDocument) -> None:
    with pytest.raises(CocoEditError, match="unpaired surrogate"):
        doc.rename_category(2, "dog\ud800")
    with pytest.raises(CocoEditError, match="unpaired surrogate"):
        doc.add(1, 1, [1, 1, 2, 2], model="m\udfff")
    assert doc.category(2).name == "dog" and not doc.dirty
    doc.relabel([10], 2)
    doc.save()
