"""The widgets of the main window that its controllers work on (one bundle), and what every controller holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMainWindow

from detr_studio.data.coco import CocoEditError, Edit
from detr_studio.session import Session
from detr_studio.session.mask_tools import MaskToolError

from .canvas import Canvas
from .image_list import ImageListPanel
from .panels import ReviewPanel
from .services import Services
from .status_bar import StatusWidgets

Built = tuple[Edit, int | None] | Edit  # an edit, with the id of the object it makes or changes


@dataclass(frozen=True)
class Views:
    """``window`` is the parent of dialogs and the owner of the title; the rest are its fixed widgets."""

    window: QMainWindow
    canvas: Canvas
    review_panel: ReviewPanel
    image_panel: ImageListPanel
    status: StatusWidgets


class Controller(QObject):
    """A part of the window: it works on the session, through the window's widgets and services."""

    def __init__(self, session: Session, services: Services, views: Views, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.services = services
        self.views = views

    def unlocked(self, kind: str, ids: Iterable[int], what: str) -> list[int]:
        """``ids`` (of objects of ``kind`` on the image shown) without the locked ones; the status bar says
        when some of the ``what`` ("annotations", "segments") were left out."""
        ids = list(ids)
        locked = self.session.locked_keys(kind)
        if locked & set(ids):
            self.services.status(
                f"Locked {what} are left as they are (unlock them in the Objects dock)", 5_000
            )
        return [i for i in ids if i not in locked]

    def make_built(self, build: Callable[[], Built], text: str) -> tuple[bool, int | None]:
        """Build an edit and make it as one undo step: (whether it was made, the id the builder names). Why it
        could not be built (`MaskToolError`, `CocoEditError`) goes to the status bar."""
        try:
            built = build()
        except (MaskToolError, CocoEditError) as exc:
            message = str(exc)
            self.services.status(message[:1].upper() + message[1:], 8_000)
            return False, None
        edit, key = built if isinstance(built, tuple) else (built, None)
        return self.session.apply(edit, text), key
