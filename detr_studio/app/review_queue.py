"""The Review queue dock: where to look next. Two lists built from the predictions the window has cached:

- *Uncertain*: images ordered by how unsure the model is about its most doubtful query, by one of three
  measures (entropy, top-2 margin, no-object mass; defined in ``infer/uncertainty.py`` for softmax and sigmoid
  heads alike); queries the user already accepted or rejected are left out.
- *Mistakes*: where the open predictions above the threshold disagree with the trusted labels, by greedy
  IoU matching at 0.5 (best-scoring prediction first, same-class labels preferred): a label no prediction
  matches is a miss, a prediction that matches no label an extra box, a match of another class a wrong class.
  Only images that are reviewed or carry trusted labels are checked.

Each row is a click away from the canvas: the image is shown and the box selected. The ranking functions are
Qt-free and tested on hand-made `Detections`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from detr_studio.data.coco import Annotation, CocoDocument
from detr_studio.infer.detections import Detections
from detr_studio.infer.uncertainty import (
    MEASURES,
    image_uncertainty,
)
from detr_studio.model.classes import UNUSED_NAME

from .canvas import ANNOTATIONS, PREDICTIONS
from .predictions import PredictionStore
from .training_job import is_trusted

if TYPE_CHECKING:
    from .main import MainWindow

MATCH_IOU = 0.5
MISS, EXTRA, WRONG_CLASS = "miss", "extra box", "wrong class"
MAX_ROWS = 1000


# ------------------------------------------------------------------------------------------- uncertainty


@dataclass(frozen=True)
class UncertainImage:
    image_id: int
    score: float  # the uncertainty of its most doubtful query
    query_id: int | None  # that query (None when no query counts)


def rank_uncertain(
    store: PredictionStore, measure: str, image_ids: Iterable[int] | None = None
) -> list[UncertainImage]:
    """Images with cached predictions, most uncertain first (ties: lower image id first)."""
    ranked = []
    for image_id in image_ids if image_ids is not None else store.image_ids():
        entry = store.get(image_id)
        if entry is None:
            continue
        score, query = image_uncertainty(entry.detections, measure, entry.marks)
        ranked.append(UncertainImage(image_id, score, query))
    ranked.sort(key=lambda u: (-u.score, u.image_id))
    return ranked


# ------------------------------------------------------------------------------------------- mistakes


@dataclass(frozen=True)
class Mistake:
    image_id: int
    kind: str  # MISS, EXTRA or WRONG_CLASS
    annotation_id: int | None  # the label (misses, wrong classes)
    query_id: int | None  # the prediction (extra boxes, wrong classes)
    iou: float
    detail: str  # class names, score


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] IoU of xyxy boxes ``a`` [N, 4] and ``b`` [M, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _same_class(label: int, category_id: int, model_names: Mapping[int, str], doc: CocoDocument) -> bool:
    """A predicted label and a document category are the same class: by name when the model names the
    label, else by id."""
    name = model_names.get(int(label))
    if name is None or name == UNUSED_NAME:
        return int(label) == int(category_id)
    return name == doc.category(category_id).name


def image_mistakes(
    doc: CocoDocument,
    image_id: int,
    labels: list[Annotation],
    predictions: Detections,
    model_names: Mapping[int, str],
    iou_threshold: float = MATCH_IOU,
) -> list[Mistake]:
    """Misses, extra boxes and wrong classes of one image (``predictions`` already thresholded)."""
    order = np.argsort(-predictions.scores, kind="stable")
    label_boxes = np.array([a.xyxy for a in labels], dtype=np.float64).reshape(-1, 4)
    ious = _iou(predictions.boxes.astype(np.float64).reshape(-1, 4), label_boxes)  # [P, L]
    matched: dict[int, int] = {}  # label index -> prediction row
    found: list[Mistake] = []
    for row in order:
        label = int(predictions.labels[row])
        free = [j for j in range(len(labels)) if j not in matched and ious[row, j] >= iou_threshold]
        if not free:
            name = model_names.get(label, f"class {label}")
            found.append(
                Mistake(
                    image_id=image_id,
                    kind=EXTRA,
                    annotation_id=None,
                    query_id=int(predictions.query_ids[row]),
                    iou=0.0,
                    detail=f"{name} {float(predictions.scores[row]):.2f}",
                )
            )
            continue
        same = [j for j in free if _same_class(label, labels[j].category_id, model_names, doc)]
        pick = max(same or free, key=lambda j: ious[row, j])
        matched[pick] = int(row)
        if not same:
            ann = labels[pick]
            found.append(
                Mistake(
                    image_id=image_id,
                    kind=WRONG_CLASS,
                    annotation_id=ann.id,
                    query_id=int(predictions.query_ids[row]),
                    iou=float(ious[row, pick]),
                    detail=f"labelled {doc.category(ann.category_id).name}, predicted "
                    f"{model_names.get(label, f'class {label}')} {float(predictions.scores[row]):.2f}",
                )
            )
    for j, ann in enumerate(labels):
        if j not in matched:
            found.append(Mistake(image_id, MISS, ann.id, None, 0.0, doc.category(ann.category_id).name))
    rank = {WRONG_CLASS: 0, MISS: 1, EXTRA: 2}
    return sorted(found, key=lambda m: rank[m.kind])


def find_mistakes(
    doc: CocoDocument,
    store: PredictionStore,
    threshold: float,
    model_names: Mapping[int, str],
    iou_threshold: float = MATCH_IOU,
) -> list[Mistake]:
    """Disagreements on every image with cached predictions that is reviewed or has trusted labels, in the
    document's image order."""
    if doc.is_panoptic:
        return []
    trusted: dict[int, list[Annotation]] = {}
    for ann in doc.annotations:
        if is_trusted(ann):
            trusted.setdefault(ann.image_id, []).append(ann)
    found: list[Mistake] = []
    for info in doc.images:
        if info.id not in store or not (info.reviewed or info.id in trusted):
            continue
        visible = store.visible(info.id, threshold)
        if visible is None:
            continue
        found += image_mistakes(doc, info.id, trusted.get(info.id, []), visible, model_names, iou_threshold)
    return found


