"""Where a document lives on disk: reading its file, its lock, its journal, and saving it without losing
anything.

Reading goes through the one JSON reader (`detr_studio.common.files`: a UTF-8 byte-order mark is accepted,
UTF-16, truncation and lone surrogate escapes are named), each problem becoming a `CocoFormatError`.

Saving writes through `detr_studio.common.files.atomic_write`: a temporary file in the same folder, fsync,
``os.replace``; the three previous versions are kept as ``<file>.bak``, ``.bak.2`` and ``.bak.3``. Readers
only ever see the old file or the new one; a failure raises `CocoSaveError` naming the file and leaves the
old file as it was.

Two windows on one file: the document holds the file's lock (`lock`) while it is open. A document whose
file another window holds opens read-only (``read_only_reason`` says so, nothing is journaled, saving to
that file raises `CocoReadOnlyError`; save-as works). Before saving over its own file, the document checks
that the file is still what it read or last wrote (size and modification time, then the SHA-256 of the
content when those changed); when not, `CocoConflictError` is raised unless the caller passes
``overwrite=True``. Temporary files left by a save or journal write that was killed midway are removed
when a document takes the file's lock.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_studio.common.files import (
    FileProblem,
    FileWriteError,
    atomic_write,
    os_reason,
    parse_json,
    read_bytes,
    remove_orphans,
)

from .journal import Journal, journal_path
from .lock import DocumentLock, LockedElsewhere, acquire
from .problems import CocoConflictError, CocoReadOnlyError, CocoSaveError, Problem, format_error

BACKUPS = 3  # previous versions kept: <file>.bak, <file>.bak.2, <file>.bak.3


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DiskState:
    """What a file held when the document last read or wrote it (``exists`` False: there was none)."""

    exists: bool
    size: int = -1
    mtime_ns: int = -1
    sha256: str | None = None

    @staticmethod
    def of(path: Path, content_sha256: str | None) -> DiskState:
        try:
            st = path.stat()
        except OSError:
            return DiskState(False)
        return DiskState(True, st.st_size, st.st_mtime_ns, content_sha256)


def read_coco_json(path: Path) -> tuple[bytes, Any, list[str]]:
    """(bytes, parsed JSON, notes) of a COCO file, read by the one JSON reader; `CocoFormatError` names the
    file and the problem (missing, unreadable, not UTF-8, broken, a lone surrogate, ...)."""
    try:
        raw = read_bytes(path, "COCO")
        data, non_finite = parse_json(raw, path, "COCO")
    except FileProblem as exc:
        raise format_error(exc.path, "", exc.problem) from None
    notes = []
    if non_finite:
        notes.append(f"NaN or Infinity (not valid JSON; kept as is) at {', '.join(non_finite)}")
    return raw, data, notes


class Persistence:
    """The file side of one `CocoDocument` (see the module docstring)."""

    def __init__(self) -> None:
        self.path: Path | None = None  # the file the document was read from or last saved to
        self.target: Path | None = None  # without a file yet: where the first save writes (start_journal)
        self.journal = Journal()
        self.read_only_reason: str | None = None
        self.wants_lock = True  # False for a document opened for reading only
        self._lock: DocumentLock | None = None
        self._disk: DiskState | None = None

    @property
    def file(self) -> Path | None:
        """The file this document holds: its own, or the one its first save writes."""
        return self.path if self.path is not None else self.target

    def opened(self, path: Path, raw: bytes, lock: bool) -> list[Problem]:
        """The document was read from ``path`` (``raw``: its bytes). With ``lock``, take the file's lock (or
        open read-only); returns what the user should know (another window has the file, ...)."""
        self.path = path
        self.wants_lock = lock
        digest = sha256(raw)
        self._disk = DiskState.of(path, digest)
        self.journal.base_sha256 = digest
        if not lock:
            self.read_only_reason = f"{path}: opened for reading only"
            return []
        return self._take(path)

    def start_journal(self, target: Path, content_sha256: str) -> list[Problem]:
        """A document without a file journals beside ``target``, the file its first save writes."""
        self.target = target
        self.journal.base_sha256 = content_sha256
        existing = sha256(target.read_bytes()) if target.is_file() else None
        self._disk = DiskState.of(target, existing)
        return self._take(target)

    def _take(self, target: Path) -> list[Problem]:
        try:
            self._lock = acquire(target)
        except LockedElsewhere as exc:
            self.read_only_reason = f"{exc}; opened read-only: save under another name to keep your edits"
            return [Problem(str(target), "", self.read_only_reason.removeprefix(f"{target}: "))]
        except OSError as exc:
            message = (
                f"cannot lock the file ({os_reason(exc)}); another window could change it at the same time"
            )
            self.journal.path = journal_path(target)
            return [Problem(str(target), "", message)]
        remove_orphans(target)
        remove_orphans(journal_path(target))
        self.journal.path = journal_path(target)
        return []

    def changed_on_disk(self) -> bool:
        """Whether the file differs from what this document last read or wrote (deleted, created, rewritten)."""
        target = self.file
        if target is None or self._disk is None:
            return False
        now = DiskState.of(target, None)
        if not now.exists or not self._disk.exists:
            return now.exists != self._disk.exists
        if (now.size, now.mtime_ns) == (self._disk.size, self._disk.mtime_ns):
            return False
        try:
            digest = sha256(target.read_bytes())
        except OSError:
            return True
        if digest != self._disk.sha256:
            return True
        self._disk = DiskState.of(target, digest)  # touched, not changed
        return False

    def _holds(self, target: Path) -> bool:
        own = self.file
        return own is not None and os.path.realpath(own) == os.path.realpath(target)

    def check_writable(self, target: Path, overwrite: bool) -> None:
        """Refuse a save over the document's own file that `save` would refuse (read-only, changed on disk),
        before anything else is written for it."""
        if not self._holds(target):
            return
        if self.read_only_reason is not None:
            raise CocoReadOnlyError(
                f"{target}: cannot save: {self.read_only_reason.removeprefix(f'{target}: ')}"
            )
        if not overwrite and self.changed_on_disk():
            raise CocoConflictError(
                f"{target}: the file changed on disk since it was opened (another program or window wrote"
                " it); reload it, save under another name, or overwrite it"
            )

    def save(self, target: Path, payload: bytes, overwrite: bool) -> None:
        """Write ``payload`` to ``target`` atomically (see the module docstring for what is refused)."""
        new_lock: DocumentLock | None = None
        if self._holds(target):
            self.check_writable(target, overwrite)
        else:
            try:
                new_lock = acquire(target)
            except LockedElsewhere as exc:
                raise CocoReadOnlyError(f"{exc}: save under another name") from None
            except OSError:
                new_lock = None  # no lock file can be made there; the write reports what is wrong
        try:
            atomic_write(target, payload, backups=BACKUPS)
        except FileWriteError as exc:
            if new_lock is not None:
                new_lock.release()
            raise CocoSaveError(str(exc)) from exc
        self.journal.after_save(target)
        if not self._holds(target):
            self.release()
            self._lock = new_lock
            self.read_only_reason = None
            self.wants_lock = True
            self.journal.path = journal_path(target)
        self.path, self.target = target, None
        digest = sha256(payload)
        self._disk = DiskState.of(target, digest)
        self.journal.base_sha256 = digest

    def release(self) -> None:
        """Let go of the file's lock; nothing is journaled after this."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.journal.path = None
