"""Two windows on one file: a window that opens a file another DETR Studio process holds is told which
process it is and opens it read-only (editing off, the title says so, Save As writes an editable copy); a
save over a file that changed on disk since it was read offers Reload, Save As… or Overwrite, and autosave
never writes over it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from detr_studio.app.canvas import ANNOTATIONS
from detr_studio.app.opening import CANCEL, OVERWRITE, RELOAD, SAVE_AS
from detr_studio.data.coco import CocoDocument

from .helpers import open_and_wait

pytestmark = pytest.mark.timeout(120)  # the other process never hangs the run

# Another DETR Studio process with the file open for editing: it says "open <pid>" and waits for "quit".
_OTHER_PROCESS = """
import os, sys
from detr_studio.data.coco import CocoDocument
doc = CocoDocument.load(sys.argv[1])
print("open", os.getpid(), doc.read_only, flush=True)
sys.stdin.readline()
doc.close()
"""


@pytest.fixture
def other_process(dataset):
    """A second process holding the train split's COCO file; -> its pid."""
    proc = subprocess.Popen([sys.executable, "-c", _OTHER_PROCESS, str(dataset.instances_json("train"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    line = proc.stdout.readline().split()
    assert line[:1] == ["open"] and line[2] == "False", proc.stderr.read()
    yield int(line[1])
    proc.communicate("quit\n", timeout=30)


def test_a_file_another_process_has_open_opens_read_only_and_says_which(
    qtbot, window, dataset, other_process, tmp_path, monkeypatch
):
    coco = dataset.instances_json("train")
    open_and_wait(qtbot, window, window.projects.open_coco, coco)
    doc = window.session.doc
    assert doc.read_only and f"pid {other_process}" in doc.read_only_reason
    assert any(f"pid {other_process}" in e and "Editing is off" in e for e in window.services.errors)
    assert "(read-only)" in window.windowTitle()
    actions = window.actions_by_name
    assert not actions["draw"].isEnabled() and not actions["mark_reviewed"].isEnabled()
    assert not window.session.editable
    before = len(doc.annotations)
    assert window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -20, -20)) is None
    window.canvas.select(ANNOTATIONS, [window.canvas.boxes(ANNOTATIONS)[0].key])
    assert not actions["delete"].isEnabled()
    window.editing.delete_selected()
    assert (
        len(doc.annotations) == before and not doc.dirty and doc.journal_path is None
    )  # no journal of its own

    copy = tmp_path / "copy.json"
    monkeypatch.setattr(window.projects, "save_as_dialog", lambda: window.projects.save_as(copy))
    assert window.projects.save()  # Save writes a copy: the file the other process has is not touched
    assert copy.is_file() and not doc.read_only and window.session.editable
    assert "(read-only)" not in window.windowTitle() and actions["draw"].isEnabled()


def _changed_by_another_program(path) -> None:
    data = json.loads(path.read_text())
    data["categories"][0]["name"] = "renamed elsewhere"
    path.write_text(json.dumps(data))


@pytest.fixture
def edited_then_changed(qtbot, window, dataset):
    """The train split opened, one box drawn, then its file rewritten by another program."""
    coco = dataset.instances_json("train")
    open_and_wait(qtbot, window, window.projects.open_coco, coco)
    window.editing.add_box(window.canvas.image_bounds().adjusted(2, 2, -20, -20))
    count = len(window.session.doc.annotations)
    _changed_by_another_program(coco)
    return coco, count


def _answer(window, choice: str) -> list[tuple]:
    asked: list[tuple] = []

    def ask(title, text, choices=("Yes", "No"), default=None):
        asked.append((title, text, tuple(choices), default))
        return choice

    window.services.ask = ask
    return asked


def test_saving_over_a_changed_file_asks_and_overwrite_writes_this_version(window, edited_then_changed):
    coco, count = edited_then_changed
    asked = _answer(window, OVERWRITE)
    assert window.projects.save()
    _title, text, choices, default = asked[0]
    assert choices == (RELOAD, SAVE_AS, OVERWRITE, CANCEL) and default == SAVE_AS and str(coco) in text
    on_disk = CocoDocument.load(coco, lock=False)
    assert len(on_disk.annotations) == count and on_disk.categories[0].name != "renamed elsewhere"


def test_reload_takes_the_file_as_it_is_on_disk(window, edited_then_changed):
    _coco, count = edited_then_changed
    _answer(window, RELOAD)
    assert window.projects.save()
    doc = window.session.doc
    assert doc.categories[0].name == "renamed elsewhere" and len(doc.annotations) == count - 1
    assert not doc.dirty and not window.isWindowModified() and not doc.read_only


def test_save_as_keeps_both_versions(window, edited_then_changed, tmp_path, monkeypatch):
    coco, count = edited_then_changed
    copy = tmp_path / "mine.json"
    monkeypatch.setattr(window.projects, "save_as_dialog", lambda: window.projects.save_as(copy))
    _answer(window, SAVE_AS)
    assert window.projects.save()
    assert len(CocoDocument.load(copy, lock=False).annotations) == count
    assert CocoDocument.load(coco, lock=False).categories[0].name == "renamed elsewhere"


def test_cancel_and_autosave_leave_the_changed_file_alone(window, edited_then_changed):
    coco, _count = edited_then_changed
    theirs = coco.read_bytes()
    _answer(window, CANCEL)
    assert not window.projects.save() and window.session.doc.dirty
    window.projects.autosave = True
    window.projects.autosave_now()
    assert coco.read_bytes() == theirs and "changed on disk" in window.status.message.text()
