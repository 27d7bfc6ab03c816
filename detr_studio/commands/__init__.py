"""The sub-commands of ``detr-studio``; each module has ``register(subparsers)`` and a ``run(args)``."""

from __future__ import annotations

from . import demo, export, predict, train, zoo
from . import eval as evaluate
from .errors import CommandError

COMMANDS = (predict, train, evaluate, export, demo, zoo)

__all__ = ["COMMANDS", "CommandError"]
