"""The Training dock: fine-tune the prediction model on the project's corrected labels, in the background.

The user picks a base model, the classes and images to train on, a held-out fraction and the usual
options; Start writes a snapshot of the document into a new run folder and starts a `TrainingJob` (a child
``detr-studio train`` process). Live curves show the loss and its parts per step and AP per epoch. When a
run finishes, the base and the trained model are evaluated on the held-out images in a background thread,
and "Use this model" makes the trained one the window's prediction model. Runs stay in the project folder
(``.detr-studio/runs/``) and are listed, so an interrupted one can be resumed and an old one reused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from detr_studio.model import zoo
from detr_studio.train.events import (
    CheckpointSaved,
    EpochEnd,
    Evaluated,
    Event,
    Failed,
    Finished,
    Started,
    Step,
)

from .demo_project import demo_model_path
from .panels import duration_text
from .training_job import (
    ANNOTATED,
    REVIEWED,
    JobEnd,
    RunRecord,
    TrainingJob,
    TrainingOptions,
    TrainingSetupError,
    choose_images,
    evaluate_weights,
    list_runs,
    new_run_dir,
    project_folder,
    read_events,
    save_command,
    split_images,
    summarize_run,
    torchrun_command,
    train_arguments,
    write_snapshot,
)
from .workers import TaskRunner

if TYPE_CHECKING:
    from .main import MainWindow

DEVICES = ("auto", "cpu", "cuda", "mps")
CURRENT, DEMO, ZOO, FILE = "current", "demo", "zoo", "file"
SOURCE_ROLE = Qt.ItemDataRole.UserRole + 1  # the base-model item's checkpoint path or zoo name
LOSS_COLOURS = {
    "total": (30, 30, 30),
    "loss_ce": (220, 60, 60),
    "loss_bbox": (40, 110, 220),
    "loss_giou": (30, 160, 90),
    "loss_mask": (200, 140, 20),
    "loss_dice": (150, 60, 190),
}
AP_COLOURS = {"AP": (220, 60, 60), "AP50": (40, 110, 220)}


class Series:
    """x/y points of one curve; a point at or before the last x (a resumed run replaying steps) cuts the
    curve back to before it, so a resumed run continues the line instead of drawing over it."""

    def __init__(self) -> None:
        self.x: list[float] = []
        self.y: list[float] = []

    def add(self, x: float, y: float) -> None:
        while self.x and self.x[-1] >= x:
            self.x.pop()
            self.y.pop()
        self.x.append(x)
        self.y.append(y)

    def __len__(self) -> int:
        return len(self.x)


class TrainingPanel(QWidget):
    """See the module docstring. Public calls (menus and tests use them): ``start``, ``cancel``, ``resume``,
    ``use_model``, ``copy_command``, ``show_run``, ``refresh``."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.job = TrainingJob(self)
        self.job.event.connect(self._on_event)
        self.job.ended.connect(self._on_ended)
        self.evaluator = TaskRunner(workers=1, parent=self)
        self.evaluator.done.connect(self._on_evaluated)
        self.evaluator.failed.connect(self._on_evaluation_failed)
        self.run_dir: Path | None = None  # the run shown (and trained, while the job runs)
        self.loss_series: dict[str, Series] = {}
        self.ap_series: dict[str, Series] = {}
        self.last_end: JobEnd | None = None
        self.extra_options: dict[str, object] = {}  # TrainingOptions fields the panel has no widget for
        self._steps_per_epoch = 1
        self._epochs = 1
        self._build()
        self._doc_timer = QTimer(self)
        self._doc_timer.setSingleShot(True)
        self._doc_timer.setInterval(300)
        self._doc_timer.timeout.connect(self._on_doc_changed)
        window.project_opened.connect(self._on_project_opened)
        window.worker.model_loaded.connect(lambda _info: self._fill_models())
        self.refresh()

    def _on_project_opened(self) -> None:
        if self.window.history is not None:
            self.window.history.changed.connect(self._doc_timer.start)
        if not self.job.running:
            self.run_dir = None
            self._show_empty(None)
        self.refresh()

    def _on_doc_changed(self) -> None:
        self._fill_classes()
        self._update_counts()

    # ------------------------------------------------------------------------------------------ widgets

    def _build(self) -> None:
        self.base_combo = QComboBox(self)
        self.base_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.base_combo.setMinimumContentsLength(18)
        self.base_combo.currentIndexChanged.connect(self._on_base_changed)
        self.file_edit = QLineEdit(self)
        self.file_edit.setPlaceholderText("a .safetensors or .pth checkpoint")
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self._browse)
        self.class_list = QListWidget(self)
        self.class_list.setMaximumHeight(90)
        self.class_list.itemChanged.connect(lambda _item: self._update_counts())
        self.images_combo = QComboBox(self)
        self.images_combo.addItem("Reviewed images", REVIEWED)
        self.images_combo.addItem("All annotated images", ANNOTATED)
        self.images_combo.currentIndexChanged.connect(lambda _i: self._update_counts())
        self.holdout_spin = QDoubleSpinBox(self)
        self.holdout_spin.setRange(0.0, 0.9)
        self.holdout_spin.setSingleStep(0.05)
        self.holdout_spin.setValue(0.2)
        self.holdout_spin.valueChanged.connect(lambda _v: self._update_counts())
        self.count_label = QLabel("", self)
        self.count_label.setWordWrap(True)
        defaults = TrainingOptions()
        self.epochs_spin = QSpinBox(self)
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(defaults.epochs)
        self.lr_edit = self._float_edit(defaults.lr)
        self.lr_backbone_edit = self._float_edit(defaults.lr_backbone)
        self.batch_spin = QSpinBox(self)
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(defaults.batch_size)
        self.size_spin = QSpinBox(self)
        self.size_spin.setRange(32, 2048)
        self.size_spin.setValue(defaults.size)
        self.size_spin.setSuffix(" px")
        self.max_size_spin = QSpinBox(self)
        self.max_size_spin.setRange(32, 4096)
        self.max_size_spin.setValue(defaults.max_size)
        self.max_size_spin.setSuffix(" px")
        self.device_combo = QComboBox(self)
        self.device_combo.addItems(DEVICES)

        self.start_button = QPushButton("Start", self)
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.clicked.connect(lambda: self.resume())
        self.copy_button = QPushButton("Copy command", self)
        self.copy_button.setToolTip("Copy the same run as a torchrun line for a machine with several GPUs")
        self.copy_button.clicked.connect(lambda: self.copy_command())
        self.gpus_spin = QSpinBox(self)
        self.gpus_spin.setRange(1, 64)
        self.gpus_spin.setValue(2)
        self.gpus_spin.setToolTip("--nproc_per_node of the copied torchrun command")

        self.status_label = QLabel("No run yet.", self)
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.setFormat("%p%")
        self.speed_label = QLabel("", self)
        # legends in the corner the curves move away from: losses fall (top right), AP rises (bottom right)
        self.loss_plot = self._plot("loss", "epoch", legend_offset=(-4, 4))
        self.ap_plot = self._plot("AP", "epoch", legend_offset=(-4, -4))
        self.ap_plot.setYRange(0.0, 1.0)
        self.ap_plot.enableAutoRange(axis="y", enable=False)
        self.compare_label = QLabel("", self)
        self.compare_label.setWordWrap(True)
        self.compare_label.setTextFormat(Qt.TextFormat.RichText)
        self.use_button = QPushButton("Use this model", self)
        self.use_button.setToolTip("Predict with the trained model (best.safetensors of the run)")
        self.use_button.clicked.connect(self.use_model)
        self.runs_list = QListWidget(self)
        self.runs_list.setMaximumHeight(110)
        self.runs_list.itemClicked.connect(self._on_run_clicked)

        model_box = QGroupBox("Base model", self)
        model_form = QFormLayout(model_box)
        model_form.addRow(self.base_combo)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_edit, 1)
        file_row.addWidget(self.browse_button)
        model_form.addRow(file_row)

        data_box = QGroupBox("Data", self)
        data_form = QFormLayout(data_box)
        data_form.addRow("Classes", self.class_list)
        data_form.addRow("Images", self.images_combo)
        data_form.addRow("Held out", self.holdout_spin)
        data_form.addRow(self.count_label)

        options_box = QGroupBox("Options", self)
        options_form = QFormLayout(options_box)
        options_form.addRow("Epochs", self.epochs_spin)
        options_form.addRow("Learning rate", self.lr_edit)
        options_form.addRow("Backbone lr", self.lr_backbone_edit)
        options_form.addRow("Batch size", self.batch_spin)
        options_form.addRow("Image size", self.size_spin)
        options_form.addRow("Max size", self.max_size_spin)
        options_form.addRow("Device", self.device_combo)
        options_form.addRow("GPUs (torchrun)", self.gpus_spin)

        buttons = QGridLayout()
        buttons.addWidget(self.start_button, 0, 0)
        buttons.addWidget(self.cancel_button, 0, 1)
        buttons.addWidget(self.resume_button, 1, 0)
        buttons.addWidget(self.copy_button, 1, 1)

        run_box = QGroupBox("Run", self)
        run_layout = QVBoxLayout(run_box)
        run_layout.addLayout(buttons)
        run_layout.addWidget(self.status_label)
        run_layout.addWidget(self.progress)
        run_layout.addWidget(self.speed_label)
        run_layout.addWidget(self.loss_plot)
        run_layout.addWidget(self.ap_plot)
        run_layout.addWidget(self.compare_label)
        run_layout.addWidget(self.use_button)

        history_box = QGroupBox("Runs of this project", self)
        history_layout = QVBoxLayout(history_box)
        history_layout.addWidget(self.runs_list)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for box in (model_box, data_box, options_box, run_box, history_box):
            layout.addWidget(box)
        layout.addStretch(1)

    def _float_edit(self, value: float) -> QLineEdit:
        edit = QLineEdit(f"{value:g}", self)
        validator = QDoubleValidator(0.0, 10.0, 12, edit)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        edit.setValidator(validator)
        return edit

    def _plot(self, left: str, bottom: str, legend_offset: tuple[int, int]) -> pg.PlotWidget:
        plot = pg.PlotWidget(self, background="w")
        plot.setMinimumHeight(140)
        plot.setLabel("left", left)
        plot.setLabel("bottom", bottom)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.addLegend(
            offset=legend_offset,
            labelTextSize="7pt",
            labelTextColor=(40, 40, 40),
            brush=pg.mkBrush(255, 255, 255, 210),
        )
        plot.setMouseEnabled(x=False, y=False)
        return plot

    # ------------------------------------------------------------------------------------------ choices

    def refresh(self) -> None:
        """Re-read what the panel offers from the window: models, classes, image counts, runs."""
        self._fill_models()
        self._fill_classes()
        self._update_counts()
        self.refresh_runs()
        self._update_buttons()

    def _fill_models(self) -> None:
        previous = (self.base_combo.currentData(), self.base_combo.currentData(SOURCE_ROLE))
        self.base_combo.blockSignals(True)
        self.base_combo.clear()

        def add(text: str, kind: str, source: str) -> None:
            self.base_combo.addItem(text, kind)
            self.base_combo.setItemData(self.base_combo.count() - 1, source, SOURCE_ROLE)

        choice = self.window.model_choice
        if choice is not None and not choice.is_onnx:
            add(f"Current model ({choice.name})", CURRENT, choice.source)
        demo = demo_model_path()
        if demo is not None:
            add("Demo model", DEMO, str(demo))
        for entry in zoo.list_entries():
            if entry.task == "detection":
                size = f" {entry.size_mb} MB" if entry.size_mb else ""
                where = "" if zoo.cached_path(entry) is not None else f", download{size}"
                add(f"Zoo: {entry.name} ({entry.backbone_label}{where})", ZOO, entry.name)
        add("Checkpoint file…", FILE, "")
        index = next(
            (i for i in range(self.base_combo.count())
             if (self.base_combo.itemData(i), self.base_combo.itemData(i, SOURCE_ROLE)) == previous),
            0,
        )  # fmt: skip
        self.base_combo.setCurrentIndex(index)
        self.base_combo.blockSignals(False)
        self._on_base_changed()

    def _on_base_changed(self, _index: int = 0) -> None:
        is_file = self.base_combo.currentData() == FILE
        self.file_edit.setEnabled(is_file)
        self.browse_button.setEnabled(is_file)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Base checkpoint", "", "Checkpoints (*.safetensors *.pth *.pt);;All files (*)"
        )
        if path:
            self.file_edit.setText(path)

    def set_base_file(self, path: str | Path) -> None:
        """Fine-tune from a checkpoint file (the "Checkpoint file…" entry)."""
        self.base_combo.setCurrentIndex(self.base_combo.findData(FILE))
        self.file_edit.setText(str(path))

    def base_weights(self) -> str:
        """The checkpoint path or zoo name to start from."""
        if self.base_combo.currentData() == FILE:
            path = self.file_edit.text().strip()
            if not path:
                raise TrainingSetupError("choose the checkpoint file to start from (Browse…)")
            if not Path(path).exists():
                raise TrainingSetupError(f"{path}: no such checkpoint file")
            return path
        return str(self.base_combo.currentData(SOURCE_ROLE))

    def _fill_classes(self) -> None:
        doc = self.window.doc
        names = [c.name for c in doc.categories] if doc is not None else []
        if names == [self.class_list.item(i).text() for i in range(self.class_list.count())]:
            return
        unticked = {
            self.class_list.item(i).text()
            for i in range(self.class_list.count())
            if self.class_list.item(i).checkState() != Qt.CheckState.Checked
        }
        self.class_list.blockSignals(True)
        self.class_list.clear()
        for name in names:
            item = QListWidgetItem(name, self.class_list)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if name in unticked else Qt.CheckState.Checked)
        self.class_list.blockSignals(False)

    def chosen_classes(self) -> list[str] | None:
        """Ticked class names; None when all are ticked (train on every class)."""
        names = [self.class_list.item(i).text() for i in range(self.class_list.count())]
        ticked = [
            self.class_list.item(i).text()
            for i in range(self.class_list.count())
            if self.class_list.item(i).checkState() == Qt.CheckState.Checked
        ]
        return None if len(ticked) == len(names) else ticked

    def _update_counts(self) -> None:
        doc = self.window.doc
        if doc is None or doc.is_panoptic:
            self.count_label.setText("Open an instances dataset to train on it.")
            return
        which = self.images_combo.currentData()
        ids = choose_images(doc, which)
        if not ids:
            hint = "mark images reviewed (R), or train on all annotated images" if which == REVIEWED else ""
            self.count_label.setText(f"No {which} images yet{': ' + hint if hint else ''}.")
            return
        train, held = split_images(ids, self.holdout_spin.value(), TrainingOptions.seed)
        self.count_label.setText(f"{len(ids)} images: {len(train)} to train on, {len(held)} held out")

    def options(self) -> TrainingOptions:
        """The panel's choices as `TrainingOptions`; ``extra_options`` sets the rest (workers, seed, augment)."""
        values = TrainingOptions(
            base_weights=self.base_weights(),
            classes=self.chosen_classes(),
            images=self.images_combo.currentData(),
            holdout=self.holdout_spin.value(),
            epochs=self.epochs_spin.value(),
            lr=_read_float(self.lr_edit, "learning rate"),
            lr_backbone=_read_float(self.lr_backbone_edit, "backbone learning rate", allow_zero=True),
            batch_size=self.batch_spin.value(),
            device=self.device_combo.currentText(),
            size=self.size_spin.value(),
            max_size=max(self.max_size_spin.value(), self.size_spin.value()),
        )
        for name, value in self.extra_options.items():
            setattr(values, name, value)
        return values

    # ------------------------------------------------------------------------------------------ runs

    def project_dir(self) -> Path | None:
        doc, project = self.window.doc, self.window.project
        if doc is None:
            return None
        try:
            return project_folder(doc, project.location if project is not None else None)
        except TrainingSetupError:
            return None

    def refresh_runs(self) -> None:
        self.runs_list.clear()
        folder = self.project_dir()
        if folder is None:
            return
        for summary in list_runs(folder):
            item = QListWidgetItem(summary.label(), self.runs_list)
            item.setData(Qt.ItemDataRole.UserRole, str(summary.path))
            if self.run_dir is not None and summary.path == self.run_dir:
                item.setSelected(True)

    def _on_run_clicked(self, item: QListWidgetItem) -> None:
        if self.job.running:
            return
        self.show_run(Path(item.data(Qt.ItemDataRole.UserRole)))

    def _prepare_run(self) -> tuple[Path, TrainingOptions, list[str]] | None:
        """A new run folder with the snapshot, its record and command; None (error reported) when it cannot."""
        doc = self.window.doc
        if doc is None:
            self.window.report_error("Open a project before training")
            return None
        run_dir = None
        try:
            options = self.options()
            folder = project_folder(doc, self.window.project.location if self.window.project else None)
            run_dir = new_run_dir(folder)
            snapshot = write_snapshot(doc, run_dir, options)
        except (TrainingSetupError, ValueError, OSError) as exc:
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)  # the folder this attempt made, nothing else
            self.window.report_error(f"Cannot start training: {exc}")
            return None
        args = train_arguments(snapshot, options)
        save_command(run_dir, args)
        RunRecord(
            created=run_dir.name,
            base_weights=options.base_weights,
            options=asdict(options),
            train_images=len(snapshot.train_ids),
            val_images=len(snapshot.val_ids),
            image_root=str(snapshot.image_root),
            args=train_arguments(snapshot, options, local=False),
        ).save(run_dir)
        return run_dir, options, args

    def start(self) -> Path | None:
        """Start a new run on a snapshot of the document; returns its folder (None when it cannot start)."""
        if self.job.running:
            self.window.report_error("A training run is already going on")
            return None
        prepared = self._prepare_run()
        if prepared is None:
            return None
        run_dir, options, args = prepared
        self._show_empty(run_dir)
        self.job.start(run_dir, args)
        self.status_label.setText("Starting the training process…")
        if options.base_weights and (run_dir / "val.json").is_file():
            self._evaluate(run_dir, "before", options.base_weights)
        self.refresh_runs()
        self._update_buttons()
        return run_dir

    def resume(self, run_dir: Path | None = None) -> None:
        """Continue the shown (or the given) run from its last checkpoint."""
        target = Path(run_dir) if run_dir is not None else self.run_dir
        if target is None or self.job.running:
            return
        try:
            self.job.resume(target)
        except TrainingSetupError as exc:
            self.window.report_error(f"Cannot resume: {exc}")
            return
        self.show_run(target)
        self.status_label.setText("Resuming…")
        self._update_buttons()

    def cancel(self) -> None:
        """Ask the run to save and stop; Resume continues it later."""
        if self.job.running:
            self.job.cancel()
            self.status_label.setText("Cancelling: saving the run's position…")

    def copy_command(self) -> str:
        """Put the equivalent multi-GPU ``torchrun`` line on the clipboard (and return it). Uses the shown
        run's data; without one it writes a snapshot into a new run folder first."""
        record = RunRecord.load(self.run_dir) if self.run_dir is not None else None
        if record is None:
            prepared = self._prepare_run()
            if prepared is None:
                return ""
            self.show_run(prepared[0])
            self.refresh_runs()
            record = RunRecord.load(prepared[0])
        assert record is not None
        line = torchrun_command(record.args, self.gpus_spin.value())
        QApplication.clipboard().setText(line)
        self.window.statusBar().showMessage("Copied the torchrun command to the clipboard", 5_000)
        return line

    def use_model(self) -> None:
        """Make the shown run's best model the window's prediction model."""
        if self.run_dir is None:
            return
        weights = self.run_dir / "best.safetensors"
        if not weights.is_file():
            self.window.report_error(f"{self.run_dir}: the run has not saved a model yet")
            return
        record = RunRecord.load(self.run_dir)
        options = record.options if record is not None else {}
        device = options.get("device", "auto")
        self.window.load_model(
            weights,
            device=None if device == "auto" else device,
            size=int(options.get("size", 800)),
            max_size=int(options.get("max_size", 1333)),
        )

    def shutdown(self) -> None:
        """The window is closing: stop the run (it saves) and the evaluation thread."""
        self.job.shutdown()
        self.evaluator.shutdown()

    # ------------------------------------------------------------------------------------------ showing a run

    def _show_empty(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir
        self.loss_series, self.ap_series = {}, {}
        self.loss_plot.clear()
        self.ap_plot.clear()
        self.progress.setValue(0)
        self.speed_label.setText("")
        self.last_end = None
        self._show_comparison()

    def show_run(self, run_dir: Path) -> None:
        """Show a run's curves and results from its files."""
        self._show_empty(Path(run_dir))
        for event in read_events(Path(run_dir) / "events.jsonl"):
            self._apply(event, live=False)
        self._redraw()
        self._update_buttons()
        for i in range(self.runs_list.count()):
            item = self.runs_list.item(i)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) == str(run_dir))

    def _on_event(self, event: Event) -> None:
        self._apply(event, live=True)
        self._redraw()

    def _apply(self, event: Event, live: bool) -> None:
        if isinstance(event, Started):
            self._epochs, self._steps_per_epoch = event.epochs, max(event.steps_per_epoch, 1)
            self.progress.setRange(0, self._epochs * self._steps_per_epoch)
            self.status_label.setText(
                f"Training on {event.train_images} images ({event.val_images} held out) on {event.device}, "
                f"epochs {event.start_epoch + 1}–{event.epochs}"
            )
        elif isinstance(event, Step):
            x = event.epoch - 1 + event.step / max(event.steps, 1)
            self.loss_series.setdefault("total", Series()).add(x, event.loss)
            for name, value in event.losses.items():
                if name.startswith("loss_"):
                    self.loss_series.setdefault(name, Series()).add(x, value)
            self.progress.setValue((event.epoch - 1) * event.steps + event.step)
            if live:
                self.speed_label.setText(
                    f"{event.images_per_s:.1f} images/s, ETA {duration_text(event.eta_s)} "
                    f"(epoch {event.epoch}, step {event.step}/{event.steps})"
                )
        elif isinstance(event, Evaluated):
            for name in AP_COLOURS:
                if name in event.metrics:
                    self.ap_series.setdefault(name, Series()).add(float(event.epoch), event.metrics[name])
        elif isinstance(event, EpochEnd):
            ap = event.metrics.get("AP")
            shown = f", AP {ap:.3f}" if ap is not None else ""
            self.status_label.setText(
                f"Epoch {event.epoch}/{self._epochs} done: loss {event.train_loss:.3f}{shown}"
            )
        elif isinstance(event, CheckpointSaved) and live:
            self.speed_label.setText(f"Saved {Path(event.path).name} (epoch {event.epoch})")
        elif isinstance(event, Finished):
            if event.cancelled:
                self.status_label.setText(
                    f"Cancelled after {event.epochs_done} full epochs; its position is saved: Resume goes on."
                )
            else:
                best = f", best AP {event.best_metric:.3f}" if event.best_metric > -1e30 else ""
                epochs = "1 epoch" if event.epochs_done == 1 else f"{event.epochs_done} epochs"
                self.status_label.setText(f"Finished: {epochs}{best}.")
                self.progress.setValue(self.progress.maximum())
        elif isinstance(event, Failed):
            self.status_label.setText(f"Failed: {event.message.splitlines()[0]}")

    def _redraw(self) -> None:
        self._draw(self.loss_plot, self.loss_series, LOSS_COLOURS, symbols=False)
        self._draw(self.ap_plot, self.ap_series, AP_COLOURS, symbols=True)

    @staticmethod
    def _draw(plot: pg.PlotWidget, series: dict[str, Series], colours: dict, symbols: bool) -> None:
        items = {item.name(): item for item in plot.listDataItems()}
        for name, points in series.items():
            item = items.get(name)
            if item is None:
                colour = colours.get(name, (120, 120, 120))
                pen = pg.mkPen(colour, width=2 if name in ("total", "AP") else 1)
                extra = {"symbol": "o", "symbolSize": 5, "symbolBrush": colour} if symbols else {}
                item = plot.plot([], [], pen=pen, name=name, **extra)
            item.setData(points.x, points.y)

    def _on_ended(self, end: JobEnd) -> None:
        self.last_end = end
        if end.final is None:
            self.status_label.setText("Cancelled before training started.")
        elif isinstance(end.final, Failed):
            self.window.report_error(f"Training failed: {end.final.message}")
        elif isinstance(end.final, Finished) and not end.final.cancelled and self.run_dir is not None:
            self._evaluate(self.run_dir, "after", str(self.run_dir / "best.safetensors"))
        self.refresh_runs()
        self._update_buttons()

    # ------------------------------------------------------------------------------------------ before / after

    def _evaluate(self, run_dir: Path, which: str, weights: str) -> None:
        record = RunRecord.load(run_dir)
        if record is None:
            return
        options = record.options
        self.evaluator.submit(
            (str(run_dir), which),
            evaluate_weights,
            weights,
            run_dir / "val.json",
            Path(record.image_root),
            int(options.get("size", 800)),
            int(options.get("max_size", 1333)),
            str(options.get("device", "auto")),
        )
        self._show_comparison()

    def _on_evaluated(self, tag: object, metrics: object) -> None:
        run, which = tag  # type: ignore[misc]
        self._store_comparison(Path(run), which, metrics)

    def _on_evaluation_failed(self, tag: object, exc: object) -> None:
        run, which = tag  # type: ignore[misc]
        self._store_comparison(
            Path(run), which, {"error": str(exc).splitlines()[0] if str(exc) else repr(exc)}
        )

    def _store_comparison(self, run_dir: Path, which: str, result: object) -> None:
        path = run_dir / "comparison.json"
        data = _read_json(path)
        data[which] = result
        try:
            path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        except OSError as exc:
            self.window.report_error(f"{path}: cannot write the comparison ({exc})")
        if self.run_dir == run_dir:
            self._show_comparison()

    def comparison(self) -> dict:
        """The shown run's AP before (base model) and after (trained), as stored in ``comparison.json``."""
        return _read_json(self.run_dir / "comparison.json") if self.run_dir is not None else {}

    def _show_comparison(self) -> None:
        data = self.comparison()
        record = RunRecord.load(self.run_dir) if self.run_dir is not None else None
        if record is None or not record.val_images:
            self.compare_label.setText("")
            return
        pending = self.evaluator.pending > 0

        def shown(key: str) -> str:
            value = data.get(key)
            if isinstance(value, dict) and "AP" in value:
                return f"AP {value['AP']:.3f} (AP50 {value.get('AP50', 0.0):.3f})"
            if isinstance(value, dict) and "error" in value:
                return f"not measured ({value['error']})"
            return "measuring…" if pending else "—"

        before = shown("before") if record.base_weights else "— (no base model)"
        self.compare_label.setText(
            f"On {record.val_images} held-out images:<br>before <b>{before}</b><br>after <b>{shown('after')}</b>"
        )

    def _update_buttons(self) -> None:
        running = self.job.running
        has_doc = self.window.doc is not None
        run = self.run_dir
        self.start_button.setEnabled(has_doc and not running)
        self.cancel_button.setEnabled(running)
        resumable = (
            run is not None and (run / "last.pth").is_file() and summarize_run(run).state != "finished"
        )
        self.resume_button.setEnabled(not running and resumable)
        self.use_button.setEnabled(not running and run is not None and (run / "best.safetensors").is_file())
        self.copy_button.setEnabled(has_doc or run is not None)


def _read_float(edit: QLineEdit, what: str, allow_zero: bool = False) -> float:
    try:
        value = float(edit.text().replace(",", "."))
    except ValueError:
        raise TrainingSetupError(f"the {what} must be a number, like 1e-4 (got {edit.text()!r})") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise TrainingSetupError(f"the {what} must be positive (got {edit.text()!r})")
    return value


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class TrainingDock(QDockWidget):
    """The panel in a scrolling dock; ``panel`` is the `TrainingPanel`."""

    def __init__(self, window: MainWindow):
        super().__init__("Training", window)
        self.setObjectName("training-dock")
        self.panel = TrainingPanel(window)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.setWidget(scroll)
