"""Value widgets in scrolling docks (spin boxes, lists of choices, sliders) change on the mouse wheel only
when they have the focus: scrolling a dock over a spin box scrolls the dock, and never silently changes the
value under the pointer (the Training dock's batch size going from 2 to 1)."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QWidget


class WheelGuard(QObject):
    """An event filter that hands a wheel event over an unfocused widget on to its parent (the scroll area)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()  # ignored and filtered: Qt offers the event to the parent widgets instead
            return True
        return False


def guard_wheel(owner: QObject, widgets: Iterable[QWidget]) -> WheelGuard:
    """Let ``widgets`` take the wheel only when focused (a click or Tab focuses them, the wheel does not)."""
    guard = WheelGuard(owner)
    for widget in widgets:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        widget.installEventFilter(guard)
    return guard
