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
    parser.add_argument(
        "--check-display",
        action="store_true",
        help="check that the window can start here (Qt's system libraries, a display) and say what to install",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if args.check_display:
            return _check_display(quiet=False)
        return _open_window(parser, args.smoke_test)
    try:
        return int(args.run(args) or 0)
    except CommandError as exc:
        print(f"detr-studio {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"detr-studio {args.command}: interrupted", file=sys.stderr)
        return 130


def _check_display(quiet: bool) -> int:
    """0 when the window can start here; else 1, after printing what is missing and how to install it."""
    from .app.display_check import check_display

    result = check_display()
    if not result.ok:
        print(f"detr-studio: {result.message}", file=sys.stderr)
        return 1
    if not quiet:
        print("detr-studio: the window can start here")
    return 0


def _open_window(parser: argparse.ArgumentParser, smoke_test: bool = False) -> int:
    try:
        from .app.main import run_app
    except ImportError:
        parser.print_help()
        return 1 if smoke_test else 0
    if _check_display(quiet=True):
        return 1
    return run_app(sys.argv[:1], smoke_test=smoke_test)


if __name__ == "__main__":
    sys.exit(main())
