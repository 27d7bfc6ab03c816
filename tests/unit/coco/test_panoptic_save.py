"""Saving edited panoptic segments: the changed PNGs and the JSON switch as one unit, untouched files stay
byte-identical, a reload gives back what was edited, and a save killed at any instant leaves a consistent
PNG + JSON pair as any other reader sees the files."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detr_studio.common.panoptic_ids import id2rgb, rgb2id
from detr_studio.data.coco import CocoDocument, CocoSaveError
from detr_studio.data.coco.segment_edits import merge_segments_edit, paint_segment_edit, split_segment_edit

from .helpers import write_panoptic


def read_pair(json_path: Path, folder: Path | None = None) -> dict[str, np.ndarray]:
    """What another tool reads: the JSON, and for each entry its PNG's ids (in ``folder``, default the one
    named like the JSON), which must be exactly the listed segments with their areas. -> {png name: ids}."""
    data = json.loads(json_path.read_text())
    folder = folder or json_path.with_suffix("")
    maps = {}
    for entry in data["annotations"]:
        with Image.open(folder / entry["file_name"]) as img:
            ids = rgb2id(np.asarray(img.convert("RGB")))
        listed = {s["id"]: s["area"] for s in entry["segments_info"]}
        present, counts = np.unique(ids, return_counts=True)
        found = {int(i): int(c) for i, c in zip(present, counts) if i != 0}
        assert found == listed, f"{entry['file_name']} does not match its segments_info"
        maps[entry["file_name"]] = ids
    return maps


def png_names(json_path: Path) -> list[str]:
    return sorted(p.name for p in json_path.with_suffix("").iterdir())


def top_row() -> np.ndarray:
    m = np.zeros((6, 8), dtype=bool)
    m[0] = True
    return m


def test_an_edit_saved_and_reloaded_is_what_was_edited_and_untouched_files_stay_as_they_were(tmp_path):
    path = write_panoptic(tmp_path)
    untouched_png = (tmp_path / "panoptic_val" / "two.png").read_bytes()
    before = json.loads(path.read_text())
    doc = CocoDocument.load(path)
    doc.apply(split_segment_edit(doc, 1, 5, top_row())[0])
    edited = doc.id_map(1)
    doc.save()
    after = json.loads(path.read_text())
    assert after["annotations"][0]["file_name"] == "one.ds1.png"
    assert after["annotations"][1] == before["annotations"][1]  # the other entry: not a byte changed
    assert after["annotations"][0]["segments_info"][1:3] == before["annotations"][0]["segments_info"][1:3]
    assert (tmp_path / "panoptic_val" / "two.png").read_bytes() == untouched_png
    assert png_names(path) == ["one.ds1.png", "one.png", "two.png"]  # one.png: the backup names it
    np.testing.assert_array_equal(read_pair(path)["one.ds1.png"], edited)
    np.testing.assert_array_equal(
        read_pair(path.with_name("panoptic_val.json.bak"), tmp_path / "panoptic_val")["one.png"][1:],
        edited[1:],
    )
    doc.close()
    reloaded = CocoDocument.load(path)
    np.testing.assert_array_equal(reloaded.id_map(1), edited)
    assert reloaded.panoptic_record(1) == after["annotations"][0]


def test_revisions_are_removed_once_no_backup_names_them(tmp_path):
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path)
    for step in range(5):
        mask = np.zeros((6, 8), dtype=bool)
        mask[step % 6, : 2 + step] = True
        doc.apply(paint_segment_edit(doc, 1, mask, 300))
        doc.save()
    assert png_names(path) == ["one.ds2.png", "one.ds3.png", "one.ds4.png", "one.ds5.png", "two.png"]
    for n in ("", ".bak", ".bak.2", ".bak.3"):
        read_pair(
            path.with_name(path.name + n), tmp_path / "panoptic_val"
        )  # every backup still opens with its own PNGs


def test_a_failed_save_leaves_the_old_pair_and_the_edits(monkeypatch, tmp_path):
    path = write_panoptic(tmp_path)
    old = path.read_bytes()
    doc = CocoDocument.load(path)
    doc.apply(merge_segments_edit(doc, 1, [5, 300]))
    from detr_studio.data.coco import persistence

    def full_disk(*args, **kwargs):
        raise persistence.FileWriteError(path, "no space left")

    monkeypatch.setattr(persistence, "atomic_write", full_disk)
    with pytest.raises(CocoSaveError):
        doc.save()
    assert path.read_bytes() == old and png_names(path) == ["one.png", "two.png"]
    assert doc.dirty and doc.panoptic_record(1)["file_name"] == "one.png"
    monkeypatch.undo()
    doc.save()
    assert read_pair(path)["one.ds1.png"][0, 0] == 5


def test_what_a_killed_save_left_is_removed_on_the_next_open(tmp_path):
    path = write_panoptic(tmp_path)
    folder = tmp_path / "panoptic_val"
    shutil.copy(folder / "one.png", folder / "one.ds3.png")  # written, never named by a JSON
    (folder / ".one.ds4.png.0123456789ab.tmp").write_bytes(b"half")
    (folder / "notes.png").write_bytes(b"not ours")
    with CocoDocument.load(path):  # no save was under way: nothing is looked for
        assert len(png_names(path)) == 5
    path.with_name(path.name + ".saving").touch()  # a save that did not finish
    with CocoDocument.load(path):
        assert png_names(path) == ["notes.png", "one.png", "two.png"]
        assert not path.with_name(path.name + ".saving").exists()


_SAVER = r"""
import sys
import numpy as np
from detr_studio.data.coco import CocoDocument
from detr_studio.data.coco.segment_edits import paint_segment_edit

doc = CocoDocument.load(sys.argv[1])
print("ready", flush=True)
step = 0
while True:
    step += 1
    for image_id in doc.image_ids:
        mask = np.zeros((48, 64), dtype=bool)
        mask[step % 48, : 1 + step % 64] = True
        doc.apply(paint_segment_edit(doc, image_id, mask, 1 + step % 2))
    doc.save()
"""


def _many_images(folder: Path, count: int) -> Path:
    images, annotations = [], []
    png_folder = folder / "panoptic_val"
    png_folder.mkdir()
    ids = np.ones((48, 64), dtype=np.int64)
    ids[:, 32:] = 2
    for i in range(1, count + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
        segments = [
            {"id": s, "category_id": s, "iscrowd": 0, "bbox": [32 * (s - 1), 0, 32, 48], "area": 1536}
            for s in (1, 2)
        ]
        annotations.append({"image_id": i, "file_name": f"{i}.png", "segments_info": segments})
        Image.fromarray(id2rgb(ids)).save(png_folder / f"{i}.png")
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    path = folder / "panoptic_val.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_a_save_killed_at_random_instants_always_leaves_a_consistent_pair(tmp_path):
    rng = random.Random(15)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    for trial in range(16):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        path = _many_images(folder, 24)
        child = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        maps = read_pair(path)  # never a mix: every PNG the JSON names matches its segments
        assert len(maps) == 24
        with CocoDocument.load(path) as doc:  # reopened: what the killed save left behind is gone
            assert not path.with_name(path.name + ".saving").exists()
            named = {doc.panoptic_record(i)["file_name"] for i in doc.image_ids}
            backups = set()
            for n in (".bak", ".bak.2", ".bak.3"):
                if path.with_name(path.name + n).exists():
                    backups |= set(read_pair(path.with_name(path.name + n), folder / "panoptic_val"))
            assert set(png_names(path)) == named | backups
