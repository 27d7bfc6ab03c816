"""What the window's parts share besides the session: the settings, the inference worker, the status bar,
and the user's attention (error messages that never block, and questions). Panels and docks take this
object, never the window itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from .inference import InferenceWorker
from .status_bar import StatusWidgets

APP_NAME = "DETR Studio"
ORGANISATION = "detr-studio"


class Services:
    """``errors`` keeps every error reported and ``problems`` every problem of one image (tests read both);
    ``error_dialogs`` False reports errors into the status bar and ``errors`` only; ``ask`` and
    ``choose_folder`` may be replaced (tests answer questions that way)."""

    def __init__(
        self, window: QMainWindow, settings: QSettings, worker: InferenceWorker, status_widgets: StatusWidgets
    ):
        self.window = window  # the parent of dialogs
        self.settings = settings
        self.worker = worker
        self.status_widgets = status_widgets
        self.errors: list[str] = []
        self.problems: list[str] = []
        self._problem_shown: str | None = None
        self.error_dialogs = True

    def status(self, text: str, timeout_ms: int = 0) -> None:
        """Show ``text`` in the status bar (for ``timeout_ms``, 0: until replaced)."""
        self.status_widgets.show_message(text, timeout_ms)

    def report_error(self, message: str) -> None:
        """Show an error without blocking: the status bar, a non-modal message box, and ``errors``."""
        self.errors.append(message)
        self.status(message.splitlines()[0] if message else "error", 15_000)
        if self.error_dialogs:
            box = QMessageBox(
                QMessageBox.Icon.Warning, APP_NAME, message, QMessageBox.StandardButton.Ok, self.window
            )
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()

    def report_problem(self, message: str) -> None:
        """A problem with one image (it cannot be read, or predicted): the status bar says so, and no dialog
        stops the user paging on with D / A."""
        self.problems.append(message)
        self._problem_shown = message.splitlines()[0] if message else "problem"
        self.status(self._problem_shown, 15_000)

    def clear_problem(self) -> None:
        """The user moved on: a problem still in the status bar goes (other messages stay)."""
        if self._problem_shown is not None and self.status_widgets.message.text() == self._problem_shown:
            self.status("")
        self._problem_shown = None

    def choose_folder(self, title: str, start: str = "") -> Path | None:
        """Ask for a folder (None when the user cancels)."""
        folder = QFileDialog.getExistingDirectory(self.window, title, start)
        return Path(folder) if folder else None

    def ask(
        self, title: str, text: str, choices: Sequence[str] = ("Yes", "No"), default: str | None = None
    ) -> str:
        """Ask the user to pick one of ``choices`` (returns it). Enter picks ``default`` (the first choice when
        None); closing the box picks the last choice, which must be the safe one."""
        box = QMessageBox(
            QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, self.window
        )
        buttons = [box.addButton(choice, QMessageBox.ButtonRole.ActionRole) for choice in choices]
        box.setDefaultButton(buttons[list(choices).index(default)] if default in choices else buttons[0])
        box.exec()
        clicked = box.clickedButton()
        return choices[buttons.index(clicked)] if clicked in buttons else choices[-1]
