"""The training snapshot of a panoptic document: the chosen images' entries as COCO panoptic JSON files and
their PNGs in one folder of the run, as the trainer reads them (``--panoptic --panoptic-masks <folder>``).

The PNGs of images the user did not edit are linked (a hard link where the file system allows, else a
copy), so a snapshot of a large dataset costs little; the id maps edited since the last save are written
from memory, so the run trains on what the window shows, saved or not.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..common.files import atomic_write
from ..data.coco import CocoDocument
from ..data.coco.panoptic_save import png_bytes

PNG_FOLDER = "panoptic"


def annotated_panoptic_images(doc: CocoDocument) -> list[int]:
    """Images whose panoptic entry has segments, in document order."""
    return [iid for iid in doc.image_ids if (doc.panoptic_record(iid) or {}).get("segments_info")]


def write_panoptic_files(
    doc: CocoDocument, run_dir: Path, parts: dict[str, list[int]]
) -> tuple[dict[str, Path], Path]:
    """({part name: its JSON}, the PNG folder) for ``parts`` ({"train": ids, "val": ids}) of ``doc``."""
    folder = run_dir / PNG_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    data = doc.to_json()
    images = {int(img["id"]): img for img in data["images"]}
    entries = {int(a["image_id"]): a for a in data["annotations"]}
    written: dict[str, Path] = {}
    for name, ids in parts.items():
        if not ids:
            continue
        chosen = [i for i in ids if i in entries]
        for iid in chosen:
            _place_png(doc, iid, folder / entries[iid]["file_name"])
        part = {
            "info": {"description": f"DETR Studio training snapshot ({name})", "source": str(doc.path or "")},
            "images": [images[i] for i in ids],
            "annotations": [entries[i] for i in chosen],
            "categories": data["categories"],
        }
        path = run_dir / f"{name}.json"
        atomic_write(path, json.dumps(part).encode("utf-8"))
        written[name] = path
    return written, folder


def _place_png(doc: CocoDocument, image_id: int, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if doc.is_edited_map(image_id) or doc.panoptic_png(image_id) is None:
        atomic_write(target, png_bytes(doc.id_map(image_id)))
        return
    source = doc.panoptic_png(image_id)
    assert source is not None
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
