"""The sub-commands of ``detr-studio``; each module has ``register(subparsers)`` and a ``run(args)``."""

from __future__ import annotations


class CommandError(Exception):
    """A failure to report to the user in one line, with exit status 1."""


from . import demo, export, predict, train, zoo  # noqa: E402  (the modules import CommandError from here)
from . import eval as evaluate  # noqa: E402

COMMANDS = (predict, train, evaluate, export, demo, zoo)
