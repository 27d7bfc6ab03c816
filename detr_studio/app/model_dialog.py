"""The model chooser: a zoo entry, a local checkpoint, an exported ONNX file or the bundled demo model;
device, precision, input size.

The dialog only builds a `ModelChoice`; loading happens in the inference worker. A zoo entry that is not downloaded yet is fetched by
the worker when chosen (with a clear message when offline). The demo model's entry says what it knows: five
synthetic shapes, nothing of real photos.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from detr_studio.model import zoo
from detr_studio.session.model_loading import ModelChoice

from .demo_project import SHAPES_ONLY_NOTE, demo_model_path

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_FILTER = "Models (*.safetensors *.pth *.pt *.bin *.onnx);;All files (*)"


AS_TRAINED = 0  # the spin box value that means "the size the checkpoint records"
MIN_SIZE = 32


def zoo_label(entry: zoo.ZooEntry) -> str:
    figures = f"box AP {entry.box_ap}" if entry.box_ap is not None else ""
    if entry.pq is not None:
        figures += f", PQ {entry.pq}"
    size = f" {entry.size_mb} MB" if entry.size_mb else ""
    where = "downloaded" if zoo.cached_path(entry) is not None else f"download{size}"
    return f"{entry.name} — {entry.family_label} {entry.backbone_label} {entry.task}, {figures} ({where})"


class ModelDialog(QDialog):
    """Pick what to load; `choice()` reads the answer."""

    def __init__(self, parent: QWidget | None = None, previous: ModelChoice | None = None):
        super().__init__(parent)
        self.setWindowTitle("Choose a model")
        self.zoo_radio = QRadioButton("Model zoo", self)
        self.file_radio = QRadioButton("Checkpoint file", self)
        self.demo_radio = QRadioButton("Demo model", self)
        self.demo_note = QLabel(SHAPES_ONLY_NOTE, self)
        self.demo_note.setWordWrap(True)
        self.demo_note.setStyleSheet("QLabel { color: palette(mid); }")
        self.demo_weights = demo_model_path()
        group = QButtonGroup(self)
        group.addButton(self.zoo_radio)
        group.addButton(self.file_radio)
        group.addButton(self.demo_radio)
        self.zoo_combo = QComboBox(self)
        for entry in zoo.list_entries():
            self.zoo_combo.addItem(zoo_label(entry), entry.name)
        self.path_edit = QLineEdit(self)
        self.path_edit.setPlaceholderText(
            "a .safetensors (ours or Hugging Face), official .pth, or exported .onnx file"
        )
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        self.device_combo = QComboBox(self)
        self.device_combo.addItems(DEVICES)
        self.precision_combo = QComboBox(self)
        self.precision_combo.addItems(PRECISIONS)
        self.size_spin = QSpinBox(self)
        self.size_spin.setRange(AS_TRAINED, 2048)
        self.size_spin.setSingleStep(32)
        self.size_spin.setSpecialValueText("as the model was trained")
        self.size_spin.setValue(AS_TRAINED)
        self.size_spin.setSuffix(" px (shorter side)")
        self.size_spin.setToolTip(
            "The shorter side the image is resized to. A model works best at the size it was trained at,"
            " which its checkpoint records (800 px for the COCO models, 128 px for the demo model)."
        )

        file_row = QHBoxLayout()
        file_row.addWidget(self.path_edit, 1)
        file_row.addWidget(browse)
        form = QFormLayout()
        form.addRow(self.zoo_radio, self.zoo_combo)
        form.addRow(self.file_radio, file_row)
        if self.demo_weights is not None:
            form.addRow(self.demo_radio, self.demo_note)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("Input size", self.size_spin)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

        self.zoo_radio.setChecked(True)
        self.path_edit.textEdited.connect(lambda _text: self.file_radio.setChecked(True))
        self.zoo_combo.activated.connect(lambda _index: self.zoo_radio.setChecked(True))
        if previous is not None:
            self._show(previous)

    def _show(self, choice: ModelChoice) -> None:
        index = self.zoo_combo.findData(choice.source)
        if self.demo_weights is not None and choice.source == str(self.demo_weights):
            self.demo_radio.setChecked(True)
        elif index >= 0:
            self.zoo_combo.setCurrentIndex(index)
            self.zoo_radio.setChecked(True)
        else:
            self.path_edit.setText(choice.source)
            self.file_radio.setChecked(True)
        self.device_combo.setCurrentText(choice.device or "auto")
        self.precision_combo.setCurrentText(choice.precision)
        self.size_spin.setValue(choice.size or AS_TRAINED)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.path_edit.setText(path)
            self.file_radio.setChecked(True)

    def choice(self) -> ModelChoice | None:
        if self.demo_radio.isChecked() and self.demo_weights is not None:
            source: object = self.demo_weights
        elif self.zoo_radio.isChecked():
            source = self.zoo_combo.currentData()
        else:
            source = self.path_edit.text().strip()
        if not source:
            return None
        device = self.device_combo.currentText()
        size = self.size_spin.value()
        return ModelChoice(
            source=str(source),
            device=None if device == "auto" else device,
            precision=self.precision_combo.currentText(),
            size=size if size >= MIN_SIZE else None,
            max_size=round(size * 1333 / 800) if size >= MIN_SIZE else None,
        )
