"""`CocoDocument`: one COCO dataset in memory, read with validation, queried, edited with undo, and saved.

A document holds one COCO file, either *instances* (boxes, polygons, RLE) or *panoptic* (one PNG of segment
ids per image plus ``segments_info``). It keeps the parsed JSON exactly as read (`index`), so every field it
does not understand survives a load -> save round trip (same content, same key order).

Make one with `load` (a file: checked by `validate`, `checks` and `panoptic`; errors raise
`CocoFormatError` naming every problem, warnings are kept in ``warnings``), `new` or `from_images`.
Change it only through ``apply(edit)`` (or the shortcuts `add`, `update`, `relabel`, ...), which returns
the edit that undoes it, marks the document dirty, bumps ``revision`` and journals the edit. `save` writes
atomically and keeps backups; the file's lock, conflict detection and the journal are `persistence`'s.
Everything a document answers (typed records, lookups, image sizes read lazily) is in `queries`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from detr_studio.data.images import ImageReadError, image_size

from .edits import (
    AddAnnotations,
    AddCategory,
    Edit,
    MergeCategories,
    Relabel,
    RemoveAnnotations,
    RemoveCategory,
    RenameCategory,
    SetImageReviewed,
    SetReviewState,
    UpdateAnnotation,
    UpdateCategory,
)
from .journal import set_aside
from .panoptic import check_pngs, checked_id_map, instances_data
from .panoptic_save import (
    discard,
    name_entries,
    referenced,
    remove_unreferenced,
    save_marker,
    write_changed,
)
from .paths import name_problem, resolve_inside
from .persistence import Persistence, read_coco_json, sha256
from .problems import CocoEditError, CocoFormatError, CocoSaveError, Problem, format_error
from .queries import CocoQueries
from .records import OUR_KEY, default_ours
from .validate import index_document
from .values import as_int, is_finite, is_int, is_number, plain

NEW_SOURCE = "<new document>"


class CocoDocument(CocoQueries):
    """One COCO dataset in memory (see the module docstring). Make it with `load`, `new` or `from_images`."""

    def __init__(
        self,
        data: Any,
        *,
        source: str = NEW_SOURCE,
        path: Path | None = None,
        image_root: Path | None = None,
        panoptic_root: Path | None = None,
        strict: bool = False,
        check_masks: bool = True,
        notes: Sequence[str] = (),
        lazy_sizes: bool = False,
        panoptic: bool | None = None,
    ):
        """Index and check parsed COCO ``data`` (kept as it is, not copied); ``panoptic`` None detects the
        kind from ``segments_info``. The PNGs are checked when ``panoptic_root`` is given and ``check_masks``."""
        self.image_root: Path | None = image_root
        self.panoptic_root: Path | None = panoptic_root
        self.dirty = False
        self.revision = 0
        self.pending_journal: list[Edit] = []
        self._file = Persistence()
        self._file.path = path
        self._unreadable: set[int] = set()  # lazily sized images whose header could not be read
        self._index, ck = index_document(data, source, lazy_sizes=lazy_sizes, panoptic=panoptic)
        for note in notes:
            ck.warn("", note)
        if not ck.errors and self._index.is_panoptic and panoptic_root is not None and check_masks:
            check_pngs(self._index, panoptic_root, ck)
        ck.raise_format_error(strict)
        self.warnings: list[Problem] = ck.warnings
        if self._index.is_panoptic:
            self._index.id_maps.load = self._read_id_map

    def _read_id_map(self, image_id: int) -> Any:
        """The checked [H, W] ids of an image's PNG, for the first edit of its segments."""
        if self.panoptic_root is None:
            raise CocoEditError(
                f"{self._index.source}: the folder of panoptic PNGs is not known: open the dataset with it"
                " to edit segments"
            )
        try:
            return checked_id_map(self._index, image_id, self.panoptic_root)
        except CocoFormatError as exc:
            raise CocoEditError(str(exc)) from None

    # ---- reading files -----------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        image_root: str | os.PathLike[str] | None = None,
        *,
        panoptic_root: str | os.PathLike[str] | None = None,
        strict: bool = False,
        check_masks: bool = True,
        lock: bool = True,
        panoptic: bool | None = None,
    ) -> CocoDocument:
        """Read and check a COCO instances or panoptic JSON file; raise `CocoFormatError` naming every problem.

        ``image_root`` defaults to a guess (the file's folder, or ``../<split>`` for the official layout);
        ``panoptic_root`` to the folder named like the file without ``.json``, when it exists. ``check_masks``
        False skips reading the panoptic PNGs. ``lock`` (an editing window) takes the file's lock, cleans up
        after a killed save and finds the journal; a file another window holds opens read-only. ``lock``
        False (training, evaluation) only reads: no lock, no journal, and saving over the file is refused.
        """
        path = Path(path)
        raw, data, notes = read_coco_json(path)
        if panoptic_root is None and path.with_suffix("").is_dir():
            panoptic_root = path.with_suffix("")
        doc = cls(
            data,
            source=str(path),
            image_root=Path(image_root) if image_root is not None else None,
            panoptic_root=Path(panoptic_root) if panoptic_root is not None else None,
            strict=strict,
            check_masks=check_masks,
            notes=notes,
            panoptic=panoptic,
        )
        if image_root is None:
            doc.image_root = doc._guess_image_root(path)
        doc.warnings.extend(doc._file.opened(path, raw, lock))
        marker = save_marker(path)
        if doc.is_panoptic and doc.panoptic_root is not None and not doc.read_only and marker.exists():
            remove_unreferenced(doc.panoptic_root, referenced(doc._index, path))  # after a killed save
            marker.unlink(missing_ok=True)
        doc._find_journal()
        return doc

    def _guess_image_root(self, path: Path) -> Path:
        folder = path.parent.absolute()
        first = next((img["file_name"] for img in self._index.images.values()), None)
        candidates = [folder]
        split = path.stem.rsplit("_", 1)[-1]
        if split and split != path.stem:
            candidates += [folder.parent / split, folder / split]
        if first is not None:
            for candidate in candidates:
                if (candidate / first).is_file():
                    return candidate
        return folder

    @classmethod
    def panoptic_results(
        cls,
        source: str | os.PathLike[str] | dict[str, Any],
        ground_truth: CocoDocument,
        panoptic_root: str | os.PathLike[str] | None = None,
    ) -> CocoDocument:
        """Panoptic predictions for the images of ``ground_truth``: a panopticapi results file (or its parsed
        JSON) needs only ``{"annotations": [...]}``. The ground truth's images and categories are used, and
        each entry is checked as a panoptic annotation against them (a known image, known categories, unique
        segment ids, a PNG name inside ``panoptic_root``). Entries for other images are left out, as
        panopticapi does. The document shares the ground truth's records: read it, do not edit it."""
        if isinstance(source, dict):
            name, data = "panoptic predictions", source
        else:
            name = str(source)
            _, data, _ = read_coco_json(Path(source))
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise format_error(name, "top level", "must be a JSON object with an 'annotations' list")
        known = set(ground_truth.image_ids)
        entries = [
            a
            for a in data["annotations"]
            if not (isinstance(a, dict) and is_int(a.get("image_id")) and a["image_id"] not in known)
        ]
        results = {
            "images": ground_truth.index.data["images"],
            "annotations": entries,
            "categories": ground_truth.index.data["categories"],
        }
        root = Path(panoptic_root) if panoptic_root is not None else None
        return cls(results, source=name, panoptic_root=root, check_masks=False, panoptic=True)

    # ---- creating ----------------------------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        categories: Iterable[str | dict[str, Any]],
        images: Iterable[dict[str, Any]] = (),
        *,
        image_root: str | os.PathLike[str] | None = None,
    ) -> CocoDocument:
        """An empty instances dataset. Categories given as names get ids 1, 2, ... (COCO counts from 1)."""
        data = {
            "images": [_plain_input(img) for img in images],
            "annotations": [],
            "categories": _categories(categories),
        }
        return cls(data, image_root=Path(image_root) if image_root is not None else None)

    @classmethod
    def from_images(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        categories: Iterable[str | dict[str, Any]] = (),
        *,
        image_root: str | os.PathLike[str] | None = None,
        read_sizes: bool = True,
    ) -> CocoDocument:
        """An empty dataset over image files. ``file_name`` is relative to ``image_root`` (default: the folder
        common to all files); a file outside ``image_root`` is refused with `CocoFormatError`.

        ``read_sizes`` True reads every header now and skips unreadable files with a warning. False (what a
        folder of 100,000 images needs) leaves ``width``/``height`` out of the records: they are read when
        first asked for (`image_size`), can be given by whoever decodes the image (`set_image_sizes`), and
        are read for the rest before saving (`save`, `to_json`)."""
        files = [os.path.abspath(os.fspath(p)) for p in paths]
        if image_root is not None:
            root: str | None = os.path.abspath(os.fspath(image_root))
        elif files:
            root = os.path.commonpath([os.path.dirname(f) for f in files])
        else:
            root = None
        prefix = root.rstrip(os.sep) + os.sep if root is not None else ""
        outside = [f for f in files if not f.startswith(prefix)]
        if outside:
            raise format_error(outside[0], "", f"is not inside the image folder {root}")
        names = [f[len(prefix) :].replace(os.sep, "/") for f in files]
        return cls.from_image_names(names, categories, image_root=root, read_sizes=read_sizes)

    @classmethod
    def from_image_names(
        cls,
        file_names: Iterable[str],
        categories: Iterable[str | dict[str, Any]] = (),
        *,
        image_root: str | os.PathLike[str] | None = None,
        read_sizes: bool = True,
    ) -> CocoDocument:
        """`from_images` for names already relative to ``image_root`` (``/``-separated), in the order given:
        image ids are 1, 2, ... The records are made here, so they are indexed without the checks `load`
        runs (100,000 names take a tenth of a second); a name leaving the folder is refused."""
        root = Path(image_root) if image_root is not None else None
        data = {"images": [], "annotations": [], "categories": _categories(categories)}
        doc = cls(data, image_root=root, lazy_sizes=not read_sizes)
        records: list[dict[str, Any]] = []
        for name in file_names:
            problem = name_problem(name)
            if problem is not None:
                raise format_error(str(root), "", problem)
            record: dict[str, Any] = {"id": len(records) + 1, "file_name": name}
            if read_sizes:
                path = resolve_inside(root, name)
                try:
                    record["width"], record["height"] = image_size(path)
                except ImageReadError as exc:
                    doc.warnings.append(Problem(str(path), "skipped", str(exc).removeprefix(f"{path}: ")))
                    continue
            records.append(record)
        data["images"] = records
        for rec in records:
            doc._index.add_image(rec)
        return doc

    @property
    def path(self) -> Path | None:
        """The file this document was read from or last saved to (None before the first save)."""
        return self._file.path

    def __repr__(self) -> str:
        index = self._index
        kind = "panoptic" if index.is_panoptic else "instances"
        count = len(index.panoptic) if index.is_panoptic else len(index.anns)
        return (
            f"CocoDocument({str(self.path) if self.path else '<unsaved>'}, {kind}, {len(index.images)} images,"
            f" {count} annotations, {len(index.categories)} categories{', dirty' if self.dirty else ''})"
        )

    def panoptic_to_instances(self, panoptic_root: str | os.PathLike[str] | None = None) -> CocoDocument:
        """An instances document with one annotation per segment: box from ``segments_info`` (or from the mask),
        mask as RLE from the PNG (checked) when the PNG folder is known. Images and categories are copied."""
        root = Path(panoptic_root) if panoptic_root is not None else self.panoptic_root
        data = instances_data(self._index, root)
        return CocoDocument(data, source=f"{self._index.source} (as instances)", image_root=self.image_root)

    # ---- editing -----------------------------------------------------------------------------------------

    def apply(self, edit: Edit) -> Edit:
        """Make ``edit``, mark the document dirty, journal it, and return the edit that undoes it."""
        inverse = edit.apply(self._index)
        self.revision += 1
        self.dirty = True
        if self._file.journal.append(edit):
            self.pending_journal = []
        return inverse

    def next_annotation_id(self) -> int:
        """A fresh annotation id; ids are never handed out twice by one document."""
        return self._index.take_annotation_id()

    def new_annotation(
        self,
        image_id: int,
        category_id: int,
        bbox: Sequence[float],
        *,
        source: str = "human",
        score: float | None = None,
        review: str | None = None,
        model: str | None = None,
        segmentation: Any = None,
    ) -> dict[str, Any]:
        """An annotation record with a fresh id, ready for `AddAnnotations` (nothing is changed yet).
        ``review`` defaults to "pending" for model boxes and "accepted" for human ones."""
        x, y, w, h = (float(v) for v in plain(list(bbox)))
        ann: dict[str, Any] = {
            "id": self.next_annotation_id(),
            "image_id": as_int(image_id, "image_id"),
            "category_id": as_int(category_id, "category_id"),
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
        }
        if segmentation is not None:
            ann["segmentation"] = plain(segmentation)
        ours = default_ours(review, source)
        ours.update(score=float(score) if score is not None else None, model=model)
        ann[OUR_KEY] = ours
        return ann

    def add(self, image_id: int, category_id: int, bbox: Sequence[float], **kwargs: Any) -> Edit:
        """Add one annotation (see `new_annotation` for the options); returns the undo edit, whose
        ``annotation_ids`` holds the new id."""
        return self.apply(AddAnnotations([self.new_annotation(image_id, category_id, bbox, **kwargs)]))

    def update(self, annotation_id: int, **fields: Any) -> Edit:
        """Set fields of an annotation. A new ``bbox`` also sets ``area`` when the annotation has no mask."""
        ann = self._index.anns.get(annotation_id)
        if ann is not None and "bbox" in fields and "area" not in fields and not ann.get("segmentation"):
            box = plain(fields["bbox"])
            if isinstance(box, list) and len(box) == 4 and all(is_number(v) and is_finite(v) for v in box):
                fields["area"] = float(box[2]) * float(box[3])
        return self.apply(UpdateAnnotation(annotation_id, fields))

    def remove(self, *annotation_ids: int) -> Edit:
        return self.apply(RemoveAnnotations(list(annotation_ids)))

    def relabel(self, annotation_ids: Iterable[int], category_id: int) -> Edit:
        return self.apply(Relabel(list(annotation_ids), category_id))

    def set_review_state(self, annotation_ids: Iterable[int], review: str) -> Edit:
        return self.apply(SetReviewState(list(annotation_ids), review))

    def set_image_reviewed(self, image_id: int, reviewed: bool = True) -> Edit:
        return self.apply(SetImageReviewed(image_id, reviewed))

    def add_category(self, name: str, *, category_id: int | None = None, **fields: Any) -> Edit:
        """Add a category (id: one above the largest by default); returns the undo edit."""
        cid = category_id if category_id is not None else max(max(self._index.categories, default=0) + 1, 1)
        return self.apply(AddCategory({"id": cid, "name": name, **fields}))

    def rename_category(self, category_id: int, name: str) -> Edit:
        return self.apply(RenameCategory(category_id, name))

    def set_category_color(self, category_id: int, color: Sequence[int] | None) -> Edit:
        """Give a category its own colour ``[r, g, b]`` (kept in the file, as COCO panoptic categories do), or
        drop it with None; returns the undo edit."""
        if color is None:
            return self.apply(UpdateCategory(category_id, drop=["color"]))
        return self.apply(UpdateCategory(category_id, {"color": plain(list(color))}))

    def merge_categories(self, source_ids: Iterable[int], target_id: int) -> Edit:
        return self.apply(MergeCategories(list(source_ids), target_id))

    def remove_category(self, category_id: int) -> Edit:
        return self.apply(RemoveCategory(category_id))

    # ---- the file: saving, the lock, changes by others ---------------------------------------------------

    @property
    def read_only(self) -> bool:
        """Whether saving over the document's own file is refused (see ``read_only_reason``)."""
        return self._file.read_only_reason is not None

    @property
    def read_only_reason(self) -> str | None:
        """Why the document is read-only, one line naming the file: another DETR Studio window has it open
        (with its pid), it was opened for reading only, or it was closed. None when it is not."""
        return self._file.read_only_reason

    def changed_on_disk(self) -> bool:
        """Whether the file on disk is no longer what this document read or last saved (another program or
        window wrote, replaced, created or deleted it)."""
        return self._file.changed_on_disk()

    def save(self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
        """Write the document atomically (to ``path``: save-as), keeping the previous versions as backups.

        Refused with `CocoReadOnlyError` when another window holds the file, and with `CocoConflictError`
        when the file changed on disk since it was read, unless ``overwrite``. Any other failure raises
        `CocoSaveError` naming the file; then the old file is intact and the document stays dirty. Returns
        the path written.
        """
        target = Path(path) if path is not None else self._file.file
        if target is None:
            raise CocoSaveError("this document has never been saved: give save() a file name")
        index = self._index
        writes = []
        pngs = index.is_panoptic and self.panoptic_root is not None
        if index.is_panoptic and index.id_maps.changed and self.panoptic_root is None:
            raise CocoSaveError(
                f"{target}: cannot save edited segments: the folder of panoptic PNGs is not known"
            )
        if pngs:
            self._file.check_writable(target, overwrite)
            try:
                save_marker(target).touch()  # until the PNGs no file names are removed (backups rotate too)
            except OSError as exc:
                raise CocoSaveError(f"{target}: cannot save beside it ({exc})") from exc
            writes = write_changed(index, self.panoptic_root)  # under new names: see panoptic_save
            name_entries(index, writes, new=True)
        try:
            try:
                payload = json.dumps(self._output(), ensure_ascii=False).encode("utf-8")
            except CocoEditError as exc:
                raise CocoSaveError(f"{target}: cannot save: {exc}") from None
            except (TypeError, ValueError, RecursionError) as exc:
                raise CocoSaveError(f"{target}: cannot encode the document as JSON ({exc})") from None
            self._file.save(target, payload, overwrite)
        except BaseException:
            if writes:
                name_entries(index, writes, new=False)
                discard(writes, self.panoptic_root)
            raise
        if pngs:
            assert self.panoptic_root is not None
            index.id_maps.saved()
            remove_unreferenced(self.panoptic_root, referenced(index, target))
            save_marker(target).unlink(missing_ok=True)
        index.source = str(target)
        self.pending_journal = []
        self.dirty = False
        return target

    def mark_unchanged(self) -> None:
        """Undo has brought the document back to exactly what its file holds: it is no longer dirty and its
        journal holds no edits (a crash would otherwise offer to recover edits that cancel out)."""
        self.dirty = False
        self._file.journal.clear()

    def reload(self) -> CocoDocument:
        """The document read afresh from its file (the one on disk now), with the same folders; this one is
        closed. Edits not saved are dropped. `CocoFormatError` when the file cannot be read; then this
        document stays open as it was."""
        path = self._file.file
        if path is None:
            raise CocoEditError("this document has no file to reload from")
        fresh = CocoDocument.load(
            path, self.image_root, panoptic_root=self.panoptic_root, lock=self._file.wants_lock
        )
        self.close()
        return fresh

    def close(self) -> None:
        """Let go of the file's lock (another window may then open it for editing); nothing more is journaled
        and saving over the file is refused."""
        self._file.release()
        if self._file.read_only_reason is None:
            self._file.read_only_reason = f"{self._file.file or self._index.source}: closed"

    def __enter__(self) -> CocoDocument:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- journal -----------------------------------------------------------------------------------------

    @property
    def journal_path(self) -> Path | None:
        """Where this document's journal is (None when it keeps none: no file yet, or read-only)."""
        return self._file.journal.path

    @property
    def journal_error(self) -> str | None:
        """Why journaling stopped (a full or read-only disk), one line naming the journal; None when it works.
        Until the next save, a crash would lose the edits made since."""
        return self._file.journal.error

    def start_journal(self, target: str | os.PathLike[str]) -> None:
        """Journal the edits of a document that has no file yet (made by `new` or `from_images`) beside
        ``target``, the file its first save will write, so that a crash before that save loses nothing. The
        journal is tied to the document's content now; one found there for the same content (the same
        images, in the same order) is read into ``pending_journal`` for `replay_journal`. Takes ``target``'s
        lock: when another window holds it, the document is read-only and keeps no journal."""
        if self.path is not None:
            raise CocoEditError(f"{self.path}: a document read from a file already journals beside it")
        payload = json.dumps(self._index.data, ensure_ascii=False).encode("utf-8")
        self.warnings.extend(self._file.start_journal(Path(target), sha256(payload)))
        self._find_journal()

    def _find_journal(self) -> None:
        edits, problems = self._file.journal.look()
        self.warnings.extend(problems)
        self.pending_journal = edits

    def replay_journal(self) -> int:
        """Apply the edits found in the journal at load; returns how many were applied. The document is then
        dirty and the journal keeps recording. An edit that no longer applies stops the replay with a warning."""
        edits, self.pending_journal = self.pending_journal, []
        applied = []
        for edit in edits:
            try:
                edit.apply(self._index)
            except CocoEditError as exc:
                skipped = len(edits) - len(applied)
                self.warnings.append(
                    Problem(
                        str(self.journal_path),
                        f"journal edit {len(applied) + 1}",
                        f"cannot be replayed ({exc}); it and the {skipped - 1} edits after it are skipped",
                    )
                )
                break
            applied.append(edit)
        if not edits:
            return 0
        self.revision += len(applied)
        self.dirty = self.dirty or bool(applied)
        journal = self._file.journal
        journal.rewrite(applied, keep_old=journal.incomplete or len(applied) < len(edits))
        return len(applied)

    def discard_journal(self) -> None:
        """Forget the journal found at load; the file is moved aside to ``<file>.journal.old``."""
        if self.pending_journal and self.journal_path is not None:
            set_aside(self.journal_path)
        self.pending_journal = []


def _categories(categories: Iterable[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """Category records from names (ids 1, 2, ...) or records."""
    return [
        {"id": i, "name": cat} if isinstance(cat, str) else _plain_input(cat)
        for i, cat in enumerate(categories, 1)
    ]


def _plain_input(value: Any) -> Any:
    """`plain` for data handed to `CocoDocument.new`; a value that is not JSON is a format problem."""
    try:
        return plain(value)
    except CocoEditError as exc:
        raise CocoFormatError([Problem(NEW_SOURCE, "", str(exc))]) from None
