"""Training against a full disk, hostile resume files, changed options on resume, bad model options, and the
user's umask for every file of a run."""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detr_studio.common import files
from detr_studio.common.files import read_json
from detr_studio.train.config import TrainConfig
from detr_studio.train.events import Failed, Finished, Started, Step
from detr_studio.train.run_state import read_training_state
from detr_studio.train.trainer import fit

from .test_train_cli import FAST, data_args, events_of, run_cli

TINY = {"backbone": "resnet18", "hidden_dim": 32, "nheads": 4, "enc_layers": 1, "dec_layers": 1,
        "dim_feedforward": 64, "num_queries": 6}  # fmt: skip


def config(two_images, out: Path, **changes) -> TrainConfig:
    ann, images = two_images
    values = dict(
        train_annotations=str(ann), train_images=str(images), model=dict(TINY), epochs=2, lr=1e-3,
        lr_backbone=1e-4, batch_size=2, augment=False, scales=[96], max_size=96, num_workers=0,
        out_dir=str(out), lr_drop=1000, seed=7, device="cpu",
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def orphans(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_full_disk_while_saving_last_pth_fails_cleanly_and_keeps_the_previous_one(
    two_images, tmp_path, monkeypatch
):
    real_save = torch.save
    calls = []

    def full_disk_on_the_second_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 1480")

    monkeypatch.setattr(torch, "save", full_disk_on_the_second_save)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**9, 10**9, 0))
    out = tmp_path / "run"
    final = fit(config(two_images, out))
    assert isinstance(final, Failed), final
    assert f"no space left on {out}" in final.message and "\n" not in final.message
    assert final.last_checkpoint == str(out / "last.pth")
    assert read_training_state(out / "last.pth")["position"]["epoch"] == 1  # the previous one, whole
    assert orphans(out) == []


class _FullDisk:
    """A file whose writes fail as on a full disk (after the file was created)."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_a_full_disk_while_writing_the_best_model_ends_as_failed(two_images, tmp_path, monkeypatch):
    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        fh = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 (handed on to the caller)
        return _FullDisk(fh) if "best.safetensors" in str(path) and "x" in mode else fh

    monkeypatch.setattr(files, "open", open_on_a_full_disk, raising=False)
    out = tmp_path / "run"
    final = fit(config(two_images, out, epochs=1))
    assert isinstance(final, Failed) and f"no space left on {out}" in final.message
    assert "best.safetensors" in final.message
    assert orphans(out) == [] and not (out / "best.safetensors").exists()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-resume",))


def test_resuming_from_a_hostile_pickle_is_refused_without_torchs_advice(two_images, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "last.pth", "wb") as fh:
        pickle.dump({"model": {}, "payload": _RunsCode()}, fh)
    argv = [sys.executable, "-m", "detr_studio", "train", *data_args(two_images), *FAST, "--resume", str(run)]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "refused to load" in proc.stderr and "last.pth" in proc.stderr
    assert "weights_only" not in proc.stderr and "Traceback" not in proc.stderr  # warnings included
    assert not (tmp_path / "pwned-by-resume").exists()


@pytest.fixture(scope="module")
def one_epoch(two_images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resumable") / "run"
    assert isinstance(fit(config(two_images, out, epochs=1, lr=1e-3)), Finished)
    return out


def _resume(capsys, one_epoch: Path, tmp_path: Path, *flags: str) -> tuple[list, Path]:
    run = tmp_path / "run"
    shutil.copytree(one_epoch, run)
    code, out, err = run_cli(
        capsys, "train", "--resume", str(run), "--epochs", "2", "--events", "jsonl", *flags
    )
    assert code == 0, err
    return events_of(out), run


def test_resuming_with_a_new_learning_rate_applies_it_says_so_and_records_it(one_epoch, tmp_path, capsys):
    events, run = _resume(capsys, one_epoch, tmp_path, "--lr", "5e-4")
    started = next(e for e in events if isinstance(e, Started))
    assert started.start_epoch == 1
    assert any(
        "learning rates changed" in note and "0.0005" in note and "applied" in note for note in started.notes
    )
    assert {s.lr for s in events if isinstance(s, Step)} == {5e-4}
    assert read_json(run / "config.json", "training config")["lr"] == 5e-4


def test_resuming_without_new_options_keeps_the_runs_own(one_epoch, tmp_path, capsys):
    events, run = _resume(capsys, one_epoch, tmp_path)
    started = next(e for e in events if isinstance(e, Started))
    assert started.notes == []
    assert {s.lr for s in events if isinstance(s, Step)} == {1e-3}
    assert read_json(run / "config.json", "training config")["lr"] == 1e-3


def test_every_file_of_a_run_follows_the_users_umask(two_images, tmp_path):
    previous = os.umask(0o027)
    try:
        final = fit(config(two_images, tmp_path / "run", epochs=1))
    finally:
        os.umask(previous)
    assert isinstance(final, Finished), final
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert set(modes) == {"config.json", "events.jsonl", "last.pth", "best.safetensors", "best.json"}
    assert set(modes.values()) == {0o640}, modes


def test_bad_model_options_name_the_field(two_images, tmp_path):
    final = fit(config(two_images, tmp_path / "run", model={**TINY, "nheads": 0}))
    assert isinstance(final, Failed)
    assert "model.nheads must be an integer from 1 to 64, got 0" in final.message
