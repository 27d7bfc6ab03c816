"""Fixtures for driving the real window offscreen: a synthetic COCO dataset, a tiny random checkpoint, a
window with its own settings file, and helpers that wait for background work."""

from __future__ import annotations

import shutil

import pytest
import torch
from PySide6.QtCore import QSettings

from detr_studio.app.main import MainWindow
from detr_studio.app.main_thread_gc import MainThreadCollector
from detr_studio.data.synthetic import generate
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config

from .helpers import CLASS_NAMES


@pytest.fixture(scope="package", autouse=True)
def collect_on_the_qt_thread(qapp):
    """As in the app while a window is open: garbage cycles are freed on the Qt thread only, also in tests that
    drive widgets and workers without a window (see `MainThreadCollector`)."""
    MainThreadCollector.acquire()
    yield
    MainThreadCollector.release()


@pytest.fixture(scope="session")
def synthetic_master(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), num_train=3, num_val=0, size=96)


@pytest.fixture
def dataset(synthetic_master, tmp_path):
    """A fresh copy of the synthetic dataset per test (tests edit and save it)."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_master.root, root)
    return type(synthetic_master)(root)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config(num_classes=6)
    folder = tmp_path_factory.mktemp("model")
    return save_checkpoint(build_detr(config), folder / "tiny", config, CLASS_NAMES)


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, settings):
    """Windows that report errors into ``window.errors`` and answer questions with ``window.answer``."""
    made = []

    def make() -> MainWindow:
        window = MainWindow(settings)
        window.error_dialogs = False
        window.autosave = False
        window.answer = "Discard"
        window.ask = lambda title, text, choices=("Yes", "No"): window.answer
        qtbot.addWidget(window)
        window.resize(1100, 700)
        window.show()
        window.activateWindow()  # shortcuts go to the active window
        qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
        made.append(window)
        return window

    yield make
    for window in made:
        window.doc = None  # nothing to ask about at teardown
        window.shutdown()


@pytest.fixture
def window(make_window):
    return make_window()
