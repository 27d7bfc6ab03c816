"""The Training dock end to end: a real ``detr-studio train`` child fine-tunes a tiny model on synthetic
64-pixel images. Start, watch events and curves, cancel (the run saves); resume and kill the child (a clear
failure, the window and the checkpoint survive); resume to the end, compare AP, use the trained model."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from detr_studio.app.training_form import FILE
from detr_studio.data.synthetic import generate
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.train.events import Failed, Finished, Started, Step
from detr_studio.train.runs import MASK_STAGE, MASKS, RUNS_FOLDER, read_events

from .helpers import CLASS_NAMES, load_tiny_model, open_and_wait, predict_and_wait

pytestmark = pytest.mark.slow  # real training children
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
    form = panel.form
    form.base_combo.setCurrentIndex(form.base_combo.findData(FILE))  # "Checkpoint file…"
    form.file_edit.setText(str(checkpoint))
    panel.form.images_combo.setCurrentIndex(panel.form.images_combo.findData("annotated"))
    panel.form.holdout_spin.setValue(holdout)
    panel.form.epochs_spin.setValue(epochs)
    panel.form.lr_edit.setText("1e-3")
    panel.form.batch_spin.setValue(1)
    panel.form.size_spin.setValue(64)
    panel.form.max_size_spin.setValue(64)
    panel.form.device_combo.setCurrentText("cpu")
    panel.form.extra_options = {"workers": 0, "augment": False}


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
    qtbot, window, project, tiny_checkpoint, monkeypatch, shots
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child's torch: one thread is fastest on a shared CPU
    open_and_wait(qtbot, window, window.projects.open_coco, project)
    load_tiny_model(qtbot, window, tiny_checkpoint)
    window.predictions.set_threshold(0.0)
    predict_and_wait(qtbot, window)
    before = window.session.store.get(window.session.current_image_id).detections
    dock = window.training_dock
    dock.show()
    dock.raise_()
    panel = dock.panel
    assert [panel.form.class_list.item(i).text() for i in range(panel.form.class_list.count())] == [
        c.name for c in window.session.doc.categories
    ]
    assert panel.form.count_label.text().startswith("No reviewed images yet")  # reviewed only by default
    click(qtbot, panel.start_button)
    assert "no reviewed images" in window.services.errors[-1] and not panel.job.running

    set_up(panel, tiny_checkpoint, epochs=1, holdout=0.2)
    assert panel.form.count_label.text() == "10 images: 8 to train on, 2 held out"
    seen, speed = [], []

    def on_event(event) -> None:
        seen.append(event)
        if isinstance(event, Step) and sum(isinstance(e, Step) for e in seen) == 1:
            speed.append(f"{panel.speed_label.text()} | {panel.progress.text()}")  # handled before this slot
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
    assert isinstance(end.final, Finished) and end.final.cancelled, (end, window.services.errors)
    assert (run / "last.pth").is_file() and panel.resume_button.isEnabled()
    assert "Cancelled" in panel.status_label.text()
    assert "images/s, ETA" in speed[0] and "epoch 1, step 1/8" in speed[0]
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
    message = window.services.errors[-1]
    assert message.startswith("Training failed: The training process was stopped by SIGKILL"), message
    assert f"The last checkpoint is kept: {run / 'last.pth'}" in message
    assert os.stat(run / "last.pth").st_mtime_ns == checkpoint and end.final.last_checkpoint == str(
        run / "last.pth"
    )
    assert panel.status_label.text().startswith("Failed: The training process was stopped by SIGKILL")
    assert (
        "failed" in panel.runs_list.item(0).text() and read_events(run / "events.jsonl")[-1].kind == "failed"
    )
    window.navigation.next_image()  # the window goes on working
    assert window.isVisible() and window.session.current_image_id == window.session.doc.images[1].id

    with qtbot.waitSignal(panel.job.ended, timeout=CHILD_TIMEOUT_MS):
        click(qtbot, panel.resume_button)
    end = panel.last_end
    assert isinstance(end.final, Finished) and not end.final.cancelled, (end, window.services.errors)
    assert len(panel.loss_series["total"]) == 8  # the resumed run went on where the first one stopped
    assert curve_points(panel.loss_plot, "total") == 8 and curve_points(panel.ap_plot, "AP") == 1
    # each legend is its chart's title line, above the curves
    assert (
        panel.loss_plot.getPlotItem().legend is None
        and "loss_ce" in panel.loss_plot.getPlotItem().titleLabel.text
    )
    assert (
        panel.ap_plot.getPlotItem().legend is None and "AP50" in panel.ap_plot.getPlotItem().titleLabel.text
    )
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

    shots.mkdir(parents=True, exist_ok=True)
    window.resizeDocks([dock], [380], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    panel.grab().save(str(shots / "training-panel.png"))  # the whole panel, scrolled part included
    window.answer = "Use the trained model"  # asked only when it scores lower than the base model
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60_000):
        click(qtbot, panel.use_button)
    assert window.session.model_info.name == "best.safetensors"
    predict_and_wait(qtbot, window)
    entry = window.session.store.get(window.session.current_image_id)
    assert entry.model == "best.safetensors"
    assert not np.allclose(entry.detections.probs, before.probs)  # the trained weights predict differently


@pytest.fixture(scope="module")
def wide_box_checkpoint(tmp_path_factory):
    """A tiny box model wide enough for a mask head (128 channels, the smallest the mask head allows)."""
    torch.manual_seed(0)
    config = tiny_config(num_classes=6, hidden_dim=128, nheads=8, dim_feedforward=128)
    return save_checkpoint(build_detr(config), tmp_path_factory.mktemp("wide") / "boxes", config, CLASS_NAMES)


def test_one_start_trains_boxes_then_the_mask_head_and_compares_mask_ap(
    qtbot, window, project, wide_box_checkpoint, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    open_and_wait(qtbot, window, window.projects.open_coco, project)
    panel = window.training_dock.panel
    window.training_dock.show()
    set_up(panel, wide_box_checkpoint, epochs=1, holdout=0.2)
    form = panel.form
    form.task_combo.setCurrentIndex(form.task_combo.findData(MASKS))
    assert form.task_combo.currentData() == MASKS  # the shapes have masks: the mask tasks are offered
    stages = []
    panel.job.event.connect(lambda e: stages.append(e.out_dir) if isinstance(e, Started) else None)
    with qtbot.waitSignal(panel.job.ended, timeout=CHILD_TIMEOUT_MS):
        click(qtbot, panel.start_button)
    run = panel.run_dir
    qtbot.waitUntil(lambda: len(stages) == 2, timeout=CHILD_TIMEOUT_MS)  # the second stage starts by itself
    assert "mask head" in panel.status_label.text()
    qtbot.waitUntil(lambda: not panel.job.running, timeout=CHILD_TIMEOUT_MS)
    assert isinstance(panel.last_end.final, Finished), (panel.last_end, window.services.errors)
    assert [Path(s) for s in stages] == [run, run / MASK_STAGE]
    qtbot.waitUntil(lambda: "after" in panel.comparison() and "before" in panel.comparison(), timeout=60_000)
    after, before = panel.comparison()["after"], panel.comparison()["before"]
    assert 0.0 <= after["segm_AP"] <= 1.0 and "segm_AP" not in before  # the base model has no mask head
    assert "mask AP" in panel.compare_label.text()
    assert (run / MASK_STAGE / "best.safetensors").is_file()
