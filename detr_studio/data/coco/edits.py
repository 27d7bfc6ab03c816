"""Edits: every change to a COCO document, each a small dataclass that makes itself and returns its inverse.

``edit.apply(index)`` checks the change against the document's records (`CocoIndex`), makes it through the
index's methods, and returns the edit that undoes it; an edit that is refused raises `CocoEditError` and
changes nothing. Use ``CocoDocument.apply(edit)``, which also marks the document dirty and journals the
edit. Edits travel as JSON (``to_json`` / `Edit.from_json`), with the ``op`` names and fields of the
journal files written so far.

`UpdateAnnotation`, `UpdateImage` and `UpdateCategory` are one mechanism (`UpdateRecord`): set some fields,
drop others, and restore the key order on undo; they differ only in which records they address and which
checks the new record must pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .checks import check_category_fields, check_image_fields
from .index import CocoIndex
from .problems import Checker, CocoEditError
from .records import OUR_KEY, REVIEW_STATES, default_ours
from .validate import check_annotation
from .values import MISSING, as_int, as_int_list, describe, id_problem, plain, short


class Edit:
    """One change to a document (see the module docstring)."""

    op: ClassVar[str] = ""

    def apply(self, index: CocoIndex) -> Edit:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = plain(getattr(self, f.name))
        return out

    @staticmethod
    def from_json(data: Any) -> Edit:
        if not isinstance(data, dict) or data.get("op") not in _EDIT_TYPES:
            raise CocoEditError(f"not an edit: {short(data)}")
        cls = _EDIT_TYPES[data["op"]]
        fields = {k: v for k, v in data.items() if k != "op"}
        try:
            return cls.from_fields(fields)
        except TypeError as exc:  # a required field is missing
            raise CocoEditError(f"edit {data['op']!r}: {exc}") from None

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Edit:
        """The edit from its JSON fields (all but ``op``)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(fields) - names
        if unknown:
            raise CocoEditError(f"edit {cls.op!r} has unknown fields {sorted(unknown)}")
        return cls(**fields)


# ---- annotations ---------------------------------------------------------------------------------------------


@dataclass
class AddAnnotations(Edit):
    """Add annotation records (each with its own unused ``id``), at list ``indices`` when given."""

    op: ClassVar[str] = "add_annotations"
    annotations: list[dict[str, Any]]
    indices: list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.annotations, (list, tuple)):
            raise CocoEditError(f"annotations must be a list, got {describe(self.annotations)}")
        self.annotations = [plain(a) for a in self.annotations]
        if self.indices is not None:
            self.indices = as_int_list(self.indices, "indices")
            if len(self.indices) != len(self.annotations):
                raise CocoEditError("indices must give one position per annotation")

    def apply(self, index: CocoIndex) -> Edit:
        index.require_instances("add annotations")
        records = [plain(a) for a in self.annotations]
        ck = Checker(index.source)
        new_ids: set[int] = set()
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                ck.error(f"new annotation {i}", f"must be an object, got {describe(rec)}")
                continue
            aid = rec.get("id", MISSING)
            problem = id_problem(aid, "id")
            if problem:
                ck.error(f"new annotation {i}", problem)
                continue
            if aid in index.anns or aid in new_ids:
                ck.error(f"annotation id {aid}", "this id is already used")
                continue
            new_ids.add(aid)
            check_annotation(index, rec, f"annotation id {aid}", ck)
        ck.raise_edit_error()
        if self.indices is not None:
            size = len(index.data["annotations"])
            for k, position in enumerate(sorted(self.indices)):
                if not 0 <= position <= size + k:
                    raise CocoEditError(f"position {position} is outside the annotation list")
        index.insert_annotations(records, self.indices)
        return RemoveAnnotations([rec["id"] for rec in records])


@dataclass
class RemoveAnnotations(Edit):
    """Remove annotations; the undo puts each back at its old list position."""

    op: ClassVar[str] = "remove_annotations"
    annotation_ids: list[int]

    def __post_init__(self) -> None:
        self.annotation_ids = as_int_list(self.annotation_ids, "annotation_ids")

    def apply(self, index: CocoIndex) -> Edit:
        index.require_instances("remove annotations")
        ids = set(self.annotation_ids)
        if len(ids) != len(self.annotation_ids):
            raise CocoEditError("an annotation id is listed twice")
        unknown = sorted(ids - index.anns.keys())
        if unknown:
            raise CocoEditError(f"no annotation with id {unknown[0]}")
        removed, positions = index.delete_annotations(ids)
        return AddAnnotations(removed, positions)


