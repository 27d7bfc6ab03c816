"""Edits are never lost without the user knowing: a journal that cannot be written is shown until a save
succeeds, and the title's ``*``, autosave and the question before closing follow the saved state (undo can
bring the document back to its file)."""

from __future__ import annotations

import builtins
import errno
import os

from .helpers import open_and_wait


def _journal_disk_full(monkeypatch) -> None:
    """Every write of a journal file (or its temporary file) fails as on a full disk."""
    real_open = builtins.open

    def full(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and ".journal" in os.fspath(file):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full)


def test_a_journal_that_cannot_be_written_is_shown_until_the_next_save(qtbot, window, dataset, monkeypatch):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    label = window.status.journal_label
    assert not label.isVisibleTo(window)
    _journal_disk_full(monkeypatch)
    window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -40, -40))
    doc = window.session.doc
    assert doc.journal_error and len(doc.annotations_for(window.session.current_image_id)) > 0
    assert label.isVisibleTo(window) and "crash would lose" in label.text()
    assert doc.journal_error in label.toolTip()
    told = [e for e in window.services.errors if "journal" in e]
    assert len(told) == 1 and "Save" in told[0]
    window.editing.add_box(window.canvas.image_bounds().adjusted(20, 20, -10, -10))
    assert label.isVisibleTo(window)  # still shown after the next edit, and not told twice
    assert len([e for e in window.services.errors if "journal" in e]) == 1
    monkeypatch.undo()
    assert window.projects.save()
    assert not label.isVisibleTo(window) and doc.journal_error is None


def test_the_title_star_follows_the_saved_state_through_undo_and_redo(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    assert not window.isWindowModified()
    window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -40, -40))
    assert window.isWindowModified()
    window.editing.undo()
    assert not window.isWindowModified()  # back to what the file holds
    window.editing.redo()
    assert window.isWindowModified()
    assert window.projects.save() and not window.isWindowModified()
    window.editing.undo()
    assert window.isWindowModified()  # the file now holds the box
    window.editing.redo()
    assert not window.isWindowModified()


def test_closing_after_undo_brought_the_document_back_asks_nothing(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    asked: list[str] = []
    window.services.ask = lambda title, text, choices=("Yes", "No"), **_: asked.append(title) or "Cancel"
    window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -40, -40))
    window.editing.undo()
    assert window.projects.may_discard_changes() and asked == []
    window.editing.redo()
    assert not window.projects.may_discard_changes() and asked == ["Unsaved changes"]


def test_each_save_keeps_the_versions_before_it_as_backups(qtbot, window, dataset):
    path = dataset.instances_json("train")
    open_and_wait(qtbot, window, window.projects.open_coco, path)
    versions = [path.read_bytes()]
    for k in range(3):
        window.editing.add_box(window.canvas.image_bounds().adjusted(2 + k, 2, -40, -40))
        assert window.projects.save()
        versions.append(path.read_bytes())
    backups = [path.with_name(path.name + suffix) for suffix in (".bak", ".bak.2", ".bak.3")]
    assert [b.read_bytes() for b in backups] == versions[2::-1]  # the newest backup first
