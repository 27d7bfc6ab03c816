"""The class manager: the project's categories with their colours and annotation counts; add, rename, merge
one class into another, change or reset a colour, remove an unused class.

Every change is a document `Edit` made through the session's one undo history, so Ctrl+Z / Ctrl+Y undo and
redo it here as in the window, and the journal and Save see it like any other edit. A chosen colour is stored
in the category record as ``"color": [r, g, b]`` (the COCO panoptic convention, which `CocoDocument` checks
and keeps on save), and the canvas's `Palette` prefers it to the automatic colour. The dialog is not modal:
the window refreshes it after every change (`refresh`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from detr_studio.common.text import plural
from detr_studio.data.coco import (
    AddCategory,
    CocoDocument,
    Edit,
    MergeCategories,
    RemoveCategory,
    RenameCategory,
    UpdateCategory,
)

from .layers import Palette

Rgb = tuple[int, int, int]
ApplyEdit = Callable[[Edit, str], bool]
SWATCH_PX = 16
COLOUR, NAME, ID, COUNT = range(4)


def swatch(colour: Rgb, size: int = SWATCH_PX) -> QIcon:
    """A small square of ``colour`` with a dark rim."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*colour))
    painter = QPainter(pixmap)
    painter.setPen(QColor(0, 0, 0, 120))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    icon = QIcon(pixmap)
    icon.addPixmap(pixmap, QIcon.Mode.Selected)  # the true colour on a selected row too, not a tinted one
    return icon


