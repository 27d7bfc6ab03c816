"""Two windows on one file: a lock per open document (a second process opens read-only and is told which
window has the file), each window's journal its own, and saving refused when the file changed on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detr_studio.data.coco import CocoConflictError, CocoDocument, CocoReadOnlyError

from .helpers import base_data, write_json

pytestmark = pytest.mark.timeout(120)  # a window process that hangs fails the test instead of the run

# A second DETR Studio process: opens the file, edits it (journaled), says "open <pid> <read_only>" and then
# does what the test writes on its stdin, one command a line.
_OTHER_WINDOW = """
import json, os, sys
from detr_studio.data.coco import CocoDocument
doc = CocoDocument.load(sys.argv[1])
doc.relabel([10], 5)
print("open", os.getpid(), doc.read_only, flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "save":
        doc.save()
    elif command == "close":
        doc.close()
    elif command == "quit":
        break
    print("done", command, flush=True)
"""


class OtherWindow:
    """Another process with the document open (see ``_OTHER_WINDOW``)."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OTHER_WINDOW, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        word, pid, read_only = self._reply().split()
        assert word == "open", word
        self.pid = int(pid)
        self.read_only = read_only == "True"

    def _reply(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the other window ended: {self.proc.stderr.read()}")
        return line

    def do(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self._reply().split() == ["done", command]

    def quit(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


@pytest.fixture
def other_window(coco_file: Path):
    window = OtherWindow(coco_file)
    yield window
    window.quit()


def test_a_second_process_opens_the_file_read_only_and_is_told_which_window_has_it(
    coco_file: Path, other_window: OtherWindow
) -> None:
    assert not other_window.read_only
    doc = CocoDocument.load(coco_file)
    assert doc.read_only
    assert doc.read_only_reason == (
        f"{coco_file}: open in another DETR Studio window (pid {other_window.pid}); opened read-only: save under"
        " another name to keep your edits"
    )
    assert any("open in another DETR Studio window" in w.message for w in doc.warnings)
    doc.relabel([11], 1)  # edits are allowed in memory ...
    assert doc.journal_path is None and doc.journal_error is None  # ... but journaled only by the holder
    before = coco_file.read_bytes()
    with pytest.raises(
        CocoReadOnlyError, match=f"{coco_file}: cannot save: open in another DETR Studio window"
    ):
        doc.save()
    assert coco_file.read_bytes() == before and doc.dirty
    copy = doc.save(coco_file.with_name("mine.json"))  # save-as works, and the copy is this window's
    assert not doc.read_only and doc.path == copy and not doc.dirty
    assert json.loads(copy.read_text())["annotations"][1]["category_id"] == 1


def test_each_window_journals_only_its_own_edits(coco_file: Path, other_window: OtherWindow) -> None:
    doc = CocoDocument.load(coco_file)
    doc.remove(12)
    lines = coco_file.with_name("instances.json.journal").read_text().splitlines()
    assert [json.loads(line) for line in lines[1:]] == [
        {"op": "relabel", "annotation_ids": [10], "category_id": 5}
    ]
    assert doc.pending_journal == []  # the other window's journal is not offered for replay here


def test_the_lock_is_let_go_on_close_and_reload_then_opens_for_editing(
    coco_file: Path, other_window: OtherWindow
) -> None:
    doc = CocoDocument.load(coco_file)
    assert doc.read_only
    other_window.do("save")
    other_window.do("close")
    assert doc.changed_on_disk()
    fresh = doc.reload()
    assert not fresh.read_only and fresh.annotation(10).category_id == 5  # the other window's saved edit
    assert doc.read_only  # the old document is closed
    third = OtherWindow(coco_file)  # a further window now finds this one holding the file
    try:
        assert third.read_only
    finally:
        third.quit()
    fresh.close()


def test_a_window_that_ends_without_closing_lets_go_of_the_file(coco_file: Path) -> None:
    window = OtherWindow(coco_file)
    window.proc.kill()
    window.proc.wait(timeout=60)
    with CocoDocument.load(coco_file) as doc:
        assert not doc.read_only


def test_one_process_may_open_a_file_twice(coco_file: Path) -> None:
    first = CocoDocument.load(coco_file)
    second = CocoDocument.load(coco_file)
    assert not first.read_only and not second.read_only
    first.close()
    assert not second.read_only
    window = OtherWindow(coco_file)
    try:
        assert window.read_only  # the second document still holds the file
    finally:
        window.quit()


def test_reading_for_training_takes_no_lock_and_never_saves_over_the_file(coco_file: Path) -> None:
    with CocoDocument.load(coco_file) as editing:
        reading = CocoDocument.load(coco_file, lock=False)
        assert not editing.read_only
        assert reading.read_only and reading.read_only_reason == f"{coco_file}: opened for reading only"
        assert reading.journal_path is None
        with pytest.raises(CocoReadOnlyError, match="opened for reading only"):
            reading.save()


# ---------------------------------------------------------------- the file changed on disk


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_saving_over_a_file_changed_on_disk_is_refused_unless_asked(coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    assert not doc.changed_on_disk()
    _rewrite(coco_file, lambda d: d["annotations"][1].update(category_id=5))  # another program wrote it
    assert doc.changed_on_disk()
    theirs = coco_file.read_bytes()
    with pytest.raises(CocoConflictError, match=f"{coco_file}: the file changed on disk since it was opened"):
        doc.save()
    assert coco_file.read_bytes() == theirs and doc.dirty
    doc.save(overwrite=True)
    assert not doc.changed_on_disk() and not doc.dirty
    assert json.loads(coco_file.read_text())["annotations"][1]["category_id"] == 2


def test_a_file_only_touched_or_replaced_by_the_same_content_has_not_changed(coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file)
    stat = coco_file.stat()
    os.utime(coco_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert not doc.changed_on_disk()
    coco_file.write_bytes(coco_file.read_bytes())
    assert not doc.changed_on_disk()
    doc.relabel([10], 2)
    doc.save()  # no conflict


def test_a_deleted_file_and_one_created_where_a_first_save_goes_count_as_changed(tmp_path: Path) -> None:
    path = write_json(tmp_path, base_data())
    doc = CocoDocument.load(path)
    path.unlink()
    assert doc.changed_on_disk()
    folder_doc = CocoDocument.new(["a"])
    target = tmp_path / "annotations.json"
    folder_doc.start_journal(target)
    assert not folder_doc.changed_on_disk()
    target.write_text(json.dumps(base_data()))  # another window saved the same folder first
    assert folder_doc.changed_on_disk()
    with pytest.raises(CocoConflictError):
        folder_doc.save()
    folder_doc.save(overwrite=True)