# ---- updating one record -------------------------------------------------------------------------------------


@dataclass
class UpdateRecord(Edit):
    """Set ``fields`` of one record and ``drop`` others; ``key_order`` (used by undo) restores the key order.
    A record's ``id`` cannot change. Its JSON names the id after the record (``annotation_id``, ...)."""

    record: ClassVar[str] = ""  # "annotation", "image" or "category"
    record_id: int
    fields: dict[str, Any] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    key_order: list[str] | None = None

    def __post_init__(self) -> None:
        self.record_id = as_int(self.record_id, self._id_key())
        if not isinstance(self.fields, dict):
            raise CocoEditError(f"fields must be an object, got {describe(self.fields)}")
        self.fields = plain(self.fields)
        if isinstance(self.drop, (str, bytes)) or not isinstance(self.drop, (list, tuple)):
            raise CocoEditError(f"drop must be a list of field names, got {describe(self.drop)}")
        self.drop = [str(k) for k in self.drop]
        if self.key_order is not None:
            if not isinstance(self.key_order, (list, tuple)):
                raise CocoEditError(f"key_order must be a list, got {describe(self.key_order)}")
            self.key_order = [str(k) for k in self.key_order]
        if "id" in self.fields or "id" in self.drop:
            raise CocoEditError("a record's 'id' cannot be changed")

    @classmethod
    def _id_key(cls) -> str:
        return f"{cls.record}_id"

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        del out["op"]
        return {"op": self.op, self._id_key(): out.pop("record_id"), **out}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Edit:
        fields = dict(fields)
        if cls._id_key() in fields:
            fields["record_id"] = fields.pop(cls._id_key())
        return super().from_fields(fields)

    def apply(self, index: CocoIndex) -> Edit:
        rec = index.records_of(self.record).get(self.record_id)
        if rec is None:
            raise CocoEditError(f"no {self.record} with id {self.record_id}")
        both = set(self.fields) & set(self.drop)
        if both:
            raise CocoEditError(f"fields {sorted(both)} are both set and dropped")
        new = dict(rec)
        for key in self.drop:
            new.pop(key, None)
        for key, value in self.fields.items():
            new[key] = plain(value)
        if self.key_order is not None:
            ordered = {k: new[k] for k in self.key_order if k in new}
            ordered.update((k, v) for k, v in new.items() if k not in ordered)
            new = ordered
        ck = Checker(index.source)
        self._check(index, new, f"{self.record} id {self.record_id}", ck)
        ck.raise_edit_error()
        undo_fields = {k: plain(rec[k]) for k in [*self.fields, *self.drop] if k in rec}
        undo_drop = [k for k in self.fields if k not in rec]
        undo_order = list(rec) if any(k in rec for k in self.drop) or self.key_order is not None else None
        index.replace_record(self.record, self.record_id, new)
        return type(self)(self.record_id, undo_fields, undo_drop, undo_order)

    def _check(self, index: CocoIndex, new: dict, where: str, ck: Checker) -> None:
        raise NotImplementedError


@dataclass
class UpdateAnnotation(UpdateRecord):
    """`UpdateRecord` of an annotation: ``UpdateAnnotation(annotation_id, fields, drop, key_order)``."""

    op: ClassVar[str] = "update_annotation"
    record: ClassVar[str] = "annotation"

    @property
    def annotation_id(self) -> int:
        return self.record_id

    def _check(self, index: CocoIndex, new: dict, where: str, ck: Checker) -> None:
        check_annotation(index, new, where, ck)


@dataclass
class UpdateImage(UpdateRecord):
    """`UpdateRecord` of an image: ``UpdateImage(image_id, fields, drop, key_order)``."""

    op: ClassVar[str] = "update_image"
    record: ClassVar[str] = "image"

    @property
    def image_id(self) -> int:
        return self.record_id

    def _check(self, index: CocoIndex, new: dict, where: str, ck: Checker) -> None:
        check_image_fields(new, where, ck, lazy_sizes=index.lazy_sizes)


@dataclass
class UpdateCategory(UpdateRecord):
    """`UpdateRecord` of a category (name, supercategory, color, ...):
    ``UpdateCategory(category_id, fields, drop, key_order)``."""

    op: ClassVar[str] = "update_category"
    record: ClassVar[str] = "category"

    @property
    def category_id(self) -> int:
        return self.record_id

    def _check(self, index: CocoIndex, new: dict, where: str, ck: Checker) -> None:
        check_category_fields(new, where, ck)