# ------------------------------------------------------------------------------------------- the dock


class ReviewQueuePanel(QWidget):
    """The two lists; a click shows the image and selects the box. ``refresh()`` rebuilds them."""

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.measure_combo = QComboBox(self)
        for key, text in MEASURES.items():
            self.measure_combo.addItem(text, key)
        self.measure_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.uncertain_list = QListWidget(self)
        self.mistakes_list = QListWidget(self)
        for widget in (self.uncertain_list, self.mistakes_list):
            widget.itemClicked.connect(self._go_to)
            widget.itemActivated.connect(self._go_to)
        self.summary_label = QLabel("", self)
        self.summary_label.setWordWrap(True)
        self.tabs = QTabWidget(self)
        uncertain_page = QWidget(self)
        uncertain_layout = QVBoxLayout(uncertain_page)
        uncertain_layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Order by", self))
        row.addWidget(self.measure_combo, 1)
        uncertain_layout.addLayout(row)
        uncertain_layout.addWidget(self.uncertain_list)
        self.tabs.addTab(uncertain_page, "Uncertain")
        self.tabs.addTab(self.mistakes_list, "Mistakes")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tabs)
        layout.addWidget(self.summary_label)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self.refresh)
        self._stale = True
        window.predictions_changed.connect(lambda _image_id: self.schedule())
        window.project_opened.connect(self._on_project_opened)
        window.review_panel.threshold_slider.valueChanged.connect(lambda _v: self.schedule())

    @property
    def measure(self) -> str:
        return str(self.measure_combo.currentData())

    def set_measure(self, measure: str) -> None:
        self.measure_combo.setCurrentIndex(self.measure_combo.findData(measure))

    def _on_project_opened(self) -> None:
        if self.window.history is not None:
            self.window.history.changed.connect(self.schedule)
        self.schedule()

    def schedule(self) -> None:
        """Refresh soon (edits and predictions come in bursts); only while the dock is shown."""
        self._stale = True
        if self.isVisible():
            self._timer.start()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._timer.start()

    def refresh(self) -> None:
        """Rebuild both lists; the row the user had selected in each stays selected if it is still listed."""
        self._stale = False
        selected = {widget: self._selected(widget) for widget in (self.uncertain_list, self.mistakes_list)}
        self.uncertain_list.clear()
        self.mistakes_list.clear()
        try:
            self._fill()
        finally:
            for widget, data in selected.items():
                self._reselect(widget, data)

    def _fill(self) -> None:
        doc, store = self.window.doc, self.window.store
        if doc is None:
            self.summary_label.setText("")
            return
        names = self.window.model_info.class_names if self.window.model_info is not None else {}
        ranked = [u for u in rank_uncertain(store, self.measure) if self._known(u.image_id)]
        for u in ranked[:MAX_ROWS]:
            where = f", query {u.query_id}" if u.query_id is not None else ""
            self._add(self.uncertain_list, f"{self._name(u.image_id)} — {u.score:.2f}{where}",
                      u.image_id, PREDICTIONS, u.query_id)  # fmt: skip
        mistakes = find_mistakes(doc, store, self.window.threshold, names)
        for m in mistakes[:MAX_ROWS]:
            layer, key = (PREDICTIONS, m.query_id) if m.kind == EXTRA else (ANNOTATIONS, m.annotation_id)
            self._add(
                self.mistakes_list, f"{self._name(m.image_id)} — {m.kind}: {m.detail}", m.image_id, layer, key
            )
        counts = {kind: sum(m.kind == kind for m in mistakes) for kind in (MISS, EXTRA, WRONG_CLASS)}
        self.tabs.setTabText(1, f"Mistakes ({len(mistakes)})")
        self.summary_label.setText(
            f"{len(ranked)} images with predictions; {counts[MISS]} misses, {counts[EXTRA]} extra boxes, "
            f"{counts[WRONG_CLASS]} wrong classes at threshold {self.window.threshold:.2f}"
        )

    @staticmethod
    def _selected(widget: QListWidget) -> tuple | None:
        item = widget.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None and item.isSelected() else None

    @staticmethod
    def _reselect(widget: QListWidget, data: tuple | None) -> None:
        if data is None:
            return
        for row in range(widget.count()):
            item = widget.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == data:
                widget.setCurrentItem(item)
                widget.scrollToItem(item)
                return

    def _known(self, image_id: int) -> bool:
        try:
            self.window.doc.image(image_id)  # type: ignore[union-attr]
        except KeyError:
            return False
        return True

    def _name(self, image_id: int) -> str:
        return self.window.doc.image(image_id).file_name  # type: ignore[union-attr]

    @staticmethod
    def _add(widget: QListWidget, text: str, image_id: int, layer: str, key: int | None) -> None:
        item = QListWidgetItem(text, widget)
        item.setData(Qt.ItemDataRole.UserRole, (image_id, layer, key))

    def _go_to(self, item: QListWidgetItem) -> None:
        image_id, layer, key = item.data(Qt.ItemDataRole.UserRole)
        self.go_to(image_id, layer, key)

    def go_to(self, image_id: int, layer: str, key: int | None) -> None:
        """Show ``image_id`` and select the box ``key`` of ``layer`` (showing faint predictions if it is one)."""
        window = self.window
        window.select_image(image_id)
        if key is None:
            return
        canvas = window.canvas
        if layer == PREDICTIONS and key not in {b.key for b in canvas.prediction_items()}:
            window.review_panel.ghosts_box.setChecked(True)  # below the threshold: show it faintly
        window.set_layer_visible(layer, True)
        canvas.select(layer, [key])
        box = next((b for b in canvas.boxes(layer) if b.key == key), None)
        if box is not None:
            canvas.ensureVisible(box)


class ReviewQueueDock(QDockWidget):
    def __init__(self, window: MainWindow):
        super().__init__("Review queue", window)
        self.setObjectName("review-queue-dock")
        self.panel = ReviewQueuePanel(window)
        self.setWidget(self.panel)
