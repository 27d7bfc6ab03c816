"""The first start: the built-in demo project, the application icon and the start-up self-check.

On a first start with nothing to open (no path on the command line, no recent project) the window opens the
demo project: the synthetic shapes dataset of `commands.demo.DEMO`, written once into the user data folder
(``platformdirs.user_data_dir("detr-studio")``, or ``$DETR_STUDIO_HOME``), with its val split on screen and
the bundled demo model (``resources/demo/model.safetensors``) predicting the image shown.

The dataset is written on the window's task thread into a temporary folder beside the final one and renamed
into place only when complete, with a marker file naming its recipe. A start killed halfway therefore leaves
nothing that looks finished, and a partial or damaged folder (or one written for another recipe) is written
again. A complete one is reused as it is, so the user's saved edits to the demo stay.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QWidget

from . import project as projects
from .workers import ModelChoice

if TYPE_CHECKING:
    from detr_studio.commands.demo import DemoRecipe
    from detr_studio.data.synthetic import SyntheticLayout

    from .main import MainWindow

HOME_ENV = "DETR_STUDIO_HOME"  # overrides the user data folder (tests, portable installs)
DEMO_FOLDER = "demo"
MARKER = "demo-recipe.json"  # written last: its presence says the folder is complete
STALE_STAGING_S = 3600  # a staging folder this old belongs to a start that was killed
NO_MODEL_MESSAGE = (
    "Demo project opened without a model: the demo model (resources/demo/model.safetensors) is not "
    "installed. Choose one with Model > Choose Model."
)
SMOKE_TIMEOUT_MS = 60_000


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


def demo_model_choice(weights: Path) -> ModelChoice:
    """How the window loads the demo model: at the input size it was evaluated at.

    The sidecar's provenance may name the evaluation sizes (``val_size``, ``max_size``, or training
    ``scales``, whose largest is the evaluation size); without them the demo images are shown to the model
    at their own size (longer side ``DEMO.size``).
    """
    from detr_studio.commands.demo import DEMO  # brings in torch: call this off the Qt thread or after it
    from detr_studio.model.checkpoint import provenance_input_size

    try:
        provenance = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8")).get("provenance")
    except (OSError, ValueError):
        provenance = None  # the worker's load reports a broken sidecar with its file name
    size, max_size = provenance_input_size(provenance, default=(DEMO.size, DEMO.size))
    return ModelChoice(str(weights), device=None, precision="fp32", size=size, max_size=max_size)


# ---------------------------------------------------------------------------------------------- dataset


def is_complete(root: Path, recipe: DemoRecipe | None = None) -> bool:
    """Whether ``root`` holds the whole demo dataset of ``recipe`` (default: the demo's), with its marker,
    readable JSON and every image."""
    from detr_studio.commands.demo import DEMO
    from detr_studio.data.synthetic import SPLITS, SyntheticLayout

    recipe = DEMO if recipe is None else recipe
    layout = SyntheticLayout(root)
    try:
        if json.loads((root / MARKER).read_text(encoding="utf-8")) != asdict(recipe):
            return False
        for split, count in zip(SPLITS, (recipe.num_train, recipe.num_val)):
            images = json.loads(layout.instances_json(split).read_text(encoding="utf-8"))["images"]
            if len(images) != count or not layout.panoptic_json(split).is_file():
                return False
            folder = layout.images_dir(split)
            if not all((folder / str(image["file_name"])).is_file() for image in images):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _sweep_stale_staging(parent: Path) -> None:
    """Remove staging folders left by starts that were killed while writing."""
    now = time.time()
    for folder in parent.glob(f".{DEMO_FOLDER}-*"):
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def ensure_demo_dataset(root: Path | None = None, recipe: DemoRecipe | None = None) -> SyntheticLayout:
    """The demo dataset at ``root`` (default `demo_root`), written first when missing, partial or stale.

    Takes a few seconds and imports torch; call it off the Qt thread. Raises OSError naming the folder when
    it cannot write there.
    """
    from detr_studio.commands.demo import DEMO, generate_demo
    from detr_studio.data.synthetic import SyntheticLayout

    recipe = DEMO if recipe is None else recipe
    root = demo_root() if root is None else Path(root)
    layout = SyntheticLayout(root)
    if is_complete(root, recipe):
        return layout
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_staging(root.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{DEMO_FOLDER}-", dir=root.parent))
    except OSError as exc:
        raise OSError(f"{root}: cannot write the demo dataset ({exc})") from exc
    try:
        generate_demo(staging, recipe)
        (staging / MARKER).write_text(json.dumps(asdict(recipe)), encoding="utf-8")
        if root.exists() or root.is_symlink():  # partial, damaged or for another recipe: set it aside
            discarded = staging.with_name(f"{staging.name}-discarded")
            os.replace(root, discarded)
            shutil.rmtree(discarded, ignore_errors=True)
        os.replace(staging, root)
    except OSError as exc:
        if is_complete(root, recipe):  # another DETR Studio finished it at the same time
            return layout
        raise OSError(f"{root}: cannot write the demo dataset ({exc})") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return layout


def open_demo_project(root: Path | None = None) -> projects.Project:
    """The demo's val split as a project (writing the dataset first when needed). Runs off the Qt thread."""
    layout = ensure_demo_dataset(root)
    return projects.open_coco(layout.instances_json("val"), image_root=layout.images_dir("val"))


# ---------------------------------------------------------------------------------------------- window


def open_demo(window: MainWindow) -> None:
    """Open the demo project in ``window`` and, when the demo model is installed, predict the image shown.

    The dataset is written and read on the window's task thread (which also brings in torch, so the Qt
    thread never waits for it); then the inference worker loads the model and predicts. Without the demo
    model the project opens alone and the status bar says why.
    """
    root = demo_root().absolute()
    if (root / MARKER).is_file():
        message = "Opening the demo project…"
    else:
        message = f"Preparing the demo project: writing synthetic images to {root}…"
    if window.opening:
        return  # another project is on its way in
    window._open_async(message, open_demo_project, root)
    if not window.opening:
        return  # the user kept unsaved changes: nothing opens

    def forget() -> None:
        window.project_opened.disconnect(on_opened)
        window.tasks.failed.disconnect(on_failed)

    def on_failed(tag: object, exc: object) -> None:
        if tag == "open":  # the window has reported it
            forget()

    def on_opened() -> None:
        forget()
        if window.project is None or not window.project.location.absolute().is_relative_to(root):
            return
        weights = demo_model_path()
        if weights is None:
            window.statusBar().showMessage(NO_MODEL_MESSAGE)
            window.model_status.setText("no model (the demo model is not installed)")
            return
        window.load_model_choice(demo_model_choice(weights))
        window.predict_current()
        window.actions_by_name["predict_on_navigate"].setChecked(True)

    window.project_opened.connect(on_opened)
    window.tasks.failed.connect(on_failed)


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
