"""Big folders open without reading image headers: the list shows every file at once, the size of the image
shown is read on demand, thumbnails and a paced background scan fill in the rest, and saving writes correct
sizes (reading what is still missing) and leaves out files that are not images after all."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from detr_studio.app import image_list
from detr_studio.data import coco as coco_module
from detr_studio.data.coco import CocoDocument
from detr_studio.data.coco import document as coco_document
from detr_studio.data.coco import queries as coco_queries
from detr_studio.session import project as projects

from .helpers import open_and_wait

FILES = 2_000


@pytest.fixture
def header_reads(monkeypatch) -> list[str]:
    """Every image header CocoDocument reads (the window's own path to sizes)."""
    reads: list[str] = []
    real = coco_module.image_size

    def counting(path):
        reads.append(str(path))
        return real(path)

    for module in (coco_document, coco_queries):  # the two places a CocoDocument reads headers
        monkeypatch.setattr(module, "image_size", counting)
    return reads


def make_folder(root: Path, count: int = FILES) -> Path:
    """``count`` PNGs (hard links to two sources of different sizes), in two sub-folders."""
    folder = root / "photos"
    sources = root / "sources"
    sources.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(sources / "wide.png")
    Image.new("RGB", (20, 50), (10, 10, 200)).save(sources / "tall.png")
    for sub in ("day", "night"):
        (folder / sub).mkdir(parents=True)
    for i in range(count):
        source = sources / ("wide.png" if i % 2 == 0 else "tall.png")
        target = folder / ("day" if i < count // 2 else "night") / f"{i:05d}.png"
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return folder


def expected_size(file_name: str) -> tuple[int, int]:
    return (40, 30) if int(Path(file_name).stem) % 2 == 0 else (20, 50)


def test_a_folder_opens_without_reading_headers_and_lists_every_file(
    qtbot, monkeypatch, make_window, tmp_path, header_reads
):
    monkeypatch.setattr(image_list, "SCAN_DELAY_MS", 60_000)  # no background scan during this test
    folder = make_folder(tmp_path)
    window = make_window()
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    model = window.image_panel.model
    assert model.rowCount() == FILES and model.total == FILES
    assert window.image_panel.count_label.text() == f"{FILES:,} images"
    assert header_reads == [str(folder / "day" / "00000.png")]  # only the image shown
    first = window.session.doc.image(model.image_id_at(0))
    assert (first.file_name, first.width, first.height) == ("day/00000.png", 40, 30)
    assert window.status.size_label.text() == "40 × 30 px"
    loader = model.thumbnails
    asked = set(loader._cache) | loader._waiting | loader._failed  # thumbnails give sizes too
    assert len(asked) < 100
    assert len(window.session.doc.missing_sizes()) >= FILES - len(asked) - 1
    middle = model.image_id_at(FILES // 2)
    assert middle not in asked
    info = window.session.doc.image(middle)
    assert info.file_name == f"night/{FILES // 2:05d}.png" and (info.width, info.height) == (0, 0)
    assert "size not read yet" in model.index(FILES // 2).data(Qt.ItemDataRole.ToolTipRole)


def test_sizes_arrive_from_thumbnails_and_the_background_scan(qtbot, monkeypatch, make_window, tmp_path):
    monkeypatch.setattr(image_list, "SCAN_DELAY_MS", 60_000)  # thumbnails alone first
    folder = make_folder(tmp_path, 300)
    window = make_window()
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    doc, model = window.session.doc, window.image_panel.model
    qtbot.waitUntil(lambda: len(model.thumbnails._cache) >= 5, timeout=10_000)
    sized_by_thumbnails = {iid for iid in model.thumbnails._cache if doc.has_size(iid)}
    assert sized_by_thumbnails == set(model.thumbnails._cache)
    assert 0 < len(doc.image_ids) - len(doc.missing_sizes()) < 300
    model._start_size_scan()
    qtbot.waitUntil(lambda: not doc.missing_sizes(), timeout=30_000)
    assert all((img.width, img.height) == expected_size(img.file_name) for img in doc.images)
    assert not doc.dirty


def test_saving_before_the_sizes_are_known_reads_them_and_writes_them(qtbot, window, tmp_path):
    folder = make_folder(tmp_path, 200)
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    window.image_panel.model.sizes.stop(2.0)
    window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -10, -10))
    assert window.session.doc.missing_sizes()
    assert window.projects.save(), window.services.errors
    saved = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    assert len(saved["images"]) == 200
    for img in saved["images"]:
        assert list(img)[:4] == ["id", "file_name", "width", "height"]
        assert (img["width"], img["height"]) == expected_size(img["file_name"])
    assert CocoDocument.load(folder / "annotations.json").annotations == window.session.doc.annotations


def test_a_file_that_is_not_an_image_is_listed_but_left_out_of_the_saved_file(qtbot, window, tmp_path):
    folder = make_folder(tmp_path, 4)
    (folder / "day" / "00001.png").unlink()
    (folder / "day" / "00001.png").write_bytes(b"this is not a PNG")
    open_and_wait(qtbot, window, window.projects.open_folder, folder)
    assert window.image_panel.model.rowCount() == 4
    assert window.projects.save()
    saved = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    assert [img["file_name"] for img in saved["images"]] == [
        "day/00000.png",
        "night/00002.png",
        "night/00003.png",
    ]
    warning = window.session.doc.warnings[-1]
    assert warning.path.endswith("00001.png") and "left out of the saved file" in warning.message


def test_an_unreadable_image_with_annotations_refuses_to_save_and_says_which(tmp_path):
    folder = make_folder(tmp_path, 3)
    project = projects.open_folder(folder)
    doc = project.doc
    doc.add(2, doc.add_category("thing").category_id, [1, 1, 5, 5])
    (folder / "night" / "00001.png").unlink()
    target = folder / "annotations.json"
    with pytest.raises(coco_module.CocoSaveError, match=r"00001\.png \(image id 2\) has annotations"):
        doc.save(target)
    assert not target.exists() and doc.dirty


def test_the_listing_skips_hidden_files_and_other_files_and_sorts_by_name(tmp_path):
    folder = tmp_path / "mixed"
    (folder / ".cache").mkdir(parents=True)
    (folder / "b").mkdir()
    for name in ("z.JPG", "a.png", ".hidden.png", "notes.txt", ".cache/x.png", "b/c.webp", "archive.png.bak"):
        (folder / name).write_bytes(b"")
    assert projects.list_image_names(folder) == ["a.png", "b/c.webp", "z.JPG"]
    assert [folder / n for n in projects.list_image_names(folder)] == [
        folder / "a.png",
        folder / "b" / "c.webp",
        folder / "z.JPG",
    ]
