"""What the window keeps for its next start, and brings back at that start: its size and place, the layout of
its docks (Qt's ``saveGeometry`` / ``saveState``), the last model and the image that was shown. The last
project is the first of the recent projects (`ProjectController.reopen_last`).
"""

from __future__ import annotations

import json

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

from detr_studio.session import Session
from detr_studio.session.last_session import model_choice_from_text, model_choice_text, unavailable_reason

from .services import Services

GEOMETRY_KEY = "window/geometry"
LAYOUT_KEY = "window/layout"
LAYOUT_VERSION = 1  # bump when the docks change so much that an old layout no longer fits
MODEL_KEY = "last_model"
IMAGE_KEY = "last_image"  # {"project": its recent-projects entry, "file_name": the image shown}, as JSON


def keep_window_state(window: QMainWindow, session: Session, settings: QSettings) -> None:
    """Remember the window's geometry, its dock layout and the model in use (the window is closing)."""
    settings.setValue(GEOMETRY_KEY, window.saveGeometry())
    settings.setValue(LAYOUT_KEY, window.saveState(LAYOUT_VERSION))
    if session.model_choice is not None:
        settings.setValue(MODEL_KEY, model_choice_text(session.model_choice))
    else:
        settings.remove(MODEL_KEY)
    doc, iid = session.doc, session.current_image_id
    if session.project is not None and doc is not None and iid is not None:
        shown = {"project": session.project.recent_entry(), "file_name": doc.image(iid).file_name}
        settings.setValue(IMAGE_KEY, json.dumps(shown))
    else:
        settings.remove(IMAGE_KEY)


def restore_layout(window: QMainWindow, settings: QSettings) -> bool:
    """Put the window and its docks where the last start left them (before the window is shown); False when
    nothing was kept."""
    geometry, layout = settings.value(GEOMETRY_KEY), settings.value(LAYOUT_KEY)
    restored = False
    if isinstance(geometry, QByteArray) and not geometry.isEmpty():
        restored = window.restoreGeometry(geometry)
    if isinstance(layout, QByteArray) and not layout.isEmpty():
        restored = window.restoreState(layout, LAYOUT_VERSION) or restored
    return restored


def last_image_id(session: Session, settings: QSettings) -> int | None:
    """The image of the open project that the last start showed, when it is this project's."""
    try:
        kept = json.loads(str(settings.value(IMAGE_KEY, "")))
    except ValueError:
        return None
    doc, project = session.doc, session.project
    if (
        not isinstance(kept, dict)
        or doc is None
        or project is None
        or kept.get("project") != project.recent_entry()
    ):
        return None
    info = doc.image_by_file_name(str(kept.get("file_name")))
    return info.id if info is not None else None


def restore_model(session: Session, services: Services) -> bool:
    """Load the model of the last start again when it loads without a download; the model's place in the
    status bar says why not otherwise. False when none is loaded."""
    choice = model_choice_from_text(services.settings.value(MODEL_KEY))
    if choice is None:
        return False
    reason = unavailable_reason(choice)
    if reason is not None:
        services.status_widgets.model_status.setText(f"no model (the last one: {reason})")
        return False
    session.choose_model(choice)
    return True
