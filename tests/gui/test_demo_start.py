"""`make run` on a first start: the demo dataset is written into the user data folder, opened, and the demo
model's detections are drawn; partial or damaged demo folders are written again; Help > Open Demo Project."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QApplication, QStatusBar

from detr_studio.app import demo_project
from detr_studio.app.main import MainWindow, start_window
from detr_studio.commands import demo as demo_command
from detr_studio.commands.demo import DEMO, DemoRecipe
from detr_studio.data.synthetic import SyntheticLayout
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config

from .helpers import CLASS_NAMES

SHOTS = Path("/tmp/shots")
SMALL = DemoRecipe(num_train=2, num_val=3, size=64, seed=0)
FAST = DemoRecipe(num_train=1, num_val=3, size=DEMO.size, seed=DEMO.seed)  # the demo's first images, quickly
WAIT_MS = 180_000  # generous: a first start takes seconds, but the CPU may be shared


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty user data folder, as on a first start."""
    folder = tmp_path / "home"
    monkeypatch.setenv(demo_project.HOME_ENV, str(folder))
    return folder


@pytest.fixture
def fast_demo(monkeypatch) -> DemoRecipe:
    """Make the demo recipe `FAST` (its first images are the real demo's first images)."""
    monkeypatch.setattr(demo_command, "DEMO", FAST)
    return FAST


@pytest.fixture(scope="module")
def demo_master(tmp_path_factory) -> Path:
    """A complete `FAST` demo dataset, written once and copied by the tests that need one."""
    return demo_project.ensure_demo_dataset(tmp_path_factory.mktemp("master") / "demo", FAST).root


@pytest.fixture(scope="module")
def confident_checkpoint(tmp_path_factory) -> Path:
    """A tiny random model whose class head is sure every query is a circle: every query clears the
    window's default threshold, so its boxes are drawn without touching the slider."""
    torch.manual_seed(0)
    config = tiny_config(num_classes=6)
    model = build_detr(config)
    with torch.no_grad():
        model.class_embed.bias[1] = 12.0
    return save_checkpoint(model, tmp_path_factory.mktemp("demo-model") / "model", config, CLASS_NAMES)


@pytest.fixture
def started(qtbot, settings):
    """Start windows the way ``detr-studio`` does (without entering the event loop); at the end, let their
    background work finish and close them."""
    made: list[MainWindow] = []

    def start() -> MainWindow:
        window = start_window(["detr-studio"], settings)
        window.error_dialogs = False
        window.ask = lambda title, text, choices=("Yes", "No"): "Discard"
        made.append(window)
        return window

    yield start
    for window in made:
        runners = (window.tasks, window.pixels, window.overlay_tasks)
        try:
            qtbot.waitUntil(
                lambda w=window, r=runners: not w.worker.busy and not any(x.pending for x in r),
                timeout=WAIT_MS,
            )
        finally:
            window.doc = None
            window.close()  # stops its threads
            window.deleteLater()


def _wait_for_demo(qtbot, window: MainWindow, home: Path) -> None:
    qtbot.waitUntil(lambda: window.project is not None and window.canvas.has_pixmap, timeout=WAIT_MS)
    assert window.project.location == SyntheticLayout(home / "demo").instances_json("val").absolute()


