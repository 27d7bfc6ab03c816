"""The second start: the window comes back with the last project (at the image it showed), the last model
and its dock layout; a last project that is gone is said in the status bar, and nothing else opens in its
place."""

from __future__ import annotations

import json

import pytest

from detr_studio.app.main import start_window
from detr_studio.app.window_state import MODEL_KEY

from .helpers import load_tiny_model, wait_for_pixels


@pytest.fixture
def start(qtbot, settings):
    """Start windows as ``detr-studio`` does, all with the same settings file."""
    made = []

    def start(*args: str):
        window = start_window(["detr-studio", *args], settings)
        window.services.error_dialogs = False
        qtbot.addWidget(window)
        made.append(window)
        return window

    yield start
    for window in made:
        window.session.set_project(None)
        window.shutdown()


def test_the_second_start_reopens_the_last_project_model_and_layout(qtbot, start, dataset, tiny_checkpoint):
    coco = dataset.instances_json("train")
    first = start(str(coco))
    qtbot.waitUntil(lambda: first.session.doc is not None, timeout=20_000)
    load_tiny_model(qtbot, first, tiny_checkpoint)
    first.navigation.next_image()
    shown = first.session.doc.image(first.session.current_image_id).file_name
    first.resize(720, 540)  # inside the offscreen screen (800 x 600): restoreGeometry keeps windows on it
    first.images_dock.hide()
    first.training_dock.raise_()
    qtbot.wait(50)
    first.shutdown()  # what closing the window does after asking about unsaved changes
    first.hide()

    second = start()
    with qtbot.waitSignal(second.worker.model_loaded, timeout=60_000):
        qtbot.waitUntil(lambda: second.session.doc is not None, timeout=20_000)
    wait_for_pixels(qtbot, second)
    assert second.session.doc.path == coco
    qtbot.waitUntil(lambda: second.session.current_image_id is not None, timeout=5_000)
    assert second.session.doc.image(second.session.current_image_id).file_name == shown  # where it was left
    assert second.session.model_choice.source == str(tiny_checkpoint)
    assert second.session.model_choice.size == 96  # as it was chosen
    assert not second.images_dock.isVisible() and second.training_dock.isVisible()
    assert (second.width(), second.height()) == (720, 540)
    assert second.services.errors == []


def test_a_last_project_that_is_gone_is_said_in_the_status_bar(qtbot, start, settings, tmp_path):
    gone = tmp_path / "gone" / "labels.json"
    settings.setValue("recent", [json.dumps({"kind": "coco", "path": str(gone), "image_root": None})])
    settings.setValue(MODEL_KEY, json.dumps({"source": str(tmp_path / "gone.safetensors")}))
    window = start()
    qtbot.wait(200)
    assert window.session.project is None and not window.projects.opening  # neither it nor the demo
    assert str(gone) in window.status.message.text() and "no longer there" in window.status.message.text()
    assert window.session.model_choice is None and window.services.errors == []
    assert "gone.safetensors: no such file" in window.status.model_status.text()