# ---- groups and the edits made of others ---------------------------------------------------------------------


@dataclass
class Batch(Edit):
    """Several edits as one undo step; if one is refused, the ones before it are undone."""

    op: ClassVar[str] = "batch"
    edits: list[Edit]
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.edits, (list, tuple)):
            raise CocoEditError(f"edits must be a list, got {describe(self.edits)}")
        self.edits = [e if isinstance(e, Edit) else Edit.from_json(e) for e in self.edits]
        self.label = str(self.label)

    def apply(self, index: CocoIndex) -> Edit:
        undo: list[Edit] = []
        try:
            for edit in self.edits:
                undo.append(edit.apply(index))
        except Exception:
            for inverse in reversed(undo):
                inverse.apply(index)
            raise
        return Batch(list(reversed(undo)), self.label)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "edits": [e.to_json() for e in self.edits], "label": self.label}


def _require_annotations(index: CocoIndex, ids: list[int], what: str) -> None:
    index.require_instances(what)
    for aid in ids:
        if aid not in index.anns:
            raise CocoEditError(f"no annotation with id {aid}")


@dataclass
class Relabel(Edit):
    """Give annotations another category."""

    op: ClassVar[str] = "relabel"
    annotation_ids: list[int]
    category_id: int

    def __post_init__(self) -> None:
        self.annotation_ids = as_int_list(self.annotation_ids, "annotation_ids")
        self.category_id = as_int(self.category_id, "category_id")

    def apply(self, index: CocoIndex) -> Edit:
        _require_annotations(index, self.annotation_ids, "relabel annotations")
        if self.category_id not in index.categories:
            raise CocoEditError(f"no category with id {self.category_id}")
        changes = [UpdateAnnotation(aid, {"category_id": self.category_id}) for aid in self.annotation_ids]
        return Batch(changes, f"relabel to {self.category_id}").apply(index)


@dataclass
class SetReviewState(Edit):
    """Mark annotations pending, accepted or rejected (in their ``detr_studio`` fields)."""

    op: ClassVar[str] = "set_review_state"
    annotation_ids: list[int]
    review: str

    def __post_init__(self) -> None:
        self.annotation_ids = as_int_list(self.annotation_ids, "annotation_ids")
        if self.review not in REVIEW_STATES:
            raise CocoEditError(f"review must be one of {list(REVIEW_STATES)}, got {describe(self.review)}")

    def apply(self, index: CocoIndex) -> Edit:
        _require_annotations(index, self.annotation_ids, "review annotations")
        changes = []
        for aid in self.annotation_ids:
            ours = index.anns[aid].get(OUR_KEY)
            new = dict(ours) if isinstance(ours, dict) else default_ours()
            new["review"] = self.review
            changes.append(UpdateAnnotation(aid, {OUR_KEY: new}))
        return Batch(changes, f"mark {self.review}").apply(index)


@dataclass
class SetImageReviewed(Edit):
    op: ClassVar[str] = "set_image_reviewed"
    image_id: int
    reviewed: bool = True

    def __post_init__(self) -> None:
        self.image_id = as_int(self.image_id, "image_id")
        if not isinstance(self.reviewed, bool):
            raise CocoEditError(f"reviewed must be true or false, got {describe(self.reviewed)}")

    def apply(self, index: CocoIndex) -> Edit:
        img = index.images.get(self.image_id)
        if img is None:
            raise CocoEditError(f"no image with id {self.image_id}")
        ours = img.get(OUR_KEY)
        new = dict(ours) if isinstance(ours, dict) else {}
        new["reviewed"] = self.reviewed
        return UpdateImage(self.image_id, {OUR_KEY: new}).apply(index)


# ---- categories ----------------------------------------------------------------------------------------------


