"""Where the files a COCO record names are: inside the dataset's folders, never outside them.

An image ``file_name`` (or a panoptic PNG's) is a path relative to its folder. A name that is absolute
(``/etc/passwd``, ``C:\\x.jpg``) or that climbs out of the folder with ``..`` is refused when the file is
checked (`name_problem`) and can never be opened (`resolve_inside`), so the window, ``train`` and ``eval``
read only what lies in the folders the user chose. The check is on the name alone: a symlink inside the
folder is the user's own arrangement and is followed as usual. Backslashes count as separators, so a
dataset that climbs out on Windows is refused everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from .problems import DatasetError
from .values import short

_SEPARATORS = re.compile(r"[\\/]")


def name_problem(name: str, folder: str = "image folder") -> str | None:
    """Why ``name`` cannot be a file inside the ``folder`` (None when it can)."""
    if ".." not in name and ":" not in name and "\\" not in name and "\x00" not in name and name[:1] != "/":
        return None  # the common case, decided without splitting
    if "\x00" in name:
        return f"{short(name)} contains a NUL character"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return f"{short(name)} is an absolute path; names must be relative to the {folder}"
    depth = 0
    for part in _SEPARATORS.split(name):
        if part == "..":
            depth -= 1
            if depth < 0:
                return f"{short(name)} climbs out of the {folder} with '..'"
        elif part not in ("", "."):
            depth += 1
    return None


def resolve_inside(folder: Path | None, name: str, what: str = "image folder") -> Path:
    """``folder / name`` for a name inside the folder (relative to the working folder when ``folder`` is
    None); `DatasetError` for a name that would leave it."""
    problem = name_problem(name, what)
    if problem is not None:
        raise DatasetError(f"{folder if folder is not None else Path('.')}: {problem}")
    return (folder if folder is not None else Path(".")) / name
