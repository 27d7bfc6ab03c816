"""One lock per open document, so that two DETR Studio windows never edit the same COCO file unknowingly.

The lock is an operating-system file lock (``filelock``; ``flock`` on Linux and macOS) on a hidden file
beside the document, ``.<name>.lock``, holding the process id of the window that has it. The system lets
go of it when the process ends, however it ends, so a crash never leaves a stale lock. Within one process
the lock is shared: every document of this process that has the file open holds it, and it is let go when
the last one closes. A second process gets `LockedElsewhere`, which names the pid of the holder.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout


class LockedElsewhere(Exception):
    """Another process holds the lock; ``str()`` says so, with its pid when known."""

    def __init__(self, target: Path, pid: int | None):
        self.target = target
        self.pid = pid
        holder = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"{target}: open in another DETR Studio window{holder}")


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


@dataclass
class _Hold:
    file_lock: FileLock
    pid_fd: int | None  # kept open while held: closing it could drop the lock where flock is emulated
    users: int = 1


_held: dict[str, _Hold] = {}
_guard = threading.Lock()
_late: list[str] = []  # holds dropped by garbage collection while the guard was taken; let go of soon


class DocumentLock:
    """This process's hold on one document file. `release` lets go of it (once; later calls do nothing);
    a hold that is garbage collected unreleased lets go then."""

    def __init__(self, target: Path, key: str):
        self.target = target
        self._release = weakref.finalize(self, _let_go, key)

    def release(self) -> None:
        self._release()

    @property
    def released(self) -> bool:
        return not self._release.alive


def _let_go(key: str) -> None:
    """Drop one user of ``key``'s hold. A finalizer may run this at any moment, also while this thread holds
    the guard (inside `acquire`): then the key waits in ``_late`` for the next lock operation."""
    if not _guard.acquire(blocking=False):
        _late.append(key)
        return
    try:
        last = _drop(key)
    finally:
        _guard.release()
    _finish_late()
    if last is not None:
        _close(last)


def _drop(key: str) -> _Hold | None:
    """One user fewer (the guard is held); the hold when that was its last user."""
    hold = _held[key]
    hold.users -= 1
    if hold.users:
        return None
    del _held[key]
    return hold


def _finish_late() -> None:
    while _late:
        with _guard:
            last = _drop(_late.pop()) if _late else None
        if last is not None:
            _close(last)


def _close(hold: _Hold) -> None:
    with contextlib.suppress(OSError):
        hold.file_lock.release()
    if hold.pid_fd is not None:
        with contextlib.suppress(OSError):
            os.close(hold.pid_fd)


def acquire(target: Path) -> DocumentLock:
    """The lock of the document file ``target`` for this process. Raises `LockedElsewhere` when another
    process holds it, ``OSError`` when no lock file can be made beside it (a read-only folder)."""
    key = os.path.realpath(target)  # a link and the file it points to share one lock
    _finish_late()
    with _guard:
        hold = _held.get(key)
        if hold is not None:
            hold.users += 1
        else:
            lock_file = lock_path(Path(key))
            file_lock = FileLock(lock_file, timeout=0, thread_local=False)
            try:
                file_lock.acquire()
            except Timeout:
                raise LockedElsewhere(target, _holder_pid(lock_file)) from None
            _held[key] = _Hold(file_lock, _write_pid(lock_file))
    return DocumentLock(target, key)


def _write_pid(lock_file: Path) -> int | None:
    try:
        fd = os.open(lock_file, os.O_WRONLY)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def _holder_pid(lock_file: Path) -> int | None:
    try:
        text = lock_file.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
