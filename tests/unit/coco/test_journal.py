"""The crash journal: each edit appended, replayed after a crash, damaged journals read as far as they go,
and failures reported."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from detr_studio.data.coco import CocoDocument, RemoveAnnotations

from .helpers import base_data, dumps, write_json

# ----------------------------------------------------------------------------------------------------------------
# Journal


def _journal_lines(path: Path) -> list[str]:
    return path.with_name(path.name + ".journal").read_text(encoding="utf-8").splitlines()


def test_each_edit_is_appended_to_the_journal_and_save_removes_it(coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    doc.remove(11)
    lines = _journal_lines(coco_file)
    assert len(lines) == 3 and json.loads(lines[0])["detr_studio_journal"] == 1
    assert json.loads(lines[2]) == {"op": "remove_annotations", "annotation_ids": [11]}
    doc.save()
    assert not doc.journal_path.exists()


def _crash_after_edits(coco_file: Path) -> str:
    doc = CocoDocument.load(coco_file)
    undo = doc.add(3, 5, [1, 1, 8, 8], source="model", score=0.4)
    doc.update(undo.annotation_ids[0], bbox=[2, 2, 9, 9])
    doc.set_review_state([12], "accepted")
    doc.merge_categories([2], 1)
    doc.apply(doc.remove(10))  # undo of a removal
    doc.rename_category(5, "sparrow")
    return dumps(doc)  # the process dies here without saving


def test_journal_replays_edits_after_a_crash(coco_file: Path) -> None:
    original = coco_file.read_bytes()
    expected = _crash_after_edits(coco_file)
    assert coco_file.read_bytes() == original
    doc = CocoDocument.load(coco_file)
    assert len(doc.pending_journal) == 7 and not doc.dirty
    assert dumps(doc) == dumps(json.loads(original))
    assert doc.replay_journal() == 7
    assert dumps(doc) == expected
    assert doc.dirty and doc.pending_journal == []
    doc.relabel([12], 5)  # journaling goes on after a replay
    expected = dumps(doc)
    again = CocoDocument.load(coco_file)
    again.replay_journal()
    assert dumps(again) == expected
    again.save()
    assert not again.journal_path.exists()
    final = CocoDocument.load(coco_file)
    assert final.pending_journal == [] and dumps(final) == expected


def test_corrupt_last_journal_line_is_ignored_with_a_warning(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    journal = coco_file.with_name("instances.json.journal")
    with open(journal, "a", encoding="utf-8") as f:
        f.write('{"op": "relabel", "annotation_ids": [1')  # the crash hit mid-write
    doc = CocoDocument.load(coco_file)
    assert len(doc.pending_journal) == 7
    warning = doc.warnings[-1]
    assert warning.path == str(journal) and warning.record == "line 9" and "incomplete" in warning.message
    assert doc.replay_journal() == 7
    assert (journal.parent / "instances.json.journal.old").exists()  # the raw journal is kept


def test_unreadable_middle_journal_line_stops_replay_there(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    journal = coco_file.with_name("instances.json.journal")
    lines = journal.read_text().splitlines()
    lines[3] = "garbage"
    journal.write_text("\n".join(lines) + "\n")
    doc = CocoDocument.load(coco_file)
    assert len(doc.pending_journal) == 2
    assert doc.warnings[-1].record == "line 4" and "lines after it are ignored" in doc.warnings[-1].message


def test_journal_of_another_file_version_is_ignored_and_kept_aside(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    data = base_data()
    data["info"]["year"] = 1999  # the file changed behind our back
    write_json(coco_file.parent, data)
    doc = CocoDocument.load(coco_file)
    assert doc.pending_journal == []
    assert "different version" in doc.warnings[-1].message
    doc.relabel([10], 2)
    assert (coco_file.parent / "instances.json.journal.old").exists()
    assert len(_journal_lines(coco_file)) == 2


def test_editing_without_replaying_moves_the_old_journal_aside(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    old_text = coco_file.with_name("instances.json.journal").read_text()
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    assert coco_file.with_name("instances.json.journal.old").read_text() == old_text
    assert doc.pending_journal == [] and len(_journal_lines(coco_file)) == 2


def test_journal_write_failure_keeps_the_edit_and_reports(monkeypatch, coco_file: Path) -> None:
    doc = CocoDocument.load(coco_file)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the journal cannot be created
    doc.relabel([10], 2)
    assert doc.annotation(10).category_id == 2 and doc.dirty
    assert doc.journal_error and "cannot write the journal (no space left on" in doc.journal_error
    assert str(doc.journal_path) in doc.journal_error and "a crash would lose" in doc.journal_error
    assert not doc.journal_path.exists()  # never an empty or headless journal
    assert _leftovers(coco_file.parent) == []
    monkeypatch.undo()
    doc.relabel([10], 1)  # no journal lines after a gap: a replay would apply them to the wrong state
    assert not doc.journal_path.exists()
    doc.save()
    assert doc.journal_error is None
    doc.relabel([10], 2)
    assert len(_journal_lines(coco_file)) == 2


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# The child edits under a file-size limit (RLIMIT_FSIZE), so the disk "fills up" at a chosen byte; it reports
# on stdout, a pipe, which the limit does not touch.
_LIMITED_EDITS = """
import json, resource, signal, sys
from detr_studio.data.coco import CocoDocument
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
doc = CocoDocument.load(sys.argv[1])
if sys.argv[3] == "after first edit":
    doc.relabel([10], 2)
