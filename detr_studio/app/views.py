"""The widgets of the main window that its controllers work on (one bundle), and what every controller holds."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMainWindow

from detr_studio.session import Session

from .canvas import Canvas
from .image_list import ImageListPanel
from .panels import ReviewPanel
from .services import Services
from .status_bar import StatusWidgets


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
