"""The Training dock's choices: the base model, what to train (boxes, boxes then masks, the mask head alone),
the classes and images to train on, the held-out fraction and the options, read as `TrainingOptions`
(checked, with a message naming what is wrong)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QWidget,
)

from detr_studio.common.text import plural
from detr_studio.data.coco.mask_edits import has_masks
from detr_studio.model import zoo
from detr_studio.session import Session
from detr_studio.train.runs import (
    ANNOTATED,
    BOXES,
    REVIEWED,
    TASKS,
    TrainingOptions,
    TrainingSetupError,
    choose_images,
    split_images,
)

from .demo_project import demo_model_path
from .wheel_guard import guard_wheel

DEVICES = ("auto", "cpu", "cuda", "mps")
CURRENT, DEMO, ZOO, FILE = "current", "demo", "zoo", "file"
SOURCE_ROLE = Qt.ItemDataRole.UserRole + 1  # the base-model item's checkpoint path or zoo name
BOX_MARGINS = (6, 4, 6, 4)  # inside each group box: the dock fits a 1000-pixel-high window without scrolling


class TrainingForm:
    """The widgets (children of ``parent``) in two boxes, ``boxes``; ``extra_options`` sets the
    `TrainingOptions` fields the form has no widget for (loader processes, seed, augmentation)."""

    def __init__(self, parent: QWidget, session: Session):
        self.parent = parent
        self.session = session
        self.extra_options: dict[str, object] = {}
        self.base_combo = QComboBox(parent)
        self.base_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.base_combo.setMinimumContentsLength(12)
        self.base_combo.currentIndexChanged.connect(self._on_base_changed)
        self.base_combo.setToolTip("The model the fine-tune starts from")
        self.file_edit = QLineEdit(parent)
        self.file_edit.setPlaceholderText("a .safetensors or .pth checkpoint")
        self.browse_button = QPushButton("Browse…", parent)
        self.browse_button.clicked.connect(self._browse)
        self.class_list = QListWidget(parent)
        self.class_list.setMaximumHeight(72)
        self.class_list.itemChanged.connect(lambda _item: self.update_counts())
        self.images_combo = QComboBox(parent)
        self.images_combo.addItem("Reviewed", REVIEWED)
        self.images_combo.addItem("All annotated", ANNOTATED)
        self.images_combo.setToolTip("Train on the images marked reviewed (R), or on every annotated image")
        self.images_combo.currentIndexChanged.connect(lambda _i: self.update_counts())
        self.holdout_spin = QDoubleSpinBox(parent)
        self.holdout_spin.setRange(0.0, 0.9)
        self.holdout_spin.setSingleStep(0.05)
        self.holdout_spin.setValue(0.2)
        self.holdout_spin.valueChanged.connect(lambda _v: self.update_counts())
        self.count_label = QLabel("", parent)
        self.count_label.setWordWrap(True)
        defaults = TrainingOptions()
        self.epochs_spin = QSpinBox(parent)
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(defaults.epochs)
        self.lr_edit = self._float_edit(parent, defaults.lr)
        self.lr_backbone_edit = self._float_edit(parent, defaults.lr_backbone)
        self.lr_edit.setToolTip("Learning rate of the transformer and the heads")
        self.lr_backbone_edit.setToolTip("Learning rate of the backbone (0: the backbone stays as it is)")
        self.batch_spin = QSpinBox(parent)
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(defaults.batch_size)
        self.size_spin = QSpinBox(parent)
        self.size_spin.setRange(32, 2048)
        self.size_spin.setValue(defaults.size)
        self.size_spin.setToolTip("The images' shorter side in training, in pixels")
        self.max_size_spin = QSpinBox(parent)
        self.max_size_spin.setRange(32, 4096)
        self.max_size_spin.setValue(defaults.max_size)
        self.max_size_spin.setToolTip("The images' longer side at most, in pixels")
        self.device_combo = QComboBox(parent)
        self.device_combo.addItems(DEVICES)
        self.task_combo = QComboBox(parent)
        for key, text in TASKS.items():
            self.task_combo.addItem(text, key)
        self.task_combo.setToolTip(
            "Masks follow the official recipe: boxes first, then the mask head on the frozen detector"
        )

        self.gpus_spin = QSpinBox(parent)
        self.gpus_spin.setRange(1, 64)
        self.gpus_spin.setValue(2)
        self.gpus_spin.setToolTip("GPUs of the copied torchrun command (--nproc_per_node)")

        self.file_row = QWidget(parent)  # shown when the base is "Checkpoint file…"
        file_row = QHBoxLayout(self.file_row)
        file_row.setContentsMargins(0, 0, 0, 0)
        file_row.addWidget(self.file_edit, 1)
        file_row.addWidget(self.browse_button)

        data_box = QGroupBox("Data", parent)
        data_grid = QGridLayout(data_box)
        data_grid.setContentsMargins(*BOX_MARGINS)
        data_grid.addWidget(QLabel("Classes", parent), 0, 0, Qt.AlignmentFlag.AlignTop)
        data_grid.addWidget(self.class_list, 0, 1, 1, 3)
        data_grid.addWidget(QLabel("Images", parent), 1, 0)
        data_grid.addWidget(self.images_combo, 1, 1)
        data_grid.addWidget(QLabel("Held out", parent), 1, 2)
        data_grid.addWidget(self.holdout_spin, 1, 3)
        data_grid.addWidget(self.count_label, 2, 0, 1, 4)
        data_grid.setColumnStretch(1, 1)

        options_box = QGroupBox("Options", parent)
        options_grid = QGridLayout(options_box)
        options_grid.setContentsMargins(*BOX_MARGINS)
        options_grid.addWidget(QLabel("Base", parent), 0, 0)
        options_grid.addWidget(self.base_combo, 0, 1)
        options_grid.addWidget(QLabel("Train", parent), 0, 2)
        options_grid.addWidget(self.task_combo, 0, 3)
        options_grid.addWidget(self.file_row, 1, 0, 1, 4)
        pairs = (
            ("Epochs", self.epochs_spin, "Batch", self.batch_spin),
            ("LR", self.lr_edit, "Backbone", self.lr_backbone_edit),
            ("Size", self.size_spin, "Max size", self.max_size_spin),
            ("Device", self.device_combo, "GPUs", self.gpus_spin),
        )
        for row, (left, left_widget, right, right_widget) in enumerate(pairs, start=2):
            options_grid.addWidget(QLabel(left, parent), row, 0)
            options_grid.addWidget(left_widget, row, 1)
            options_grid.addWidget(QLabel(right, parent), row, 2)
            options_grid.addWidget(right_widget, row, 3)
        options_grid.setColumnStretch(1, 1)
        options_grid.setColumnStretch(3, 1)
        for combo in (self.base_combo, self.images_combo, self.device_combo, self.task_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(4)
        guard_wheel(parent, (self.base_combo, self.images_combo, self.holdout_spin, self.epochs_spin,
                             self.batch_spin, self.size_spin, self.max_size_spin, self.device_combo,
                             self.gpus_spin, self.task_combo))  # fmt: skip

        self.boxes = (data_box, options_box)

    @staticmethod
    def _float_edit(parent: QWidget, value: float) -> QLineEdit:
        edit = QLineEdit(f"{value:g}", parent)
        validator = QDoubleValidator(0.0, 10.0, 12, edit)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        edit.setValidator(validator)
        return edit

    def fill_models(self) -> None:
        previous = (self.base_combo.currentData(), self.base_combo.currentData(SOURCE_ROLE))
        self.base_combo.blockSignals(True)
        self.base_combo.clear()

        def add(text: str, kind: str, source: str) -> None:
            self.base_combo.addItem(text, kind)
            self.base_combo.setItemData(self.base_combo.count() - 1, source, SOURCE_ROLE)

        choice = self.session.model_choice
        if choice is not None and not choice.is_onnx:
            add(f"Current model ({choice.name})", CURRENT, choice.source)
        demo = demo_model_path()
        if demo is not None:
            add("Demo model", DEMO, str(demo))
        for entry in zoo.list_entries():
            if entry.task in ("detection", "panoptic"):
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
        self.file_row.setVisible(is_file)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.parent, "Base checkpoint", "", "Checkpoints (*.safetensors *.pth *.pt);;All files (*)"
        )
        if path:
            self.file_edit.setText(path)

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

    def fill_classes(self) -> None:
        doc = self.session.doc
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

    def update_tasks(self) -> None:
        """Mask training only where there are masks: a panoptic dataset, or instances with masks."""
        doc = self.session.doc
        masks = doc is not None and (doc.is_panoptic or has_masks(doc))
        model = self.task_combo.model()
        for row in range(self.task_combo.count()):
            item = model.item(row)  # type: ignore[attr-defined]
            item.setEnabled(masks or self.task_combo.itemData(row) == BOXES)
        if not masks:
            self.task_combo.setCurrentIndex(self.task_combo.findData(BOXES))

    def update_counts(self) -> None:
        doc = self.session.doc
        self.update_tasks()
        if doc is None:
            self.count_label.setText("Open a dataset to train on it.")
            return
        which = self.images_combo.currentData()
        ids = choose_images(doc, which)
        if not ids:
            hint = "mark images reviewed (R), or train on all annotated images" if which == REVIEWED else ""
            self.count_label.setText(f"No {which} images yet{': ' + hint if hint else ''}.")
            return
        train, held = split_images(ids, self.holdout_spin.value(), TrainingOptions.seed)
        self.count_label.setText(
            f"{plural(len(ids), 'image')}: {len(train)} to train on, {len(held)} held out"
        )

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
            task=self.task_combo.currentData(),
        )
        for name, value in self.extra_options.items():
            setattr(values, name, value)
        return values


def _read_float(edit: QLineEdit, what: str, allow_zero: bool = False) -> float:
    try:
        value = float(edit.text().replace(",", "."))
    except ValueError:
        raise TrainingSetupError(f"the {what} must be a number, like 1e-4 (got {edit.text()!r})") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise TrainingSetupError(f"the {what} must be positive (got {edit.text()!r})")
    return value
