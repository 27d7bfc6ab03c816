"""Rebindable shortcuts: the dialog lists every window action with its keys, a new key works at once and after
a restart (it is kept in the window's QSettings), a key that another action holds is refused with that action's
name, and keys can be cleared and reset to the defaults."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication

from detr_studio.app.shortcuts import GROUP, ShortcutDialog, find_conflicts, parse_keys

from .helpers import open_and_wait


def dialog_for(window) -> ShortcutDialog:
    return ShortcutDialog(window.actions_by_name, window.actions.defaults, window.services.settings, window)


def keys_of(window, name: str) -> list[str]:
    return [
        k.toString(QKeySequence.SequenceFormat.PortableText) for k in window.actions_by_name[name].shortcuts()
    ]


def shown_keys(dialog: ShortcutDialog, name: str) -> str:
    dialog.select(name)
    return dialog.table.item(dialog.table.currentRow(), 1).text()


def test_the_dialog_lists_every_action_with_its_keys_and_no_default_clashes(window):
    dialog = dialog_for(window)
    assert dialog.table.rowCount() == len(window.actions_by_name)
    assert set(dialog.bindings) == set(window.actions_by_name)
    assert dialog.bindings["redo"] == ["Ctrl+Shift+Z", "Ctrl+Y"]
    assert shown_keys(dialog, "save") == QKeySequence("Ctrl+S").toString(
        QKeySequence.SequenceFormat.NativeText
    )
    assert find_conflicts(window.actions.defaults) == {}
    edit_menu = window.menuBar().actions()[1].menu()
    assert window.actions_by_name["shortcuts"] in edit_menu.actions()


def test_a_new_key_works_at_once_and_after_a_restart(qtbot, make_window, window, dataset, settings):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    dialog = dialog_for(window)
    assert dialog.set_keys("draw", ["J"])
    dialog.accept()
    assert keys_of(window, "draw") == ["J"] and settings.value(f"{GROUP}/draw") == "J"
    assert window.actions_by_name["draw"].toolTip() == "Draw a box (J)"
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_W)
    assert window.canvas.mode == "select"
    qtbot.keyClick(window.canvas, Qt.Key.Key_J)
    assert window.canvas.mode == "draw"

    restarted = make_window()
    assert keys_of(restarted, "draw") == ["J"]
    assert keys_of(restarted, "save") == ["Ctrl+S"]


def test_a_key_another_action_holds_is_refused_with_that_actions_name(window, settings):
    dialog = dialog_for(window)
    assert not dialog.set_keys("draw", ["Ctrl+S"])
    assert "Ctrl+S" in dialog.message.text() and "“Save”" in dialog.message.text()
    assert dialog.bindings["draw"] == ["W"]
    assert dialog.set_keys("save", [])
    assert dialog.set_keys("draw", ["Ctrl+S"])
    dialog.accept()
    assert keys_of(window, "draw") == ["Ctrl+S"] and keys_of(window, "save") == []
    assert settings.value(f"{GROUP}/save") == ""


def test_clashing_bindings_cannot_be_accepted(window):
    dialog = dialog_for(window)
    dialog.bindings["draw"] = ["Ctrl+S"]  # as a hand-edited settings file could make them
    dialog.accept()
    assert dialog.result() != ShortcutDialog.DialogCode.Accepted
    assert "bound to both" in dialog.message.text()
    assert keys_of(window, "draw") == ["W"]


def test_reset_puts_the_defaults_back_and_forgets_the_stored_bindings(make_window, window, settings):
    dialog = dialog_for(window)
    dialog.set_keys("next", ["J"])
    dialog.set_keys("redo", ["Ctrl+R"])
    dialog.accept()
    assert keys_of(window, "redo") == ["Ctrl+R"]
    again = dialog_for(window)
    assert again.reset("redo")
    assert again.bindings["redo"] == ["Ctrl+Shift+Z", "Ctrl+Y"]
    again.reset_all()
    again.accept()
    assert keys_of(window, "next") == ["D"] and keys_of(window, "redo") == ["Ctrl+Shift+Z", "Ctrl+Y"]
    settings.beginGroup(GROUP)
    assert settings.childKeys() == []
    settings.endGroup()
    assert keys_of(make_window(), "next") == ["D"]


def test_pressing_a_key_in_the_editor_binds_it_and_cancel_forgets_it(qtbot, window):
    dialog = dialog_for(window)
    dialog.show()
    dialog.select("fit")
    dialog.key_edit.setFocus()
    qtbot.keyClick(dialog.key_edit, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: dialog.bindings["fit"] == ["Ctrl+K"], timeout=3_000)
    dialog.reject()
    assert keys_of(window, "fit") == ["F"]


def test_the_menu_action_opens_the_dialog(qtbot, window):
    seen: list[int] = []

    def accept_it() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, ShortcutDialog):
            seen.append(dialog.table.rowCount())
            dialog.set_keys("previous", ["Q"])
            dialog.accept()

    QTimer.singleShot(100, accept_it)
    assert window.edit_shortcuts()
    assert seen == [len(window.actions_by_name)]
    assert keys_of(window, "previous") == ["Q"]


def test_stored_text_parses_to_the_same_keys():
    assert parse_keys("Ctrl+Shift+Z; Ctrl+Y") == ["Ctrl+Shift+Z", "Ctrl+Y"]
    assert parse_keys("") == []
    assert parse_keys("ctrl+k") == ["Ctrl+K"]
