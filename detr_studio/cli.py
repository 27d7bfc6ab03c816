"""``detr-studio``: the one command-line entry point. With no arguments it opens the window."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .commands import COMMANDS, CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detr-studio",
        description="Detect and segment objects in your own images with DETR: predict, correct, fine-tune, export.",
    )
    parser.add_argument("--version", action="version", version=f"detr-studio {__version__}")
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="open the window, print 'ok' once it is drawn and quit (checks an installation)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _open_window(parser, args.smoke_test)
    try:
        return int(args.run(args) or 0)
    except CommandError as exc:
        print(f"detr-studio {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"detr-studio {args.command}: interrupted", file=sys.stderr)
        return 130


def _open_window(parser: argparse.ArgumentParser, smoke_test: bool = False) -> int:
    try:
        from .app.main import run_app
    except ImportError:
        parser.print_help()
        return 1 if smoke_test else 0
    return run_app(sys.argv[:1], smoke_test=smoke_test)


if __name__ == "__main__":
    sys.exit(main())
