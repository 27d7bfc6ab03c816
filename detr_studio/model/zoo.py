"""The model zoo: the official DETR checkpoints and the Deformable DETR ones on the Hugging Face hub, where to
get them, and a careful downloader.

Nothing here touches the network until ``download`` is called. A download streams into a ``.part`` file
beside its destination, resumes an interrupted ``.part`` with an HTTP Range request, checks its SHA-256, and
only then renames it into place. Files are kept under ``cache_dir()``; a verified copy already in torch.hub's
checkpoint folder (left by ``torch.hub.load("facebookresearch/detr", ...)``) is used in place, so nobody
downloads the same file twice.

Checksums: the official DETR files carry the leading digits of their SHA-256 in their names (the torch.hub
convention), and a download must match them. The Deformable DETR files on the hub have no published checksum,
so none can be checked on the first download: its SHA-256 is recorded beside the file (``<file>.sha256``) and
every later use or download must match that record. ``zoo list`` says which entries are checked which way.
Every hub file is called ``pytorch_model.bin``, so those entries are cached under names of their own.

Environment:
    DETR_STUDIO_CACHE    root of our cache; checkpoints go to ``$DETR_STUDIO_CACHE/checkpoints``.
    DETR_STUDIO_ZOO_URL  base URL of a mirror; a file is fetched from ``<base>/<file name>``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import platformdirs

from ..common.files import atomic_write

if TYPE_CHECKING:
    from .config_fields import ModelConfig


ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(done_bytes, total_bytes)``; total is None when the server does not say.

Raising from the callback stops the download; the ``.part`` file stays for a later resume.
"""
Response = http.client.HTTPResponse | urllib.response.addinfourl

CACHE_ENV = "DETR_STUDIO_CACHE"
MIRROR_ENV = "DETR_STUDIO_ZOO_URL"
_CHUNK = 1 << 20
_TASKS = ("detection", "panoptic")


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class ZooDownloadError(RuntimeError):
    """A checkpoint could not be fetched (offline, server error, interrupted transfer)."""


class ZooHashError(ZooDownloadError):
    """A downloaded file's SHA-256 does not start with the expected prefix; the file was deleted."""

    def __init__(self, url: str, expected: str, actual: str, record: Path | None = None) -> None:
        self.url = url
        self.expected = expected
        self.actual = actual
        if record is None:
            text = (
                f"checksum mismatch for {url}: expected a SHA-256 starting with {expected}, got {actual}. "
                "The corrupt file was deleted; try again, or download the file by hand."
            )
        else:
            text = (
                f"checksum mismatch for {url}: got SHA-256 {actual}, but the first download of this file was "
                f"{expected} (recorded in {record}; no checksum is published). The file was deleted. If the "
                "publisher has changed it, delete the record and download again."
            )
        super().__init__(text)