def hex_colour(colour: Rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


class ClassManager(QDialog):
    """See the module docstring. ``document()`` is the open document (or None), ``apply(edit, text)`` makes an
    undoable edit (False when the document refuses it; the window then says why), ``palette()`` gives the
    colours the canvas uses, and ``shortcut_actions`` (undo, redo) also work while this dialog has focus."""

    def __init__(
        self,
        parent: QWidget,
        document: Callable[[], CocoDocument | None],
        apply: ApplyEdit,
        palette: Callable[[], Palette],
        shortcut_actions: Sequence[QAction] = (),
    ):
        super().__init__(parent)
        self.setWindowTitle("Classes")
        self.setModal(False)
        self.resize(460, 420)
        self._document = document
        self._apply = apply
        self._palette = palette
        for action in shortcut_actions:
            self.addAction(action)  # Ctrl+Z / Ctrl+Y reach the window's undo stack from here too

        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["Colour", "Name", "Id", "Annotations"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        for column in (COLOUR, ID, COUNT):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(self._double_clicked)

        self.add_button = QPushButton("Add…", self)
        self.rename_button = QPushButton("Rename…", self)
        self.merge_button = QPushButton("Merge Into…", self)
        self.colour_button = QPushButton("Colour…", self)
        self.reset_colour_button = QPushButton("Automatic Colour", self)
        self.remove_button = QPushButton("Remove", self)
        self.close_button = QPushButton("Close", self)
        self.add_button.clicked.connect(self.ask_add)
        self.rename_button.clicked.connect(self.ask_rename)
        self.merge_button.clicked.connect(self.ask_merge)
        self.colour_button.clicked.connect(self.ask_colour)
        self.reset_colour_button.clicked.connect(lambda: self._on_selected(self.reset_colour))
        self.remove_button.clicked.connect(lambda: self._on_selected(self.remove_class))
        self.close_button.clicked.connect(self.close)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)

        buttons = QVBoxLayout()
        for button in (
            self.add_button,
            self.rename_button,
            self.merge_button,
            self.colour_button,
            self.reset_colour_button,
            self.remove_button,
        ):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        row = QHBoxLayout()
        row.addWidget(self.table, 1)
        row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.message)
        hint = QLabel("Every change can be undone with Ctrl+Z and redone with Ctrl+Y.", self)
        hint.setEnabled(False)
        layout.addWidget(hint)

    # ---- showing ---------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the categories, colours and counts (the window calls this after every change)."""
        if not self.isVisible():
            return  # showEvent refreshes
        doc = self._document()
        selected = self.selected_id()
        self.table.setRowCount(0)
        if doc is not None:
            palette = self._palette()
            counts = doc.annotation_counts()
            self.table.setRowCount(len(doc.categories))
            for row, cat in enumerate(doc.categories):
                colour = palette.category_colour(cat.id)
                chosen = cat.color is not None
                colour_item = QTableWidgetItem(swatch(colour), hex_colour(colour))
                colour_item.setToolTip("chosen colour" if chosen else "automatic colour")
                colour_item.setData(Qt.ItemDataRole.UserRole, cat.id)
                name_item = QTableWidgetItem(cat.name)
                id_item = QTableWidgetItem(str(cat.id))
                count_item = QTableWidgetItem(f"{counts.get(cat.id, 0):,}")
                for item in (id_item, count_item):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                for column, item in (
                    (COLOUR, colour_item),
                    (NAME, name_item),
                    (ID, id_item),
                    (COUNT, count_item),
                ):
                    self.table.setItem(row, column, item)
        self.select(selected)
        self._update_buttons()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()

    def class_ids(self) -> list[int]:
        """Category ids in the order shown."""
        return [self._row_id(row) for row in range(self.table.rowCount())]

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self._row_id(rows[0].row()) if rows else None

    def select(self, category_id: int | None) -> None:
        ids = self.class_ids()
        if category_id in ids:
            self.table.selectRow(ids.index(category_id))
        else:
            self.table.clearSelection()

    def _row_id(self, row: int) -> int:
        return int(self.table.item(row, COLOUR).data(Qt.ItemDataRole.UserRole))

    def _update_buttons(self) -> None:
        doc = self._document()
        has_doc, selected = doc is not None, self.selected_id() is not None
        self.add_button.setEnabled(has_doc)
        for button in (self.rename_button, self.colour_button, self.reset_colour_button, self.remove_button):
            button.setEnabled(has_doc and selected)
        self.merge_button.setEnabled(has_doc and selected and not doc.is_panoptic and len(doc.categories) > 1)

    def _say(self, text: str) -> None:
        self.message.setText(text)

    # ---- changes (each one undoable edit) ----------------------------------------------------------------

    def add_class(self, name: str, colour: Rgb | None = None) -> int | None:
        """Add a class (id: one above the largest); returns its id, or None when refused."""
        doc = self._document()
        name = name.strip()
        if doc is None or not self._name_is_free(doc, name, None):
            return None
        cid = max([c.id for c in doc.categories] + [0]) + 1
        record: dict = {"id": cid, "name": name}
        if colour is not None:
            record["color"] = [int(v) for v in colour]
        if not self._apply(AddCategory(record), f"add class {name}"):
            return None
        self._say(f"Added {name!r} (id {cid}).")
        self.select(cid)
        return cid

    def rename_class(self, category_id: int, name: str) -> bool:
        doc = self._document()
        name = name.strip()
        if doc is None or not self._name_is_free(doc, name, category_id):
            return False
        old = doc.category(category_id).name
        if name == old:
            return False
        ok = self._apply(RenameCategory(category_id, name), f"rename class {old} to {name}")
        if ok:
            self._say(f"Renamed {old!r} to {name!r}.")
        return ok

    def merge_class(self, source_id: int, target_id: int) -> bool:
        """Relabel every annotation of ``source_id`` to ``target_id`` and remove ``source_id``."""
        doc = self._document()
        if doc is None:
            return False
        if source_id == target_id:
            self._say("Choose another class to merge into.")
            return False
        if doc.is_panoptic:
            self._say("Classes of a panoptic dataset cannot be merged here (their segments live in PNGs).")
            return False
        source, target = doc.category(source_id).name, doc.category(target_id).name
        moved = doc.annotation_counts().get(source_id, 0)
        ok = self._apply(MergeCategories([source_id], target_id), f"merge class {source} into {target}")
        if ok:
            self._say(f"Merged {source!r} into {target!r}: {plural(moved, 'annotation')} relabelled.")
            self.select(target_id)
        return ok

    def set_colour(self, category_id: int, colour: Rgb) -> bool:
        """Store ``colour`` in the category; the canvas draws the class in it from now on."""
        doc = self._document()
        if doc is None:
            return False
        rgb = [int(v) for v in colour]
        name = doc.category(category_id).name
        ok = self._apply(UpdateCategory(category_id, {"color": rgb}), f"colour class {name}")
        if ok:
            self._say(f"{name!r} is now drawn in {hex_colour(colour)}.")
        return ok

    def reset_colour(self, category_id: int) -> bool:
        """Drop a chosen colour: the class goes back to its automatic colour."""
        doc = self._document()
        if doc is None or doc.category(category_id).color is None:
            return False
        name = doc.category(category_id).name
        return self._apply(UpdateCategory(category_id, drop=["color"]), f"automatic colour for {name}")

    def remove_class(self, category_id: int) -> bool:
        """Remove a class that no annotation uses (merge a used one instead)."""
        doc = self._document()
        if doc is None:
            return False
        name = doc.category(category_id).name
        used = doc.annotation_counts().get(category_id, 0)
        if used:
            self._say(
                f"{name!r} is used by {plural(used, 'annotation')}: merge it into another class instead."
            )
            return False
        ok = self._apply(RemoveCategory(category_id), f"remove class {name}")
        if ok:
            self._say(f"Removed {name!r}.")
        return ok

    def _name_is_free(self, doc: CocoDocument, name: str, category_id: int | None) -> bool:
        if not name:
            self._say("A class needs a name.")
            return False
        other = next((c for c in doc.categories if c.name == name and c.id != category_id), None)
        if other is not None:
            self._say(
                f"There is already a class named {name!r} (id {other.id});"
                " use Merge Into… to join two classes."
            )
            return False
        return True

    # ---- asking the user ---------------------------------------------------------------------------------

    def _on_selected(self, change: Callable[[int], object]) -> None:
        cid = self.selected_id()
        if cid is not None:
            change(cid)

    def ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add Class", "Name of the new class:")
        if ok:
            self.add_class(name)

    def ask_rename(self) -> None:
        doc, cid = self._document(), self.selected_id()
        if doc is None or cid is None:
            return
        name, ok = QInputDialog.getText(self, "Rename Class", "New name:", text=doc.category(cid).name)
        if ok:
            self.rename_class(cid, name)

    def ask_merge(self) -> None:
        doc, cid = self._document(), self.selected_id()
        if doc is None or cid is None:
            return
        others = [c for c in doc.categories if c.id != cid]
        if not others:
            return
        labels = [f"{c.name} (id {c.id})" for c in others]
        source = doc.category(cid).name
        label, ok = QInputDialog.getItem(
            self, "Merge Classes", f"Merge {source!r} into (its annotations move there, {source!r} goes):",
            labels, 0, False,
        )  # fmt: skip
        if ok and label in labels:
            self.merge_class(cid, others[labels.index(label)].id)

    def ask_colour(self) -> None:
        cid = self.selected_id()
        if cid is None:
            return
        start = QColor(*self._palette().category_colour(cid))
        colour = QColorDialog.getColor(start, self, "Class Colour")
        if colour.isValid():
            self.set_colour(cid, (colour.red(), colour.green(), colour.blue()))

    def _double_clicked(self, item: QTableWidgetItem) -> None:
        if item.column() == COLOUR:
            self.ask_colour()
        else:
            self.ask_rename()
