"""The Export dock: write the window's current model as an ONNX file, in the background, and show the proof.

Export goes through `infer.onnx_export.export_onnx` (the same call as ``detr-studio export``), which writes the
file only when ONNX Runtime matches PyTorch; its parity reports (random inputs, and the image on screen) are
shown as the largest differences of logits, boxes and masks and the share of detections that agree. The
exported file is then timed through `OnnxPredictor` on the CPU, and on CUDA when ONNX Runtime can use it
(otherwise the panel says why not).
"""

from __future__ import annotations

import html
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .workers import TaskRunner

if TYPE_CHECKING:
    from detr_studio.infer.onnx_export import ExportReport

    from .main import MainWindow

TIMED_RUNS = 5
EXPORTS_FOLDER = Path(".detr-studio") / "exports"


@dataclass(frozen=True)
class Latency:
    """Time per image through ONNX Runtime: ``median_ms`` is None when the provider could not be used."""

    provider: str  # "CPU" or "CUDA"
    median_ms: float | None
    input_hw: tuple[int, int] = (0, 0)
    note: str = ""


@dataclass(frozen=True)
class ExportResult:
    report: ExportReport
    latencies: list[Latency] = field(default_factory=list)


def time_onnx(path: Path, image: Image.Image, providers: str, runs: int = TIMED_RUNS) -> Latency:
    """Median milliseconds per ``predict`` of one image (after one warm-up run) on ``providers``."""
    from detr_studio.infer.onnx_backend import CPU, CUDA, OnnxPredictor

    label = "CUDA" if providers == "cuda" else "CPU"
    predictor = OnnxPredictor(path, providers=providers)
    wanted = CUDA if providers == "cuda" else CPU
    if predictor.provider != wanted:
        return Latency(label, None, note=predictor.provider_note or f"runs on {predictor.provider} instead")
    predictor.predict([image])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict([image])
        times.append((time.perf_counter() - start) * 1000.0)
    return Latency(label, statistics.median(times), predictor.resized_size(image.width, image.height))


def export_and_time(
    source: str,
    output: Path,
    *,
    fp16: bool = False,
    panoptic: bool = False,
    size: int = 800,
    max_size: int | None = 1333,
    check_images: list[Path] | None = None,
    runs: int = TIMED_RUNS,
) -> ExportResult:
    """Export the checkpoint ``source`` to ``output`` (checked against PyTorch), then time the file on the CPU
    and, when ONNX Runtime has it, CUDA. Runs on a background thread."""
    import onnxruntime as ort

    from detr_studio.data.images import load_image
    from detr_studio.infer.onnx_backend import CUDA
    from detr_studio.infer.onnx_export import export_onnx
    from detr_studio.model.loading import load_model

    loaded = load_model(source)
    report = export_onnx(
        loaded.model,
        loaded.config,
        output,
        panoptic=panoptic,
        fp16=fp16,
        class_names=loaded.class_names,
        source=str(loaded.path or source),
        check_inputs=check_images or None,
        size=size,
        max_size=max_size,
    )
    if check_images:
        image = load_image(check_images[0])
    else:
        image = Image.new("RGB", (round(size * 4 / 3), size), (128, 128, 128))
    latencies = [time_onnx(report.path, image, "cpu", runs)]
    if CUDA in ort.get_available_providers():
        latencies.append(time_onnx(report.path, image, "cuda", runs))
    else:
        latencies.append(Latency("CUDA", None, note="this onnxruntime has no CUDA provider"))
    return ExportResult(report, latencies)


def summary_rows(result: ExportResult) -> list[tuple[str, str]]:
    """The parity and latency figures as (name, value) rows; the largest difference over all checks."""
    report = result.report
    rows = [("Parity", "passed" if report.passed else "FAILED")]
    names = [d.name for d in report.parity[0].outputs] if report.parity else []
    for name in names:
        worst = max(p.max_diff(name) for p in report.parity)
        allowed = min(d.allowed for p in report.parity for d in p.outputs if d.name == name)
        rows.append((f"{name} max |diff|", f"{worst:.2e} (allowed {allowed:.1e})"))
    for parity in report.parity:
        most = max(parity.torch_detections, parity.onnx_detections)
        agree = (
            f"{100 * parity.detection_agreement:.1f}% ({parity.matched_detections} of {most})"
            if most
            else "— (no confident detections in either runtime)"
        )
        rows.append((f"Detections agree ({parity.label})", agree))
        rows.append((f"Top class agrees ({parity.label})", f"{100 * parity.top_class_agreement:.1f}%"))
    for latency in result.latencies:
        if latency.median_ms is None:
            reason = latency.note.strip().splitlines()[0] if latency.note.strip() else "unavailable"
            rows.append((f"{latency.provider} latency", f"not measured: {reason}"))
        else:
            h, w = latency.input_hw
            rows.append(
                (f"{latency.provider} latency", f"{latency.median_ms:.1f} ms per image ({w}×{h} input)")
            )
    rows.append(
        ("File", f"{report.path} ({report.size_bytes / 2**20:.1f} MiB, {report.precision}, {report.task})")
    )
    return rows


