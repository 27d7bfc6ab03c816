"""``detr-studio train`` and ``detr-studio eval`` end to end, through ``cli.main`` with tiny models and images."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from detr_studio.cli import main
from detr_studio.model.checkpoint import load_checkpoint
from detr_studio.model.detr.config import tiny_config
from detr_studio.train.evaluate import STAT_NAMES
from detr_studio.train.events import Evaluated, Failed, Finished, Started, Step, from_json

from .conftest import make_two_images

# A tiny model on 96-pixel images, one step per epoch (two images, batch 2), in this process.
FAST = ["--arch", "tiny", "--scales", "96", "--max-size", "96", "--no-augment", "--workers", "0", "--device", "cpu",
        "--batch", "2", "--lr", "1e-3", "--epochs", "1", "--seed", "3"]  # fmt: skip


def data_args(two_images) -> list[str]:
    ann, images = two_images
    return ["--data", str(ann), "--images", str(images)]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train(capsys, two_images, out: Path, *extra: str) -> tuple[int, str, str]:
    """``detr-studio train`` on the two-image dataset with the fast options, writing to ``out``."""
    return run_cli(capsys, "train", *data_args(two_images), *FAST, "--out", str(out), *extra)


def events_of(stdout: str) -> list:
    return [from_json(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def first_run(two_images, tmp_path_factory) -> tuple[int, str, str, Path]:
    """One epoch with ``--events jsonl`` and half the images held out: (exit code, stdout, stderr, run folder)."""
    out = tmp_path_factory.mktemp("first-run") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [
        "train",
        *data_args(two_images),
        *FAST,
        "--out",
        str(out),
        "--val-split",
        "0.5",
        "--events",
        "jsonl",
    ]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue(), out


# ---------------------------------------------------------------- train: JSON lines and human output


def test_jsonl_mode_prints_only_events_from_started_to_finished(first_run):
    code, stdout, _, out = first_run
    assert code == 0
    lines = stdout.splitlines()
    assert lines and all(line.startswith('{"event": ') for line in lines)
    events = events_of(stdout)
    assert isinstance(events[0], Started)
    assert isinstance(events[-1], Finished) and not events[-1].cancelled
    assert any(isinstance(e, Step) for e in events)
    assert events[-1].best_path == str(out / "best.safetensors")
    assert events[0].class_names == {"1": "disc", "2": "box"}


def test_val_split_holds_out_one_of_two_images_and_evaluates_on_it(first_run):
    _, stdout, _, _ = first_run
    events = events_of(stdout)
    started = events[0]
    assert (started.train_images, started.val_images) == (1, 1)
    evaluated = [e for e in events if isinstance(e, Evaluated)]
    assert len(evaluated) == 1
    assert set(evaluated[0].metrics) == set(STAT_NAMES)


def test_human_mode_prints_progress_and_a_done_line_on_stderr(two_images, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = train(capsys, two_images, out)
    assert code == 0
    assert stdout == ""
    assert "training on 2 images (0 for validation), device cpu" in stderr
    assert "epoch 1" in stderr  # the progress bar
    last = stderr.strip().splitlines()[-1]
    assert last == f"done: best model {out / 'best.safetensors'}; resume from {out / 'last.pth'}"
    assert (out / "best.safetensors").exists() and (out / "last.pth").exists()


# ---------------------------------------------------------------- train: bad arguments


def assert_one_error_line(code: int, stdout: str, stderr: str, *fragments: str) -> None:
    assert code == 1
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_train_without_data_exits_1_with_one_line(two_images, tmp_path, capsys):
    _, images = two_images
    code, stdout, stderr = run_cli(capsys, "train", "--images", str(images), *FAST)
    assert_one_error_line(
        code, stdout, stderr, "detr-studio train: error:", "--data and --images are required"
    )


def test_train_with_an_unknown_class_name_exits_1_naming_it(two_images, tmp_path, capsys):
    code, stdout, stderr = train(capsys, two_images, tmp_path / "o", "--classes", "disc,cat")
    expected = f"training failed: {two_images[0]}: no categories named cat (it has: disc, box)"
    assert_one_error_line(code, stdout, stderr, expected)


def test_train_with_a_missing_weights_file_exits_1_naming_it(two_images, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "weights.pth"
    code, stdout, stderr = train(capsys, two_images, tmp_path / "o", "--weights", str(missing))
    assert_one_error_line(code, stdout, stderr, "training failed:", str(missing), "no such file")


def test_train_with_an_unknown_option_in_the_config_file_exits_1(two_images, tmp_path, capsys):
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"epochs": 1, "learning_rate": 0.1}))
    code, stdout, stderr = run_cli(capsys, "train", *data_args(two_images), "--config", str(config))
    assert_one_error_line(code, stdout, stderr, f"{config}: unknown training options: learning_rate")


def test_train_with_a_config_file_that_is_not_an_object_exits_1(two_images, tmp_path, capsys):
    config = tmp_path / "train.json"
    config.write_text("[1, 2]")
    code, stdout, stderr = run_cli(capsys, "train", *data_args(two_images), "--config", str(config))
    assert_one_error_line(code, stdout, stderr, str(config), "must hold a JSON object")


def test_a_failure_in_jsonl_mode_is_one_failed_event_on_stdout(two_images, tmp_path, capsys):
    code, stdout, stderr = train(capsys, two_images, tmp_path / "o", "--classes", "cat", "--events", "jsonl")
    assert code == 1 and stderr == ""
    (event,) = events_of(stdout)
    assert isinstance(event, Failed) and "no categories named cat" in event.message


def test_train_with_a_missing_image_stops_with_one_clear_line(tmp_path, capsys):
    ann, images = make_two_images(tmp_path / "data")
    (images / "2.png").unlink()
    code, stdout, stderr = run_cli(
        capsys, "train", "--data", str(ann), "--images", str(images), *FAST, "--workers", "1",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 1 and stdout == ""
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"training failed: {images / '2.png'}: no such file"


# ---------------------------------------------------------------- train: options


def test_classes_option_trains_on_the_named_class_only(two_images, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = train(capsys, two_images, out, "--classes", "disc", "--events", "jsonl")
    assert code == 0
    assert events_of(stdout)[0].class_names == {"1": "disc"}
    sidecar = json.loads((out / "best.json").read_text())
    assert sidecar["class_names"] == {"1": "disc"}
    best = load_checkpoint(out / "best.safetensors")
    assert best.class_names == {1: "disc"}
    assert best.config.num_classes == 2  # largest id + 1
    assert best.state_dict["class_embed.weight"].shape[0] == 3  # with no-object


def test_config_file_is_used_and_flags_override_it(two_images, tmp_path, capsys):
    ann, images = two_images
    model = {
        k: v for k, v in tiny_config().to_dict().items() if k not in ("num_classes", "aux_loss", "masks")
    }
    from_file = {
        "train_annotations": str(ann), "train_images": str(images), "model": model, "epochs": 5, "lr": 2e-3,
        "lr_drop": 77, "scales": [96], "max_size": 96, "augment": False, "num_workers": 0, "device": "cpu",
        "batch_size": 2, "out_dir": str(tmp_path / "from-file"),
    }  # fmt: skip
    config = tmp_path / "train.json"
    config.write_text(json.dumps(from_file))
    out = tmp_path / "from-flags"
    code, stdout, _ = run_cli(
        capsys, "train", "--config", str(config), "--epochs", "1", "--eos-coef", "0.4", "--out", str(out),
        "--events", "jsonl", "--num-queries", "6",
    )  # fmt: skip
    assert code == 0
    events = events_of(stdout)
    assert events[0].epochs == 1 and isinstance(events[-1], Finished)
    used = json.loads((out / "config.json").read_text())
    assert (used["epochs"], used["out_dir"], used["eos_coef"]) == (1, str(out), 0.4)
    assert (used["lr"], used["lr_drop"], used["model"]) == (2e-3, 77, {**model, "num_queries": 6})
    assert load_checkpoint(out / "best.safetensors").config.num_queries == 6
    assert not (tmp_path / "from-file").exists()
    step = next(e for e in events if isinstance(e, Step))
    assert step.lr == pytest.approx(2e-3)


def test_layer_counts_and_queries_shape_a_model_from_scratch(two_images, tmp_path, capsys):
    out = tmp_path / "layers"
    shape = ["--enc-layers", "1", "--dec-layers", "3", "--nheads", "4", "--num-queries", "7"]
    code, _, _ = train(capsys, two_images, out, *shape)
    assert code == 0
    model = json.loads((out / "config.json").read_text())["model"]  # the record names what trained
    assert (model["enc_layers"], model["dec_layers"], model["nheads"], model["num_queries"]) == (1, 3, 4, 7)
    config = load_checkpoint(out / "best.safetensors").config
    assert (config.enc_layers, config.dec_layers, config.nheads, config.num_queries) == (1, 3, 4, 7)


def test_heads_that_do_not_divide_the_width_exit_1_with_one_line(two_images, tmp_path, capsys):
    code, _, err = train(capsys, two_images, tmp_path / "x", "--nheads", "5")
    assert code == 1
    assert "--nheads must divide the model width" in err and len(err.strip().splitlines()) == 1


def test_layer_counts_with_a_checkpoint_exit_1_with_one_line(two_images, first_run, tmp_path, capsys):
    weights = first_run[3] / "best.safetensors"
    code, _, err = train(capsys, two_images, tmp_path / "x", "--weights", str(weights), "--dec-layers", "4")
    assert code == 1
    assert "shape a model from scratch; a checkpoint fixes its own" in err
    assert len(err.strip().splitlines()) == 1


def test_resume_from_a_run_folder_continues_in_that_folder(
    two_images, first_run, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(first_run[3], run)
    monkeypatch.chdir(tmp_path)
    argv = [*data_args(two_images), *FAST, "--val-split", "0.5", "--epochs", "2"]
    code, stdout, _ = run_cli(capsys, "train", *argv, "--resume", str(run), "--events", "jsonl")
    assert code == 0
    events = events_of(stdout)
    assert events[0].start_epoch == 1 and events[0].epochs == 2
    steps = [e for e in events if isinstance(e, Step)]
    assert [(s.epoch, s.global_step) for s in steps] == [(2, 2)]
    assert isinstance(events[-1], Finished) and events[-1].epochs_done == 2
    # No --out: the resumed run writes into the folder it resumed from.
    assert events[0].out_dir == str(run)
    history = [from_json(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e.start_epoch for e in history if isinstance(e, Started)] == [0, 1]
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- eval


def test_eval_prints_the_twelve_coco_numbers_and_per_class_ap_and_writes_json(
    two_images, first_run, tmp_path, capsys
):
    weights = first_run[3] / "best.safetensors"
    report = tmp_path / "metrics.json"
    code, stdout, stderr = run_cli(
        capsys, "eval", "--weights", str(weights), *data_args(two_images), "--size", "96", "--max-size", "96",
        "--device", "cpu", "-o", str(report),
    )  # fmt: skip
    assert code == 0, stderr
    lines = [line.strip() for line in stdout.splitlines()]
    assert lines[0] == "bbox:"
    assert [line.split(":")[0] for line in lines[1:13]] == list(STAT_NAMES)
    assert lines[13] == "per_class_ap:"
    assert [line.split(":")[0] for line in lines[14:]] == ["disc", "box"]
    written = json.loads(report.read_text())
    assert list(written["bbox"]) == list(STAT_NAMES)
    assert set(written["per_class_ap"]) == {"disc", "box"}
    assert all(-1.0 <= v <= 1.0 for v in written["bbox"].values())
    assert f"metrics written to {report}" in stderr


def test_eval_with_a_missing_image_exits_1_with_one_clear_line(first_run, tmp_path, capsys):
    ann, images = make_two_images(tmp_path / "data")
    (images / "1.png").unlink()
    weights = first_run[3] / "best.safetensors"
    code, stdout, stderr = run_cli(
        capsys, "eval", "--weights", str(weights), "--data", str(ann), "--images", str(images), "--size", "96",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"detr-studio eval: error: {images / '1.png'}: no such file"
    assert "AP" not in stdout


def test_eval_to_an_unwritable_output_exits_1_with_one_line(two_images, first_run, tmp_path, capsys):
    report = tmp_path / "no-such-folder" / "metrics.json"
    code, _, stderr = run_cli(
        capsys, "eval", "--weights", str(first_run[3] / "best.safetensors"), *data_args(two_images),
        "--size", "96", "--device", "cpu", "-o", str(report),
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith(f"detr-studio eval: error: {report}: cannot write the metrics")
    )


def test_eval_with_a_missing_weights_file_exits_1(two_images, tmp_path, capsys):
    missing = tmp_path / "best.safetensors"
    code, stdout, stderr = run_cli(capsys, "eval", "--weights", str(missing), *data_args(two_images))
    assert_one_error_line(code, stdout, stderr, "detr-studio eval: error:", str(missing))
