"""Saving: atomic replacement, backups, permissions, links, and failures that keep the old file and the
dirty state."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from detr_studio.data.coco import CocoDocument, CocoSaveError

from .helpers import base_data, write_json

# ----------------------------------------------------------------------------------------------------------------
# Saving


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_save_replaces_atomically_and_keeps_previous_version_as_bak(coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    doc.save()
    bak = coco_file.with_name("instances.json.bak")
    assert bak.read_bytes() == original
    assert json.loads(coco_file.read_text())["annotations"][0]["category_id"] == 2
    first_save = coco_file.read_bytes()
    doc.relabel([10], 5)
    doc.save()
    assert bak.read_bytes() == first_save
    assert _leftovers(coco_file.parent) == []


def test_save_as_writes_new_file_and_leaves_original(tmp_path: Path, coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.remove(11)
    target = tmp_path / "out" / "edited.json"
    target.parent.mkdir()
    assert doc.save(target) == target
    assert doc.path == target and not doc.dirty
    assert coco_file.read_bytes() == original
    assert not target.with_name("edited.json.bak").exists()
    assert [a["id"] for a in json.loads(target.read_text())["annotations"]] == [10, 12]


def test_save_through_a_symlink_replaces_the_linked_file(tmp_path: Path, coco_file: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(coco_file)
    doc = CocoDocument.load(link)
    doc.relabel([10], 2)
    doc.save()
    assert link.is_symlink()
    assert json.loads(coco_file.read_text())["annotations"][0]["category_id"] == 2


def test_save_keeps_file_permissions(coco_file: Path) -> None:
    os.chmod(coco_file, 0o640)
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)
    doc.save()
    assert stat.S_IMODE(coco_file.stat().st_mode) == 0o640


def test_failed_replace_raises_save_error_and_keeps_old_file_and_dirty(monkeypatch, coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.relabel([10], 2)

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CocoSaveError) as info:
        doc.save()
    assert str(coco_file) in str(info.value) and "permission denied" in str(info.value)
    assert isinstance(info.value, OSError)
    monkeypatch.undo()
    assert coco_file.read_bytes() == original
    assert doc.dirty
    assert _leftovers(coco_file.parent) == []
    doc.save()  # works again once the cause is gone
    assert not doc.dirty


def test_disk_full_during_save_keeps_old_file(monkeypatch, coco_file: Path) -> None:
    original = coco_file.read_bytes()
    doc = CocoDocument.load(coco_file)
    doc.remove(10)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CocoSaveError, match="no space left on"):
        doc.save()
    monkeypatch.undo()
    assert coco_file.read_bytes() == original
    assert doc.dirty and _leftovers(coco_file.parent) == []


def test_read_only_folder_keeps_old_file_and_dirty_state(monkeypatch, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = write_json(folder, base_data())
    original = path.read_bytes()
    doc = CocoDocument.load(path)
    doc.relabel([10], 2)
    os.chmod(folder, 0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            writable = (
                True  # running as root: chmod does not stop us, so fail the way a read-only folder would
            )
        except OSError:
            writable = False
        if writable:

            def refuse(src, dst):
                raise PermissionError(errno.EACCES, "Permission denied", str(dst))

            monkeypatch.setattr(os, "replace", refuse)
        with pytest.raises(CocoSaveError, match=r"instances\.json.*permission denied"):
            doc.save()
    finally:
        monkeypatch.undo()
        os.chmod(folder, 0o755)
    assert path.read_bytes() == original
    assert doc.dirty
    assert _leftovers(folder) == []


def test_new_document_needs_a_name_to_save(tmp_path: Path) -> None:
    doc = CocoDocument.new(["a"])
    with pytest.raises(CocoSaveError, match="give save"):
        doc.save()
    doc.save(tmp_path / "new.json")
    assert CocoDocument.load(tmp_path / "new.json").categories[0].name == "a"


def test_the_three_previous_versions_are_kept_as_backups(coco_file: Path) -> None:
    versions = [coco_file.read_bytes()]
    doc = CocoDocument.load(coco_file)
    for category in (2, 5, 1, 2):
        doc.relabel([10], category)
        doc.save()
        versions.append(coco_file.read_bytes())
    assert coco_file.read_bytes() == versions[4]
    assert coco_file.with_name("instances.json.bak").read_bytes() == versions[3]
    assert coco_file.with_name("instances.json.bak.2").read_bytes() == versions[2]
    assert coco_file.with_name("instances.json.bak.3").read_bytes() == versions[1]
    assert not coco_file.with_name("instances.json.bak.4").exists()
    assert _leftovers(coco_file.parent) == []
