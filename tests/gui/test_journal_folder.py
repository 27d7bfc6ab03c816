"""A folder of images (no COCO file yet) never loses work either: its edits are journaled beside the
``annotations.json`` that the first save writes, a crash before that save is recovered when the folder is
opened again, and the journal goes away with the save."""

from __future__ import annotations

import shutil

from detr_studio.data.coco import CocoDocument
from detr_studio.session import project as projects

from .helpers import open_and_wait


def annotation_table(doc: CocoDocument) -> list[tuple]:
    return [(a.id, a.image_id, a.category_id, a.bbox, a.source, a.review) for a in doc.annotations]


def snapshot(doc: CocoDocument) -> tuple:
    return (
        annotation_table(doc),
        [(c.id, c.name, c.color) for c in doc.categories],
        [img.id for img in doc.images if img.reviewed],
    )


def crash_after_edits(qtbot, make_window, folder) -> tuple:
    """Open ``folder``, edit, and drop the window as a crash would (nothing saved, nothing asked)."""
    crashed = make_window()
    open_and_wait(qtbot, crashed, crashed.projects.open_folder, folder)
    assert crashed.session.project.kind == projects.FOLDER
    bounds = crashed.canvas.image_bounds()
    crashed.editing.add_box(bounds.adjusted(2, 2, -40, -40))
    second = crashed.editing.add_box(bounds.adjusted(30, 30, -5, -5))
    crashed.editing.toggle_reviewed()
    crashed.navigation.next_image()
    crashed.editing.add_box(crashed.canvas.image_bounds().adjusted(4, 4, -20, -20))
    manager = crashed.editing.manage_classes()
    manager.rename_class(crashed.session.doc.categories[0].id, "blob")
    manager.add_class("spare", colour=(1, 2, 3))
    crashed.navigation.select_image(crashed.session.doc.image_ids[0])
    crashed.canvas.select("annotations", [second])
    crashed.editing.delete_selected()
    assert not (folder / "annotations.json").exists()
    assert (folder / "annotations.json.journal").is_file()
    state = snapshot(crashed.session.doc)
    crashed.session.set_project(None)  # the process dies: nothing saved, nothing asked
    return state


def test_folder_edits_made_before_a_crash_come_back_from_the_journal(qtbot, make_window, dataset, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(dataset.images_dir("train"), folder)
    state = crash_after_edits(qtbot, make_window, folder)
    asked: list[str] = []

    survivor = make_window()
    survivor.services.ask = lambda title, text, choices=("Yes", "No"): asked.append(text) or "Recover"
    open_and_wait(qtbot, survivor, survivor.projects.open_folder, folder)
    assert "edits to" in asked[0] and str(folder) in asked[0]
    assert (
        snapshot(survivor.session.doc) == state and survivor.session.doc.dirty and survivor.isWindowModified()
    )
    assert [c.name for c in survivor.session.doc.categories] == ["blob", "spare"]
    assert [item.label.text for item in survivor.canvas.boxes("annotations")] == ["blob"]

    assert survivor.projects.save()
    assert not (folder / "annotations.json.journal").exists()
    reopened = CocoDocument.load(folder / "annotations.json")
    assert snapshot(reopened) == state and not reopened.pending_journal


def test_discarding_a_folder_journal_keeps_it_aside_and_starts_clean(qtbot, make_window, dataset, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(dataset.images_dir("train"), folder)
    crash_after_edits(qtbot, make_window, folder)
    survivor = make_window()
    survivor.answer = "Discard"
    open_and_wait(qtbot, survivor, survivor.projects.open_folder, folder)
    assert survivor.session.doc.annotations == [] and not survivor.session.doc.dirty
    assert (folder / "annotations.json.journal.old").is_file()
    assert not (folder / "annotations.json.journal").exists()


def test_a_journal_for_a_different_set_of_images_is_not_replayed(qtbot, make_window, dataset, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(dataset.images_dir("train"), folder)
    crash_after_edits(qtbot, make_window, folder)
    shutil.copyfile(folder / "000001.jpg", folder / "000000.jpg")  # the ids of every image shift
    survivor = make_window()
    survivor.services.ask = lambda *args: "Recover"
    open_and_wait(qtbot, survivor, survivor.projects.open_folder, folder)
    assert survivor.session.doc.annotations == [] and not survivor.session.doc.pending_journal
    assert any("different version" in p.message for p in survivor.session.doc.warnings)
    survivor.editing.add_box(survivor.canvas.image_bounds().adjusted(1, 1, -9, -9))
    assert (folder / "annotations.json.journal.old").is_file()  # the old journal is kept, not lost


def test_start_journal_ties_the_journal_to_the_listing(tmp_path):
    names = ["a.png", "b.png"]
    doc = CocoDocument.from_image_names(names, image_root=tmp_path, read_sizes=False)
    doc.start_journal(tmp_path / "annotations.json")
    assert doc.journal_path == tmp_path / "annotations.json.journal"
    doc.add_category("thing")
    doc.add(2, 1, [1, 1, 4, 4])
    same = CocoDocument.from_image_names(names, image_root=tmp_path, read_sizes=False)
    same.start_journal(tmp_path / "annotations.json")
    assert len(same.pending_journal) == 2 and same.replay_journal() == 2
    assert annotation_table(same) == annotation_table(doc)
    other = CocoDocument.from_image_names(["a.png"], image_root=tmp_path, read_sizes=False)
    other.start_journal(tmp_path / "annotations.json")
    assert other.pending_journal == [] and "different version" in other.warnings[-1].message
