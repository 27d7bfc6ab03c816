"""The Objects dock: every annotation (or panoptic segment) and every prediction shown on the current image,
one row each, with its class, source, score and review state, and two boxes per row: shown and locked.

A click on a row selects that object, also one that lies under a larger one on the canvas (a ball inside a
"tree" region); Ctrl and Shift select several. The selection is the session's, so the canvas, the inspector
and this list always agree. Unticking "shown" hides an object (it is not drawn and a click on the canvas
passes through it); ticking "locked" keeps it drawn and selectable but unmovable and uneditable. The rows are
`session.objects.ObjectRow`s from `Session.image_objects`; the header's tool tips say what the columns are.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from detr_studio.session import Selection, Session
from detr_studio.session.objects import ANNOTATION, PREDICTION, SEGMENT, ObjectRow

from .layers import Palette

SHOWN, LOCKED, CLASS, SOURCE, SCORE, REVIEW = range(6)
HEADERS = ("Show", "Lock", "Class", "Source", "Score", "Review")
TIPS = (
    "Drawn on the canvas (untick to hide: a click then passes through it)",
    "Locked: drawn and selectable, but not moved or edited",
    "Class (a model's class name for predictions)",
    "human, model (accepted from a model), prediction; thing or stuff for segments",
    "The model's score",
    "Review state: accepted, pending, rejected; open or ghost for predictions",
)
Index = QModelIndex | QPersistentModelIndex


class ObjectTableModel(QAbstractTableModel):
    """The rows of one image. ``on_flag(row, which, on)`` is called when the user ticks a box ("hidden" or
    "locked")."""

    def __init__(self, on_flag: Callable[[ObjectRow, str, bool], None], parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[ObjectRow] = []
        self.colours: dict[tuple[str, int], QColor] = {}
        self.on_flag = on_flag

    def set_rows(self, rows: list[ObjectRow], colours: dict[tuple[str, int], QColor]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.colours = colours
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return TIPS[section]
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() in (SHOWN, LOCKED):
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.CheckStateRole and column in (SHOWN, LOCKED):
            on = not row.hidden if column == SHOWN else row.locked
            return Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DisplayRole:
            if column == CLASS:
                return row.label
            if column == SOURCE:
                return row.source
            if column == SCORE:
                return f"{row.score:.2f}" if row.score is not None else ""
            if column == REVIEW:
                return row.review
        if role == Qt.ItemDataRole.DecorationRole and column == CLASS:
            return self.colours.get((row.kind, row.key))
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{row.kind} {row.key}: {row.label}, area {row.area:.0f} px"
        return None

    def setData(self, index: Index, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.CheckStateRole or index.column() not in (SHOWN, LOCKED):
            return False
        on = Qt.CheckState(value) == Qt.CheckState.Checked
        row = self.rows[index.row()]
        if index.column() == SHOWN:
            self.on_flag(row, "hidden", not on)
        else:
            self.on_flag(row, "locked", on)
        return True


class ObjectListPanel(QWidget):
    """See the module docstring. ``palette()`` gives the class colours of the rows' swatches."""

    def __init__(self, session: Session, palette: Callable[[], Palette], parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.palette = palette
        self.model = ObjectTableModel(self._set_flag, self)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        header = self.view.horizontalHeader()
        for column in (SHOWN, LOCKED, CLASS, SOURCE, SCORE):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)  # the class stays readable; a narrow dock scrolls sideways
        self.summary = QLabel("No image", self)
        # the text changes with every image: it must never widen the dock (and shrink the canvas)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.show_all_button = QPushButton("Show All", self)
        self.unlock_all_button = QPushButton("Unlock All", self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.show_all_button)
        buttons.addWidget(self.unlock_all_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        self._syncing = False
        self._stale = True

        self.view.selectionModel().selectionChanged.connect(self._on_rows_selected)
        self.show_all_button.clicked.connect(lambda: self._clear_flag("hidden"))
        self.unlock_all_button.clicked.connect(lambda: self._clear_flag("locked"))
        events = session.events
        for emitter in (events.project, events.image, events.edited, events.predictions, events.threshold,
                        events.ghosts, events.objects, events.model):  # fmt: skip
            emitter.connect(lambda _value: self.refresh_soon())
        events.selection.connect(self._show_selection)

    # ---- rows --------------------------------------------------------------------------------------------

    def refresh_soon(self) -> None:
        """Rebuild the rows now when the list is seen, else when it is next shown."""
        self._stale = True
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        self._stale = False
        rows = self.session.image_objects()
        palette = self.palette()
        colours = {}
        for row in rows:
            rgb = (
                palette.label_colour(row.category)
                if row.kind == PREDICTION
                else palette.category_colour(row.category)
            )
            colours[(row.kind, row.key)] = QColor(*rgb)
        self._syncing = True
        self.model.set_rows(rows, colours)
        self._syncing = False
        self._show_selection(self.session.selection)
        documents = sum(r.kind != PREDICTION for r in rows)
        predicted = len(rows) - documents
        what = "segments" if self.session.doc is not None and self.session.doc.is_panoptic else "annotations"
        self.summary.setText(
            f"{documents} {what}, {predicted} predictions" if rows or self.session.doc else "No image"
        )

    def row_of(self, kind: str, key: int) -> int | None:
        """The list row of an object (None: not listed)."""
        return next((i for i, r in enumerate(self.model.rows) if r.kind == kind and r.key == key), None)

    # ---- selection: the session's ------------------------------------------------------------------------

    def _on_rows_selected(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        if self._syncing:
            return
        chosen = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        picked = {ANNOTATION: [], SEGMENT: [], PREDICTION: []}
        for i in chosen:
            row = self.model.rows[i]
            picked[row.kind].append(row.key)
        self.session.select(picked[ANNOTATION], picked[PREDICTION], picked[SEGMENT])

    def _show_selection(self, selection: Selection) -> None:
        wanted = {(ANNOTATION, k) for k in selection.annotation_ids}
        wanted |= {(SEGMENT, k) for k in selection.segment_ids}
        wanted |= {(PREDICTION, k) for k in selection.query_ids}
        model, selection_model = self.model, self.view.selectionModel()
        rows = QItemSelection()
        for i, row in enumerate(model.rows):
            if (row.kind, row.key) in wanted:
                rows.select(model.index(i, 0), model.index(i, len(HEADERS) - 1))
        self._syncing = True
        selection_model.select(rows, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._syncing = False
        if rows.indexes():
            self.view.scrollTo(rows.indexes()[0])

    # ---- flags -------------------------------------------------------------------------------------------

    def _set_flag(self, row: ObjectRow, which: str, on: bool) -> None:
        if which == "hidden":
            self.session.set_hidden(row.kind, [row.key], on)
        else:
            self.session.set_locked(row.kind, [row.key], on)

    def _clear_flag(self, which: str) -> None:
        """Show (``which`` "hidden") or unlock every object of the image."""
        for kind in (ANNOTATION, SEGMENT, PREDICTION):
            if which == "hidden":
                self.session.set_hidden(kind, self.session.hidden_keys(kind), False)
            else:
                self.session.set_locked(kind, self.session.locked_keys(kind), False)


class ObjectListDock(QDockWidget):
    """The dock around `ObjectListPanel` (Window › Objects)."""

    def __init__(self, session: Session, palette: Callable[[], Palette], parent: QWidget | None = None):
        super().__init__("Objects", parent)
        self.setObjectName("objects-dock")
        self.panel = ObjectListPanel(session, palette, self)
        self.setWidget(self.panel)
