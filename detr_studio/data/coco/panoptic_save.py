"""Saving a panoptic document: the changed PNGs and the JSON as one atomic unit.

A panoptic dataset is a JSON file plus one PNG per image, and any reader (pycocotools, panopticapi, our own
``train`` and ``eval``) pairs them by the ``file_name`` of each entry. Two files cannot be replaced in one
step, so we never replace a PNG: the changed id maps are written under *new* names, and the JSON, which
names them, is the one file that switches.

1. Each changed map is written as ``<name>.ds<N>.png`` (the next free revision; ``x.png`` -> ``x.ds1.png``
   -> ``x.ds2.png``), through `common.files.atomic_write` (temporary file, fsync, rename, fsync of the
   folder). The JSON on disk still names the old PNGs, which nothing has touched.
2. The JSON naming the new PNGs replaces the old one atomically (the same save as instance documents:
   ``os.replace`` after fsync, the old JSON kept as ``.bak``).
3. PNG revisions that neither the JSON nor any of its backups (``.bak``, ``.bak.2``, ``.bak.3``) names are
   removed: those of earlier saves, and the original of a file once revised.

A crash (``kill -9``, power loss) at any instant leaves a consistent pair: before step 2 the old JSON with
the old PNGs (the new ones are not named by anything), after it the new JSON with new PNGs that were
durable before it was written. What a crash leaves behind (new PNGs never named, temporary files, PNGs
step 3 did not reach) is removed by `remove_unreferenced` when the document is next opened for editing:
a save marks itself with ``<file>.saving`` (`save_marker`) from before step 1 to after step 3, so an open
looks through the PNG folder only after a save that did not finish.
Backups stay usable: a PNG a backup names is kept until that backup is rotated out. PNGs of images that
were not edited, and their entries in the JSON, stay byte-identical.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from detr_studio.common.files import FileWriteError, atomic_write, backup_path
from detr_studio.common.panoptic_ids import id2rgb

from .index import CocoIndex
from .paths import resolve_inside
from .persistence import BACKUPS
from .problems import CocoSaveError
from .validate import PNG_FOLDER

_REVISION = re.compile(r"(?P<base>.+?)\.ds(?P<n>[0-9]+)\.png")
_TEMPORARY = re.compile(r"\..+\.ds[0-9]+\.png\.[0-9a-f]{12}\.tmp")


def save_marker(json_path: Path) -> Path:
    """The file that says a save of ``json_path``'s PNGs is under way (or was interrupted)."""
    return json_path.with_name(json_path.name + ".saving")


@dataclass(frozen=True)
class PngWrite:
    """One changed map written for a save: its entry's image, the name it had and the name it has now."""

    image_id: int
    old_name: str
    new_name: str


def revision_name(name: str, root: Path) -> str:
    """The next free revision name of a PNG name (``x.png`` -> ``x.ds1.png``, ``x.ds4.png`` -> ``x.ds5.png``)."""
    match = _REVISION.fullmatch(name)
    base, n = (match["base"], int(match["n"])) if match else (name.removesuffix(".png"), 0)
    while True:
        n += 1
        candidate = f"{base}.ds{n}.png"
        if not resolve_inside(root, candidate, PNG_FOLDER).exists():
            return candidate


def png_bytes(ids) -> bytes:
    """The PNG of an [H, W] id map (id = R + 256 G + 256² B)."""
    with io.BytesIO() as buffer:
        Image.fromarray(id2rgb(ids)).save(buffer, format="PNG")
        return buffer.getvalue()


def write_changed(index: CocoIndex, root: Path) -> list[PngWrite]:
    """Step 1: write every changed map under a new name; `CocoSaveError` (nothing left behind) on failure."""
    writes: list[PngWrite] = []
    try:
        for image_id in sorted(index.id_maps.changed):
            entry = index.panoptic.get(image_id)
            if entry is None:
                continue
            old = entry["file_name"]
            new = revision_name(old, root)
            atomic_write(resolve_inside(root, new, PNG_FOLDER), png_bytes(index.id_maps.maps[image_id]))
            writes.append(PngWrite(image_id, old, new))
    except (FileWriteError, OSError) as exc:
        discard(writes, root)
        raise CocoSaveError(f"{root}: cannot write the panoptic PNGs ({exc})") from exc
    return writes


def name_entries(index: CocoIndex, writes: list[PngWrite], *, new: bool) -> None:
    """Point each written entry at its new PNG (``new``) or back at its old one."""
    for w in writes:
        index.panoptic[w.image_id]["file_name"] = w.new_name if new else w.old_name


def discard(writes: list[PngWrite], root: Path) -> None:
    """Remove PNGs written for a save that did not happen."""
    for w in writes:
        with contextlib.suppress(OSError):
            resolve_inside(root, w.new_name, PNG_FOLDER).unlink()


def _names_in(path: Path) -> set[str] | None:
    """The PNG names a panoptic JSON file names; None when it cannot be read."""
    try:
        data = json.loads(path.read_bytes())
        return {a["file_name"] for a in data["annotations"] if isinstance(a, dict) and "file_name" in a}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def referenced(index: CocoIndex, json_path: Path | None) -> set[str] | None:
    """The PNG names the document and the backups of its file name; None when a backup that exists cannot
    be read (then nothing may be removed)."""
    names = {entry["file_name"] for entry in index.panoptic.values()}
    if json_path is None:
        return names
    for n in range(1, BACKUPS + 1):
        backup = backup_path(json_path, n)
        if backup.exists():
            found = _names_in(backup)
            if found is None:
                return None
            names |= found
    return names


def remove_unreferenced(root: Path, keep: set[str] | None) -> list[Path]:
    """Step 3, and the clean-up on open: remove PNG revisions (and the originals they replaced) that no name
    in ``keep`` refers to, and temporary files of interrupted writes. Returns what was removed."""
    removed: list[Path] = []
    if keep is None or not root.is_dir():
        return removed
    candidates: set[str] = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if _TEMPORARY.fullmatch(path.name):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
            continue
        match = _REVISION.fullmatch(relative)
        if match:
            candidates.add(relative)
            candidates.add(f"{match['base']}.png")
    for name in sorted(candidates - keep):
        path = root / PurePosixPath(name)
        if path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