def _shot(window: MainWindow, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    QApplication.processEvents()
    path = SHOTS / name
    assert window.grab().save(str(path))
    return path


def _copy_master(master: Path, home: Path) -> None:
    shutil.copytree(master, home / "demo")


def test_a_first_start_writes_the_demo_project_opens_it_and_draws_the_demo_models_detections(
    qtbot, started, home, confident_checkpoint, monkeypatch, fast_demo
):
    # `fast_demo`: the same writing path as the real demo, with fewer images, to keep the suite quick.
    monkeypatch.setattr(demo_project, "demo_model_path", lambda: confident_checkpoint)
    window = started()
    _wait_for_demo(qtbot, window, home)
    assert demo_project.is_complete(home / "demo")
    assert len(window.doc.images) == fast_demo.num_val and window.doc.annotations
    assert window.current_image_id == window.doc.images[0].id
    qtbot.waitUntil(lambda: len(window.canvas.prediction_items()) > 0, timeout=WAIT_MS)
    items = window.canvas.prediction_items()
    assert len(items) == len(window.store.visible(window.current_image_id, window.threshold)) == 10
    assert {item.spec.label.split()[0] for item in items} == {"circle"}
    assert window.model_info.name == "model.safetensors"
    assert window.actions_by_name["predict_on_navigate"].isChecked()
    _shot(window, "demo.png")
    with qtbot.waitSignal(window.predictions_changed, timeout=WAIT_MS):
        window.next_image()  # the next image shown is predicted too
    assert len(window.canvas.prediction_items()) == 10


def test_without_the_demo_model_the_project_opens_alone_and_the_status_bar_says_so(
    qtbot, started, home, fast_demo, demo_master, monkeypatch
):
    monkeypatch.setattr(demo_project, "demo_model_path", lambda: None)
    _copy_master(demo_master, home)
    messages: list[
        str
    ] = []  # recorded from the start: the message may come before a signal could be connected
    show = QStatusBar.showMessage
    monkeypatch.setattr(
        QStatusBar,
        "showMessage",
        lambda bar, text, timeout=0: (messages.append(text), show(bar, text, timeout)),
    )
    window = started()
    _wait_for_demo(qtbot, window, home)
    qtbot.waitUntil(lambda: demo_project.NO_MODEL_MESSAGE in messages, timeout=WAIT_MS)
    assert "demo model is not installed" in window.model_status.text()
    assert window.model_choice is None and window.errors == []
    assert not window.canvas.prediction_items()


def test_a_start_with_recent_projects_does_not_open_the_demo_but_the_help_menu_does(
    qtbot, started, settings, home, fast_demo, demo_master, monkeypatch
):
    monkeypatch.setattr(demo_project, "demo_model_path", lambda: None)
    _copy_master(demo_master, home)
    settings.setValue("recent", [json.dumps({"kind": "folder", "path": str(home / "elsewhere")})])
    window = started()
    qtbot.wait(300)
    assert window.project is None and not window.opening
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    assert window.actions_by_name["open_demo"] in help_menu.actions()
    window.actions_by_name["open_demo"].trigger()
    _wait_for_demo(qtbot, window, home)


@pytest.mark.skipif(
    demo_project.demo_model_path() is None, reason="resources/demo/model.safetensors not added"
)
def test_the_bundled_demo_model_finds_objects_on_the_first_demo_image(
    qtbot, started, home, fast_demo, demo_master
):
    _copy_master(demo_master, home)
    window = started()
    _wait_for_demo(qtbot, window, home)
    qtbot.waitUntil(lambda: window.current_image_id in window.store, timeout=WAIT_MS)
    assert window.errors == []
    assert len(window.canvas.prediction_items()) >= 1
    _shot(window, "demo-real-model.png")


# ---------------------------------------------------------------------------------------------- the dataset


def test_the_demo_folder_is_in_detr_studio_home_when_set(home):
    assert demo_project.data_home() == home
    assert demo_project.demo_root() == home / "demo"


def test_a_partial_demo_folder_is_written_again(tmp_path):
    root = tmp_path / "demo"
    (root / "val").mkdir(parents=True)
    (root / "val" / "000001.jpg").write_bytes(b"cut short")
    assert not demo_project.is_complete(root, SMALL)
    layout = demo_project.ensure_demo_dataset(root, SMALL)
    assert demo_project.is_complete(root, SMALL)
    assert len(json.loads(layout.instances_json("val").read_text())["images"]) == SMALL.num_val
    assert (root / "val" / "000001.jpg").read_bytes() != b"cut short"
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging folder left behind


def test_a_damaged_demo_folder_is_written_again(tmp_path):
    root = tmp_path / "demo"
    layout = demo_project.ensure_demo_dataset(root, SMALL)
    (root / "val" / "000002.jpg").unlink()
    assert not demo_project.is_complete(root, SMALL)
    demo_project.ensure_demo_dataset(root, SMALL)
    assert (root / "val" / "000002.jpg").is_file()
    layout.instances_json("val").write_text("{not json")
    demo_project.ensure_demo_dataset(root, SMALL)
    assert json.loads(layout.instances_json("val").read_text())["images"]


def test_a_complete_demo_folder_is_reused_with_the_users_saved_edits(tmp_path):
    root = tmp_path / "demo"
    layout = demo_project.ensure_demo_dataset(root, SMALL)
    data = json.loads(layout.instances_json("val").read_text())
    data["annotations"] = data["annotations"][:1]
    layout.instances_json("val").write_text(json.dumps(data))
    demo_project.ensure_demo_dataset(root, SMALL)
    assert len(json.loads(layout.instances_json("val").read_text())["annotations"]) == 1
    other = DemoRecipe(num_train=2, num_val=4, size=64, seed=0)  # a new recipe replaces the old dataset
    demo_project.ensure_demo_dataset(root, other)
    assert len(json.loads(layout.instances_json("val").read_text())["images"]) == 4


def test_an_unwritable_home_is_reported_with_the_folder_and_the_window_stays(qtbot, started, home):
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("a file where the data folder should be")
    with pytest.raises(OSError, match="cannot write the demo dataset"):
        demo_project.ensure_demo_dataset()
    window = started()
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert str(home / "demo") in window.errors[0] and window.project is None
    assert window.isVisible()


def test_the_window_and_the_demo_command_write_the_demo_through_the_same_function(tmp_path, monkeypatch):
    calls: list[tuple[Path, DemoRecipe]] = []
    monkeypatch.setattr(
        demo_command, "generate_demo", lambda out, recipe, progress=None: calls.append((out, recipe))
    )
    demo_project.ensure_demo_dataset(tmp_path / "window")
    parser = argparse.ArgumentParser()
    demo_command.register(parser.add_subparsers(dest="command"))
    assert demo_command.run(parser.parse_args(["demo", str(tmp_path / "cli")])) == 0
    assert [recipe for _, recipe in calls] == [DEMO, DEMO]
    assert (
        DemoRecipe(num_train=600, num_val=100, size=128, seed=0) == DEMO
    )  # what the demo model was trained on
