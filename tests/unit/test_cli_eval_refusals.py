"""`detr-studio eval` refuses every COCO file the checker refuses with one clear line naming the file and
the record, never a traceback, and reads what the window reads (a UTF-8 byte-order mark)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.cli import main
from detr_studio.common.panoptic_ids import id2rgb
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(root, tiny detection weights, tiny panoptic weights) and two 48x40 images under ``root/images``."""
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    config = tiny_config(num_classes=3)
    weights = save_checkpoint(build_detr(config), root / "tiny", config, {1: "cat", 2: "dog"})
    pan_config = tiny_config(masks=True, num_classes=3)
    pan_weights = save_checkpoint(build_detr(pan_config), root / "tiny-pan", pan_config, {1: "cat", 2: "sky"})
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / name)
    return root, weights, pan_weights


def instances() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 48, "height": 40},
            {"id": 2, "file_name": "b.png", "width": 48, "height": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10, 5, 8, 8], "area": 64, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def panoptic(root: Path) -> dict:
    folder = root / "panoptic"
    folder.mkdir(exist_ok=True)
    ids = np.full((40, 48), 7, dtype=np.int64)
    ids[5:20, 5:20] = 9
    for name in ("a.png", "b.png"):
        Image.fromarray(id2rgb(ids)).save(folder / name)
    segments = [{"id": 9, "category_id": 1, "iscrowd": 0}, {"id": 7, "category_id": 2, "iscrowd": 0}]
    return {
        "images": instances()["images"],
        "annotations": [
            {"image_id": 1, "file_name": "a.png", "segments_info": [dict(s) for s in segments]},
            {"image_id": 2, "file_name": "b.png", "segments_info": [dict(s) for s in segments]},
        ],
        "categories": [{"id": 1, "name": "cat", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}],
    }


def run_eval(capsys, weights: Path, data: Path, images: Path, *extra: str) -> tuple[int, str, str]:
    argv = ["eval", "--weights", str(weights), "--data", str(data), "--images", str(images)]
    code = main([*argv, "--size", "40", "--max-size", "48", "--device", "cpu", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _set(record: str, index: int, **fields):
    def change(data: dict) -> None:
        data[record][index].update(fields)

    return change


REFUSED = [
    (
        "dangling image id",
        _set("annotations", 1, image_id=42),
        "annotation id 2: image_id 42 is not in 'images'",
    ),
    ("duplicate id", _set("annotations", 1, id=1), "annotations[1]: duplicate annotation id 1"),
    ("NaN box", _set("annotations", 0, bbox=[2, 3, float("nan"), 10]), "annotation id 1: 'bbox'"),
    ("string category id", _set("annotations", 0, category_id="1"), "'category_id' is the string \"1\""),
    ("absolute image name", _set("images", 1, file_name="/etc/hostname"), "image id 2: 'file_name'"),
    ("garbage RLE", _set("annotations", 0, segmentation={"size": [40, 48], "counts": "garbage!!"}), "RLE"),
]


@pytest.mark.parametrize("change,expected", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_file_the_checker_refuses_ends_eval_with_one_line_naming_it(
    workspace, capsys, change, expected
) -> None:
    root, weights, _ = workspace
    data = instances()
    change(data)
    path = root / "refused.json"
    path.write_text(json.dumps(data))
    code, stdout, stderr = run_eval(capsys, weights, path, root / "images")
    assert code == 1
    assert "Traceback" not in stderr
    assert stderr.startswith(f"detr-studio eval: error: {path}: ")
    assert expected in stderr and "AP" not in stdout


def test_eval_reads_a_file_with_a_byte_order_mark(workspace, capsys) -> None:
    root, weights, _ = workspace
    path = root / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(instances()).encode("utf-8"))
    code, stdout, stderr = run_eval(capsys, weights, path, root / "images")
    assert code == 0, stderr
    assert stdout.startswith("bbox:")


def test_panoptic_duplicate_segment_ids_end_eval_with_one_line(workspace, capsys) -> None:
    root, _, pan_weights = workspace
    data = panoptic(root)
    data["annotations"][1]["segments_info"][1]["id"] = 9
    path = root / "duplicate.json"
    path.write_text(json.dumps(data))
    code, _, stderr = run_eval(
        capsys, pan_weights, path, root / "images", "--panoptic", "--panoptic-masks", str(root / "panoptic")
    )
    assert code == 1 and "Traceback" not in stderr
    assert "panoptic annotation for image 2, segments_info[1]: duplicate segment id 9" in stderr


def test_a_panoptic_png_with_ids_missing_from_segments_info_ends_eval_naming_it(workspace, capsys) -> None:
    root, _, pan_weights = workspace
    data = panoptic(root)
    data["annotations"][1]["segments_info"].pop(0)  # id 9 stays in b.png
    path = root / "unlisted.json"
    path.write_text(json.dumps(data))
    code, _, stderr = run_eval(
        capsys, pan_weights, path, root / "images", "--panoptic", "--panoptic-masks", str(root / "panoptic")
    )
    assert code == 1 and "Traceback" not in stderr
    assert (
        f"{root / 'panoptic' / 'b.png'} contains segment ids [9] that segments_info does not list" in stderr
    )
    good = root / "good.json"
    good.write_text(json.dumps(panoptic(root)))
    code, stdout, stderr = run_eval(
        capsys, pan_weights, good, root / "images", "--panoptic", "--panoptic-masks", str(root / "panoptic")
    )
    assert code == 0, stderr
    assert stdout.startswith("panoptic:")
