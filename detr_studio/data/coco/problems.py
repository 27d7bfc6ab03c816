"""What can be wrong with a COCO dataset, and the exceptions that say so.

One exception type reaches the commands for every dataset that cannot be used: `DatasetError` (a
``ValueError``). `CocoFormatError` is the `DatasetError` of a file's content and carries every `Problem`
(file, record, message) found; the torch datasets and panoptic quality raise it (or another `DatasetError`)
for what they find while reading samples, so ``except DatasetError`` catches everything the checks refuse.

Saving has its own family, all ``OSError``: `CocoSaveError`, and two refusals that the window offers a way
out of: `CocoReadOnlyError` (another DETR Studio window holds the file) and `CocoConflictError` (the file
changed on disk since it was read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SHOWN_PROBLEMS = 12  # problems listed in a CocoFormatError's message; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: which file, which record in it, and what."""

    path: str
    record: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.record}: {self.message}" if self.record else f"{self.path}: {self.message}"
        )


class DatasetError(ValueError):
    """Annotations, masks or images that cannot be used; the message names the file and the record."""


class CocoFormatError(DatasetError):
    """A COCO file (or data handed to `CocoDocument`) that cannot be used; ``problems`` lists why."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems[:SHOWN_PROBLEMS]]
        if len(self.problems) > SHOWN_PROBLEMS:
            lines.append(f"... and {len(self.problems) - SHOWN_PROBLEMS} more problems")
        if len(self.problems) > 1:
            lines.insert(0, f"{self.problems[0].path}: {len(self.problems)} problems:")
        super().__init__("\n".join(lines) if lines else "invalid COCO data")


def format_error(path: str, record: str, message: str) -> CocoFormatError:
    """A `CocoFormatError` holding one problem."""
    return CocoFormatError([Problem(path, record, message)])


class CocoSaveError(OSError):
    """Saving failed; the message names the file. The previous file and the document's dirty state are kept."""


class CocoReadOnlyError(CocoSaveError):
    """The document is open read-only (another DETR Studio window edits the file, or it was opened for
    reading only): save it under another name."""


class CocoConflictError(CocoSaveError):
    """The file changed on disk since the document read it; saving would overwrite those changes. Reload,
    save under another name, or save again with ``overwrite=True``."""


class CocoEditError(ValueError):
    """An edit or request the document refuses (unknown id, invalid value, wrong kind of document)."""


class Checker:
    """Collects errors and warnings about one source while records are checked."""

    def __init__(self, source: str):
        self.source = source
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, record: str, message: str) -> None:
        self.errors.append(Problem(self.source, record, message))

    def warn(self, record: str, message: str) -> None:
        self.warnings.append(Problem(self.source, record, message))

    def raise_edit_error(self) -> None:
        """Refuse an edit with every error found, as one `CocoEditError`."""
        if self.errors:
            raise CocoEditError("; ".join(f"{p.record}: {p.message}" for p in self.errors))

    def raise_format_error(self, strict: bool = False) -> None:
        """Refuse a file with every error found (and every warning when ``strict``)."""
        if self.errors or (strict and self.warnings):
            raise CocoFormatError(self.errors + (self.warnings if strict else []))
