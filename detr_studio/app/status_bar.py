"""The status bar's permanent widgets: image size, zoom, the model and its device, and the progress of a
batch run (count, speed, ETA and a Cancel button), shown only while one runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from .panels import duration_text


class StatusWidgets:
    """Made once per window; ``cancel`` is what the Cancel button does."""

    def __init__(self, bar: QStatusBar, cancel: Callable[[], None]):
        self.size_label = QLabel("", bar)
        self.zoom_label = QLabel("", bar)
        self.model_status = QLabel("no model", bar)
        self.device_label = QLabel("", bar)
        self.progress = QProgressBar(bar)
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m")
        self.eta_label = QLabel("", bar)
        self.cancel_button = QPushButton("Cancel", bar)
        self.cancel_button.clicked.connect(cancel)
        self.progress_box = QWidget(bar)
        row = QHBoxLayout(self.progress_box)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (self.progress, self.eta_label, self.cancel_button):
            row.addWidget(widget)
        self.progress_box.setVisible(False)
        bar.addPermanentWidget(self.progress_box)
        for label in (self.size_label, self.zoom_label, self.model_status, self.device_label):
            bar.addPermanentWidget(label)
        self._started = 0.0

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
