"""The synthetic demo dataset is deterministic, varied, and its instance and panoptic files agree."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detr_studio.cli import main
from detr_studio.commands import CommandError, demo
from detr_studio.common.panoptic_ids import rgb2id
from detr_studio.data import synthetic
from detr_studio.data.dataset import CocoDetectionDataset, CocoPanopticDataset, segmentation_to_mask
from detr_studio.data.transforms import make_transforms

SIZE = 96


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    synthetic.generate(root, num_train=12, num_val=3, size=SIZE, seed=5)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_layout_has_images_and_both_annotation_kinds_per_split(demo_dir: Path) -> None:
    layout = synthetic.SyntheticLayout(demo_dir)
    for split, count in (("train", 12), ("val", 3)):
        assert len(list(layout.images_dir(split).glob("*.jpg"))) == count
        assert len(list(layout.panoptic_dir(split).glob("*.png"))) == count
        assert len(_load(layout.instances_json(split))["images"]) == count
        assert len(_load(layout.panoptic_json(split))["annotations"]) == count


def test_same_seed_writes_identical_bytes_and_another_seed_does_not(demo_dir: Path, tmp_path: Path) -> None:
    synthetic.generate(tmp_path / "again", num_train=12, num_val=3, size=SIZE, seed=5)
    synthetic.generate(tmp_path / "other", num_train=12, num_val=3, size=SIZE, seed=6)
    assert _files(tmp_path / "again") == _files(demo_dir)
    other = _files(tmp_path / "other")
    assert other.keys() == _files(demo_dir).keys()
    assert other["train/000001.jpg"] != _files(demo_dir)["train/000001.jpg"]


def test_the_first_images_do_not_depend_on_how_many_are_asked_for(demo_dir: Path, tmp_path: Path) -> None:
    synthetic.generate(tmp_path / "few", num_train=2, num_val=1, size=SIZE, seed=5)
    few = _files(tmp_path / "few")
    full = _files(demo_dir)
    for name in (
        "train/000001.jpg",
        "train/000002.jpg",
        "val/000001.jpg",
        "annotations/panoptic_train/000002.png",
    ):
        assert few[name] == full[name]


def test_categories_are_five_things_and_three_stuff(demo_dir: Path) -> None:
    layout = synthetic.SyntheticLayout(demo_dir)
    instances = _load(layout.instances_json("train"))["categories"]
    panoptic = _load(layout.panoptic_json("train"))["categories"]
    assert [c["id"] for c in instances] == [1, 2, 3, 4, 5]
    assert {c["id"]: c["isthing"] for c in panoptic} == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 0, 7: 0, 8: 0}
    assert [c["name"] for c in panoptic] == [
        "circle",
        "square",
        "triangle",
        "star",
        "ring",
        "sky",
        "grass",
        "water",
    ]


@pytest.mark.parametrize("split", ["train", "val"])
def test_every_instance_is_a_panoptic_segment_with_the_same_pixels(demo_dir: Path, split: str) -> None:
    layout = synthetic.SyntheticLayout(demo_dir)
    instances = _load(layout.instances_json(split))
    panoptic = _load(layout.panoptic_json(split))
    images = {image["id"]: image for image in instances["images"]}
    by_image: dict[int, list[dict]] = {}
    for ann in instances["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for entry in panoptic["annotations"]:
        image = images[entry["image_id"]]
        ids = rgb2id(np.asarray(Image.open(layout.panoptic_dir(split) / entry["file_name"]).convert("RGB")))
        assert ids.shape == (image["height"], image["width"])
        segments = entry["segments_info"]
        assert set(np.unique(ids).tolist()) == {s["id"] for s in segments}  # every pixel belongs to a segment
        things = [s for s in segments if s["category_id"] <= 5]
        anns = by_image.get(entry["image_id"], [])
        assert len(anns) == len(things)
        for ann, segment in zip(anns, things):
            assert (ann["category_id"], ann["bbox"], ann["area"]) == (
                segment["category_id"],
                segment["bbox"],
                segment["area"],
            )
            assert ann["iscrowd"] == 0
            decoded = segmentation_to_mask(ann["segmentation"], image["height"], image["width"]).astype(bool)
            assert np.array_equal(decoded, ids == segment["id"])
        for segment in segments:
            assert segment["isthing"] == int(segment["category_id"] <= 5)
            mask = ids == segment["id"]
            assert int(mask.sum()) == segment["area"]
            xs, ys = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
            assert segment["bbox"] == [
                int(xs[0]),
                int(ys[0]),
                int(xs[-1] - xs[0] + 1),
                int(ys[-1] - ys[0] + 1),
            ]


def test_instances_use_both_polygons_and_rle(demo_dir: Path) -> None:
    anns = _load(synthetic.SyntheticLayout(demo_dir).instances_json("train"))["annotations"]
    kinds = Counter("polygon" if isinstance(a["segmentation"], list) else "rle" for a in anns)
    assert kinds["polygon"] > 0 and kinds["rle"] > 0


def test_shapes_span_small_to_large_and_overlap() -> None:
    areas, overlaps, stuff = [], 0, set()
    for index in range(20):
        drawn = synthetic.render_image(np.random.default_rng([1, index]), size=256)
        things = [s for s in drawn.segments if s.isthing]
        areas += [s.area() / drawn.ids.size for s in things]
        stuff |= {s.category_id for s in drawn.segments if not s.isthing}
        boxes = [s.bbox() for s in things]
        overlaps += sum(
            1
            for i, a in enumerate(boxes)
            for b in boxes[i + 1 :]
            if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
        )
        assert {s.category_id for s in things} <= {1, 2, 3, 4, 5}
    assert min(areas) < 0.005 and max(areas) > 0.05
    assert overlaps > 0
    assert stuff == {6, 7, 8}


def test_the_datasets_read_the_demo_files(demo_dir: Path) -> None:
    layout = synthetic.SyntheticLayout(demo_dir)
    detection = CocoDetectionDataset(
        layout.instances_json("train"),
        layout.images_dir("train"),
        make_transforms("val", scales=[SIZE]),
        masks=True,
    )
    assert len(detection) == 12 and detection.num_classes == 6
    image, target = detection[0]
    assert image.shape[0] == 3 and target.num_objects > 0
    panoptic = CocoPanopticDataset(
        layout.panoptic_json("val"), layout.images_dir("val"), layout.panoptic_dir("val")
    )
    _, target = panoptic[0]
    assert (
        target.masks.sum(0).max() == 1
        and int(target.masks.sum()) == target.masks.shape[1] * target.masks.shape[2]
    )
    assert panoptic.num_classes == 9


def _args(out_dir: Path, **overrides) -> argparse.Namespace:
    values = {"out_dir": str(out_dir), "train": 3, "val": 2, "size": 64, "seed": 0, "overwrite": False}
    values.update(overrides)
    return argparse.Namespace(**values)


def test_demo_command_writes_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.run(_args(tmp_path / "out")) == 0
    layout = synthetic.SyntheticLayout(tmp_path / "out")
    assert len(_load(layout.instances_json("train"))["images"]) == 3
    assert len(_load(layout.panoptic_json("val"))["annotations"]) == 2
    assert str(layout.instances_json("train")) in capsys.readouterr().out


def test_demo_command_refuses_a_non_empty_folder_unless_told_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    demo.run(_args(out, train=4))
    with pytest.raises(CommandError, match="not empty"):
        demo.run(_args(out))
    assert demo.run(_args(out, overwrite=True)) == 0
    assert len(list((out / "train").glob("*.jpg"))) == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"train": 0}, "--train"), ({"val": -1}, "--val"), ({"size": 8}, "--size")],
)
def test_demo_command_refuses_bad_numbers(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        demo.run(_args(tmp_path / "out", **overrides))


def test_demo_command_parses_its_arguments(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["demo", str(tmp_path), "--train", "5", "--val", "1", "--size", "128", "--seed", "3"]
    )
    assert (args.train, args.val, args.size, args.seed, args.overwrite) == (5, 1, 128, 3, False)
    assert args.run is demo.run


def test_demo_command_runs_from_the_command_line(tmp_path: Path) -> None:
    assert main(["demo", str(tmp_path / "cli"), "--train", "2", "--val", "1", "--size", "64"]) == 0
    assert (tmp_path / "cli" / "annotations" / "panoptic_val.json").is_file()
    assert main(["demo", str(tmp_path / "cli"), "--train", "2"]) == 1  # not empty, no --overwrite
