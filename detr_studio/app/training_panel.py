"""The Training dock: fine-tune the prediction model on the project's corrected labels, in the background.

The user picks a base model, the classes and images to train on, a held-out fraction and the usual
options (`TrainingForm`); Start writes a snapshot of the document into a new run folder
(`train.runs.prepare_run`) and starts a `TrainingJob` (a child ``detr-studio train`` process). Live curves
show the loss and its parts per step and AP per epoch. The dock trains boxes, or masks by the official
two-stage recipe (boxes, then the mask head on the frozen detector: one Start runs both, the second when
the first finishes), or the mask head alone from a box model, on instances or panoptic datasets. When a
run finishes, the base and the trained model are evaluated on the held-out images on a background lane
(box AP, and mask AP or PQ), and "Use this model" makes the trained one the session's model. Runs stay in the project folder (``.detr-studio/runs/``) and are listed, so an interrupted
one can be resumed and an old one reused.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from detr_studio.common.text import plural
from detr_studio.session import Session
from detr_studio.session.model_loading import ModelChoice, load_network
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
from detr_studio.train.runs import (
    AFTER,
    BEFORE,
    MASK_STAGE,
    RunRecord,
    TrainingSetupError,
    ap_change,
    cluster_command,
    final_weights,
    held_out_metrics,
    list_runs,
    next_stage,
    prepare_run,
    project_folder,
    read_comparison,
    read_events,
    store_comparison,
    summarize_run,
)

from .background import Lane
from .panels import duration_text
from .services import Services
from .training_charts import AP_COLOURS, LOSS_COLOURS, Series, draw, make_plot
from .training_form import BOX_MARGINS, TrainingForm
from .training_job import JobEnd, TrainingJob

WORSE_COLOUR = "#c62828"
KEEP_MODEL = "Keep the current model"
USE_WORSE = "Use the trained model"


def evaluate_run_model(weights: str, run_dir: Path, record: RunRecord) -> dict[str, float]:
    """AP (and mask AP or PQ) of the checkpoint ``weights`` on the run's held-out images (on the evaluation
    lane)."""
    return held_out_metrics(load_network(weights), run_dir, record)


def resumable_stage(run_dir: Path) -> Path | None:
    """The folder of the run's stage that Resume goes on with (it saved a checkpoint and did not finish)."""
    for stage in (run_dir / MASK_STAGE, run_dir):
        if (stage / "last.pth").is_file() and summarize_run(stage).state != "finished":
            return stage
    return None