class ExportPanel(QWidget):
    """See the module docstring. ``export()`` starts an export; its outcome lands in ``result`` (an
    `ExportResult`) or ``error`` (the message), and ``rows`` (the figures shown)."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.result: ExportResult | None = None
        self.error: str | None = None
        self.runner = TaskRunner(workers=1, parent=self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)

        self.model_label = QLabel("No model loaded", self)
        self.model_label.setWordWrap(True)
        self.path_edit = QLineEdit(self)
        self.path_edit.setPlaceholderText("where to write the .onnx file")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        self.fp16_box = QCheckBox("fp16 (for GPUs)", self)
        self.fp16_box.toggled.connect(lambda _on: self._suggest_path())
        self.panoptic_box = QCheckBox("Panoptic (with the mask head)", self)
        self.panoptic_box.toggled.connect(lambda _on: self._suggest_path())
        self.export_button = QPushButton("Export to ONNX", self)
        self.export_button.clicked.connect(self.export)
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)
        self.status_label = QLabel("", self)
        self.status_label.setWordWrap(True)
        self.rows: list[tuple[str, str]] = []  # the figures shown in ``summary``
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QPlainTextEdit(self)
        self.details.setReadOnly(True)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setMinimumHeight(140)

        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        form = QFormLayout()
        form.addRow(self.model_label)
        form.addRow("File", path_row)
        form.addRow(self.fp16_box)
        form.addRow(self.panoptic_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.busy)
        layout.addWidget(self.status_label)
        layout.addWidget(self.summary)
        layout.addWidget(self.details)
        layout.addStretch(1)

        window.worker.model_loaded.connect(lambda _info: self.refresh())
        window.project_opened.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Follow the window's model: what is exported, whether it has masks, a default file name."""
        choice, info = self.window.model_choice, self.window.model_info
        if choice is None:
            self.model_label.setText("No model loaded: choose one first (Model > Choose Model).")
        elif choice.is_onnx:
            self.model_label.setText(f"<b>{choice.name}</b> is already an ONNX file.")
        else:
            self.model_label.setText(
                f"Export <b>{choice.name}</b> (input size {choice.size}, max {choice.max_size})"
            )
        masks = info is not None and info.supports_masks
        self.panoptic_box.setEnabled(masks)
        if not masks:
            self.panoptic_box.setChecked(False)
        self.export_button.setEnabled(choice is not None and not choice.is_onnx and not self.runner.pending)
        self._suggest_path()

    def _suggest_path(self) -> None:
        choice = self.window.model_choice
        if choice is None or (self.path_edit.isModified() and self.path_edit.text()):
            return
        stem = Path(choice.source).stem if Path(choice.source).exists() else choice.source
        if Path(choice.source).exists() and Path(choice.source).parent.name not in ("", "."):
            stem = f"{Path(choice.source).parent.name}-{stem}"
        suffix = ("-panoptic" if self.panoptic_box.isChecked() else "") + (
            "-fp16" if self.fp16_box.isChecked() else ""
        )
        folder = self._export_folder(Path(choice.source))
        self.path_edit.setText(str(folder / f"{stem}{suffix}.onnx"))
        self.path_edit.setModified(False)

    def _export_folder(self, source: Path) -> Path:
        doc, project = self.window.doc, self.window.project
        if doc is not None and doc.path is not None:
            return Path(doc.path).resolve().parent / EXPORTS_FOLDER
        if project is not None:
            location = project.location
            return (location if location.is_dir() else location.parent) / EXPORTS_FOLDER
        return source.parent if source.exists() else Path.cwd()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to ONNX", self.path_edit.text(), "ONNX (*.onnx)")
        if path:
            self.path_edit.setText(path)
            self.path_edit.setModified(True)

    def export(self) -> bool:
        """Start the export in the background; False (and a message) when it cannot start."""
        choice = self.window.model_choice
        if choice is None or choice.is_onnx:
            self.window.report_error(
                "Load a PyTorch checkpoint or zoo model to export (Model > Choose Model)"
            )
            return False
        if self.runner.pending:
            return False
        output = Path(self.path_edit.text().strip())
        if output.suffix.lower() != ".onnx":
            self.window.report_error(f"{output}: the exported file must end in .onnx")
            return False
        doc, current = self.window.doc, self.window.current_image_id
        check = [doc.image_path(current)] if doc is not None and current is not None else None
        self.result, self.error = None, None
        self.rows = []
        self.summary.setText("")
        self.details.setPlainText("")
        self.busy.setVisible(True)
        self.export_button.setEnabled(False)
        self.status_label.setText(f"Exporting {choice.name} and checking it against PyTorch…")
        job = partial(
            export_and_time,
            choice.source,
            output,
            fp16=self.fp16_box.isChecked(),
            panoptic=self.panoptic_box.isChecked(),
            size=choice.size,
            max_size=choice.max_size,
            check_images=check,
        )
        self.runner.submit("export", job)
        return True

    def _on_done(self, _tag: object, result: object) -> None:
        assert isinstance(result, ExportResult)
        self.result = result
        self._finish()
        self.rows = summary_rows(result)
        cells = "".join(
            f"<tr><td>{html.escape(name)}&nbsp;</td><td><b>{html.escape(value)}</b></td></tr>"
            for name, value in self.rows
        )
        self.summary.setText(f"<table cellspacing='2'>{cells}</table>")
        self.details.setPlainText(str(result.report))
        self.status_label.setText(f"Exported {result.report.path.name} in {result.report.seconds:.1f} s")

    def _on_failed(self, _tag: object, exc: object) -> None:
        self.error = str(exc) or repr(exc)
        self._finish()
        self.status_label.setText("Export failed (details below)")
        self.details.setPlainText(self.error)
        self.window.report_error(f"ONNX export failed: {self.error.splitlines()[0]}")

    def _finish(self) -> None:
        self.busy.setVisible(False)
        self.refresh()

    def shutdown(self) -> None:
        self.runner.shutdown()


class ExportDock(QDockWidget):
    def __init__(self, window: MainWindow):
        super().__init__("Export", window)
        self.setObjectName("export-dock")
        self.panel = ExportPanel(window)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.setWidget(scroll)
        self.setAllowedAreas(Qt.DockWidgetArea.AllDockWidgetAreas)
