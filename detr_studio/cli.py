"""``detr-studio``: the one command-line entry point. Without a command it opens the window: ``detr-studio``
reopens the last project, ``detr-studio PATH`` opens a folder of images, an image or a COCO JSON file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from . import __version__
from .commands import COMMANDS, CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detr-studio",
        usage="%(prog)s [PATH]  (opens the window)\n       %(prog)s COMMAND [options]",
        description="Detect and segment objects in your own images with DETR: predict, correct, fine-tune, export."
        " Without a command, opens the window: the bare command reopens the last project (the demo project on"
        " a first start); with PATH it opens that folder of images, image or COCO JSON file.",
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


def command_names(parser: argparse.ArgumentParser) -> list[str]:
    """The sub-command names ``parser`` knows."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def split_window_path(argv: Sequence[str], commands: Collection[str]) -> tuple[str | None, list[str]]:
    """(the PATH to open in the window, the other arguments): the first argument that is neither an option
    nor a command; (None, all of them) when there is none."""
    for i, token in enumerate(argv):
        if token.startswith("-"):
            continue  # the options before a command take no values
        if token in commands:
            return None, list(argv)
        return token, [*argv[:i], *argv[i + 1 :]]
    return None, list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    path, rest = split_window_path(list(sys.argv[1:] if argv is None else argv), command_names(parser))
    args = parser.parse_args(rest)
    if args.command is None:
        if args.check_display:
            return _check_display(quiet=False)
        if path is not None and not Path(path).exists():
            print(f"detr-studio: {path}: no such file or folder", file=sys.stderr)
            return 2
        return _open_window(parser, args.smoke_test, path)
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


def _open_window(parser: argparse.ArgumentParser, smoke_test: bool = False, path: str | None = None) -> int:
    try:
        from .app.main import run_app
    except ImportError:
        parser.print_help()
        return 1 if smoke_test else 0
    if _check_display(quiet=True):
        return 1
    return run_app([*sys.argv[:1], *([path] if path is not None else [])], smoke_test=smoke_test)


if __name__ == "__main__":
    sys.exit(main())