@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint and the figures its authors reported on COCO val2017."""

    name: str
    url: str
    # leading hex digits of the file's SHA-256, as in the official file name; "" when none is published
    # (the first download's digest is recorded and checked from then on)
    hash_prefix: str
    task: str  # "detection" | "panoptic"
    backbone: str  # torchvision name: "resnet50" | "resnet101"
    dilation: bool  # DC5: the last stage dilated, stride 16 instead of 32
    num_classes: int  # largest category id + 1 (91 detection, 250 panoptic)
    size_mb: int = 0  # published file size, for display; 0 when unknown
    box_ap: float | None = None
    box_ap50: float | None = None
    segm_ap: float | None = None
    pq: float | None = None
    hub_name: str = ""  # where it is published: the torch.hub entry point, or the Hugging Face repository
    family: str = "detr"  # the model family (``registry.family_of``)
    variant: str = ""  # the family's name for this released configuration, when it has several
    cache_name: str = ""  # the cached file's name when the URL's is not unique to the entry

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"zoo entry {self.name!r}: task must be one of {_TASKS}, got {self.task!r}")
        if not re.fullmatch(r"[0-9a-f]*", self.hash_prefix):
            raise ValueError(
                f"zoo entry {self.name!r}: hash prefix {self.hash_prefix!r} is not lowercase hex (or empty)"
            )
        if not self.filename:
            raise ValueError(f"zoo entry {self.name!r}: URL {self.url!r} does not end in a file name")

    @property
    def filename(self) -> str:
        """The cached file's name (and a mirror's): ``cache_name``, else the file name at the end of the URL."""
        return self.cache_name or Path(urllib.parse.urlsplit(self.url).path).name

    @property
    def family_label(self) -> str:
        """The family for people: "DETR", "Deformable DETR (two-stage)"."""
        titles = {"detr": "DETR", "deformable_detr": "Deformable DETR"}
        title = titles.get(self.family, self.family)
        return f"{title} ({self.variant})" if self.variant else title

    @property
    def backbone_label(self) -> str:
        """Short backbone text as the paper writes it: R50, R50-DC5, R101, R101-DC5."""
        label = "R" + self.backbone.removeprefix("resnet")
        return label + "-DC5" if self.dilation else label

    def config(self) -> ModelConfig:
        """The architecture these weights need, as their family describes it."""
        from .registry import family_of  # the zoo list itself stays free of torch, for a fast window start

        return family_of(self.family).zoo_config(self)


_BASE = "https://dl.fbaipublicfiles.com/detr/"
_HUB = "https://huggingface.co/SenseTime/"


def _hub_entry(
    name: str, repo: str, variant: str, box_ap: float, dilation: bool = False, size_mb: int = 0
) -> ZooEntry:
    """A Deformable DETR checkpoint of the hub's ``SenseTime`` organisation, converted from the official release
    files (so its COCO val2017 box AP is the official README's). No checksum is published."""
    return ZooEntry(
        name, f"{_HUB}{repo}/resolve/main/pytorch_model.bin", "", "detection", "resnet50", dilation, 91,
        size_mb=size_mb, box_ap=box_ap, hub_name=f"SenseTime/{repo}", family="deformable_detr",
        variant=variant, cache_name=f"{name}.bin",
    )  # fmt: skip


_ENTRIES = (
    ZooEntry(
        "detr-r50", _BASE + "detr-r50-e632da11.pth", "e632da11", "detection", "resnet50", False, 91,
        size_mb=159, box_ap=42.0, box_ap50=62.4, hub_name="detr_resnet50",
    ),
    ZooEntry(
        "detr-r50-dc5", _BASE + "detr-r50-dc5-f0fb7ef5.pth", "f0fb7ef5", "detection", "resnet50", True, 91,
        size_mb=159, box_ap=43.3, box_ap50=63.1, hub_name="detr_resnet50_dc5",
    ),
    ZooEntry(
        "detr-r101", _BASE + "detr-r101-2c7b67e5.pth", "2c7b67e5", "detection", "resnet101", False, 91,
        size_mb=232, box_ap=43.5, box_ap50=63.8, hub_name="detr_resnet101",
    ),
    ZooEntry(
        "detr-r101-dc5", _BASE + "detr-r101-dc5-a2e86def.pth", "a2e86def", "detection", "resnet101", True, 91,
        size_mb=232, box_ap=44.9, box_ap50=64.7, hub_name="detr_resnet101_dc5",
    ),
    ZooEntry(
        "detr-r50-panoptic", _BASE + "detr-r50-panoptic-00ce5173.pth", "00ce5173", "panoptic", "resnet50",
        False, 250, size_mb=165, box_ap=38.8, segm_ap=31.1, pq=43.4, hub_name="detr_resnet50_panoptic",
    ),
    ZooEntry(
        "detr-r50-dc5-panoptic", _BASE + "detr-r50-dc5-panoptic-da08f1b1.pth", "da08f1b1", "panoptic",
        "resnet50", True, 250, size_mb=165, box_ap=40.2, segm_ap=31.9, pq=44.6,
        hub_name="detr_resnet50_dc5_panoptic",
    ),
    ZooEntry(
        "detr-r101-panoptic", _BASE + "detr-r101-panoptic-40021d53.pth", "40021d53", "panoptic", "resnet101",
        False, 250, size_mb=237, box_ap=40.1, segm_ap=33.0, pq=45.1, hub_name="detr_resnet101_panoptic",
    ),
    _hub_entry("deformable-detr", "deformable-detr", "multi-scale", 44.5),
    _hub_entry("deformable-detr-single-scale", "deformable-detr-single-scale", "single-scale", 39.4),
    _hub_entry(
        "deformable-detr-single-scale-dc5", "deformable-detr-single-scale-dc5", "single-scale-dc5", 41.5,
        dilation=True,
    ),
    _hub_entry("deformable-detr-box-refine", "deformable-detr-with-box-refine", "box-refine", 46.2),
    _hub_entry(
        "deformable-detr-two-stage", "deformable-detr-with-box-refine-two-stage", "two-stage", 46.9,
        size_mb=165,
    ),
)  # fmt: skip


def list_entries() -> list[ZooEntry]:
    """Every checkpoint: DETR's (detection, then panoptic), then Deformable DETR's."""
    return list(_ENTRIES)


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (ours, e.g. 'detr-r50', or where it is published, e.g. 'detr_resnet50' or
    'SenseTime/deformable-detr')."""
    for entry in _ENTRIES:
        if name in (entry.name, entry.hub_name):
            return entry
    known = ", ".join(e.name for e in _ENTRIES)
    raise ValueError(f"unknown zoo model {name!r}; the zoo has: {known}")


def cache_dir() -> Path:
    """Where checkpoints are kept: ``<user cache>/detr-studio/checkpoints``, or under $DETR_STUDIO_CACHE.

    The folder is not created here; ``download`` creates it when it first writes.
    """
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "checkpoints"
    return platformdirs.user_cache_path("detr-studio", appauthor=False) / "checkpoints"


def entry_url(entry: ZooEntry) -> str:
    """The URL to fetch: the official one, or the same file name under $DETR_STUDIO_ZOO_URL."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return mirror.rstrip("/") + "/" + entry.filename
    return entry.url


def cached_path(entry: ZooEntry | str, dest_dir: str | Path | None = None) -> Path | None:
    """The downloaded file when it is present (its hash is not re-checked here), else None.

    Without ``dest_dir`` this also finds a copy in torch.hub's checkpoint folder.
    """
    entry = _as_entry(entry)
    for path in _candidates(entry, dest_dir):
        if path.is_file():
            return path
    return None


def download(
    entry: ZooEntry | str,
    dest_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    opener: urllib.request.OpenerDirector | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch a checkpoint (or find it already here, verified) and return its path.

    ``opener`` replaces urllib's default opener (tests, proxies); ``timeout`` is per socket operation.
    Raises ZooDownloadError when the server cannot be reached or the transfer fails, and ZooHashError
    (a ZooDownloadError) when the file's hash is wrong.
    """
    entry = _as_entry(entry)
    url = entry_url(entry)
    folder = _folder(dest_dir)
    final = folder / entry.filename
    expected = entry.hash_prefix or recorded_digest(entry, dest_dir)  # None: nothing to check yet
    for path in _candidates(entry, dest_dir):
        if path.is_file() and expected is not None and _sha256_file(path).startswith(expected):
            return path
    if final.is_file():
        final.unlink()  # present but corrupt, or never verified: fetch it again
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ZooDownloadError(f"cannot create the checkpoint folder {folder}: {err}") from err
    part = final.with_name(final.name + ".part")
    digest = _fetch(url, part, expected or "", opener or urllib.request.build_opener(), timeout, progress)
    if expected is not None and not digest.startswith(expected):
        part.unlink(missing_ok=True)
        if entry.hash_prefix:
            raise ZooHashError(url, expected, digest)
        raise ZooHashError(url, expected, digest, record=_record_path(final))
    if expected is None:
        _write_record(_record_path(final), digest)
    os.replace(part, final)
    return final


def recorded_digest(entry: ZooEntry | str, dest_dir: str | Path | None = None) -> str | None:
    """The SHA-256 recorded at the first download of an entry without a published checksum, or None."""
    record = _record_path(_folder(dest_dir) / _as_entry(entry).filename)
    try:
        text = record.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def _record_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".sha256")


def _write_record(record: Path, digest: str) -> None:
    try:
        atomic_write(record, (digest + "\n").encode("ascii"))
    except OSError as err:
        raise ZooDownloadError(f"cannot record the checksum of the download in {record}: {err}") from err


def format_zoo_table(dest_dir: str | Path | None = None) -> str:
    """A plain-text table of the zoo for ``detr-studio zoo list``."""
    header = ("name", "family", "task", "backbone", "box AP", "PQ", "size", "sha256", "cached")
    rows = [header]
    for e in _ENTRIES:
        rows.append(
            (
                e.name,
                e.family,
                e.task,
                e.backbone_label,
                _figure(e.box_ap),
                _figure(e.pq),
                f"{e.size_mb} MB" if e.size_mb else "-",
                e.hash_prefix or ("recorded" if recorded_digest(e, dest_dir) else "unpublished"),
                "yes" if cached_path(e, dest_dir) else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(
        "sha256: the published prefix a download must match; 'unpublished': none is published, so the first "
        "download's is recorded ('recorded') and checked from then on"
    )
    lines.append(f"cache: {_folder(dest_dir)}")
    return "\n".join(lines)


def _fetch(
    url: str,
    part: Path,
    hash_prefix: str,
    opener: urllib.request.OpenerDirector,
    timeout: float,
    progress: ProgressCallback | None,
) -> str:
    """Bring ``part`` to the whole file and return its SHA-256 hex digest.

    Resumes from an existing ``part``; starts over when the server ignores or refuses the range.
    """
    for _attempt in range(2):
        offset = part.stat().st_size if part.is_file() else 0
        response = _open(opener, url, offset, timeout)
        if response is None:
            # 416: nothing past ``offset``. Either the .part is already whole, or it is wrong.
            digest = _sha256_file(part)
            if digest.startswith(hash_prefix):
                return digest
            part.unlink()
            continue
        with response:
            status = response.status or 200  # file:// mirrors report no status
            hasher = hashlib.sha256()
            if offset and status == 206:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink()
                    continue
                _hash_into(hasher, part)
                mode = "ab"
            else:
                offset, mode = 0, "wb"
                total = _int_or_none(response.headers.get("Content-Length"))
            _stream(response, part, mode, hasher, offset, total, url, progress)
            return hasher.hexdigest()
    raise ZooDownloadError(
        f"the server for {url} keeps answering range requests wrongly; delete {part} and retry"
    )


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float) -> Response | None:
    """Send the request; None means the server answered 416 (range not satisfiable)."""
    request = urllib.request.Request(url, headers={"User-Agent": "detr-studio"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    host = urllib.parse.urlsplit(url).hostname or url
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            return None
        raise ZooDownloadError(
            f"{host} answered HTTP {err.code} {err.reason} for {url}. The file may have moved: set "
            f"{MIRROR_ENV} to a mirror, or download it by hand and open the file."
        ) from err
    except urllib.error.URLError as err:
        raise _unreachable(host, url, err.reason) from err
    except (OSError, http.client.HTTPException) as err:
        raise _unreachable(host, url, err) from err


def _stream(
    response: Response,
    part: Path,
    mode: str,
    hasher: _Hasher,
    done: int,
    total: int | None,
    url: str,
    progress: ProgressCallback | None,
) -> None:
    """Copy the body into ``part``, hashing as it goes; a broken transfer keeps ``part`` for resuming."""
    with open(part, mode) as out:
        if progress is not None:
            progress(done, total)
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as err:
                out.flush()
                raise ZooDownloadError(
                    f"download of {url} stopped after {done} of {total or '?'} bytes ({err}); "
                    "run it again to resume"
                ) from err
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as err:
                raise ZooDownloadError(f"cannot write {part}: {err}") from err
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    if total is not None and done < total:
        raise ZooDownloadError(
            f"download of {url} stopped after {done} of {total} bytes; run it again to resume"
        )


def _unreachable(host: str, url: str, reason: object) -> ZooDownloadError:
    return ZooDownloadError(
        f"could not reach {host} ({reason}). Check your connection, or download {url} by hand "
        "and open the file."
    )


def _content_range(value: str) -> tuple[int, int | None]:
    """Parse 'bytes START-END/TOTAL' into (START, TOTAL); (-1, None) when malformed."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value)
    if not match:
        return -1, None
    total = match.group(3)
    return int(match.group(1)), (int(total) if total != "*" else None)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def _hash_into(hasher: _Hasher, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    _hash_into(hasher, path)
    return hasher.hexdigest()


def _figure(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def _folder(dest_dir: str | Path | None) -> Path:
    return Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()


def _candidates(entry: ZooEntry, dest_dir: str | Path | None) -> list[Path]:
    """Where a finished download may already be: our folder, then torch.hub's (default cache only)."""
    paths = [_folder(dest_dir) / entry.filename]
    if dest_dir is None:
        paths.append(_torch_hub_checkpoints() / entry.filename)
    return paths


def _torch_hub_checkpoints() -> Path:
    """torch.hub's default checkpoint folder, found the way torch finds it, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def _as_entry(entry: ZooEntry | str) -> ZooEntry:
    return entry if isinstance(entry, ZooEntry) else get_entry(entry)
