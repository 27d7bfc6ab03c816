"""Reading JSON files and writing files atomically, the one way for the whole program.

`read_json(path, what)` reads any JSON file a user can point us at (COCO annotations, sidecars, configs, run
records) and raises `FileProblem` with one line that names the file and what is wrong with it: missing, a
folder, unreadable, UTF-16, not UTF-8, empty, broken (line and column, with a hint when it looks truncated),
nested too deeply, or holding an unpaired surrogate escape (``"\\ud800"``), which no UTF-8 file can hold and so
could never be saved back. A UTF-8 byte-order mark is accepted everywhere.

`atomic_write(path, data)` writes bytes (or lets a writer such as ``torch.save`` write) to a temporary file in
the same folder, flushes and fsyncs it, optionally keeps the previous file as ``<name>.bak`` (and older
``<name>.bak.2`` …), and moves the new one into place with ``os.replace``. Readers only ever see the old file
or the new one. A failure raises `FileWriteError` (an ``OSError``) naming the file and the reason ("no space left
on …"), removes the temporary file and leaves the previous file untouched. New files get the user's umask; a
replaced file keeps its permissions.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

Writer = Callable[[Path], object]

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class FileProblem(ValueError):
    """A file that cannot be used as it is. ``str()`` is one line: ``<path>: <problem>``."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class FileWriteError(OSError):
    """A write that failed; the previous file (if any) is unchanged. ``str()`` names the file and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: could not write ({reason}); the previous file is unchanged")


def os_reason(exc: BaseException) -> str:
    """A short reason for an ``OSError`` ("no space left on the device", "permission denied", …)."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "no space left on the device"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        if exc.errno == errno.EROFS:
            return "the file system is read-only"
        if exc.strerror:
            return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------------------
# reading


def read_bytes(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a file that should hold ``what`` ("COCO annotation", "model sidecar", …)."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileProblem(path, f"no such {what} file") from None
    except IsADirectoryError:
        raise FileProblem(path, f"is a folder, not a {what} file") from None
    except PermissionError:
        raise FileProblem(path, f"cannot read the {what} file (permission denied)") from None
    except OSError as exc:
        raise FileProblem(path, f"cannot read the {what} file ({os_reason(exc)})") from None


def parse_json(raw: bytes, path: str | os.PathLike[str], what: str) -> tuple[Any, list[str]]:
    """(parsed JSON, the JSON paths of any NaN/Infinity constants in it) of a file's bytes.

    NaN and Infinity are not JSON but are common in files written by Python; they are parsed (as floats) and
    reported, so that the caller decides whether a field may hold them.
    """
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise FileProblem(path, f"the {what} file is UTF-16 text; JSON files must be UTF-8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            path, f"not UTF-8 text (invalid byte at offset {exc.start}); is this really a JSON file?"
        ) from None
    constants: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return float(name)

    try:
        data = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        if not text.strip():
            raise FileProblem(path, f"the {what} file is empty") from None
        hint = " (the file ends early: it may be truncated)" if exc.pos >= len(text.rstrip()) else ""
        raise FileProblem(
            path, f"broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}"
        ) from None
    except RecursionError:
        raise FileProblem(path, "the JSON is nested too deeply to read") from None
    if _SURROGATE_ESCAPE.search(raw):
        where = _find(data, _has_lone_surrogate, limit=1)
        if where:
            raise FileProblem(
                path,
                f"{where[0]} holds an unpaired surrogate escape (such as \\ud800), which is not a character"
                " and cannot be saved in a UTF-8 file",
            )
    return data, (_find(data, _is_non_finite) if constants else [])


def read_json(path: str | os.PathLike[str], what: str, *, expect: type | None = dict) -> Any:
    """The parsed JSON of ``path``; `FileProblem` names the file and the problem. With ``expect`` (a dict by
    default; None for any value) the top level must be of that type."""
    data, _ = parse_json(read_bytes(path, what), path, what)
    if expect is not None and not isinstance(data, expect):
        raise FileProblem(
            path, f"a {what} file must hold a JSON {_json_name(expect)}, got {_json_name(type(data))}"
        )
    return data


def _json_name(kind: type) -> str:
    names = {dict: "object", list: "list", str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(kind, "null" if kind is type(None) else kind.__name__)


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _has_lone_surrogate(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find(data: Any, test: Callable[[Any], bool], limit: int = 5) -> list[str]:
    """JSON paths (``images[3].file_name``) of the first ``limit`` values (or object keys) passing ``test``."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(found) < limit:
        where, value = stack.pop()
        if test(value):
            found.append(where or "the top level")
        elif isinstance(value, dict):
            for key in value:
                if test(key):
                    found.append(f"a key of {where or 'the top level'}")
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return found[:limit]


# --------------------------------------------------------------------------------------------------------------
# writing


def temp_name(target: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside ``target`` for a file that becomes ``target`` (or its backup)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{suffix}")


def backup_path(target: Path, n: int = 1) -> Path:
    """``<name>.bak`` for the newest backup, ``<name>.bak.N`` for older ones."""
    return target.with_name(f"{target.name}.bak" if n <= 1 else f"{target.name}.bak.{n}")


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | Writer,
    *,
    backups: int = 0,
) -> Path:
    """Replace ``path`` with ``data`` (bytes, or a writer called with the temporary path) in one step.

    ``backups`` > 0 keeps that many previous versions (``<name>.bak``, ``<name>.bak.2``, …). A link is followed:
    the file it points to is replaced, the link stays. Raises `FileWriteError`; the previous file is unchanged
    and no temporary file is left behind. Returns the path as given.
    """
    target = Path(path)
    real = target.resolve() if target.is_symlink() else target
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileWriteError(target, f"cannot create the folder {real.parent}: {os_reason(exc)}") from exc
    tmp = temp_name(real)
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            _create_empty(tmp)  # the user's umask, not the 0600 of a private temporary file
            data(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        if real.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(real.stat().st_mode))
            if backups > 0:
                _keep_backups(real, backups)
        os.replace(tmp, real)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not isinstance(exc, Exception):
            raise
        raise FileWriteError(target, _write_reason(exc, real.parent)) from exc
    fsync_folder(real.parent)
    return target


def _create_empty(path: Path) -> None:
    with open(path, "xb"):
        pass


def _write_reason(exc: BaseException, folder: Path) -> str:
    """Why a write failed. Writers such as ``torch.save`` and safetensors report a full disk as a
    ``RuntimeError``; the free space of the folder tells that case apart."""
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = os_reason(exc)
        return f"no space left on {folder}" if exc.errno == errno.ENOSPC else reason
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < 1 << 20:
            return f"no space left on {folder}"
    return os_reason(exc)


def _keep_backups(target: Path, count: int) -> None:
    """Shift older backups up by one (dropping the oldest) and make ``<name>.bak`` a copy of ``target``."""
    for n in range(count, 1, -1):
        older = backup_path(target, n - 1)
        if older.exists():
            os.replace(older, backup_path(target, n))
    tmp = temp_name(target, ".bak.tmp")
    try:
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copy2(target, tmp)
        os.replace(tmp, backup_path(target, 1))
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make a rename durable on POSIX; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_orphans(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that an interrupted `atomic_write` of ``target`` left (``kill -9`` between
    creating and renaming them); returns what was removed. Call it only while no other process writes
    ``target`` (the document lock makes that so)."""
    target = Path(target)
    orphan = re.compile(re.escape(f".{target.name}.") + r"[0-9a-f]{12}(\.bak)?\.tmp")
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            if orphan.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed
