"""The Training dock end to end: a real ``detr-studio train`` child fine-tunes a tiny model on synthetic
64-pixel images. Start, watch events and curves, cancel (the run saves); resume and kill the child (a clear
failure, the window and the checkpoint survive); resume to the end, compare AP, use the trained model."""

from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from detr_studio.app.training_job import (
    ANNOTATED,
    REVIEWED,
    RUNS_FOLDER,
    TrainingOptions,
    TrainingSetupError,
    append_event,
    choose_images,
    list_runs,
    new_run_dir,
    read_events,
    resume_arguments,
    save_command,
    torchrun_command,
    train_arguments,
    write_snapshot,
)
from detr_studio.data.coco import CocoDocument
from detr_studio.data.synthetic import generate
from detr_studio.train.events import EpochEnd, Failed, Finished, Started, Step

from .helpers import SHOTS, load_tiny_model, open_and_wait, predict_and_wait

CHILD_TIMEOUT_MS = 180_000  # a child imports torch; the machine may be busy


@pytest.fixture(scope="module")
def shapes_master(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("shapes"), num_train=10, num_val=0, size=64)


@pytest.fixture
def project(shapes_master, tmp_path):
    """A fresh copy of ten 64-pixel images with their labels; -> the COCO file."""
    root = tmp_path / "shapes"
    shutil.copytree(shapes_master.root, root)
    return type(shapes_master)(root).instances_json("train")


def set_up(panel, checkpoint, epochs: int, holdout: float) -> None:
    """Fast options: the tiny checkpoint, all annotated images, 64 px, batch 1, CPU, no loader processes."""
    panel.set_base_file(checkpoint)
    panel.images_combo.setCurrentIndex(panel.images_combo.findData("annotated"))
    panel.holdout_spin.setValue(holdout)
    panel.epochs_spin.setValue(epochs)
    panel.lr_edit.setText("1e-3")
    panel.batch_spin.setValue(1)
    panel.size_spin.setValue(64)
    panel.max_size_spin.setValue(64)
    panel.device_combo.setCurrentText("cpu")
    panel.extra_options = {"workers": 0, "augment": False}


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def curve_points(plot, name: str) -> int:
    for item in plot.listDataItems():
        if item.name() == name:
            x, _ = item.getData()
            return 0 if x is None else len(x)
    return 0


