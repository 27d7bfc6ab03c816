"""The review panel beside the canvas: model, prediction threshold, accept/reject, the inspector of the
selected detection, layers, mask opacity and attention head. Widgets only; the window wires them."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from detr_studio.data.coco.contours import DEFAULT_TOLERANCE

from .wheel_guard import guard_wheel

# An on/off button (a layer shown or hidden) that is on is filled with the highlight colour: plain to see
# in the light and the dark theme alike.
TOGGLE_STYLE = (
    "QToolButton:checked { background: palette(highlight); color: palette(highlighted-text);"
    " border: 1px solid palette(dark); border-radius: 3px; padding: 3px; }"
)


def _button(action: QAction, parent: QWidget) -> QToolButton:
    button = QToolButton(parent)
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    if action.isCheckable():
        button.setStyleSheet(TOGGLE_STYLE)
    return button


class ReviewPanel(QWidget):
    """The widgets are made at once; `add_buttons` lays them out with buttons for the window's actions, so
    that buttons and menus stay one and the same."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_label = QLabel("No model loaded", self)
        self.model_label.setWordWrap(True)
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(50)
        self.threshold_label = QLabel("0.50", self)
        self.threshold_label.setMinimumWidth(32)
        self.ghosts_box = QCheckBox("Show queries below the threshold", self)
        self.inspector = QLabel("Select a detection to see its query, top classes and no-object probability.")
        self.inspector.setWordWrap(True)
        self.inspector.setTextFormat(Qt.TextFormat.RichText)
        self.inspector.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.inspector.setMinimumHeight(90)
        self.class_combo = QComboBox(self)
        self.tolerance_spin = QDoubleSpinBox(self)
        self.tolerance_spin.setRange(0.0, 20.0)
        self.tolerance_spin.setSingleStep(0.25)
        self.tolerance_spin.setValue(DEFAULT_TOLERANCE)
        self.tolerance_spin.setSuffix(" px")
        self.tolerance_spin.setToolTip(
            "How far a traced polygon may stray from the mask's pixels (RLE → polygons)"
        )
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(45)
        self.head_combo = QComboBox(self)
        self.head_combo.addItem("Mean of heads", None)
        guard_wheel(self, (self.threshold_slider, self.class_combo, self.opacity_slider, self.head_combo))

    def add_buttons(self, actions: dict[str, QAction]) -> None:
        """Lay the panel out, with buttons for ``actions`` (the window's, by name)."""
        model_box = QGroupBox("Model", self)
        model_layout = QGridLayout(model_box)
        model_layout.addWidget(self.model_label, 0, 0, 1, 2)
        model_layout.addWidget(_button(actions["choose_model"], self), 1, 0, 1, 2)
        model_layout.addWidget(_button(actions["predict"], self), 2, 0)
        model_layout.addWidget(_button(actions["predict_all"], self), 2, 1)

        review_box = QGroupBox("Predictions", self)
        review_layout = QGridLayout(review_box)
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(QLabel("Threshold", self))
        threshold_row.addWidget(self.threshold_slider, 1)
        threshold_row.addWidget(self.threshold_label)
        review_layout.addLayout(threshold_row, 0, 0, 1, 2)
        review_layout.addWidget(self.ghosts_box, 1, 0, 1, 2)
        review_layout.addWidget(_button(actions["accept"], self), 2, 0)
        review_layout.addWidget(_button(actions["reject"], self), 2, 1)
        review_layout.addWidget(_button(actions["accept_all"], self), 3, 0, 1, 2)
        review_layout.addWidget(self.inspector, 4, 0, 1, 2)

        edit_box = QGroupBox("Labels", self)
        edit_layout = QFormLayout(edit_box)
        edit_layout.addRow("New box class", self.class_combo)
        edit_buttons = QHBoxLayout()
        edit_buttons.addWidget(_button(actions["draw"], self))
        edit_buttons.addWidget(_button(actions["mark_reviewed"], self))
        edit_layout.addRow(edit_buttons)

        mask_box = QGroupBox("Masks", self)
        mask_layout = QGridLayout(mask_box)
        for i, name in enumerate(("polygon", "brush", "eraser", "mask_from_box", "fill_holes", "to_polygons",
                                  "to_rle")):  # fmt: skip
            mask_layout.addWidget(_button(actions[name], self), i // 2, i % 2)
        tolerance_row = QHBoxLayout()
        tolerance_row.addWidget(QLabel("Polygon tolerance", self))
        tolerance_row.addWidget(self.tolerance_spin, 1)
        mask_layout.addLayout(tolerance_row, 4, 0, 1, 2)

        layers_box = QGroupBox("Layers", self)
        layers_layout = QGridLayout(layers_box)
        for i, name in enumerate(
            ("layer_annotations", "layer_predictions", "layer_masks", "layer_attention")
        ):
            layers_layout.addWidget(_button(actions[name], self), i // 2, i % 2)
        layers_layout.addWidget(QLabel("Mask opacity", self), 2, 0)
        layers_layout.addWidget(self.opacity_slider, 2, 1)
        layers_layout.addWidget(QLabel("Attention", self), 3, 0)
        layers_layout.addWidget(self.head_combo, 3, 1)
        layers_layout.addWidget(_button(actions["probe"], self), 4, 0, 1, 2)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for box in (model_box, review_box, edit_box, mask_box, layers_box):
            layout.addWidget(box)
        layout.addStretch(1)

    def set_heads(self, count: int) -> None:
        current = self.head_combo.currentData()
        self.head_combo.blockSignals(True)
        self.head_combo.clear()
        self.head_combo.addItem("Mean of heads", None)
        for h in range(count):
            self.head_combo.addItem(f"Head {h + 1}", h)
        index = self.head_combo.findData(current)
        self.head_combo.setCurrentIndex(max(index, 0))
        self.head_combo.blockSignals(False)


def duration_text(seconds: float) -> str:
    """A short human duration: "42 s", "3 min 05 s", "2 h 07 min"."""
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
