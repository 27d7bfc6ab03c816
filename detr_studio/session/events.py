"""A tiny event emitter for the Qt-free session: callbacks connected to an `Emitter` are called, in the order
they were connected, each time it emits a value. No Qt, no threads: the session lives on one thread (the Qt
thread in the window) and its events are plain synchronous calls, so views stay in step with the model and
unit tests can record them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
Callback = Callable[[T], object]


class Emitter(Generic[T]):
    """One kind of event. ``connect(callback)``; ``emit(value)`` calls every callback with ``value``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callback] = []
        self._blocked = 0

    def connect(self, callback: Callback) -> Callback:
        """Call ``callback(value)`` on every emit; returns it (so it can be used as a decorator)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def emit(self, value: T) -> None:
        if self._blocked:
            return
        for callback in list(self._callbacks):
            callback(value)

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        """Emit nothing inside the block."""
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1

    def __len__(self) -> int:
        return len(self._callbacks)

    def __repr__(self) -> str:
        return f"Emitter({self.name!r}, {len(self._callbacks)} callbacks)"
