"""`Session`: what the window is showing and editing, without Qt (the idea of napari's ``ViewerModel``).

The session holds the open project (its `CocoDocument`), the undo `History`, the `PredictionStore`, the
current model, the score threshold, whether below-threshold queries ("ghosts") are shown, the selection and
the current image. Every change goes through a method here, which then emits one of `SessionEvents`; the Qt
views (canvas, image list, docks) listen to those events and never hold state of their own that the session
should have. Session methods are called on one thread only (the Qt thread in the window).

Editing: `apply` makes a document edit as one undo step; `accept` makes the annotation (on a panoptic
document: the segments the queries made, `session.panoptic`) and marks the query accepted in one
transaction; `reject` marks queries rejected. Undo and redo cover all three alike. Panoptic documents are
editable when their PNG folder is known (the segment edits are `data.coco.segment_edits`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from detr_studio.common.text import plural
from detr_studio.data.coco import CocoDocument, CocoEditError, Edit
from detr_studio.infer.detections import Detections

from .events import Emitter
from .history import DocumentChange, History, HistoryChange
from .model_loading import ModelChoice, ModelInfo
from .objects import (
    ANNOTATION,
    PREDICTION,
    SEGMENT,
    ObjectFlags,
    ObjectKey,
    ObjectRow,
    document_rows,
    prediction_rows,
    with_flags,
)
from .panoptic import accept_segments_edit
from .predictions import ACCEPTED, REJECTED, MarkChange, PredictionStore, accept_edit
from .project import Project


@dataclass(frozen=True)
class Selection:
    """What is selected on the current image: annotations by id, predictions by query id (and, for panoptic
    editing, segments by id)."""

    annotation_ids: tuple[int, ...] = ()
    query_ids: tuple[int, ...] = ()
    segment_ids: tuple[int, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.annotation_ids or self.query_ids or self.segment_ids)


class SessionEvents:
    """The session's events. ``edited`` follows every history step (made, undone or redone); ``failed``
    carries the message of an edit the document refused; ``predictions`` the image ids whose predictions
    arrived (None: all of them changed, e.g. a new model)."""

    def __init__(self) -> None:
        self.project: Emitter[Project | None] = Emitter("project")
        self.edited: Emitter[HistoryChange] = Emitter("edited")
        self.failed: Emitter[str] = Emitter("failed")
        self.saved: Emitter[Path] = Emitter("saved")
        self.predictions: Emitter[tuple[int, ...] | None] = Emitter("predictions")
        self.model: Emitter[ModelInfo | None] = Emitter("model")
        self.model_choice: Emitter[ModelChoice | None] = Emitter("model choice")
        self.threshold: Emitter[float] = Emitter("threshold")
        self.ghosts: Emitter[bool] = Emitter("ghosts")
        self.selection: Emitter[Selection] = Emitter("selection")
        self.image: Emitter[int | None] = Emitter("image")
        self.objects: Emitter[int | None] = Emitter("objects")  # hidden or locked objects changed (image id)


class Session:
    """See the module docstring."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.events = SessionEvents()
        self.project: Project | None = None
        self.history: History | None = None
        self.store = PredictionStore()
        self.model_choice: ModelChoice | None = None
        self.model_info: ModelInfo | None = None
        self.threshold = threshold
        self.show_ghosts = False
        self.selection = Selection()
        self.current_image_id: int | None = None
        self.flags = ObjectFlags()

    # ---- the project -------------------------------------------------------------------------------------

    @property
    def doc(self) -> CocoDocument | None:
        return self.project.doc if self.project is not None else None

    @property
    def editable(self) -> bool:
        """Whether the open document's boxes and masks can be edited here (an instances dataset, not opened
        read-only because another window has its file); panoptic datasets are edited by segment
        (`panoptic_editable`)."""
        doc = self.doc
        return doc is not None and not doc.is_panoptic and not doc.read_only

    @property
    def panoptic_editable(self) -> bool:
        """Whether the open document is a panoptic dataset whose segments can be edited (its folder of PNGs
        is known, and it did not open read-only): relabel, merge, split, paint, delete, accept predicted
        segments."""
        doc = self.doc
        return doc is not None and doc.is_panoptic and doc.panoptic_root is not None and not doc.read_only

    def set_project(self, project: Project | None) -> None:
        """Show ``project`` (None: nothing): a fresh history, no predictions, no image, nothing selected. The
        document it replaces is closed (its file's lock goes, so another window may edit it)."""
        old = self.project
        if old is not None and (project is None or old.doc is not project.doc):
            old.doc.close()
        self.project = project
        self.history = History(saved=project is None or not project.doc.dirty)
        self.history.changed.connect(self._history_changed)
        self.history.failed.connect(self.events.failed.emit)
        self.store.clear()
        self.flags.clear()
        self.current_image_id = None
        self.selection = Selection()
        self.events.project.emit(project)

    def _history_changed(self, change: HistoryChange) -> None:
        doc = self.doc
        if change.touches_document and doc is not None and doc.dirty and self.at_saved_state:
            doc.mark_unchanged()
        self.events.edited.emit(change)

    def mark_saved(self, path: Path) -> None:
        """The document was written to ``path``."""
        if self.history is not None:
            self.history.mark_saved()
        self.events.saved.emit(path)

    @property
    def at_saved_state(self) -> bool:
        """Whether the document is as its file holds it (undo can bring it back there)."""
        return self.history is not None and self.history.at_saved_state

    @property
    def has_unsaved_changes(self) -> bool:
        """Whether the document differs from what its file holds: edited, and not brought back to the saved
        state by undo. The title's ``*``, autosave and the question before closing all follow this."""
        doc = self.doc
        return doc is not None and doc.dirty and not self.at_saved_state

    def show_image(self, image_id: int | None) -> None:
        """Make ``image_id`` the current image (clears the selection)."""
        self.current_image_id = image_id
        self.selection = Selection()
        self.events.image.emit(image_id)

    def image_ids(self) -> list[int]:
        return self.doc.image_ids if self.doc is not None else []

    # ---- view settings -----------------------------------------------------------------------------------

    def set_threshold(self, threshold: float) -> None:
        """The score above which predictions are shown (a view: the model does not run again)."""
        value = min(max(float(threshold), 0.0), 1.0)
        if value != self.threshold:
            self.threshold = value
            self.events.threshold.emit(value)

    def set_ghosts(self, on: bool) -> None:
        if bool(on) != self.show_ghosts:
            self.show_ghosts = bool(on)
            self.events.ghosts.emit(self.show_ghosts)

    def select(
        self,
        annotation_ids: Iterable[int] = (),
        query_ids: Iterable[int] = (),
        segment_ids: Iterable[int] = (),
    ) -> None:
        selection = Selection(tuple(annotation_ids), tuple(query_ids), tuple(segment_ids))
        if selection != self.selection:
            self.selection = selection
            self.events.selection.emit(selection)

    # ---- the objects of an image: listed, hidden, locked (a view: not saved, not undone) ------------------

    def image_objects(self, image_id: int | None = None) -> list[ObjectRow]:
        """Every object of an image (default: the current one): its annotations or segments, then the
        predictions shown (above the threshold, then the ghosts when they are shown), with their flags."""
        iid = self.current_image_id if image_id is None else image_id
        doc = self.doc
        if doc is None or iid is None:
            return []
        rows = document_rows(doc, iid)
        rows += prediction_rows(self.visible_predictions(iid), self.class_names, "open")
        rows += prediction_rows(self.ghost_predictions(iid), self.class_names, "ghost")
        return with_flags(rows, self.flags, iid)

    def set_hidden(self, kind: str, keys: Iterable[int], hidden: bool = True) -> None:
        """Hide (or show again) objects of the current image; a hidden object leaves the selection."""
        keys = [int(k) for k in keys]
        self._set_flag("hidden", kind, keys, hidden)
        if hidden:
            sel = self.selection
            gone = set(keys)
            self.select(
                [a for a in sel.annotation_ids if not (kind == ANNOTATION and a in gone)],
                [q for q in sel.query_ids if not (kind == PREDICTION and q in gone)],
                [s for s in sel.segment_ids if not (kind == SEGMENT and s in gone)],
            )

    def set_locked(self, kind: str, keys: Iterable[int], locked: bool = True) -> None:
        """Lock (or unlock) objects of the current image: they stay drawn and selectable but cannot be moved
        or edited."""
        self._set_flag("locked", kind, keys, locked)

    def hidden_keys(self, kind: str, image_id: int | None = None) -> set[int]:
        iid = self.current_image_id if image_id is None else image_id
        return self.flags.keys_of("hidden", iid, kind) if iid is not None else set()

    def locked_keys(self, kind: str, image_id: int | None = None) -> set[int]:
        iid = self.current_image_id if image_id is None else image_id
        return self.flags.keys_of("locked", iid, kind) if iid is not None else set()

    def _set_flag(self, which: str, kind: str, keys: Iterable[int], on: bool) -> None:
        iid = self.current_image_id
        if iid is None:
            return
        if self.flags.set(which, (ObjectKey(iid, kind, int(k)) for k in keys), on):
            self.events.objects.emit(iid)

    # ---- the model and its predictions -------------------------------------------------------------------

    @property
    def class_names(self) -> Mapping[int, str]:
        """The loaded model's class names (empty before a model is loaded)."""
        return self.model_info.class_names if self.model_info is not None else {}

    def choose_model(self, choice: ModelChoice | None) -> None:
        """The model the user asked for (loading until `set_model` says it is in)."""
        self.model_choice = choice
        self.events.model_choice.emit(choice)

    def set_model(self, info: ModelInfo | None) -> None:
        """The loaded model; predictions of the old one are dropped."""
        self.model_info = info
        self.store.clear()
        self.events.model.emit(info)
        self.events.predictions.emit(None)

    def belongs_here(self, image_id: int, dets: Detections) -> bool:
        """Whether a result is for an image of the open project (not one opened before it)."""
        doc = self.doc
        if doc is None:
            return False
        try:
            return str(doc.image_path(image_id)) == dets.source
        except KeyError:
            return False

    def put_predictions(self, results: Mapping[int, Detections], model: str) -> list[int]:
        """Store results that belong to the open project; returns their image ids."""
        kept = [iid for iid, dets in results.items() if self.belongs_here(iid, dets)]
        for iid in kept:
            self.store.put(iid, results[iid], model)
        if kept:
            self.events.predictions.emit(tuple(kept))
        return kept

    def visible_predictions(self, image_id: int | None = None) -> Detections | None:
        """Open predictions of an image (default: the current one) above the threshold, best first."""
        iid = self.current_image_id if image_id is None else image_id
        return self.store.visible(iid, self.threshold) if iid is not None else None

    def ghost_predictions(self, image_id: int | None = None) -> Detections | None:
        """Open predictions at or below the threshold, when ghosts are shown."""
        iid = self.current_image_id if image_id is None else image_id
        if iid is None or not self.show_ghosts:
            return None
        return self.store.ghosts(iid, self.threshold)

    # ---- editing (every change is one undo step) ---------------------------------------------------------

    def apply(self, edit: Edit, text: str, *, merge_key: object = None) -> bool:
        """Make a document edit as one undo step; False (and ``failed``) when the document refuses it."""
        if self.history is None or self.doc is None:
            return False
        if self.doc.read_only:
            self.events.failed.emit(f"{text}: {self.doc.read_only_reason}")
            return False
        return self.history.record(text, [DocumentChange(self.doc, edit)], merge_key=merge_key)

    def apply_steps(self, builds: Iterable[Callable[[], Edit]], text: str) -> bool:
        """Build and make edits one after the other, each on the document the one before left, as one undo
        step; False (and ``failed``) when the document refuses one, with none of them kept."""
        if self.history is None or self.doc is None:
            return False
        doc = self.doc
        with self.history.transaction(text) as tx:
            for build in builds:
                tx.apply(DocumentChange(doc, build()))
        return tx.ok

    def accept(self, query_ids: Sequence[int], text: str | None = None) -> bool:
        """Turn predictions of the current image into annotations with the model's provenance, and mark
        them accepted: one undo step."""
        iid = self.current_image_id
        entry = self.store.get(iid) if iid is not None else None
        doc = self.doc
        if not query_ids or entry is None or doc is None or self.history is None:
            return False
        if not (self.editable or self.panoptic_editable):
            return False
        assert iid is not None
        if doc.is_panoptic:
            try:
                edit, _ = accept_segments_edit(doc, iid, entry.detections, query_ids, self.class_names)
            except CocoEditError as exc:
                self.events.failed.emit(f"accept: {exc}")
                return False
        else:
            rows = [self.store.row_of(iid, q) for q in query_ids]
            edit = accept_edit(doc, iid, entry.detections, rows, entry.model, self.class_names)
        label = text or (
            "accept prediction" if len(query_ids) == 1 else f"accept {plural(len(query_ids), 'prediction')}"
        )
        with self.history.transaction(label) as tx:
            tx.apply(DocumentChange(doc, edit))
            tx.apply(MarkChange.of(self.store, iid, entry.model, query_ids, ACCEPTED))
        return tx.ok

    def accept_all(self) -> bool:
        """Accept every open prediction of the current image above the threshold (one undo step)."""
        dets = self.visible_predictions()
        if dets is None or not len(dets):
            return False
        return self.accept([int(q) for q in dets.query_ids], f"accept {plural(len(dets), 'prediction')}")

    def reject(self, query_ids: Sequence[int]) -> bool:
        """Hide predictions of the current image; undoable like every edit."""
        iid = self.current_image_id
        entry = self.store.get(iid) if iid is not None else None
        if not query_ids or entry is None or self.history is None:
            return False
        assert iid is not None
        text = (
            "reject prediction" if len(query_ids) == 1 else f"reject {plural(len(query_ids), 'prediction')}"
        )
        return self.history.record(text, [MarkChange.of(self.store, iid, entry.model, query_ids, REJECTED)])

    def undo(self) -> bool:
        return self.history.undo() if self.history is not None else False

    def redo(self) -> bool:
        return self.history.redo() if self.history is not None else False