class TrainingPanel(QWidget):
    """See the module docstring. Public calls (menus and tests use them): ``start``, ``cancel``, ``resume``,
    ``use_model``, ``copy_command``, ``show_run``, ``refresh``."""

    def __init__(self, session: Session, services: Services, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.services = services
        self.job = TrainingJob(self)
        self.job.event.connect(self._on_event)
        self.job.ended.connect(self._on_ended)
        self.evaluator = Lane("evaluation", parent=self)
        self.run_dir: Path | None = None  # the run shown (and trained, while the job runs)
        self.loss_series: dict[str, Series] = {}
        self.ap_series: dict[str, Series] = {}
        self.last_end: JobEnd | None = None
        self._steps_per_epoch = 1
        self._epochs = 1
        self._build()
        self._doc_timer = QTimer(self)
        self._doc_timer.setSingleShot(True)
        self._doc_timer.setInterval(300)
        self._doc_timer.timeout.connect(self._on_doc_changed)
        session.events.project.connect(lambda _project: self._on_project_opened())
        session.events.edited.connect(lambda _change: self._doc_timer.start())
        session.events.model.connect(lambda _info: self.form.fill_models())
        self.refresh()

    def _on_project_opened(self) -> None:
        if not self.job.running:
            self.run_dir = None
            self._show_empty(None)
        self.refresh()

    def _on_doc_changed(self) -> None:
        self.form.fill_classes()
        self.form.update_counts()

    # ------------------------------------------------------------------------------------------ widgets

    def _build(self) -> None:
        self.form = TrainingForm(self, self.session)

        self.start_button = QPushButton("Start", self)
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.clicked.connect(lambda: self.resume())
        self.copy_button = QPushButton("Copy command", self)
        self.copy_button.setToolTip("Copy the same run as a torchrun line for a machine with several GPUs")
        self.copy_button.clicked.connect(lambda: self.copy_command())
        self.status_label = QLabel("No run yet.", self)
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.setFormat("%p%")
        self.speed_label = QLabel("", self)
        self.speed_label.setWordWrap(True)  # a long line must not widen the dock during a run
        self.loss_plot = make_plot(self, "loss")
        self.ap_plot = make_plot(self, "AP", "epoch")
        self.ap_plot.setYRange(0.0, 1.0)
        self.ap_plot.enableAutoRange(axis="y", enable=False)
        self.compare_label = QLabel("", self)
        self.compare_label.setWordWrap(True)
        self.compare_label.setTextFormat(Qt.TextFormat.RichText)
        self.use_button = QPushButton("Use this model", self)
        self.use_button.setToolTip("Predict with the trained model (best.safetensors of the run)")
        self.use_button.clicked.connect(self.use_model)
        self.runs_list = QListWidget(self)
        self.runs_list.setMaximumHeight(58)
        self.runs_list.itemClicked.connect(self._on_run_clicked)

        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button, self.resume_button):
            buttons.addWidget(button)

        run_box = QGroupBox("Run", self)
        run_layout = QVBoxLayout(run_box)
        run_layout.setContentsMargins(*BOX_MARGINS)
        run_layout.setSpacing(4)
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
        history_layout.setContentsMargins(*BOX_MARGINS)
        history_layout.addWidget(self.runs_list)
        history_layout.addWidget(self.copy_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        for box in (*self.form.boxes, run_box, history_box):
            layout.addWidget(box)
        layout.addStretch(1)

    # ------------------------------------------------------------------------------------------ choices

    def refresh(self) -> None:
        """Re-read what the panel offers from the session: models, classes, image counts, runs."""
        self.form.fill_models()
        self.form.fill_classes()
        self.form.update_counts()
        self.refresh_runs()
        self._update_buttons()

    # ------------------------------------------------------------------------------------------ runs

    def project_dir(self) -> Path | None:
        doc, project = self.session.doc, self.session.project
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

    def _prepare_run(self) -> tuple[Path, list[str]] | None:
        """A new run folder with the snapshot, its record and command; None (error reported) when it cannot."""
        doc, project = self.session.doc, self.session.project
        if doc is None:
            self.services.report_error("Open a project before training")
            return None
        try:
            options = self.form.options()
            folder = project_folder(doc, project.location if project is not None else None)
            return prepare_run(doc, folder, options)
        except (TrainingSetupError, ValueError, OSError) as exc:
            self.services.report_error(f"Cannot start training: {exc}")
            return None

    def start(self) -> Path | None:
        """Start a new run on a snapshot of the document; returns its folder (None when it cannot start)."""
        if self.job.running:
            self.services.report_error("A training run is already going on")
            return None
        prepared = self._prepare_run()
        if prepared is None:
            return None
        run_dir, args = prepared
        self._show_empty(run_dir)
        self.job.start(run_dir, args)
        self.status_label.setText("Starting the training process…")
        record = RunRecord.load(run_dir)
        if record is not None and record.base_weights and (run_dir / "val.json").is_file():
            self._evaluate(run_dir, BEFORE, record.base_weights)
        self.refresh_runs()
        self._update_buttons()
        return run_dir

    def resume(self, run_dir: Path | None = None) -> None:
        """Continue the shown (or the given) run from its last checkpoint."""
        target = Path(run_dir) if run_dir is not None else self.run_dir
        if target is None or self.job.running:
            return
        stage = resumable_stage(target) or target
        try:
            self.job.resume(stage)
        except TrainingSetupError as exc:
            self.services.report_error(f"Cannot resume: {exc}")
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
        line = cluster_command(record, self.form.gpus_spin.value())
        QApplication.clipboard().setText(line)
        self.services.status("Copied the torchrun command to the clipboard", 5_000)
        return line

    def use_model(self) -> bool:
        """Make the shown run's best model the window's prediction model. When it scores lower on the
        held-out images than the model it started from, the user is asked first, keeping the model they have
        unless they choose otherwise. True when the trained model is chosen."""
        if self.run_dir is None:
            return False
        weights = final_weights(self.run_dir)
        if not weights.is_file():
            self.services.report_error(f"{self.run_dir}: the run has not saved a model yet")
            return False
        change = ap_change(self.comparison())
        if change is not None and change.worse:
            answer = self.services.ask(
                "The trained model is worse",
                f"On the held-out images the trained model scores AP {change.after:.3f}, lower than the"
                f" {change.before:.3f} of the model it started from. Use it anyway?",
                (USE_WORSE, KEEP_MODEL),
                default=KEEP_MODEL,
            )
            if answer != USE_WORSE:
                self.services.status("Kept the model in use", 5_000)
                return False
        record = RunRecord.load(self.run_dir)
        options = record.options if record is not None else {}
        device = options.get("device", "auto")
        self.session.choose_model(
            ModelChoice(
                str(weights),
                device=None if device == "auto" else device,
                size=int(options.get("size", 800)),
                max_size=int(options.get("max_size", 1333)),
            )
        )
        return True

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
        self.progress.setFormat("%p%")
        self.speed_label.setText("")
        self.last_end = None
        self._show_comparison()

    def show_run(self, run_dir: Path) -> None:
        """Show a run's curves and results from its files."""
        self._show_empty(Path(run_dir))
        for events in (Path(run_dir) / "events.jsonl", Path(run_dir) / MASK_STAGE / "events.jsonl"):
            for event in read_events(events):
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
            stage = "Stage 2 of 2, the mask head: " if Path(event.out_dir).name == MASK_STAGE else ""
            self.status_label.setText(
                f"{stage}Training on {plural(event.train_images, 'image')} ({event.val_images} held out) on "
                f"{event.device}, epochs {event.start_epoch + 1}–{event.epochs}"
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
                    f"{event.images_per_s:.1f} images/s, ETA {duration_text(event.eta_s)}"
                )
                self.progress.setFormat(f"%p% — epoch {event.epoch}, step {event.step}/{event.steps}")
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
                    f"Cancelled after {plural(event.epochs_done, 'full epoch')}; its position is saved: Resume goes on."
                )
            else:
                best = f", best AP {event.best_metric:.3f}" if event.best_metric > -1e30 else ""
                self.status_label.setText(f"Finished: {plural(event.epochs_done, 'epoch')}{best}.")
                self.progress.setValue(self.progress.maximum())
        elif isinstance(event, Failed):
            self.status_label.setText(f"Failed: {event.message.splitlines()[0]}")

    def _redraw(self) -> None:
        draw(self.loss_plot, self.loss_series, LOSS_COLOURS, symbols=False)
        draw(self.ap_plot, self.ap_series, AP_COLOURS, symbols=True)

    def _on_ended(self, end: JobEnd) -> None:
        self.last_end = end
        if end.final is None:
            self.status_label.setText("Cancelled before training started.")
        elif isinstance(end.final, Failed):
            self.services.report_error(f"Training failed: {end.final.message}")
        elif isinstance(end.final, Finished) and not end.final.cancelled and self.run_dir is not None:
            stage = next_stage(self.run_dir)
            if stage is not None:  # a two-stage run: the mask head now, on the frozen detector
                self.job.start(*stage)
                self.status_label.setText("Stage 2 of 2: training the mask head on the frozen detector…")
                self._update_buttons()
                return
            self._evaluate(self.run_dir, AFTER, str(final_weights(self.run_dir)))
        self.refresh_runs()
        self._update_buttons()

    # ------------------------------------------------------------------------------------------ before / after

    def _evaluate(self, run_dir: Path, which: str, weights: str) -> None:
        record = RunRecord.load(run_dir)
        if record is None:
            return
        self.evaluator.submit(
            evaluate_run_model, weights, run_dir, record,
            done=lambda metrics: self._store_comparison(run_dir, which, metrics),
            failed=lambda exc: self._store_comparison(
                run_dir, which, {"error": str(exc).splitlines()[0] if str(exc) else repr(exc)}
            ),
        )  # fmt: skip
        self._show_comparison()

    def _store_comparison(self, run_dir: Path, which: str, result: dict) -> None:
        try:
            store_comparison(run_dir, which, result)
        except OSError as exc:
            self.services.report_error(f"cannot write the comparison: {exc}")
        if self.run_dir == run_dir:
            self._show_comparison()

    def comparison(self) -> dict:
        """The shown run's AP before (base model) and after (trained), as stored in ``comparison.json``."""
        return read_comparison(self.run_dir) if self.run_dir is not None else {}

    def _show_comparison(self) -> None:
        data = self.comparison()
        change = ap_change(data)
        worse = change is not None and change.worse
        self.use_button.setText("Use it anyway…" if worse else "Use this model")
        record = RunRecord.load(self.run_dir) if self.run_dir is not None else None
        if record is None or not record.val_images:
            self.compare_label.setText("")
            return
        pending = self.evaluator.pending > 0

        def shown(key: str) -> str:
            value = data.get(key)
            if isinstance(value, dict) and "PQ" in value:
                return f"PQ {value['PQ']:.3f} (things {value.get('PQ_th', 0.0):.3f}, stuff {value.get('PQ_st', 0.0):.3f})"
            if isinstance(value, dict) and "AP" in value:
                text = f"AP {value['AP']:.3f} (AP50 {value.get('AP50', 0.0):.3f})"
                if "segm_AP" in value:
                    text += f", mask AP {value['segm_AP']:.3f}"
                return text
            if isinstance(value, dict) and "error" in value:
                return f"not measured ({value['error']})"
            return "measuring…" if pending else "—"

        before = shown("before") if record.base_weights else "— (no base model)"
        held_out = plural(record.val_images, "held-out image")
        text = f"{held_out}: before <b>{before}</b>, after <b>{shown('after')}</b>"
        if change is not None and change.worse:
            text += (
                f"<br><span style='color:{WORSE_COLOUR}'><b>The trained model is worse</b>"
                f" (AP {change.before:.3f} → {change.after:.3f}): keep the model you have.</span>"
            )
        self.compare_label.setText(text)

    def _update_buttons(self) -> None:
        running = self.job.running
        has_doc = self.session.doc is not None
        run = self.run_dir
        self.start_button.setEnabled(has_doc and not running)
        self.cancel_button.setEnabled(running)
        resumable = run is not None and resumable_stage(run) is not None
        self.resume_button.setEnabled(not running and resumable)
        self.use_button.setEnabled(not running and run is not None and (run / "best.safetensors").is_file())

        self.copy_button.setEnabled(has_doc or run is not None)


class TrainingDock(QDockWidget):
    """The panel in a scrolling dock; ``panel`` is the `TrainingPanel`."""

    def __init__(self, session: Session, services: Services, parent: QWidget | None = None):
        super().__init__("Training", parent)
        self.setObjectName("training-dock")
        self.panel = TrainingPanel(session, services, self)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.setWidget(scroll)
