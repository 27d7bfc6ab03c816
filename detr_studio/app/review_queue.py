"""The Review queue dock: where to look next. Two lists built from the predictions the session holds:

- *Uncertain*: images ordered by how unsure the model is about its most doubtful query (entropy, top-2
  margin or no-object mass of its class distribution);
- *Mistakes*: where the open predictions above the threshold disagree with the trusted labels (misses,
  extra boxes, wrong classes, masks that disagree; on panoptic datasets missed, extra and wrongly classed
  segments), and the annotations whose mask is only their box.

The measures and the matching are `infer.review`, the lists over the session `session.review`. Each row is a
click away from the canvas: ``show_object(image id, layer, key)`` shows the image and selects the box.
"""

from __future__ import annotations

from collections.abc import Callable

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

from detr_studio.common.text import plural
from detr_studio.infer.review import (
    BOX_ONLY,
    EXTRA,
    EXTRA_SEGMENT,
    MASK_DISAGREES,
    MISS,
    WRONG_CLASS,
    Mistake,
)
from detr_studio.infer.uncertainty import MEASURES
from detr_studio.session import Session
from detr_studio.session.review import find_mistakes, uncertain_images

from .canvas import ANNOTATIONS, PREDICTIONS
from .services import Services

MAX_ROWS = 1000
ShowObject = Callable[[int, str, "int | None"], None]


class ReviewQueuePanel(QWidget):
    """The two lists; a click shows the image and selects the box. ``refresh()`` rebuilds them."""

    def __init__(
        self, session: Session, services: Services, show_object: ShowObject, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.session = session
        self.services = services
        self.show_object = show_object
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
        session.events.predictions.connect(lambda _ids: self.schedule())
        session.events.project.connect(lambda _project: self.schedule())
        session.events.edited.connect(lambda _change: self.schedule())
        session.events.threshold.connect(lambda _threshold: self.schedule())

    @property
    def measure(self) -> str:
        return str(self.measure_combo.currentData())

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
        doc, store, threshold = self.session.doc, self.session.store, self.session.threshold
        if doc is None:
            self.summary_label.setText("")
            return
        names = self.session.class_names
        ranked = [u for u in uncertain_images(store, self.measure) if self._known(u.image_id)]
        for u in ranked[:MAX_ROWS]:
            where = f", query {u.query_id}" if u.query_id is not None else ""
            self._add(self.uncertain_list, f"{self._name(u.image_id)} — {u.score:.2f}{where}",
                      u.image_id, PREDICTIONS, u.query_id)  # fmt: skip
        mistakes = find_mistakes(doc, store, threshold, names)
        for m in mistakes[:MAX_ROWS]:
            layer, key = self._target(m)
            self._add(
                self.mistakes_list, f"{self._name(m.image_id)} — {m.kind}: {m.detail}", m.image_id, layer, key
            )
        kinds = (MISS, EXTRA, EXTRA_SEGMENT, WRONG_CLASS, MASK_DISAGREES, BOX_ONLY)
        counts = {kind: sum(m.kind == kind for m in mistakes) for kind in kinds}
        self.tabs.setTabText(1, f"Mistakes ({len(mistakes)})")
        extra = counts[EXTRA_SEGMENT] if doc.is_panoptic else counts[EXTRA]
        extra_what = ("extra segment", "extra segments") if doc.is_panoptic else ("extra box", "extra boxes")
        text = (
            f"{plural(len(ranked), 'image')} with predictions; {plural(counts[MISS], 'miss', 'misses')}, "
            f"{plural(extra, *extra_what)}, {plural(counts[WRONG_CLASS], 'wrong class', 'wrong classes')}"
        )
        if not doc.is_panoptic:
            text += (
                f", {plural(counts[MASK_DISAGREES], 'mask that disagrees', 'masks that disagree')},"
                f" {plural(counts[BOX_ONLY], 'box without a mask', 'boxes without a mask')}"
            )
        self.summary_label.setText(f"{text} at threshold {threshold:.2f}")

    @staticmethod
    def _target(m: Mistake) -> tuple[str, int | None]:
        """The layer and key a row selects: the prediction for extras, else the label (or segment)."""
        if m.kind in (EXTRA, EXTRA_SEGMENT):
            return PREDICTIONS, m.query_id
        return ANNOTATIONS, m.segment_id if m.segment_id is not None else m.annotation_id

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
            self.session.doc.image(image_id)  # type: ignore[union-attr]
        except KeyError:
            return False
        return True

    def _name(self, image_id: int) -> str:
        return self.session.doc.image(image_id).file_name  # type: ignore[union-attr]

    @staticmethod
    def _add(widget: QListWidget, text: str, image_id: int, layer: str, key: int | None) -> None:
        item = QListWidgetItem(text, widget)
        item.setData(Qt.ItemDataRole.UserRole, (image_id, layer, key))

    def _go_to(self, item: QListWidgetItem) -> None:
        image_id, layer, key = item.data(Qt.ItemDataRole.UserRole)
        self.go_to(image_id, layer, key)

    def go_to(self, image_id: int, layer: str, key: int | None) -> None:
        """Show ``image_id`` and select the box ``key`` of ``layer``."""
        self.show_object(image_id, layer, key)


class ReviewQueueDock(QDockWidget):
    def __init__(
        self, session: Session, services: Services, show_object: ShowObject, parent: QWidget | None = None
    ):
        super().__init__("Review queue", parent)
        self.setObjectName("review-queue-dock")
        self.panel = ReviewQueuePanel(session, services, show_object, self)
        self.setWidget(self.panel)
