"""Rebindable keyboard shortcuts: where the window's key bindings are stored, and the dialog that edits them.

A binding is kept in the window's QSettings as ``shortcuts/<action name>`` only when it differs from the
default: the key sequences in Qt's portable text joined by ``"; "`` (``"Ctrl+Shift+Z; Ctrl+Y"``), or ``""`` for
no shortcut at all. The window reads it when it makes each action (`saved_keys`), so a binding applies from
the next start as well as at once. The dialog lists every action the window registered, with its keys; a key
that another action already uses is refused with a message that names that action, so two actions never share
a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

GROUP = "shortcuts"
PORTABLE = QKeySequence.SequenceFormat.PortableText
NATIVE = QKeySequence.SequenceFormat.NativeText


def normalise(keys: Iterable[str]) -> list[str]:
    """Key sequences in Qt's portable text ("ctrl+s" -> "Ctrl+S"); empty ones dropped."""
    out = []
    for key in keys:
        text = QKeySequence(key).toString(PORTABLE)
        if text and text not in out:
            out.append(text)
    return out


def keys_text(keys: Iterable[str]) -> str:
    """How keys are stored: portable text joined by "; " ("" for none)."""
    return "; ".join(normalise(keys))


def parse_keys(text: str) -> list[str]:
    return normalise(k.toString(PORTABLE) for k in QKeySequence.listFromString(text, PORTABLE))


def saved_keys(settings: QSettings, name: str, defaults: Iterable[str]) -> list[str]:
    """The keys of action ``name``: the stored binding when there is one, else ``defaults``."""
    value = settings.value(f"{GROUP}/{name}")
    if isinstance(value, str):
        return parse_keys(value)
    if isinstance(value, list):  # a list written by hand into the settings file
        return normalise(str(v) for v in value)
    return normalise(defaults)


def store_keys(settings: QSettings, name: str, keys: Iterable[str], defaults: Iterable[str]) -> None:
    """Remember ``keys`` for ``name``; a binding equal to the default is removed, not stored."""
    keys, defaults = normalise(keys), normalise(defaults)
    if keys == defaults:
        settings.remove(f"{GROUP}/{name}")
    else:
        settings.setValue(f"{GROUP}/{name}", keys_text(keys))


def action_label(action: QAction) -> str:
    return action.text().replace("&", "").rstrip("…").rstrip(".")


