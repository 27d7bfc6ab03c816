"""The first start: where the built-in demo project lives, the demo model, the application icon and the
start-up self-check.

On a first start with nothing to open (no path on the command line, no recent project) the window opens the
demo project: the synthetic shapes dataset of `data.synthetic.DEMO`, written once into the user data folder
(``platformdirs.user_data_dir("detr-studio")``, or ``$DETR_STUDIO_HOME``) by
`data.synthetic.ensure_demo_dataset` (complete or not at all; a complete one is reused with the user's saved
edits), with its val split on screen and the bundled demo model (``resources/demo/model.safetensors``)
predicting the image shown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QWidget

from detr_studio.session import project as projects
from detr_studio.session.model_loading import ModelChoice

if TYPE_CHECKING:
    from detr_studio.data.synthetic import DemoRecipe, SyntheticLayout

HOME_ENV = "DETR_STUDIO_HOME"  # overrides the user data folder (tests, portable installs)
DEMO_FOLDER = "demo"
NO_MODEL_MESSAGE = (
    "Demo project opened without a model: the demo model (resources/demo/model.safetensors) is not "
    "installed. Choose one with Model > Choose Model."
)
SMOKE_TIMEOUT_MS = 60_000
SHAPES_ONLY_NOTE = (
    "It knows only five synthetic shapes (circle, square, triangle, star, ring) and calls what it sees in"
    " real photos by those names."
)


def resources_dir() -> Path:
    """The package's ``resources`` folder (also inside a PyInstaller bundle)."""
    return Path(str(resources.files("detr_studio").joinpath("resources")))


def data_home() -> Path:
    """Where DETR Studio keeps its own files: ``$DETR_STUDIO_HOME`` or the platform's user data folder."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("detr-studio", appauthor=False))


def demo_root() -> Path:
    """The folder the demo dataset lives in."""
    return data_home() / DEMO_FOLDER


def demo_model_path() -> Path | None:
    """The bundled demo checkpoint (safetensors + JSON sidecar), or None when it is not installed."""
    weights = resources_dir() / "demo" / "model.safetensors"
    if weights.is_file() and weights.with_suffix(".json").is_file():
        return weights
    return None


def shapes_only_note(class_names: Mapping[int, str]) -> str | None:
    """`SHAPES_ONLY_NOTE` for a model that knows only the demo's shapes (the demo model, or one fine-tuned
    from it on the demo), else None."""
    from detr_studio.data.synthetic import knows_only_shapes

    return SHAPES_ONLY_NOTE if knows_only_shapes(class_names) else None


def demo_model_choice(weights: Path) -> ModelChoice:
    """How the window loads the demo model: in full precision, at the input size its sidecar records it was
    trained and evaluated at (the load pipeline reads it)."""
    return ModelChoice(str(weights), device=None, precision="fp32")


def ensure_demo_dataset(root: Path | None = None, recipe: DemoRecipe | None = None) -> SyntheticLayout:
    """The demo dataset at ``root`` (default `demo_root`), written first when missing, partial or stale
    (`data.synthetic.ensure_demo_dataset`). Takes a few seconds and imports torch: call it off the Qt thread."""
    from detr_studio.data import synthetic

    return synthetic.ensure_demo_dataset(demo_root() if root is None else Path(root), recipe)


def open_demo_project(root: Path | None = None) -> projects.Project:
    """The demo's val split as a project (writing the dataset first when needed). Runs off the Qt thread."""
    layout = ensure_demo_dataset(root)
    return projects.open_coco(layout.instances_json("val"), image_root=layout.images_dir("val"))


def demo_opening_message(root: Path) -> str:
    """What the status bar says while the demo project opens (the first time, its images are written)."""
    from detr_studio.data.synthetic import DEMO_MARKER

    if (root / DEMO_MARKER).is_file():
        return "Opening the demo project…"
    return f"Preparing the demo project: writing synthetic images to {root}…"


def app_icon() -> QIcon:
    """The DETR Studio icon at every size drawn by ``packaging/make_icons.py``."""
    icon = QIcon()
    for png in sorted((resources_dir() / "icons").glob("detr-studio-*.png")):
        icon.addFile(str(png))
    return icon


class FirstPaintCheck(QObject):
    """``detr-studio --smoke-test``: print "ok" and quit once ``widget`` has been painted; exit status 1 with
    a message when it is not painted within a minute."""

    def __init__(self, app: QApplication, widget: QWidget, timeout_ms: int = SMOKE_TIMEOUT_MS):
        super().__init__(widget)
        self.app = app
        self.painted = False
        widget.installEventFilter(self)
        QTimer.singleShot(timeout_ms, self._give_up)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and not self.painted:
            self.painted = True
            QTimer.singleShot(0, self._succeed)
        return False

    def _succeed(self) -> None:
        print("ok", flush=True)
        self.app.exit(0)

    def _give_up(self) -> None:
        if not self.painted:
            print("smoke test: the window was not painted within a minute", file=sys.stderr, flush=True)
            self.app.exit(1)
