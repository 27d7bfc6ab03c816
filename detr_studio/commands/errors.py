"""`CommandError`: a failure of a sub-command to report to the user in one line, with exit status 1."""

from __future__ import annotations


class CommandError(Exception):
    """A failure to report to the user in one line, with exit status 1."""
