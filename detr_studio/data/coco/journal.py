"""The crash journal: every edit since the last save, one JSON line each, beside the file it changes.

``<file>.journal`` starts with a header tying it to the exact content the edits apply to (its SHA-256)::

    {"detr_studio_journal": 1, "base_sha256": "..."}
    {"op": "relabel", "annotation_ids": [10], "category_id": 2}

A journal is created complete or not at all (`atomic_write`): a full or read-only disk never leaves an
empty or headless journal behind. A line that cannot be appended is cut off again, so the journal stays a
valid prefix of the edits, and ``error`` says what happened (the window shows it: a crash would now lose
the edits made since). Only the document holding the file's lock writes its journal, so two windows never
share one. A journal that does not match the file, or that was found and not replayed, is moved aside to
``<file>.journal.old`` by the next edit or save, never silently deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from detr_studio.common.files import FileWriteError, atomic_write, os_reason

from .edits import Edit
from .problems import Problem

JOURNAL_FORMAT = 1


def journal_path(path: Path) -> Path:
    """Where the journal of the file ``path`` is."""
    return path.with_name(path.name + ".journal")


def set_aside(jpath: Path) -> None:
    """Move a journal out of the way, to ``<name>.old`` (replacing an older one)."""
    with contextlib.suppress(OSError):
        os.replace(jpath, jpath.with_name(jpath.name + ".old"))


def _reason(exc: OSError) -> str:
    return exc.reason if isinstance(exc, FileWriteError) else os_reason(exc)


class Journal:
    """The journal of one document. ``path`` is None while the document may not journal (no file yet, or
    another window holds the file)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.base_sha256: str | None = None  # the content the journal's edits apply to
        self.adopted = False  # the file at ``path`` records this document's edits
        self.incomplete = False  # the journal found at open had lines we could not read
        self.error: str | None = None  # why journaling stopped (until the next save)

    def header(self) -> str:
        return json.dumps({"detr_studio_journal": JOURNAL_FORMAT, "base_sha256": self.base_sha256})

    def look(self) -> tuple[list[Edit], list[Problem]]:
        """The edits of a journal left beside the file for this very content, and what was wrong with it."""
        if self.path is None or not self.path.exists():
            return [], []
        edits, problems, matches = read_journal(self.path, self.base_sha256)
        self.incomplete = bool(problems)
        if matches and not edits and not problems:
            self.adopted = True  # an empty journal for this very file: keep appending to it
        return edits, problems

    def append(self, edit: Edit) -> bool:
        """Record one edit; True when this was the first since the journal found at open was set aside."""
        if self.path is None or self.base_sha256 is None or self.error is not None:
            return (
                False  # after a failed write the journal stays a valid prefix; it restarts with the next save
            )
        line = json.dumps(edit.to_json(), ensure_ascii=False) + "\n"
        started = not self.adopted
        try:
            if self.adopted:
                _append_line(self.path, line)
            else:
                if self.path.exists():
                    set_aside(self.path)
                atomic_write(self.path, (self.header() + "\n" + line).encode("utf-8"))
                self.adopted = True
        except OSError as exc:
            self.error = (
                f"{self.path}: cannot write the journal ({_reason(exc)}); until the next save, a crash would"
                " lose the edits made from now on"
            )
        return started

    def rewrite(self, edits: list[Edit], keep_old: bool) -> None:
        """Replace the journal by exactly ``edits`` (after a replay); ``keep_old`` copies the old one aside."""
        if self.path is None:
            return
        if keep_old:
            with contextlib.suppress(OSError):
                shutil.copyfile(self.path, self.path.with_name(self.path.name + ".old"))
        text = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in edits)
        try:
            atomic_write(self.path, (self.header() + "\n" + text).encode("utf-8"))
            self.adopted = True
        except OSError as exc:
            self.error = f"{self.path}: cannot rewrite the journal ({_reason(exc)})"

    def clear(self) -> None:
        """The document is back to what its file holds (undo): the journal keeps its header and no edits,
        so a crash now offers nothing to recover. A journal found at open and not replayed is left alone."""
        if self.adopted and self.error is None:
            self.rewrite([], keep_old=False)

    def after_save(self, target: Path) -> None:
        """The document was saved to ``target``: its own journal is done, and one beside ``target`` described
        the file just replaced."""
        own = self.path
        if own is not None and own.exists():
            if self.adopted:
                with contextlib.suppress(OSError):
                    own.unlink()
            else:
                set_aside(own)  # a journal found at open and never replayed: keep it, out of the way
        other = journal_path(target)
        if other != own and other.exists():
            set_aside(other)
        self.adopted = False
        self.error = None


def _append_line(jpath: Path, line: str) -> None:
    """Append ``line``; on failure cut the file back to where it was, so no partial line is left."""
    size = jpath.stat().st_size
    try:
        with open(jpath, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
    except OSError:
        with contextlib.suppress(OSError):
            os.truncate(jpath, size)
        raise


def read_journal(jpath: Path, base_sha256: str | None) -> tuple[list[Edit], list[Problem], bool]:
    """(edits, problems, header matches) of a journal file. Never raises."""
    where = str(jpath)
    try:
        text = jpath.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [], [Problem(where, "", f"cannot read the journal ({os_reason(exc)}); ignored")], False
    lines = text.split("\n")
    try:
        header = json.loads(lines[0])
        ok = isinstance(header, dict) and header.get("detr_studio_journal") == JOURNAL_FORMAT
    except (ValueError, RecursionError):
        ok = False
    if not ok:
        return (
            [],
            [Problem(where, "line 1", "not a DETR Studio journal header; the journal is ignored")],
            False,
        )
    if header.get("base_sha256") != base_sha256:
        message = (
            "records edits to a different version of the file; ignored (it is moved aside on the next edit)"
        )
        return [], [Problem(where, "", message)], False
    edits: list[Edit] = []
    problems: list[Problem] = []
    body = lines[1:]
    while body and body[-1] == "":
        body.pop()
    for n, line in enumerate(body, start=2):
        try:
            edits.append(Edit.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError, RecursionError):
            if n == len(body) + 1:
                message = (
                    "the last line is incomplete (the program probably stopped while writing it); ignored"
                )
            else:
                message = f"unreadable; it and the {len(body) + 1 - n} lines after it are ignored"
            problems.append(Problem(where, f"line {n}", message))
            break
    return edits, problems, True
