"""Which image is shown: choosing it (the list, D / A, next unreviewed) and decoding its pixels off the Qt
thread. Holding D skips through images: only the newest decode request waits, and one for an image no longer
shown is dropped before it runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QImage

from detr_studio.data.images import ImageReadError, load_image
from detr_studio.session import Session
from detr_studio.session.project import Project

from .background import Lane
from .overlays import rgb_to_qimage
from .services import Services
from .views import Controller, Views


def decode_for_display(path: Path) -> QImage:
    """The image at ``path`` as a QImage (runs on a background thread)."""
    return rgb_to_qimage(np.asarray(load_image(path)))


class Navigator(Controller):
    """See the module docstring. A new project shows its first image."""

    def __init__(self, session: Session, services: Services, views: Views, parent: QObject | None = None):
        super().__init__(session, services, views, parent)
        self.canvas = views.canvas
        self.image_panel = image_panel = views.image_panel
        self.size_label = views.status.size_label
        self.pixels = Lane("pixels", parent=self)
        image_panel.image_chosen.connect(self.show_image)
        session.events.project.connect(self._on_project)

    def _on_project(self, _project: Project | None) -> None:
        first = self.image_panel.model.image_id_at(0)
        if first is not None:
            self.select_image(first)

    def select_image(self, image_id: int) -> None:
        """Make ``image_id`` current (in the list when the filter shows it, on the canvas in any case)."""
        if not self.image_panel.select_image(image_id) or self.session.current_image_id != image_id:
            self.show_image(image_id)

    def show_image(self, image_id: int) -> None:
        """Show ``image_id`` now (boxes at once, pixels when decoded)."""
        doc = self.session.doc
        if doc is None:
            return
        self.services.worker.current_image = image_id
        self.services.clear_problem()  # the last image's problem is not this one's
        with contextlib.suppress(ImageReadError):  # a folder's sizes are read lazily; decoding names the file
            doc.image_size(image_id)
        info = doc.image(image_id)
        self.session.show_image(image_id)
        self.size_label.setText(f"{info.width} × {info.height} px" if info.width else "size unknown")
        self.pixels.submit(
            decode_for_display,
            doc.image_path(image_id),
            key="pixels",
            wanted=lambda: image_id == self.session.current_image_id,
            done=lambda image: self.canvas.set_pixmap(image_id, image),
            failed=lambda exc: self._decode_failed(image_id, exc),
        )

    def _decode_failed(self, image_id: int, exc: BaseException) -> None:
        """An image that cannot be shown: the status bar and the canvas say why and its row in the list is
        marked; no dialog, so D / A page on at once."""
        message = str(exc) if isinstance(exc, ImageReadError) else f"{exc!r}"
        self.image_panel.model.mark_unreadable(image_id, message)
        if image_id == self.session.current_image_id:
            self.canvas.set_notice(f"Cannot show this image:\n{message}")
            self.services.report_problem(message)

    def show_again(self) -> None:
        """Show the current image again (its pixels from a new image folder)."""
        if self.session.current_image_id is not None:
            self.show_image(self.session.current_image_id)

    def next_image(self) -> None:
        self._step(1)

    def previous_image(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        model = self.image_panel.model
        if not model.rowCount():
            return
        current = self.session.current_image_id
        row = model.row_of(current) if current is not None else -1
        row = min(max(row + delta, 0), model.rowCount() - 1)
        image_id = model.image_id_at(row)
        if image_id is not None:
            self.select_image(image_id)

    def next_unreviewed(self) -> None:
        doc = self.session.doc
        if doc is None:
            return
        ids = self.image_panel.model.image_ids
        current = self.session.current_image_id
        start = ids.index(current) + 1 if current in ids else 0
        for image_id in ids[start:] + ids[:start]:
            if not doc.image(image_id).reviewed and image_id != current:
                self.select_image(image_id)
                return
        self.services.status("Every image shown is reviewed", 5_000)

    def shutdown(self) -> None:
        self.pixels.shutdown()
