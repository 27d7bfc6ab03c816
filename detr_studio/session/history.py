"""One undo history for everything the user changes: document edits and prediction review marks alike.

A `Change` is made by ``apply()``, which returns the change that undoes it (the document's `Edit`s already
work this way, and so do the prediction store's marks). A *step* is what one Ctrl+Z undoes: the changes of
one `transaction`, grouped as napari's ``block_history`` groups a brush stroke. Accepting a prediction is one
step of two changes (add the annotation, mark the query accepted); rejecting is a step of one mark change.

- ``with history.transaction("accept 3 predictions") as tx: tx.apply(change) ...`` makes the changes at once;
  when the document refuses one (`CocoEditError`) the changes already made are taken back, nothing is
  recorded, ``failed`` says why and ``tx.ok`` is False. Nested transactions join the outer one.
- Consecutive steps with the same ``merge_key`` (nudging the same boxes with the arrow keys) merge into one.
- Undo and redo are unlimited. ``mark_saved()`` remembers where the file was written; `at_saved_state` tells
  whether the document is back to what the file holds (steps that only change review marks do not count).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from detr_studio.data.coco import CocoDocument, CocoEditError, Edit

from .events import Emitter


class Change(Protocol):
    """Something undoable. ``apply()`` makes it and returns the change that undoes it (raising
    `CocoEditError` when it cannot be made); ``touches_document`` says whether it changes the document."""

    touches_document: bool

    def apply(self) -> Change: ...


@dataclass(frozen=True)
class DocumentChange:
    """A document `Edit`, made through ``CocoDocument.apply`` (so it is journaled and marks the document
    dirty)."""

    doc: CocoDocument
    edit: Edit
    touches_document: bool = True

    def apply(self) -> DocumentChange:
        return DocumentChange(self.doc, self.doc.apply(self.edit))


@dataclass(frozen=True)
class HistoryChange:
    """What the history just did: ``kind`` is "do", "undo" or "redo"; ``text`` names the step."""

    kind: str
    text: str
    touches_document: bool


@dataclass
class _Step:
    text: str
    forwards: list[Change]  # what redo applies, in order
    inverses: list[Change]  # what undo applies, in reverse order
    merge_key: object = None

    @property
    def touches_document(self) -> bool:
        return any(c.touches_document for c in self.forwards)


@dataclass
class Transaction:
    """The changes of one step while it is being made; see the module docstring."""

    text: str
    forwards: list[Change] = field(default_factory=list)
    inverses: list[Change] = field(default_factory=list)
    ok: bool = True

    def apply(self, change: Change) -> None:
        """Make ``change`` now, as part of this step (raises `CocoEditError` when it is refused)."""
        self.inverses.append(change.apply())
        self.forwards.append(change)


class History:
    """The undo history of one open project. ``changed`` fires after every step made, undone or redone;
    ``failed`` carries the message of a change that was refused. ``saved``: whether the document is at the
    state of its file when the history starts (False for a document with recovered, unsaved edits)."""

    def __init__(self, saved: bool = True) -> None:
        self.changed: Emitter[HistoryChange] = Emitter("history changed")
        self.failed: Emitter[str] = Emitter("history failed")
        self._steps: list[_Step] = []
        self._index = 0  # steps done; steps[index:] can be redone
        self._saved: int | None = 0 if saved else None
        self._open: Transaction | None = None

    # ---- making steps ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, text: str, *, merge_key: object = None) -> Iterator[Transaction]:
        """Group the changes made inside the block into one step (see the module docstring)."""
        if self._open is not None:
            yield self._open  # nested: part of the outer step
            return
        tx = Transaction(text)
        self._open = tx
        try:
            yield tx
        except CocoEditError as exc:
            self._open = None
            tx.ok = False
            self._take_back(tx.inverses)
            self.failed.emit(f"{text}: {exc}")
            return
        except BaseException:
            self._open = None
            tx.ok = False
            self._take_back(tx.inverses)
            raise
        self._open = None
        if tx.forwards:
            self._push(_Step(text, tx.forwards, tx.inverses, merge_key))

    def record(self, text: str, changes: Sequence[Change], *, merge_key: object = None) -> bool:
        """Make ``changes`` as one step; False (and ``failed``) when one is refused, with none of them kept."""
        with self.transaction(text, merge_key=merge_key) as tx:
            for change in changes:
                tx.apply(change)
        return tx.ok

    def _push(self, step: _Step) -> None:
        top = self._steps[self._index - 1] if self._index else None
        mergeable = (
            top is not None
            and step.merge_key is not None
            and top.merge_key == step.merge_key
            and self._index == len(self._steps)
            and self._saved != self._index  # never merge into the step the file was saved at
        )
        if mergeable:
            assert top is not None
            top.forwards += step.forwards
            top.inverses += step.inverses
        else:
            if self._saved is not None and self._saved > self._index:
                self._saved = None  # the saved state was undone and is now replaced: it cannot come back
            del self._steps[self._index :]
            self._steps.append(step)
            self._index += 1
        self.changed.emit(HistoryChange("do", step.text, step.touches_document))

    def _take_back(self, inverses: list[Change]) -> None:
        """Undo the changes of a transaction that failed halfway (newest first)."""
        for inverse in reversed(inverses):
            try:
                inverse.apply()
            except CocoEditError as exc:
                self.failed.emit(f"cannot take back a refused edit: {exc}")

    # ---- undo and redo -----------------------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._steps)

    def __len__(self) -> int:
        """How many steps are done (and can be undone)."""
        return self._index

    def undo(self) -> bool:
        """Undo the last step; False when there is none or it cannot be undone (then nothing changes)."""
        if not self.can_undo:
            return False
        step = self._steps[self._index - 1]
        forwards = self._run(list(reversed(step.inverses)), f"cannot undo {step.text}")
        if forwards is None:
            return False
        step.forwards = list(reversed(forwards))
        self._index -= 1
        self.changed.emit(HistoryChange("undo", step.text, step.touches_document))
        return True

    def redo(self) -> bool:
        """Redo the next step; False when there is none or it cannot be redone (then nothing changes)."""
        if not self.can_redo:
            return False
        step = self._steps[self._index]
        inverses = self._run(list(step.forwards), f"cannot redo {step.text}")
        if inverses is None:
            return False
        step.inverses = inverses
        self._index += 1
        self.changed.emit(HistoryChange("redo", step.text, step.touches_document))
        return True

    def _run(self, changes: list[Change], what: str) -> list[Change] | None:
        """Apply ``changes`` in order -> their inverses; when one is refused, the ones made are taken back."""
        inverses: list[Change] = []
        for change in changes:
            try:
                inverses.append(change.apply())
            except CocoEditError as exc:
                self._take_back(inverses)
                self.failed.emit(f"{what}: {exc}")
                return None
        return inverses

    # ---- the saved state ---------------------------------------------------------------------------------

    def mark_saved(self) -> None:
        """The document was just written to its file."""
        self._saved = self._index

    @property
    def at_saved_state(self) -> bool:
        """Whether the document is as its file holds it: no document change lies between the step the file
        was saved at and now (review marks alone do not count)."""
        if self._saved is None:
            return False
        low, high = sorted((self._saved, self._index))
        return not any(step.touches_document for step in self._steps[low:high])
