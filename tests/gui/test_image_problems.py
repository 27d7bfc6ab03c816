"""Images that are not where the COCO file says, or that cannot be read: the window asks for the image folder
once (and remembers it for that file), and a broken image is reported in the status bar and marked in the
image list, never in a dialog that stops D / A. A decompression bomb shown first leaves the canvas showing the
new project, not the previous one's boxes."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from detr_studio.app.canvas import ANNOTATIONS
from detr_studio.app.image_list import UNREADABLE_TEXT

from ..bad_images import write_bomb_png, write_not_an_image
from .helpers import open_and_wait, view_point, wait_for_pixels


@pytest.fixture
def moved_coco(dataset, tmp_path):
    """The train split's COCO file in a folder of its own, away from its images."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return shutil.copy(dataset.instances_json("train"), folder / "labels.json")


def test_images_elsewhere_are_asked_for_once_and_the_folder_is_remembered_for_the_file(
    qtbot, window, dataset, moved_coco
):
    images = dataset.images_dir("train")
    asked: list[str] = []
    window.services.choose_folder = lambda title, start="": asked.append(title) or images
    open_and_wait(qtbot, window, window.projects.open_coco, moved_coco)
    assert len(asked) == 1 and "labels.json" in asked[0]
    assert window.session.doc.image_root == images and window.canvas.has_pixmap
    assert window.services.errors == [] and window.services.problems == []

    window.session.set_project(None)
    open_and_wait(qtbot, window, window.projects.open_coco, moved_coco)  # the same file again
    assert len(asked) == 1 and window.session.doc.image_root == images


def test_without_the_image_folder_each_image_is_marked_and_d_pages_on(qtbot, window, moved_coco):
    window.services.choose_folder = lambda title, start="": None
    with qtbot.waitSignal(window.project_opened, timeout=20_000):
        window.projects.open_coco(moved_coco)
    assert "Set Image Folder" in window.status.message.text()
    model = window.image_panel.model
    first = window.session.current_image_id
    qtbot.waitUntil(lambda: first in model.problems, timeout=10_000)
    assert "no such file" in model.problems[first]
    qtbot.keyClick(window, Qt.Key.Key_D)  # no dialog is in the way
    second = window.session.current_image_id
    assert second != first
    name = window.session.doc.image(second).file_name
    qtbot.waitUntil(lambda: name in window.status.message.text(), timeout=10_000)  # this image's problem
    assert "no such file" in window.status.message.text() and second in model.problems
    assert window.services.errors == [] and QApplication.activeModalWidget() is None
    row = model.index(model.row_of(second))
    assert UNREADABLE_TEXT in row.data() and "no such file" in row.data(Qt.ItemDataRole.ToolTipRole)


def test_a_broken_image_is_reported_in_the_status_bar_and_marked_in_the_list(
    qtbot, window, dataset, tmp_path
):
    folder = tmp_path / "photos"
    shutil.copytree(dataset.images_dir("train"), folder)
    write_not_an_image(folder / "000-broken.jpg")  # sorted first: shown first
    with qtbot.waitSignal(window.project_opened, timeout=20_000):
        window.projects.open_folder(folder)
    model = window.image_panel.model
    broken = window.session.current_image_id
    qtbot.waitUntil(lambda: broken in model.problems, timeout=10_000)
    assert "000-broken.jpg" in window.status.message.text()
    assert window.canvas.notice and "000-broken.jpg" in window.canvas.notice
    assert window.services.errors == [] and QApplication.activeModalWidget() is None
    assert UNREADABLE_TEXT in model.index(0).data()
    window.navigation.next_image()
    wait_for_pixels(qtbot, window)  # the next image shows at once
    assert window.canvas.notice is None and model.row_of(window.session.current_image_id) == 1


def test_a_decompression_bomb_shown_first_replaces_the_previous_project_on_the_canvas(
    qtbot, window, dataset, tmp_path
):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    old_box = window.canvas.boxes(ANNOTATIONS)[0].sceneBoundingRect().center()
    click_at = view_point(window, old_box.x(), old_box.y())
    folder = tmp_path / "photos"
    shutil.copytree(dataset.images_dir("train"), folder)
    write_bomb_png(folder / "000-bomb.png")
    with qtbot.waitSignal(window.project_opened, timeout=20_000):
        window.projects.open_folder(folder)
    doc, model = window.session.doc, window.image_panel.model
    bomb = window.session.current_image_id
    assert window.canvas.image_id == bomb and doc.image(bomb).file_name == "000-bomb.png"
    assert window.canvas.boxes(ANNOTATIONS) == []  # none of the previous project's boxes
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=click_at)
    assert window.session.selection.is_empty
    qtbot.waitUntil(lambda: bomb in model.problems, timeout=10_000)
    assert "decompression bomb" in model.problems[bomb] and "decompression bomb" in window.canvas.notice
    assert window.services.errors == []
    others = [iid for iid in doc.image_ids if iid != bomb]
    qtbot.waitUntil(lambda: all(doc.has_size(iid) for iid in others), timeout=15_000)  # the size scan went on
