"""The commands against bad files and for deployed models: one line for every bad COCO file or model config,
``eval`` on an ONNX file, ``export --int8`` with AP side by side, the default threshold, an offline download."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from detr_studio.cli import build_parser, main
from detr_studio.data.synthetic import generate
from detr_studio.infer.detections import DEFAULT_THRESHOLD
from detr_studio.model import zoo
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 1
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("evaluating")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_config(num_classes=3)
    return save_checkpoint(
        build_detr(config), tmp_path_factory.mktemp("model") / "m", config, {1: "disc", 2: "box"}
    )


def _broken(data: dict, kind: str) -> dict:
    data = copy.deepcopy(data)
    if kind == "dangling image id":
        data["annotations"][0]["image_id"] = 99
    elif kind == "duplicate annotation id":
        data["annotations"][1]["id"] = data["annotations"][0]["id"]
    elif kind == "duplicate image id":
        data["images"][1]["id"] = data["images"][0]["id"]
    elif kind == "NaN box":
        data["annotations"][0]["bbox"] = [float("nan"), 1, 2, 3]
    elif kind == "string category id":
        data["annotations"][0]["category_id"] = "1"
    return data


@pytest.mark.parametrize(
    "kind",
    ["dangling image id", "duplicate annotation id", "duplicate image id", "NaN box", "string category id"],
)
def test_eval_prints_one_line_for_any_coco_file_the_checker_refuses(
    model, two_images, tmp_path, capsys, kind
):
    annotations, images = two_images
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(_broken(json.loads(annotations.read_text()), kind)))
    code, _, err = run_cli(
        capsys,
        "eval",
        "--weights",
        str(model),
        "--data",
        str(broken),
        "--images",
        str(images),
        "--device",
        "cpu",
    )
    assert_one_error_line(code, err, "detr-studio eval: error:", str(broken))


def test_eval_prints_one_line_for_a_panoptic_file_with_duplicate_segment_ids(tmp_path, capsys):
    layout = generate(tmp_path / "shapes", num_train=1, num_val=1, size=96, seed=3)
    config = tiny_config(masks=True, num_classes=250)
    weights = save_checkpoint(build_detr(config), tmp_path / "pan", config)
    data = json.loads(layout.panoptic_json("val").read_text())
    segments = data["annotations"][0]["segments_info"]
    segments[1]["id"] = segments[0]["id"]
    broken = tmp_path / "panoptic_val.json"
    broken.write_text(json.dumps(data))
    code, _, err = run_cli(
        capsys, "eval", "--weights", str(weights), "--data", str(broken), "--images", str(layout.images_dir("val")),
        "--panoptic", "--panoptic-masks", str(layout.panoptic_dir("val")), "--device", "cpu",
    )  # fmt: skip
    assert_one_error_line(code, err, str(broken))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [("nheads", 0, "config.nheads must be an integer"), ("enc_layers", "3", "config.enc_layers must be an integer"),
     ("num_queries", 1e9, "config.num_queries must be an integer")],
)  # fmt: skip
@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_every_command_names_the_sidecar_and_the_field_of_a_bad_model_config(
    model, two_images, tmp_path, capsys, command, field, value, problem
):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(model.read_bytes())
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["config"][field] = value
    bad.with_suffix(".json").write_text(json.dumps(meta))
    annotations, images = two_images
    argv = {
        "predict": ["predict", str(images), "--weights", str(bad), "-o", str(tmp_path / "p.json")],
        "eval": ["eval", "--weights", str(bad), "--data", str(annotations), "--images", str(images)],
        "export": ["export", "--weights", str(bad), "-o", str(tmp_path / "m.onnx")],
    }[command]
    code, _, err = run_cli(capsys, *argv)
    assert_one_error_line(code, err, str(bad.with_suffix(".json")), problem)


def test_eval_runs_an_onnx_file_and_gives_the_ap_of_its_checkpoint(model, two_images, tmp_path, capsys):
    annotations, images = two_images
    onnx_path = tmp_path / "m.onnx"
    code, _, err = run_cli(capsys, "export", "--weights", str(model), "-o", str(onnx_path), "--size", "128",
                           "--max-size", "128")  # fmt: skip
    assert code == 0, err
    results = {}
    for name, weights in (("torch", model), ("onnx", onnx_path)):
        out = tmp_path / f"{name}.json"
        code, _, err = run_cli(capsys, "eval", "--weights", str(weights), "--data", str(annotations),
                               "--images", str(images), "--size", "128", "--max-size", "128", "-o", str(out))  # fmt: skip
        assert code == 0, err
        results[name] = json.loads(out.read_text())["bbox"]
    for key, value in results["torch"].items():
        assert results["onnx"][key] == pytest.approx(value, abs=1e-3), key


def test_eval_refuses_mask_ap_of_an_onnx_file_in_one_line(model, two_images, tmp_path, capsys):
    annotations, images = two_images
    onnx_path = tmp_path / "m.onnx"
    assert run_cli(capsys, "export", "--weights", str(model), "-o", str(onnx_path))[0] == 0
    code, _, err = run_cli(capsys, "eval", "--weights", str(onnx_path), "--data", str(annotations),
                           "--images", str(images), "--masks")  # fmt: skip
    assert_one_error_line(code, err, "mask AP and PQ need a model with a mask head")


@pytest.mark.slow
def test_export_int8_prints_fp32_and_int8_ap_side_by_side(model, two_images, tmp_path, capsys):
    annotations, images = two_images
    code, out, err = run_cli(
        capsys, "export", "--weights", str(model), "-o", str(tmp_path / "q.onnx"), "--int8", "--size", "128",
        "--max-size", "128", "--check-data", str(annotations), "--check-images", str(images),
        "--min-agreement", "0",  # a random model's scores sit near the 0.5 that agreement counts at
    )  # fmt: skip
    assert code == 0, err
    table = out[out.index("box AP on 2 images") :].splitlines()
    assert "fp32 (PyTorch)" in table[0] and "int8 (ONNX Runtime)" in table[0]
    assert [line.split()[0] for line in table[1:4]] == ["AP", "AP50", "AP75"]
    assert all(len(line.split()) == 3 for line in table[1:4])


def test_export_check_data_needs_int8(model, two_images, tmp_path, capsys):
    code, _, err = run_cli(capsys, "export", "--weights", str(model), "-o", str(tmp_path / "q.onnx"),
                           "--check-data", str(two_images[0]))  # fmt: skip
    assert_one_error_line(code, err, "--check-data compares fp32 with int8: it needs --int8")


def test_the_command_line_and_the_window_share_one_default_threshold():
    args = build_parser().parse_args(["predict", "x.png", "--weights", "w"])
    assert args.threshold == DEFAULT_THRESHOLD == 0.5


def test_an_offline_zoo_download_prints_one_error_and_no_empty_progress_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.MIRROR_ENV, "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, out, err = run_cli(capsys, "zoo", "download", "detr-r50")
    assert code == 1 and out == ""
    assert "0.00B" not in err and "detr-r50:" not in err.split("error:")[0]
    assert err.strip().splitlines() == [err.strip()] and "could not reach 127.0.0.1" in err