@dataclass
class AddCategory(Edit):
    """Add a category record (unused id, unused name), at list ``index`` when given."""

    op: ClassVar[str] = "add_category"
    category: dict[str, Any]
    index: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.category, dict):
            raise CocoEditError(f"category must be an object, got {describe(self.category)}")
        self.category = plain(self.category)
        if self.index is not None:
            self.index = as_int(self.index, "index")

    def apply(self, index: CocoIndex) -> Edit:
        rec = plain(self.category)
        cid = rec.get("id", MISSING)
        problem = id_problem(cid, "id", category=True)
        if problem:
            raise CocoEditError(f"new category: {problem}")
        if cid < 0:
            raise CocoEditError(f"category id {cid} is negative")
        if cid in index.categories:
            raise CocoEditError(f"category id {cid} is already used by {index.categories[cid]['name']!r}")
        ck = Checker(index.source)
        check_category_fields(rec, f"category id {cid}", ck)
        ck.raise_edit_error()
        _refuse_duplicate_name(index, rec["name"], cid)
        if self.index is not None and not 0 <= self.index <= len(index.data["categories"]):
            raise CocoEditError(f"position {self.index} is outside the category list")
        index.insert_category(rec, self.index)
        return RemoveCategory(cid)


def _refuse_duplicate_name(index: CocoIndex, name: str, category_id: int) -> None:
    for other in index.categories.values():
        if other["id"] != category_id and other.get("name") == name:
            raise CocoEditError(f"a category named {name!r} already exists (id {other['id']}); merge instead")


@dataclass
class RemoveCategory(Edit):
    """Remove a category no annotation uses (merge or relabel them first)."""

    op: ClassVar[str] = "remove_category"
    category_id: int

    def __post_init__(self) -> None:
        self.category_id = as_int(self.category_id, "category_id")

    def apply(self, index: CocoIndex) -> Edit:
        rec = index.categories.get(self.category_id)
        if rec is None:
            raise CocoEditError(f"no category with id {self.category_id}")
        uses = sum(1 for cid in index.category_uses() if cid == self.category_id)
        if uses:
            kind = "segments" if index.is_panoptic else "annotations"
            raise CocoEditError(
                f"category {self.category_id} ({rec['name']!r}) is used by {uses} {kind}; merge it into another"
                " category or relabel them first"
            )
        position = index.delete_category(self.category_id)
        return AddCategory(rec, position)


@dataclass
class RenameCategory(Edit):
    op: ClassVar[str] = "rename_category"
    category_id: int
    name: str

    def __post_init__(self) -> None:
        self.category_id = as_int(self.category_id, "category_id")
        if not isinstance(self.name, str) or not self.name.strip():
            raise CocoEditError(f"a category name must be a non-empty string, got {describe(self.name)}")

    def apply(self, index: CocoIndex) -> Edit:
        rec = index.categories.get(self.category_id)
        if rec is None:
            raise CocoEditError(f"no category with id {self.category_id}")
        _refuse_duplicate_name(index, self.name, self.category_id)
        old = rec["name"]
        UpdateCategory(self.category_id, {"name": self.name}).apply(index)
        return RenameCategory(self.category_id, old)


@dataclass
class MergeCategories(Edit):
    """Relabel every annotation of ``source_ids`` to ``target_id`` and remove the source categories."""

    op: ClassVar[str] = "merge_categories"
    source_ids: list[int]
    target_id: int

    def __post_init__(self) -> None:
        self.source_ids = as_int_list(self.source_ids, "source_ids")
        self.target_id = as_int(self.target_id, "target_id")

    def apply(self, index: CocoIndex) -> Edit:
        index.require_instances("merge categories (convert with panoptic_to_instances() first)")
        sources = set(self.source_ids)
        if self.target_id not in index.categories:
            raise CocoEditError(f"no category with id {self.target_id}")
        if self.target_id in sources:
            raise CocoEditError(f"category {self.target_id} cannot be merged into itself")
        for cid in self.source_ids:
            if cid not in index.categories:
                raise CocoEditError(f"no category with id {cid}")
        moved = [aid for aid, ann in index.anns.items() if ann["category_id"] in sources]
        steps: list[Edit] = [Relabel(moved, self.target_id)]
        steps += [RemoveCategory(cid) for cid in dict.fromkeys(self.source_ids)]
        return Batch(steps, f"merge into {self.target_id}").apply(index)


def register_edits(*types: type[Edit]) -> None:
    """Make edits of other modules (the panoptic ones) readable from the journal by their ``op``."""
    for cls in types:
        _EDIT_TYPES[cls.op] = cls


_EDIT_TYPES: dict[str, type[Edit]] = {
    cls.op: cls
    for cls in (
        AddAnnotations,
        RemoveAnnotations,
        UpdateAnnotation,
        UpdateImage,
        UpdateCategory,
        Batch,
        Relabel,
        SetReviewState,
        SetImageReviewed,
        AddCategory,
        RemoveCategory,
        RenameCategory,
        MergeCategories,
    )
}
