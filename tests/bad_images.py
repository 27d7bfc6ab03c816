"""Image files that go wrong the way users' files do, written in a few bytes: a PNG whose header claims far
more pixels than any real picture (a decompression bomb) and a file that is not an image at all."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A PNG header of ``width`` x ``height`` 8-bit grey pixels (900 Mpx by default) with no pixel data:
    Pillow refuses it as a decompression bomb as soon as it reads the header."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b""))
    return path


def write_not_an_image(path: Path) -> Path:
    """A file with an image's name and text inside."""
    path.write_text("this is not a picture\n")
    return path
