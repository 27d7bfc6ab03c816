"""Counted nouns in the text users read: ``plural(1, "annotation")`` is "1 annotation", ``plural(2,
"annotation")`` "2 annotations" (thousands separated: "12,000 images"), so that no message says "1 images"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in its plural (``many``, default ``noun + "s"``) unless ``count`` is 1."""
    word = noun if count == 1 else (many if many is not None else noun + "s")
    return f"{count:,} {word}"