def find_conflicts(bindings: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Keys bound to more than one action: key -> those action names."""
    users: dict[str, list[str]] = {}
    for name, keys in bindings.items():
        for key in normalise(keys):
            users.setdefault(key, []).append(name)
    return {key: names for key, names in users.items() if len(names) > 1}


def apply_keys(action: QAction, keys: list[str]) -> None:
    """Give ``action`` these shortcuts and keep its tooltip's "(key)" suffix in step."""
    old = [k.toString(PORTABLE) for k in action.shortcuts()]
    tip = action.toolTip()
    if old and tip.endswith(f" ({old[0]})"):
        tip = tip[: -len(f" ({old[0]})")]
    action.setShortcuts([QKeySequence(k) for k in keys])
    action.setToolTip(tip + (f" ({keys[0]})" if keys else ""))


class ShortcutDialog(QDialog):
    """Lists ``actions`` (name -> QAction) with their keys; pick a row and press the new key. OK applies the
    changes to the actions and stores them in ``settings``; Cancel forgets them. ``built_in`` are keys the
    window handles itself (Space accepts): shown first in their action's row, never rebound nor given to
    another action."""

    def __init__(
        self,
        actions: Mapping[str, QAction],
        defaults: Mapping[str, Iterable[str]],
        settings: QSettings,
        parent: QWidget | None = None,
        built_in: Mapping[str, Iterable[str]] | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.resize(560, 560)
        self.actions = dict(actions)
        self.defaults = {name: normalise(defaults.get(name, ())) for name in self.actions}
        self.settings = settings
        self.built_in = {name: normalise(keys) for name, keys in (built_in or {}).items()}
        self.bindings: dict[str, list[str]] = {
            name: normalise(k.toString(PORTABLE) for k in action.shortcuts())
            for name, action in self.actions.items()
        }
        self._names = sorted(self.actions, key=lambda n: action_label(self.actions[n]).lower())

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by action or key…")
        self.filter_edit.setClearButtonEnabled(True)
        self.table = QTableWidget(len(self._names), 2, self)
        self.table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.key_edit = QKeySequenceEdit(self)
        self.key_edit.setMaximumSequenceLength(1)
        self.key_edit.setClearButtonEnabled(False)
        self.clear_button = QPushButton("No Shortcut", self)
        self.reset_button = QPushButton("Default", self)
        self.reset_all_button = QPushButton("Reset All", self)
        self.message = QLabel("Choose an action, then press its new key.", self)
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, parent=self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        edit_row = QHBoxLayout()
        edit_row.addWidget(QLabel("Key:", self))
        edit_row.addWidget(self.key_edit, 1)
        edit_row.addWidget(self.clear_button)
        edit_row.addWidget(self.reset_button)
        edit_row.addWidget(self.reset_all_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.table, 1)
        layout.addLayout(edit_row)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

        self._fill()
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.table.itemSelectionChanged.connect(self._row_chosen)
        self.key_edit.editingFinished.connect(self._key_entered)
        self.clear_button.clicked.connect(lambda: self._on_current(lambda n: self.set_keys(n, [])))
        self.reset_button.clicked.connect(lambda: self._on_current(self.reset))
        self.reset_all_button.clicked.connect(self.reset_all)
        self._row_chosen()

    # ---- the table ---------------------------------------------------------------------------------------

    def _fill(self) -> None:
        for row, name in enumerate(self._names):
            label = QTableWidgetItem(action_label(self.actions[name]))
            label.setData(Qt.ItemDataRole.UserRole, name)
            label.setToolTip(name)
            self.table.setItem(row, 0, label)
            self.table.setItem(row, 1, QTableWidgetItem(""))
            self._show_keys(name)

    def _show_keys(self, name: str) -> None:
        keys = self.bindings[name]
        item = self.table.item(self._names.index(name), 1)
        item.setText(
            ", ".join(QKeySequence(k).toString(NATIVE) for k in [*self.built_in.get(name, []), *keys])
        )
        if name in self.built_in:
            item.setToolTip("Space is built in: a tap accepts, holding it and dragging pans the image")
        font = item.font()
        font.setBold(keys != self.defaults[name])  # changed from the default
        item.setFont(font)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for row, name in enumerate(self._names):
            shown = self.table.item(row, 0).text() + " " + self.table.item(row, 1).text() + " " + name
            self.table.setRowHidden(row, bool(needle) and needle not in shown.lower())

    def current_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self._names[rows[0].row()] if rows else None

    def select(self, name: str) -> None:
        self.table.selectRow(self._names.index(name))

    def _row_chosen(self) -> None:
        name = self.current_name()
        for widget in (self.key_edit, self.clear_button, self.reset_button):
            widget.setEnabled(name is not None)
        keys = self.bindings[name] if name is not None else []
        self.key_edit.blockSignals(True)
        self.key_edit.setKeySequence(QKeySequence(keys[0]) if keys else QKeySequence())
        self.key_edit.blockSignals(False)

    def _on_current(self, change) -> None:
        name = self.current_name()
        if name is not None:
            change(name)

    def _key_entered(self) -> None:
        name = self.current_name()
        if name is None:
            return
        key = self.key_edit.keySequence().toString(PORTABLE)
        if key and key not in self.bindings[name]:
            self.set_keys(name, [key])

    # ---- changing bindings (pending until OK) ------------------------------------------------------------

    def owner_of(self, key: str, besides: str | None = None) -> str | None:
        """The action (other than ``besides``) that ``key`` is bound to in the pending bindings."""
        wanted = normalise([key])
        for name, keys in self.bindings.items():
            if wanted and wanted[0] in [*keys, *self.built_in.get(name, [])] and name != besides:
                return name
            if wanted and name == besides and wanted[0] in self.built_in.get(name, []):
                return name  # already this action's built-in key
        return None

    def set_keys(self, name: str, keys: Iterable[str]) -> bool:
        """Bind ``name`` to ``keys`` (replacing its keys); refused, with a message naming the other action, when
        a key is taken."""
        keys = normalise(keys)
        for key in keys:
            owner = self.owner_of(key, besides=name)
            if owner is not None:
                shown = QKeySequence(key).toString(NATIVE)
                self.message.setText(
                    f"{shown} is already the shortcut of “{action_label(self.actions[owner])}”. Give that action"
                    " another key (or none) first, or choose another key here."
                )
                self._row_chosen()  # the editor shows the binding that stayed
                return False
        self.bindings[name] = keys
        self._show_keys(name)
        label = action_label(self.actions[name])
        if keys:
            shown = ", ".join(QKeySequence(k).toString(NATIVE) for k in keys)
            self.message.setText(f"“{label}”: {shown}")
        else:
            self.message.setText(f"“{label}” has no shortcut now.")
        self._row_chosen()
        return True

    def reset(self, name: str) -> bool:
        return self.set_keys(name, self.defaults[name])

    def reset_all(self) -> None:
        """Every action back to its default keys."""
        for name in self._names:
            self.bindings[name] = list(self.defaults[name])
            self._show_keys(name)
        self.message.setText("Every shortcut is back to its default.")
        self._row_chosen()

    def conflicts(self) -> dict[str, list[str]]:
        return find_conflicts(self.bindings)

    # ---- OK ----------------------------------------------------------------------------------------------

    def accept(self) -> None:
        clashes = self.conflicts()
        if clashes:
            key, names = next(iter(clashes.items()))
            labels = " and ".join(f"“{action_label(self.actions[n])}”" for n in names)
            self.message.setText(
                f"{QKeySequence(key).toString(NATIVE)} is bound to both {labels}; change one."
            )
            return
        self.apply()
        super().accept()

    def apply(self) -> None:
        """Give the actions their pending keys and store the bindings that differ from the defaults."""
        for name, keys in self.bindings.items():
            apply_keys(self.actions[name], keys)
            store_keys(self.settings, name, keys, self.defaults[name])
        self.settings.sync()