def test_fine_tune_from_the_panel_through_cancel_and_a_crash_to_a_better_model(
    qtbot, window, project, tiny_checkpoint, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child's torch: one thread is fastest on a shared CPU
    open_and_wait(qtbot, window, window.open_coco, project)
    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.set_threshold(0.0)
    predict_and_wait(qtbot, window)
    before = window.store.get(window.current_image_id).detections
    dock = window.training_dock
    dock.show()
    dock.raise_()
    panel = dock.panel
    assert [panel.class_list.item(i).text() for i in range(panel.class_list.count())] == [
        c.name for c in window.doc.categories
    ]
    assert panel.count_label.text().startswith("No reviewed images yet")  # reviewed only by default
    click(qtbot, panel.start_button)
    assert "no reviewed images" in window.errors[-1] and not panel.job.running

    set_up(panel, tiny_checkpoint, epochs=1, holdout=0.2)
    assert panel.count_label.text() == "10 images: 8 to train on, 2 held out"
    seen, speed = [], []

    def on_event(event) -> None:
        seen.append(event)
        if isinstance(event, Step) and sum(isinstance(e, Step) for e in seen) == 1:
            speed.append(panel.speed_label.text())  # the panel handled the event before this slot
            panel.cancel()  # at once, so that the one-epoch run is cut short

    panel.job.event.connect(on_event)
    with qtbot.waitSignal(panel.job.ended, timeout=CHILD_TIMEOUT_MS):
        click(qtbot, panel.start_button)
        assert panel.job.running and not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    run = panel.run_dir
    assert run.parent == project.parent.resolve() / RUNS_FOLDER
    assert (run / "train.json").is_file() and (run / "val.json").is_file()
    assert len(list(run.parent.iterdir())) == 1  # the refused start left no folder behind
    assert json.loads((run / "command.json").read_text())[-2:] == ["--workers", "0"]
    assert f"--weights {tiny_checkpoint}" in " ".join(json.loads((run / "command.json").read_text()))
    end = panel.last_end
    assert isinstance(seen[0], Started) and seen[0].train_images == 8 and seen[0].val_images == 2
    assert isinstance(end.final, Finished) and end.final.cancelled, (end, window.errors)
    assert (run / "last.pth").is_file() and panel.resume_button.isEnabled()
    assert "Cancelled" in panel.status_label.text()
    assert "images/s, ETA" in speed[0] and "step 1/8" in speed[0]
    first_points = len(panel.loss_series["total"])
    assert 1 <= first_points < 8
    assert curve_points(panel.loss_plot, "total") == first_points and curve_points(panel.loss_plot, "loss_ce")
    qtbot.waitUntil(lambda: "before" in panel.comparison(), timeout=60_000)
    assert "AP" in panel.comparison()["before"], panel.comparison()

    panel.job.event.disconnect(on_event)
    checkpoint = os.stat(run / "last.pth").st_mtime_ns
    killed = []

    def kill_at_first_step(event) -> None:
        if isinstance(event, Step) and not killed:
            killed.append(event)
            os.kill(panel.job.pid, signal.SIGKILL)  # a crash, the OOM killer, a user's kill -9

    panel.job.event.connect(kill_at_first_step)
    with qtbot.waitSignal(panel.job.ended, timeout=CHILD_TIMEOUT_MS):
        click(qtbot, panel.resume_button)
    panel.job.event.disconnect(kill_at_first_step)
    end = panel.last_end
    assert killed and isinstance(end.final, Failed), end
    message = window.errors[-1]
    assert message.startswith("Training failed: The training process was stopped by SIGKILL"), message
    assert f"The last checkpoint is kept: {run / 'last.pth'}" in message
    assert os.stat(run / "last.pth").st_mtime_ns == checkpoint and end.final.last_checkpoint == str(
        run / "last.pth"
    )
    assert panel.status_label.text().startswith("Failed: The training process was stopped by SIGKILL")
    assert (
        "failed" in panel.runs_list.item(0).text() and read_events(run / "events.jsonl")[-1].kind == "failed"
    )
    window.next_image()  # the window goes on working
    assert window.isVisible() and window.current_image_id == window.doc.images[1].id

    with qtbot.waitSignal(panel.job.ended, timeout=CHILD_TIMEOUT_MS):
        click(qtbot, panel.resume_button)
    end = panel.last_end
    assert isinstance(end.final, Finished) and not end.final.cancelled, (end, window.errors)
    assert len(panel.loss_series["total"]) == 8  # the resumed run went on where the first one stopped
    assert curve_points(panel.loss_plot, "total") == 8 and curve_points(panel.ap_plot, "AP") == 1
    # each legend sits where its curves are not heading: falling losses top right, rising AP bottom right
    assert panel.loss_plot.getPlotItem().legend.opts["offset"][1] > 0
    assert panel.ap_plot.getPlotItem().legend.opts["offset"][1] < 0
    assert panel.progress.value() == panel.progress.maximum()
    qtbot.waitUntil(lambda: "after" in panel.comparison(), timeout=60_000)
    after = panel.comparison()["after"]
    assert 0.0 <= after["AP"] <= 1.0 and "before" in panel.compare_label.text()
    assert f"{after['AP']:.3f}" in panel.compare_label.text()
    assert panel.runs_list.count() == 1 and "finished" in panel.runs_list.item(0).text()
    kinds = [e.kind for e in read_events(run / "events.jsonl")]
    assert kinds.count("started") == 3 and kinds[-1] == "finished"

    line = panel.copy_command()
    assert QApplication.clipboard().text() == line
    assert line.startswith("torchrun --nproc_per_node=2 -m detr_studio train --data ")
    assert str(run / "train.json") in line and "--device" not in line

    SHOTS.mkdir(parents=True, exist_ok=True)
    window.resizeDocks([dock], [380], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    panel.grab().save(str(SHOTS / "training-panel.png"))  # the whole panel, scrolled part included
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60_000):
        click(qtbot, panel.use_button)
    assert window.model_info.name == "best.safetensors"
    predict_and_wait(qtbot, window)
    entry = window.store.get(window.current_image_id)
    assert entry.model == "best.safetensors"
    assert not np.allclose(entry.detections.probs, before.probs)  # the trained weights predict differently


# ---------------------------------------------------------------- the run folder, without a child process


@pytest.fixture
def reviewed_doc(tmp_path) -> CocoDocument:
    """Image 1 reviewed: a human cat, a rejected model dog and a pending model cat. Image 2 not reviewed,
    with a human dog. Image 3 reviewed, empty (a negative). Image 4 untouched."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 40} for i in (1, 2, 3, 4)]
    ours = {"source": "model", "score": 0.9, "model": "m"}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "area": 81, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 5, 9, 9], "area": 81, "iscrowd": 0,
         "detr_studio": {**ours, "review": "rejected"}},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [30, 5, 9, 9], "area": 81, "iscrowd": 0,
         "detr_studio": {**ours, "review": "pending"}},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0},
    ]  # fmt: skip
    doc = CocoDocument(
        {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        },
        image_root=tmp_path,
    )
    doc.set_image_reviewed(1)
    doc.set_image_reviewed(3)
    return doc


def test_the_snapshot_holds_the_chosen_images_and_only_trusted_labels(reviewed_doc, tmp_path):
    assert choose_images(reviewed_doc, REVIEWED) == [1, 3]
    assert choose_images(reviewed_doc, ANNOTATED) == [1, 2, 3]
    run = new_run_dir(tmp_path)
    snap = write_snapshot(reviewed_doc, run, TrainingOptions(images=ANNOTATED, holdout=0.34, classes=["cat"]))
    assert sorted(snap.train_ids + snap.val_ids) == [1, 2, 3] and len(snap.val_ids) == 1
    train, val = json.loads(snap.train_json.read_text()), json.loads(snap.val_json.read_text())
    labels = train["annotations"] + val["annotations"]
    assert [a["id"] for a in labels] == [1]  # no rejected, no pending proposal, no dog
    assert train["categories"] == [{"id": 1, "name": "cat"}] == val["categories"]
    assert snap.image_root == tmp_path.resolve()
    args = train_arguments(snap, TrainingOptions(images=ANNOTATED, size=64, max_size=96, device="cpu"))
    assert args[:3] == ["train", "--data", str(snap.train_json)] and "--val-data" in args
    assert args[args.index("--scales") + 1] == "40,48,56,64" and args[args.index("--max-size") + 1] == "96"
    assert "--weights" not in args and args[-4:] == ["--device", "cpu", "--workers", "2"]
    line = torchrun_command(train_arguments(snap, TrainingOptions(), local=False), 8)
    assert line.startswith("torchrun --nproc_per_node=8 -m detr_studio train") and "--device" not in line


def test_a_run_cannot_start_without_images_and_cannot_resume_without_a_checkpoint(reviewed_doc, tmp_path):
    for image in (1, 3):
        reviewed_doc.set_image_reviewed(image, False)
    with pytest.raises(TrainingSetupError, match="no reviewed images to train on: mark images as reviewed"):
        write_snapshot(reviewed_doc, tmp_path, TrainingOptions())
    with pytest.raises(TrainingSetupError, match="no classes chosen"):
        write_snapshot(reviewed_doc, tmp_path, TrainingOptions(images=ANNOTATED, classes=[]))
    run = new_run_dir(tmp_path)
    save_command(run, ["train", "--data", "x.json"])
    with pytest.raises(TrainingSetupError, match="nothing to resume from"):
        resume_arguments(run)
    (run / "last.pth").write_bytes(b"")
    assert resume_arguments(run) == ["train", "--data", "x.json", "--resume", str(run)]


def test_the_run_history_reads_each_run_state_from_its_events(tmp_path):
    started = Started(epochs=3, start_epoch=0, steps_per_epoch=2, train_images=4, val_images=1, device="cpu",
                      world_size=1, out_dir="")  # fmt: skip
    runs = []
    for name, final in (
        ("a", None),
        ("b", Finished(epochs_done=1, best_path="", last_path="", best_metric=0.5, cancelled=True)),
        ("c", Failed("boom")),
    ):
        run = tmp_path / RUNS_FOLDER / name
        run.mkdir(parents=True)
        save_command(run, ["train"])
        append_event(run, started)
        append_event(run, EpochEnd(epoch=1, train_loss=1.0, train_losses={}, metrics={}, seconds=1.0))
        if final is not None:
            append_event(run, final)
        runs.append(run)
    with (runs[0] / "events.jsonl").open("a") as fh:
        fh.write('{"event": "step", "epo')  # a line torn by a crash
    states = {s.name: (s.state, s.epochs_done, s.epochs) for s in list_runs(tmp_path)}
    assert states == {"c": ("failed", 1, 3), "b": ("cancelled", 1, 3), "a": ("stopped", 1, 3)}
    assert [s.name for s in list_runs(tmp_path)] == ["c", "b", "a"]  # newest (by name) first
