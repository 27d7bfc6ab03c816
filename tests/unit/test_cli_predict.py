"""`detr-studio predict` and `detr-studio zoo` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.cli import main
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from tests.model_helpers import save_official


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    config = tiny_config(num_classes=3)
    weights = save_checkpoint(build_detr(config), root / "tiny", config, {1: "cat", 2: "dog"})
    pan_config = tiny_config(masks=True, num_classes=250)
    pan_weights = save_official(build_detr(pan_config), root / "panoptic.pth")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"a.jpg": (120, 80), "b.png": (64, 96)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    return root, weights, pan_weights, images


def test_predict_writes_coco_results_for_a_folder(workspace, capsys):
    root, weights, _, images = workspace
    out = root / "out.json"
    code = main(["predict", "--weights", str(weights), str(images), "--threshold", "0", "--size", "64",
                 "--max-size", "100", "--batch", "2", "-o", str(out)])  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert len(results) == 2 * 10  # every query of both images at threshold 0
    assert {r["image_id"] for r in results} == {1, 2}
    first = results[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score", "file_name"}
    assert first["category_id"] in (0, 1, 2, 3) and len(first["bbox"]) == 4
    scores = [r["score"] for r in results if r["image_id"] == 1]
    assert scores == sorted(scores, reverse=True)
    assert "20 detections in 2 images" in capsys.readouterr().err


def test_a_broken_image_is_reported_and_the_rest_is_written(workspace, capsys):
    root, weights, _, images = workspace
    broken = root / "broken.jpg"
    broken.write_bytes(b"garbage")
    out = root / "partial.json"
    code = main(["predict", "--weights", str(weights), str(broken), str(images / "a.jpg"), "--threshold", "0",
                 "--size", "64", "-o", str(out)])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "1 of 2 images could not be read" in err
    assert {r["file_name"] for r in json.loads(out.read_text())} == {str(images / "a.jpg")}


def test_panoptic_writes_pngs_and_segments(workspace):
    root, _, pan_weights, images = workspace
    out = root / "pan.json"
    code = main(["predict", "--weights", str(pan_weights), str(images / "a.jpg"), "--panoptic",
                 "--panoptic-threshold", "0", "--size", "64", "-o", str(out)])  # fmt: skip
    assert code == 0
    doc = json.loads((root / "pan_panoptic.json").read_text())
    (ann,) = doc["annotations"]
    png = Image.open(root / "pan_panoptic" / ann["file_name"])
    assert png.size == (120, 80) and png.mode == "RGB"
    arr = np.asarray(png).astype(np.int64)
    ids = arr[..., 0] + 256 * arr[..., 1] + 65536 * arr[..., 2]
    assert sorted(np.unique(ids).tolist()) == sorted(s["id"] for s in ann["segments_info"])
    assert sum(s["area"] for s in ann["segments_info"]) == 120 * 80


def test_bad_weights_and_wrong_options_give_one_clear_line(workspace, capsys):
    root, weights, _, images = workspace
    assert main(["predict", "--weights", str(root / "nope.pth"), str(images)]) == 1
    assert "nope.pth: no such file, and not a model-zoo name" in capsys.readouterr().err
    assert main(["predict", "--weights", str(weights), str(images), "--panoptic", "--size", "64"]) == 1
    assert "--panoptic needs a panoptic model" in capsys.readouterr().err


def test_zoo_list_names_every_official_checkpoint(capsys):
    assert main(["zoo", "list"]) == 0
    table = capsys.readouterr().out
    for name in ("detr-r50", "detr-r50-dc5", "detr-r101", "detr-r101-dc5", "detr-r50-panoptic",
                 "detr-r50-dc5-panoptic", "detr-r101-panoptic"):  # fmt: skip
        assert name in table


def test_the_console_script_runs(workspace):
    proc = subprocess.run(
        [sys.executable, "-m", "detr_studio.cli", "predict", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--weights" in proc.stdout


def test_predict_through_onnx_runtime_matches_torch(workspace, tmp_path):
    from detr_studio.infer.onnx_export import export_onnx
    from detr_studio.model.loading import load_model

    _, weights, _, images = workspace
    loaded = load_model(weights)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(
        loaded.model,
        loaded.config,
        onnx_path,
        class_names=loaded.class_names,
        sample_size=(64, 96),
        size=64,
        max_size=100,
    )
    common = [str(images / "a.jpg"), "--threshold", "0", "--size", "64", "--max-size", "100"]
    assert main(["predict", "--weights", str(weights), *common, "-o", str(tmp_path / "torch.json")]) == 0
    assert main(["predict", "--weights", str(onnx_path), *common, "-o", str(tmp_path / "onnx.json")]) == 0
    by_torch = json.loads((tmp_path / "torch.json").read_text())
    by_onnx = json.loads((tmp_path / "onnx.json").read_text())
    assert len(by_torch) == len(by_onnx) == 10
    for a, b in zip(by_torch, by_onnx):
        assert a["category_id"] == b["category_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=0.05)
