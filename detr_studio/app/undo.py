"""Unlimited undo/redo: a `QUndoStack` whose commands wrap the document's `Edit`s and their inverses.

`History.apply(edit)` makes the edit through ``CocoDocument.apply`` at once (so a refused edit is reported and
never reaches the stack), then pushes an `EditCommand` that holds the inverse. Undo applies the inverse, which
returns the edit that redoes it, and so on: the same edit code serves the GUI, the journal and the tests.
Changes that are not in the document (a rejected prediction) are `CallbackCommand`s.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from detr_studio.data.coco import CocoDocument, CocoEditError, Edit

Callback = Callable[[], None]
_MERGE_ID = 0x6E75  # commands with a merge key (nudges of the same boxes) share this id


class EditCommand(QUndoCommand):
    """One document edit, already applied when pushed; ``merge_key`` merges consecutive nudges into one step."""

    def __init__(
        self,
        history: History,
        forward: Edit,
        inverse: Edit,
        text: str,
        *,
        merge_key: object = None,
        after_redo: Callback | None = None,
        after_undo: Callback | None = None,
    ):
        super().__init__(text)
        self._history = history
        self._forward = forward
        self._inverse = inverse
        self._merge_key = merge_key
        self._after_redo = after_redo
        self._after_undo = after_undo
        self._applied = True  # the first redo (from QUndoStack.push) has nothing to do

    def redo(self) -> None:
        if self._applied:
            return
        inverse = self._history._apply_quietly(self._forward)
        if inverse is not None:
            self._inverse = inverse
            self._applied = True
            if self._after_redo is not None:
                self._after_redo()

    def undo(self) -> None:
        if not self._applied:
            return
        forward = self._history._apply_quietly(self._inverse)
        if forward is not None:
            self._forward = forward
            self._applied = False
            if self._after_undo is not None:
                self._after_undo()

    def id(self) -> int:
        return _MERGE_ID if self._merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if (
            not isinstance(other, EditCommand)
            or other._merge_key != self._merge_key
            or self._merge_key is None
        ):
            return False
        self._forward = other._forward  # redo goes straight to the last position; undo to the first
        return True


class CallbackCommand(QUndoCommand):
    """A change outside the document, given as a pair of functions."""

    def __init__(self, text: str, redo: Callback, undo: Callback):
        super().__init__(text)
        self._redo = redo
        self._undo = undo

    def redo(self) -> None:
        self._redo()

    def undo(self) -> None:
        self._undo()


class History(QObject):
    """The undo stack of one document. ``changed`` fires after every apply, undo and redo; ``failed``
    carries the message of an edit the document refused."""

    changed = Signal()
    failed = Signal(str)

    def __init__(self, doc: CocoDocument, parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc
        self.stack = QUndoStack(self)
        self.stack.indexChanged.connect(self._on_index_changed)

    def _on_index_changed(self, _index: int) -> None:
        self.changed.emit()

    def apply(
        self,
        edit: Edit,
        text: str,
        *,
        merge_key: object = None,
        after_redo: Callback | None = None,
        after_undo: Callback | None = None,
    ) -> bool:
        """Make ``edit`` and record it; False (and ``failed``) when the document refuses it."""
        try:
            inverse = self.doc.apply(edit)
        except CocoEditError as exc:
            self.failed.emit(f"{text}: {exc}")
            return False
        if after_redo is not None:
            after_redo()
        command = EditCommand(
            self, edit, inverse, text, merge_key=merge_key, after_redo=after_redo, after_undo=after_undo
        )
        before = self.stack.index()
        self.stack.push(command)
        if self.stack.index() == before:  # merged into the previous command: no index change to signal
            self.changed.emit()
        return True

    def push_callback(self, text: str, redo: Callback, undo: Callback) -> None:
        """Record (and do) a change that lives outside the document."""
        self.stack.push(CallbackCommand(text, redo, undo))

    def _apply_quietly(self, edit: Edit) -> Edit | None:
        try:
            return self.doc.apply(edit)
        except CocoEditError as exc:
            self.failed.emit(f"cannot undo/redo: {exc}")
            return None

    def undo(self) -> None:
        self.stack.undo()

    def redo(self) -> None:
        self.stack.redo()

    def mark_saved(self) -> None:
        self.stack.setClean()
