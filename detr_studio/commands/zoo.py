"""``detr-studio zoo list|download NAME``: the published DETR and Deformable DETR checkpoints, fetched only
when asked."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from ..model import zoo
from .errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("zoo", help="list or download the published DETR and Deformable DETR checkpoints")
    actions = parser.add_subparsers(dest="zoo_action", metavar="ACTION", required=True)
    actions.add_parser("list", help="show the checkpoints, their COCO figures and whether they are cached")
    download = actions.add_parser("download", help="download a checkpoint (resumable, hash-checked)")
    download.add_argument("name", help="a name from `detr-studio zoo list`")
    download.add_argument("--dest", help="folder to keep it in (default: the user cache folder)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.zoo_action == "list":
        print(zoo.format_zoo_table())
        return 0
    try:
        entry = zoo.get_entry(args.name)
    except (KeyError, ValueError) as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    bar: tqdm | None = None  # made when the first bytes arrive, so a failed start prints no empty bar

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.name)
        elif total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        path = zoo.download(entry, dest_dir=args.dest, progress=progress)
    except zoo.ZooDownloadError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    if not entry.hash_prefix:
        print(
            f"note: no checksum is published for {entry.name}; this copy's SHA-256 "
            f"{zoo.recorded_digest(entry, args.dest)} is recorded, and later downloads must match it"
        )
    print(path)
    return 0
