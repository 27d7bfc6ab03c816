"""The window's Qt-free core: the `Session` (document, undo history, predictions, model, threshold, selection,
current image) with plain-Python events, and what the window does without Qt (opening projects, filtering the
image list, loading models, running inference, the review queue's lists).

Nothing here imports Qt, and nothing here imports `detr_studio.app`: the window (`app/`) listens to the
session's events and calls its methods, and unit tests drive it without a display.
"""

from .session import Selection, Session, SessionEvents

__all__ = ["Selection", "Session", "SessionEvents"]