limit = int(sys.argv[2]) if sys.argv[2] != "10 bytes more" else doc.journal_path.stat().st_size + 10
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
doc.relabel([10], 5)
doc.rename_category(5, "a much longer name for the bird category, to cross the limit")
print(json.dumps({"error": doc.journal_error, "category": doc.annotation(10).category_id}))
"""


def _edit_under_a_size_limit(coco_file: Path, limit: str, when: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_EDITS, str(coco_file), limit, when],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_journal_that_cannot_be_created_leaves_no_file_behind(coco_file: Path) -> None:
    report = _edit_under_a_size_limit(coco_file, "20", "at once")
    assert report["category"] == 5  # the edit itself is made
    assert "cannot write the journal (file too large)" in report["error"]
    journal = coco_file.with_name("instances.json.journal")
    assert not journal.exists()  # not an empty journal, not a headless one
    assert _leftovers(coco_file.parent) == []
    doc = CocoDocument.load(coco_file)
    assert doc.warnings == [] and doc.pending_journal == []


def test_an_append_that_fails_leaves_the_journal_a_valid_prefix(coco_file: Path) -> None:
    report = _edit_under_a_size_limit(coco_file, "10 bytes more", "after first edit")  # a part of a line fits
    assert "cannot write the journal" in report["error"]
    doc = CocoDocument.load(coco_file)
    assert doc.warnings == []  # no partial line at the end
    assert [e.to_json() for e in doc.pending_journal] == [
        {"op": "relabel", "annotation_ids": [10], "category_id": 2}
    ]


def test_temporary_files_of_a_killed_save_are_removed_on_the_next_open(coco_file: Path) -> None:
    folder = coco_file.parent
    orphans = [
        ".instances.json.0123456789ab.tmp",
        ".instances.json.0123456789ab.bak.tmp",
        ".instances.json.journal.0123456789ab.tmp",
    ]
    for name in orphans:
        (folder / name).write_text("left by kill -9")
    (folder / ".other.json.0123456789ab.tmp").write_text("not ours")
    (folder / ".instances.json.notours.tmp").write_text("not ours either")
    with CocoDocument.load(coco_file):
        assert _leftovers(folder) == [".instances.json.notours.tmp", ".other.json.0123456789ab.tmp"]


_KILLED_DURING_SAVE = """
import os, signal, sys
from detr_studio.data.coco import CocoDocument
doc = CocoDocument.load(sys.argv[1])
doc.relabel([10], 2)
doc.remove(11)
os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)  # dies between writing and renaming
doc.save()
"""


def test_a_save_killed_midway_keeps_the_file_and_the_edits_and_leaves_no_temporary(coco_file: Path) -> None:
    original = coco_file.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _KILLED_DURING_SAVE, str(coco_file)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert coco_file.read_bytes() == original
    assert _leftovers(coco_file.parent)  # the temporary files the save was writing
    doc = CocoDocument.load(coco_file)
    assert _leftovers(coco_file.parent) == []
    assert doc.replay_journal() == 2
    assert doc.annotation(10).category_id == 2 and [a.id for a in doc.annotations] == [10, 12]


def test_failing_journal_edit_stops_replay_with_warning(coco_file: Path) -> None:
    _crash_after_edits(coco_file)
    data = json.loads(coco_file.read_text())
    doc = CocoDocument.load(coco_file)
    doc.pending_journal.insert(0, RemoveAnnotations([404]))
    assert doc.replay_journal() == 0
    assert "cannot be replayed" in doc.warnings[-1].message
    assert dumps(doc) == dumps(data)


def test_a_journal_in_the_format_written_so_far_replays(coco_file: Path) -> None:
    base = hashlib.sha256(coco_file.read_bytes()).hexdigest()
    lines = [
        {"detr_studio_journal": 1, "base_sha256": base},
        {"op": "update_annotation", "annotation_id": 10, "fields": {"bbox": [0, 0, 5, 5]}, "drop": [], "key_order": None},
        {"op": "update_image", "image_id": 3, "fields": {"file_name": "renamed.jpg"}, "drop": [], "key_order": None},
        {"op": "update_category", "category_id": 2, "fields": {"color": [1, 2, 3]}, "drop": ["supercategory"],
         "key_order": None},
        {"op": "batch", "edits": [{"op": "remove_annotations", "annotation_ids": [11]}], "label": "delete 1 box"},
    ]  # fmt: skip
    coco_file.with_name("instances.json.journal").write_text("".join(json.dumps(x) + "\n" for x in lines))
    doc = CocoDocument.load(coco_file)
    assert [e.to_json() for e in doc.pending_journal] == lines[1:]  # read and written back the same
    assert doc.replay_journal() == 4
    assert doc.annotation(10).bbox == (0, 0, 5, 5) and doc.image(3).file_name == "renamed.jpg"
    assert doc.category(2).color == (1, 2, 3) and doc.category(2).supercategory is None
    assert [a.id for a in doc.annotations] == [10, 12]
