"""`CocoIndex`: the records of one COCO document and the tables that find them, and the only code that
changes them.

The parsed JSON is kept exactly as read (``data``): every record is the very object of the file's lists,
so fields we do not understand, and the order of keys, survive a load -> save round trip. The tables
(by image id, category id, annotation id, file name; annotations per image; panoptic entries) point into
those lists. Edits (`edits`) change the records only through the methods below, which keep the lists and
the tables in step; everything else reads. A record is replaced *in place* (same dict object), so the
lists never need rebuilding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .checks import image_size_of
from .id_maps import IdMaps
from .problems import CocoEditError
from .records import ImageInfo, image_info


class CocoIndex:
    """The records of a document by id. Built (and checked) by `validate.index_document`."""

    def __init__(self, data: dict[str, Any], source: str, *, lazy_sizes: bool = False):
        self.data = data  # the parsed JSON, as read
        self.source = source  # the file (or a description) named in messages
        self.lazy_sizes = lazy_sizes  # image records may lack width/height until read from the image
        self.is_panoptic = False
        self.images: dict[int, dict] = {}
        self.images_by_name: dict[str, dict] = {}
        self.sizes: dict[int, tuple[int, int] | None] = {}  # image id -> (width, height) when valid
        self.categories: dict[int, dict] = {}
        self.anns: dict[int, dict] = {}
        self.anns_by_image: dict[int, list[int]] = {}
        self.panoptic: dict[int, dict] = {}  # image id -> its panoptic entry
        self.next_ann_id = 1
        self.id_maps = IdMaps()  # panoptic: the id maps being edited
        self._image_infos: dict[int, ImageInfo] = {}  # made on first read, dropped when the record changes

    # ---- reading -----------------------------------------------------------------------------------------

    def image_record(self, image_id: int) -> dict:
        img = self.images.get(image_id)
        if img is None:
            raise KeyError(f"no image with id {image_id!r}")
        return img

    def category_record(self, category_id: int) -> dict:
        cat = self.categories.get(category_id)
        if cat is None:
            raise KeyError(f"no category with id {category_id!r}")
        return cat

    def annotation_record(self, annotation_id: int) -> dict:
        self.require_instances("read annotations")
        ann = self.anns.get(annotation_id)
        if ann is None:
            raise KeyError(f"no annotation with id {annotation_id!r}")
        return ann

    def image_info(self, img: dict) -> ImageInfo:
        info = self._image_infos.get(img["id"])
        if info is None:
            info = self._image_infos[img["id"]] = image_info(img)
        return info

    def require_instances(self, what: str) -> None:
        if self.is_panoptic:
            raise CocoEditError(
                f"{self.source} is a panoptic dataset: cannot {what}; use segments_for() or panoptic_to_instances()"
            )

    def require_panoptic(self, what: str) -> None:
        if not self.is_panoptic:
            raise CocoEditError(f"{self.source} is not a panoptic dataset: cannot {what}")

    def category_uses(self) -> Iterable[int]:
        """The category id of every annotation (panoptic: every segment)."""
        if self.is_panoptic:
            for ann in self.panoptic.values():
                for seg in ann["segments_info"]:
                    yield seg["category_id"]
        else:
            for ann in self.anns.values():
                yield ann["category_id"]

    def known_categories(self) -> str:
        ids = sorted(self.categories)
        shown = ", ".join(str(i) for i in ids[:10])
        return (shown + ", ...") if len(ids) > 10 else (shown or "none")

    # ---- adding records while the document is built ------------------------------------------------------

    def add_image(self, img: dict) -> None:
        """Index an image record that is in ``data["images"]`` already."""
        iid = img["id"]
        self.images[iid] = img
        self.sizes[iid] = image_size_of(img)
        self.anns_by_image[iid] = []
        name = img.get("file_name")
        if isinstance(name, str):
            self.images_by_name.setdefault(name, img)

    # ---- the changes edits make (the edit has checked everything) ---------------------------------------

    def take_annotation_id(self) -> int:
        """A fresh annotation id; ids are never handed out twice by one document."""
        aid = self.next_ann_id
        self.next_ann_id += 1
        return aid

    def insert_annotations(self, records: list[dict], indices: list[int] | None) -> None:
        """Add annotation records (at those list positions when given, else at the end)."""
        lst = self.data["annotations"]
        for rec in records:
            self.anns[rec["id"]] = rec
            self.next_ann_id = max(self.next_ann_id, rec["id"] + 1)
        if indices is None:
            lst.extend(records)
            for rec in records:
                self.anns_by_image[rec["image_id"]].append(rec["id"])
            return
        for index, rec in sorted(zip(indices, records), key=lambda pair: pair[0]):
            lst.insert(index, rec)
        self._reindex_images({rec["image_id"] for rec in records})

    def delete_annotations(self, ids: set[int]) -> tuple[list[dict], list[int]]:
        """Remove annotations; returns the records and their former list positions, in list order."""
        lst = self.data["annotations"]
        kept, removed, positions = [], [], []
        for i, rec in enumerate(lst):
            if rec["id"] in ids:
                removed.append(rec)
                positions.append(i)
            else:
                kept.append(rec)
        lst[:] = kept
        for rec in removed:
            del self.anns[rec["id"]]
        for iid in {rec["image_id"] for rec in removed}:
            self.anns_by_image[iid] = [aid for aid in self.anns_by_image[iid] if aid not in ids]
        return removed, positions

    def records_of(self, kind: str) -> dict[int, dict]:
        """The records by id of one kind: "annotation", "image" or "category"."""
        if kind == "annotation":
            self.require_instances("change annotations")
            return self.anns
        return self.images if kind == "image" else self.categories

    def replace_record(self, kind: str, record_id: int, new: dict) -> None:
        """Give the record of ``kind`` (see `records_of`) the contents ``new``, keeping the tables in step."""
        if kind == "annotation":
            self.replace_annotation(record_id, new)
        elif kind == "image":
            self.replace_image(record_id, new)
        else:
            _replace_contents(self.categories[record_id], new)

    def replace_annotation(self, annotation_id: int, new: dict) -> None:
        rec = self.anns[annotation_id]
        old_image = rec["image_id"]
        _replace_contents(rec, new)
        if rec["image_id"] != old_image:
            self._reindex_images({old_image, rec["image_id"]})

    def replace_image(self, image_id: int, new: dict) -> None:
        rec = self.images[image_id]
        renamed = new.get("file_name") != rec.get("file_name")
        _replace_contents(rec, new)
        self._image_infos.pop(image_id, None)
        self.sizes[image_id] = image_size_of(rec)
        if renamed:
            self.images_by_name = {}
            for img in self.images.values():
                self.images_by_name.setdefault(img["file_name"], img)

    def insert_category(self, record: dict, index: int | None) -> None:
        lst = self.data["categories"]
        lst.insert(index if index is not None else len(lst), record)
        self.categories[record["id"]] = record

    def delete_category(self, category_id: int) -> int:
        """Remove a category record; returns its former list position."""
        rec = self.categories.pop(category_id)
        lst = self.data["categories"]
        index = next(i for i, cat in enumerate(lst) if cat is rec)
        del lst[index]
        return index

    def replace_segments(self, image_id: int, segments: list[dict]) -> list[dict]:
        """Give the panoptic entry of ``image_id`` these ``segments_info``; returns the ones it had."""
        entry = self.panoptic[image_id]
        old = entry["segments_info"]
        entry["segments_info"] = segments
        return old

    def insert_panoptic_entry(self, entry: dict, position: int | None) -> None:
        lst = self.data["annotations"]
        lst.insert(position if position is not None else len(lst), entry)
        self.panoptic[entry["image_id"]] = entry

    def delete_panoptic_entry(self, image_id: int) -> tuple[dict, int]:
        """Remove the panoptic entry of ``image_id``; returns it and its former list position."""
        entry = self.panoptic.pop(image_id)
        lst = self.data["annotations"]
        position = next(i for i, rec in enumerate(lst) if rec is entry)
        del lst[position]
        return entry, position

    def _reindex_images(self, image_ids: set[int]) -> None:
        for iid in image_ids:
            self.anns_by_image[iid] = []
        for rec in self.data["annotations"]:
            if rec["image_id"] in image_ids:
                self.anns_by_image[rec["image_id"]].append(rec["id"])


def _replace_contents(rec: dict, new: dict) -> None:
    rec.clear()
    rec.update(new)
