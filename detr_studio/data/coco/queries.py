"""Read access to a COCO document: typed views of its records, lookups, image sizes read lazily, and the
JSON it would save. `CocoDocument` (in `document`) adds making, editing and saving documents to these.

Image sizes read lazily: a document listing image files without opening them (``from_images(...,
read_sizes=False)``; a header read costs ~0.15 ms, 15 s for 100,000 images) has records without
``width``/``height``, and `ImageInfo` reports 0 x 0 until the size is known. `image_size` reads one header
on demand, `set_image_sizes` takes sizes from whoever decoded the images, and saving reads the rest first,
so files on disk always carry sizes; an image whose header cannot be read then is left out, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from detr_studio.data.images import ImageReadError, image_size

from .index import CocoIndex
from .panoptic import checked_id_map
from .paths import resolve_inside
from .problems import CocoEditError, Problem
from .records import (
    OUR_KEY,
    Annotation,
    Category,
    ImageInfo,
    Segment,
    annotation_info,
    category_info,
    is_rejected,
    segment_info,
)
from .validate import PNG_FOLDER
from .values import is_int


class CocoQueries:
    """What can be read from a document (see the module docstring)."""

    _index: CocoIndex
    _unreadable: set[int]  # lazily sized images whose header could not be read
    image_root: Path | None
    panoptic_root: Path | None
    warnings: list[Problem]

    # ---- image sizes read lazily -------------------------------------------------------------------------

    def has_size(self, image_id: int) -> bool:
        """Whether the image's width and height are known (always, unless made with ``read_sizes=False``)."""
        self._index.image_record(image_id)
        return self._index.sizes.get(image_id) is not None

    def missing_sizes(self) -> list[tuple[int, str]]:
        """(image id, file_name) of the images whose size has not been read yet, in document order."""
        index = self._index
        return [(iid, index.images[iid]["file_name"]) for iid, size in index.sizes.items() if size is None]

    def image_size(self, image_id: int) -> tuple[int, int]:
        """(width, height) of an image, read from its header (and kept) when not known yet. Raises
        `ImageReadError` naming the file when the header cannot be read."""
        size = self._index.sizes.get(image_id)
        if size is None:
            self._index.image_record(image_id)
            size = image_size(self.image_path(image_id))
            self.set_image_sizes({image_id: size})
        return size

    def set_image_sizes(self, sizes: dict[int, tuple[int, int]]) -> None:
        """Record sizes found by whoever decoded the images (after EXIF orientation). Only images without a
        size take one; unknown ids and sizes that are not two positive integers are ignored. This is not an
        edit: the size belongs to the file, so nothing becomes dirty or journaled."""
        index = self._index
        for iid, size in sizes.items():
            rec = index.images.get(iid)
            if rec is None or index.sizes.get(iid) is not None:
                continue
            width, height = size
            if not (is_int(width) and is_int(height) and width > 0 and height > 0):
                continue
            ordered = {
                "id": rec["id"],
                "file_name": rec["file_name"],
                "width": int(width),
                "height": int(height),
            }
            ordered.update((k, v) for k, v in rec.items() if k not in ordered)
            index.replace_image(iid, ordered)
            self._unreadable.discard(iid)

    def read_missing_sizes(self) -> list[Problem]:
        """Read the header of every image whose size is not known yet; returns the files that failed (each
        also added to ``warnings`` once). Such images are left out of what `save` writes."""
        problems = []
        for iid, _name in self.missing_sizes():
            path = self.image_path(iid)
            try:
                self.set_image_sizes({iid: image_size(path)})
            except ImageReadError as exc:
                problem = Problem(str(path), f"image id {iid}", str(exc).removeprefix(f"{path}: "))
                problems.append(problem)
                if iid not in self._unreadable:
                    self._unreadable.add(iid)
                    message = f"{problem.message}; left out of the saved file"
                    self.warnings.append(Problem(problem.path, problem.record, message))
        return problems

    def _output(self) -> dict[str, Any]:
        """What `save` writes: the document, after reading missing image sizes; images whose header cannot
        be read are left out (refused when they have annotations: that would lose them)."""
        self.read_missing_sizes()
        index = self._index
        unsized = {iid for iid, _name in self.missing_sizes()}
        if not unsized:
            return index.data
        labelled = sorted(iid for iid in unsized if index.anns_by_image.get(iid) or iid in index.panoptic)
        if labelled:
            raise CocoEditError(
                f"{self.image_path(labelled[0])} (image id {labelled[0]}) has annotations but its size cannot be"
                " read from the file"
            )
        out = dict(index.data)
        out["images"] = [img for img in index.data["images"] if img["id"] not in unsized]
        return out

    # ---- read access -------------------------------------------------------------------------------------

    @property
    def index(self) -> CocoIndex:
        """The records and their tables. Read them; change them only through `apply`."""
        return self._index

    @property
    def is_panoptic(self) -> bool:
        return self._index.is_panoptic

    @property
    def images(self) -> list[ImageInfo]:
        return [self._index.image_info(img) for img in self._index.data["images"]]

    @property
    def image_ids(self) -> list[int]:
        """Image ids in document order (cheaper than `images` when only ids are needed)."""
        return list(self._index.images)

    def reviewed_image_ids(self) -> list[int]:
        """Ids of the images marked reviewed, in document order, read without building `ImageInfo`s (a
        100,000-image project answers in milliseconds)."""
        ids = []
        for img in self._index.data["images"]:
            ours = img.get(OUR_KEY)
            if isinstance(ours, dict) and ours.get("reviewed", False):
                ids.append(img["id"])
        return ids

    @property
    def categories(self) -> list[Category]:
        return [category_info(cat) for cat in self._index.data["categories"]]

    @property
    def annotations(self) -> list[Annotation]:
        self._index.require_instances("list annotations")
        return [annotation_info(ann) for ann in self._index.data["annotations"]]

    @property
    def num_classes(self) -> int:
        """Max category id + 1, as in official DETR: the head has num_classes + 1 outputs, the last no-object."""
        return max(self._index.categories, default=-1) + 1

    @property
    def class_names(self) -> list[str]:
        """Names indexed by category id, length `num_classes`; ids no category uses read "N/A"."""
        names = ["N/A"] * self.num_classes
        for cid, cat in self._index.categories.items():
            names[cid] = cat["name"]
        return names

    def image(self, image_id: int) -> ImageInfo:
        return self._index.image_info(self._index.image_record(image_id))

    def category(self, category_id: int) -> Category:
        return category_info(self._index.category_record(category_id))

    def annotation(self, annotation_id: int) -> Annotation:
        return annotation_info(self._index.annotation_record(annotation_id))

    def annotations_for(self, image_id: int) -> list[Annotation]:
        return [annotation_info(ann) for ann in self.annotation_records(image_id)]

    def annotation_records(self, image_id: int) -> list[dict[str, Any]]:
        """The stored annotation records of an image, in file order: read them, do not change them."""
        self._index.require_instances("list annotations")
        self._index.image_record(image_id)
        return [self._index.anns[aid] for aid in self._index.anns_by_image[image_id]]

    def panoptic_record(self, image_id: int) -> dict[str, Any] | None:
        """The stored panoptic entry of an image (None without one): read it, do not change it."""
        self._index.require_panoptic("read panoptic entries")
        self._index.image_record(image_id)
        return self._index.panoptic.get(image_id)

    def category_records(self) -> list[dict[str, Any]]:
        """Copies of the category records, in file order."""
        return [dict(cat) for cat in self._index.data["categories"]]

    def image_by_file_name(self, file_name: str) -> ImageInfo | None:
        img = self._index.images_by_name.get(file_name)
        return self._index.image_info(img) if img is not None else None

    def image_path(self, image_id: int) -> Path:
        """Where the image file is: its ``file_name`` inside ``image_root``."""
        return resolve_inside(self.image_root, self._index.image_record(image_id)["file_name"])

    def annotation_counts(self) -> dict[int, int]:
        """Number of annotations (panoptic: segments) per category id, every category included."""
        counts = dict.fromkeys(self._index.categories, 0)
        for cid in self._index.category_uses():
            counts[cid] += 1
        return counts

    def segments_for(self, image_id: int) -> list[Segment]:
        ann = self.panoptic_record(image_id)
        if ann is None:
            return []
        categories = self._index.categories
        return [segment_info(image_id, seg, categories[seg["category_id"]]) for seg in ann["segments_info"]]

    def panoptic_png(self, image_id: int) -> Path | None:
        """Where the PNG of segment ids for ``image_id`` is (None without a panoptic folder or entry)."""
        ann = self.panoptic_record(image_id)
        if ann is None or self.panoptic_root is None:
            return None
        return resolve_inside(self.panoptic_root, ann["file_name"], PNG_FOLDER)

    def id_map(self, image_id: int, size: tuple[int, int] | None = None) -> Any:
        """The [H, W] segment ids of an image: as edited when its segments were edited (a copy), all void
        (0) when it has no panoptic entry, else its PNG's (in ``panoptic_root``), checked against its entry and against ``size`` (width, height;
        default: the image record's); `CocoFormatError` names the file."""
        self._index.require_panoptic("read panoptic PNGs")
        edited = self._index.id_maps.maps.get(image_id)
        if edited is not None:
            return edited.copy()
        if image_id not in self._index.panoptic:  # no entry (yet): every pixel void
            width, height = size if size is not None else self.image_size(image_id)
            return np.zeros((height, width), dtype=np.int32)
        return checked_id_map(self._index, image_id, self.panoptic_root, size)

    def is_edited_map(self, image_id: int) -> bool:
        """Whether the image's segments were edited since it was opened (draw `id_map`, not its PNG file)."""
        return image_id in self._index.id_maps.maps

    def json_subset(self, image_ids: Iterable[int], *, rejected: bool = True) -> dict[str, Any]:
        """The document restricted to ``image_ids`` (in the order given) as JSON data: every top-level key,
        the records themselves, not copies (read them, do not change them). ``rejected`` False leaves out the
        annotations a reviewer rejected."""
        index = self._index
        ids = list(image_ids)
        out = dict(index.data)
        out["images"] = [index.images[i] for i in ids]
        if index.is_panoptic:
            out["annotations"] = [index.panoptic[i] for i in ids if i in index.panoptic]
        else:
            anns = (index.anns[a] for i in ids for a in index.anns_by_image[i])
            out["annotations"] = [a for a in anns if rejected or not is_rejected(a)]
        return out

    def to_json(self) -> dict[str, Any]:
        """A deep copy of the whole document as JSON data, as `save` would write it."""
        return json.loads(json.dumps(self._output()))
