"""The one JSON reader and the one atomic writer: every bad file gets one line naming it; writes are all or
nothing."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from detr_studio.common import files
from detr_studio.common.files import FileProblem, FileWriteError, atomic_write, read_json, remove_orphans
from detr_studio.common.panoptic_ids import id2rgb, rgb2id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "is empty"),
        (b'{"images": [', "truncated"),
        (b'{"a": 1,}', "line 1, column"),
        (b"\xff\xfe{\x00}\x00", "UTF-16"),
        (b'{"a": "\xe9"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"images": [{"file_name": "\\ud800.jpg"}]}', "images[0].file_name holds an unpaired surrogate"),
        (b"[1, 2]", "must hold a JSON object, got list"),
    ],
)
def test_bad_json_files_are_named_with_their_problem(tmp_path, raw, expected):
    path = tmp_path / "bad.json"
    path.write_bytes(raw)
    with pytest.raises(FileProblem) as info:
        read_json(path, "COCO annotation")
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_file_and_folder_are_told_apart(tmp_path):
    with pytest.raises(FileProblem, match="no such model sidecar file"):
        read_json(tmp_path / "nope.json", "model sidecar")
    with pytest.raises(FileProblem, match="is a folder"):
        read_json(tmp_path, "model sidecar")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"images": []}')
    assert read_json(path, "COCO annotation") == {"images": []}


def test_paired_surrogate_escapes_are_ordinary_characters(tmp_path):
    path = tmp_path / "emoji.json"
    path.write_bytes(b'{"name": "\\ud83d\\ude00"}')
    assert read_json(path, "x") == {"name": "\U0001f600"}


def test_non_finite_constants_are_reported_by_path():
    data, where = files.parse_json(b'{"a": [1, NaN], "b": {"c": Infinity}}', "f.json", "x")
    assert where == ["a[1]", "b.c"]
    assert np.isnan(data["a"][1])


def test_atomic_write_replaces_keeps_backups_and_permissions(tmp_path):
    target = tmp_path / "ann.json"
    atomic_write(target, b"one")
    os.chmod(target, 0o640)
    atomic_write(target, b"two", backups=2)
    atomic_write(target, b"three", backups=2)
    atomic_write(target, b"four", backups=2)
    assert target.read_bytes() == b"four"
    assert (tmp_path / "ann.json.bak").read_bytes() == b"three"
    assert (tmp_path / "ann.json.bak.2").read_bytes() == b"two"
    assert not (tmp_path / "ann.json.bak.3").exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.json", "ann.json.bak", "ann.json.bak.2"]


def test_a_new_file_follows_the_umask_even_through_a_writer(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "w.bin", lambda p: p.write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.bin").stat().st_mode) == 0o644


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "last.pth"
    target.write_bytes(b"good")

    def full_disk(path):
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FileWriteError) as info:
        atomic_write(target, full_disk)
    assert f"no space left on {tmp_path}" in str(info.value)
    assert str(info.value).startswith(str(target))
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_a_writer_that_reports_a_full_disk_as_runtime_error_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda _p: _Usage(0))

    def torch_like(path):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(FileWriteError, match="no space left on"):
        atomic_write(tmp_path / "x.pth", torch_like)
    assert list(tmp_path.iterdir()) == []


class _Usage:
    def __init__(self, free):
        self.free = free


def test_writing_through_a_link_replaces_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.json"
    real.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(link, b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"


def test_remove_orphans_takes_only_our_temporaries(tmp_path):
    target = tmp_path / "ann.json"
    target.write_bytes(b"{}")
    ours = [tmp_path / ".ann.json.0123456789ab.tmp", tmp_path / ".ann.json.abcdefabcdef.bak.tmp"]
    theirs = [tmp_path / ".ann.json.notours.tmp", tmp_path / ".other.json.0123456789ab.tmp"]
    for p in ours + theirs:
        p.write_bytes(b"")
    assert sorted(remove_orphans(target)) == sorted(ours)
    assert all(p.exists() for p in theirs)


def test_panoptic_id_codec_round_trips_every_byte():
    ids = np.array([[0, 1, 255], [256, 65535, 256**3 - 1]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8
    assert rgb[1, 2].tolist() == [255, 255, 255]
    back = rgb2id(rgb)
    assert back.dtype == np.int32
    assert (back == ids).all()
    with pytest.raises(ValueError):
        id2rgb(np.array([[256**3]]))
