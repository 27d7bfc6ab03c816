"""The status bar: the message on its left, and its permanent widgets on the right — a warning while edits
are not journaled, image size, zoom, the model and its device, and the progress of a batch run (count,
speed, ETA and a Cancel button), shown only while one runs.

Every text in the bar is an `ElidedLabel`: a text longer than its room ends in "…" (the whole text in its
tooltip), so that a long message never runs under the widgets on its right or off the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from .panels import duration_text

MODEL_WIDTH_PX = 240  # the most room the model's name and its device take each
JOURNAL_WARNING = "⚠ Edits not journaled: a crash would lose them — save to fix"


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" to the room it has (the whole text in its tooltip);
    ``text()`` is the whole text, ``shown_text()`` what is drawn."""

    def __init__(self, text: str = "", parent: QWidget | None = None, max_width: int | None = None):
        super().__init__(parent)
        self._full = ""
        self.auto_tooltip = True  # False: the tooltip is the caller's
        self.setTextFormat(Qt.TextFormat.PlainText)
        if max_width is not None:
            self.setMaximumWidth(max_width)
        self.setText(text)

    def text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:
        self._full = str(text)
        self._elide()
        self.updateGeometry()

    def shown_text(self) -> str:
        return super().text()

    def _elide(self) -> None:
        room = self.contentsRect().width() - 2 * self.margin()
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(room, 0))
        super().setText(shown if room > 0 else self._full)
        if self.auto_tooltip:
            self.setToolTip(self._full if super().text() != self._full else "")

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        margins = self.contentsMargins()
        extra = margins.left() + margins.right() + 2 * self.margin() + 2
        width = self.fontMetrics().horizontalAdvance(self._full) + extra
        return QSize(min(width, self.maximumWidth()), hint.height())

    def minimumSizeHint(self) -> QSize:
        width = min(self.sizeHint().width(), self.fontMetrics().horizontalAdvance("…") * 6)
        return QSize(width, super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()


class StatusWidgets:
    """Made once per window; ``cancel`` is what the Cancel button does."""

    def __init__(self, bar: QStatusBar, cancel: Callable[[], None]):
        self.bar = bar
        self.message = ElidedLabel("", bar)
        self._clear_timer = QTimer(bar)
        self._clear_timer.setSingleShot(True)
        self._clear_timer.timeout.connect(lambda: self.message.setText(""))
        bar.addWidget(self.message, 1)
        self.journal_label = ElidedLabel(JOURNAL_WARNING, bar, max_width=420)
        self.journal_label.setStyleSheet(
            "QLabel { background: #c62828; color: white; font-weight: bold; padding: 1px 6px; }"
        )
        self.journal_label.auto_tooltip = False
        self.journal_label.setVisible(False)
        self.size_label = ElidedLabel("", bar)
        self.zoom_label = ElidedLabel("", bar)
        self.model_status = ElidedLabel("no model", bar, max_width=MODEL_WIDTH_PX)
        self.device_label = ElidedLabel("", bar, max_width=MODEL_WIDTH_PX)
        self.progress = QProgressBar(bar)
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m")
        self.eta_label = ElidedLabel("", bar, max_width=200)
        self.cancel_button = QPushButton("Cancel", bar)
        self.cancel_button.clicked.connect(cancel)
        self.progress_box = QWidget(bar)
        row = QHBoxLayout(self.progress_box)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (self.progress, self.eta_label, self.cancel_button):
            row.addWidget(widget)
        self.progress_box.setVisible(False)
        bar.addPermanentWidget(self.journal_label)
        bar.addPermanentWidget(self.progress_box)
        for label in (self.size_label, self.zoom_label, self.model_status, self.device_label):
            bar.addPermanentWidget(label)
        self._started = 0.0

    def show_message(self, text: str, timeout_ms: int = 0) -> None:
        """``text`` on the left of the bar (for ``timeout_ms``; 0: until replaced)."""
        self._clear_timer.stop()
        self.message.setText(text)
        if timeout_ms > 0:
            self._clear_timer.start(timeout_ms)

    def show_journal_problem(self, problem: str | None) -> None:
        """The warning that edits are not journaled (``problem`` says why, in its tooltip); None hides it."""
        self.journal_label.setVisible(problem is not None)
        self.journal_label.setToolTip(problem or "")

    def start_batch(self, total: int) -> None:
        self._started = time.monotonic()
        self.progress.setRange(0, total)
        self.progress.setValue(0)
        self.eta_label.setText("")
        self.progress_box.setVisible(True)

    def batch_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        elapsed = time.monotonic() - self._started
        if done:
            remaining = elapsed / done * (total - done)
            self.eta_label.setText(f"{done / max(elapsed, 1e-6):.1f} img/s, ETA {duration_text(remaining)}")

    def end_batch(self) -> None:
        self.progress_box.setVisible(False)
