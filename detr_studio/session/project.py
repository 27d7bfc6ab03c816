"""What the window has open: a `Project` is a `CocoDocument` plus where it came from and where Save writes.

The three ways in (a folder, some image files, a COCO file) are plain functions that run on a background
thread; they call `CocoDocument.load` / `CocoDocument.from_images` and add nothing but the file listing.
A folder that already holds our ``annotations.json`` reopens that file.

A folder of 100,000 images must open in well under two seconds, so nothing here opens an image: the listing
works on strings (sorting 100,000 `Path` objects alone takes seconds), and image sizes are read lazily (see
`CocoDocument.from_images`). A new folder project journals its edits beside the ``annotations.json`` that
its first save writes, so a crash before that save loses nothing; reopening the folder finds the journal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from detr_studio.data.coco import CocoDocument, ImageInfo
from detr_studio.data.images import IMAGE_SUFFIXES, is_image_file

DEFAULT_ANNOTATIONS = "annotations.json"
FOLDER, IMAGES, COCO = "folder", "images", "coco"


@dataclass
class Project:
    doc: CocoDocument
    kind: str  # FOLDER | IMAGES | COCO
    location: Path  # the folder, the images' common folder, or the JSON file
    default_save: Path | None  # where the first Save writes when the document has no file yet
    images: list[ImageInfo] | None = None  # doc.images when the opener had them (the list does without)

    @property
    def title(self) -> str:
        path = self.doc.path or self.default_save or self.location
        return path.name

    def recent_entry(self) -> str:
        """How the recent-projects list remembers this project (a JSON string)."""
        if self.doc.path is not None:
            root = str(self.doc.image_root) if self.doc.image_root is not None else None
            return json.dumps({"kind": COCO, "path": str(self.doc.path), "image_root": root})
        return json.dumps({"kind": self.kind, "path": str(self.location)})


def list_image_names(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under ``folder`` (sub-folders included, hidden ones skipped) as paths relative to it with
    ``/`` separators, sorted. Strings only: this runs over 100,000 names in a fraction of a second."""
    top = os.fspath(folder)
    found: list[str] = []
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(root, top)
        prefix = "" if rel == os.curdir else rel.replace(os.sep, "/") + "/"
        found.extend(prefix + f for f in files if not f.startswith(".") and is_image_name(f))
    found.sort()
    return found


def is_image_name(name: str) -> bool:
    """`is_image_file` on a plain file name, without making a `Path`."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_SUFFIXES


def open_folder(folder: str | os.PathLike[str]) -> Project:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    saved = folder / DEFAULT_ANNOTATIONS
    if saved.is_file():
        doc = CocoDocument.load(saved, image_root=folder)
        return Project(doc, COCO, saved, None)
    names = list_image_names(folder)
    if not names:
        raise FileNotFoundError(f"{folder}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)})")
    doc = CocoDocument.from_image_names(names, image_root=folder.absolute(), read_sizes=False)
    doc.start_journal(saved)
    return Project(doc, FOLDER, folder, saved)


def open_images(paths: Iterable[str | os.PathLike[str]]) -> Project:
    files = [Path(p) for p in paths if is_image_file(p)]
    if not files:
        raise FileNotFoundError("none of the dropped or chosen files is an image")
    doc = CocoDocument.from_images(files, read_sizes=False)
    root = doc.image_root or files[0].parent
    return Project(doc, IMAGES, root, root / DEFAULT_ANNOTATIONS)


def open_coco(path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None) -> Project:
    """A COCO instances or panoptic file. A panoptic dataset's PNGs are not all read up front (5,000 of them
    would take half a minute): each is checked against its entry when its image is shown or edited."""
    doc = CocoDocument.load(path, image_root=image_root, check_masks=False)
    return Project(doc, COCO, Path(path), None)


def images_found(doc: CocoDocument, root: str | os.PathLike[str] | None = None, sample: int = 8) -> bool:
    """Whether the images of ``doc`` are under ``root`` (default: its image folder): True when one of its
    first ``sample`` images is a file there, or when it has no images. A few file checks, no image read."""
    ids = doc.image_ids[:sample]
    if not ids:
        return True
    if root is None:
        return any(doc.image_path(iid).is_file() for iid in ids)
    return any((Path(root) / doc.image(iid).file_name).is_file() for iid in ids)


def open_recent(entry: str) -> Project:
    data = json.loads(entry)
    kind, path = data.get("kind"), data.get("path")
    if kind == COCO:
        return open_coco(path, data.get("image_root"))
    if kind in (FOLDER, IMAGES):
        return open_folder(path)
    raise ValueError(f"unknown recent project entry: {entry}")


def recent_path(entry: str) -> Path | None:
    """The file or folder a recent-projects entry opens (None when the entry cannot be read)."""
    try:
        path = json.loads(entry).get("path")
    except (ValueError, AttributeError):
        return None
    return Path(path) if isinstance(path, str) and path else None


def recent_label(entry: str) -> str:
    try:
        return str(json.loads(entry).get("path", entry))
    except ValueError:
        return entry
