"""The class manager on the real window: it lists classes with colour swatches and counts; adding, renaming,
merging and recolouring are undoable edits (Ctrl+Z / Ctrl+Y, also while the dialog has focus) that show on
the canvas, in the relabel dialog and in the image filter, and Save writes them to COCO."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QInputDialog

from detr_studio.app.class_manager import ClassManager, hex_colour
from detr_studio.data.coco import CocoDocument

from .helpers import open_and_wait


def row_texts(manager) -> list[tuple[str, str, str, str]]:
    """(colour, name, id, count) as shown, one tuple per row."""
    table = manager.table
    return [tuple(table.item(row, column).text() for column in range(4)) for row in range(table.rowCount())]


def category_table(doc: CocoDocument) -> list[tuple]:
    return [(c.id, c.name, c.color) for c in doc.categories]


def label_table(doc: CocoDocument) -> dict[int, int]:
    return {a.id: a.category_id for a in doc.annotations}


@pytest.fixture
def manager(qtbot, window, dataset) -> ClassManager:
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    dialog = window.editing.manage_classes()
    qtbot.waitUntil(dialog.isActiveWindow, timeout=5_000)
    return dialog


def canvas_labels(window) -> dict[int, str]:
    return {item.key: item.label.text for item in window.canvas.boxes("annotations")}


def used_class(window) -> int:
    """The class of the first annotation of the image shown."""
    return window.session.doc.annotations_for(window.session.current_image_id)[0].category_id


def test_the_dialog_lists_every_class_with_its_swatch_colour_and_count(window, manager):
    doc, palette = window.session.doc, window.presenter.palette()
    counts = doc.annotation_counts()
    assert manager.class_ids() == [c.id for c in doc.categories]
    assert row_texts(manager) == [
        (hex_colour(palette.category_colour(c.id)), c.name, str(c.id), f"{counts[c.id]:,}")
        for c in doc.categories
    ]
    icon = manager.table.item(0, 0).icon().pixmap(16, 16).toImage()
    assert QColor(icon.pixel(8, 8)).getRgb()[:3] == palette.category_colour(doc.categories[0].id)
    assert window.actions_by_name["classes"] in window.menuBar().actions()[1].menu().actions()


def test_adding_a_class_is_undone_and_redone_with_the_keyboard_in_the_dialog(qtbot, window, manager):
    before = category_table(window.session.doc)
    cid = manager.add_class("zebra", colour=(1, 2, 3))
    assert category_table(window.session.doc) == [*before, (cid, "zebra", (1, 2, 3))]
    assert window.review_panel.class_combo.findData(cid) >= 0
    assert window.image_panel.class_combo.findText("zebra") >= 0
    assert row_texts(manager)[-1][:3] == ("#010203", "zebra", str(cid))
    qtbot.keyClick(manager.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert category_table(window.session.doc) == before
    assert manager.class_ids() == [c for c, _, _ in before]
    assert window.image_panel.class_combo.findText("zebra") < 0
    qtbot.keyClick(manager.table, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert category_table(window.session.doc)[-1] == (cid, "zebra", (1, 2, 3))


def test_a_rename_shows_on_the_canvas_and_in_the_relabel_dialog(qtbot, window, manager, monkeypatch):
    cid = used_class(window)
    old = window.session.doc.category(cid).name
    assert manager.rename_class(cid, "renamed thing")
    assert any(text.startswith("renamed thing") for text in canvas_labels(window).values())
    assert not any(text.startswith(old) for text in canvas_labels(window).values())
    offered: list[list[str]] = []

    def fake_get_item(parent, title, label, items, current=0, editable=True):
        offered.append(list(items))
        return "", False

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(fake_get_item))
    window.canvas.select(
        "annotations", [window.session.doc.annotations_for(window.session.current_image_id)[0].id]
    )
    window.editing.relabel_dialog()
    assert "renamed thing" in offered[0] and old not in offered[0]
    window.editing.undo()
    assert window.session.doc.category(cid).name == old
    assert any(text.startswith(old) for text in canvas_labels(window).values())


def test_merging_moves_every_annotation_and_undo_restores_each_one(qtbot, window, manager):
    source = used_class(window)
    target = next(c.id for c in window.session.doc.categories if c.id != source)
    labels, categories = label_table(window.session.doc), category_table(window.session.doc)
    moved = {aid for aid, cid in labels.items() if cid == source}
    assert moved
    assert manager.merge_class(source, target)
    assert source not in manager.class_ids()
    assert all(window.session.doc.annotation(aid).category_id == target for aid in moved)
    assert window.session.doc.annotation_counts()[target] == sum(
        1 for c in labels.values() if c in (source, target)
    )
    assert "relabelled" in manager.message.text()
    window.editing.undo()
    assert label_table(window.session.doc) == labels and category_table(window.session.doc) == categories
    assert manager.class_ids() == [c for c, _, _ in categories]
    window.editing.redo()
    assert all(window.session.doc.annotation(aid).category_id == target for aid in moved)


def test_a_chosen_colour_is_drawn_on_the_canvas_and_saved_to_coco(qtbot, window, manager, dataset):
    cid = used_class(window)
    automatic = window.presenter.palette().category_colour(cid)
    assert manager.set_colour(cid, (12, 200, 34))
    items = [
        i
        for i in window.canvas.boxes("annotations")
        if window.session.doc.annotation(i.key).category_id == cid
    ]
    assert items and all(i.colour.getRgb()[:3] == (12, 200, 34) for i in items)
    assert window.projects.save()
    saved = json.loads(dataset.instances_json("train").read_text(encoding="utf-8"))
    assert next(c for c in saved["categories"] if c["id"] == cid)["color"] == [12, 200, 34]
    assert CocoDocument.load(dataset.instances_json("train")).category(cid).color == (12, 200, 34)
    assert manager.reset_colour(cid)
    assert window.presenter.palette().category_colour(cid) == automatic
    window.editing.undo()
    assert window.presenter.palette().category_colour(cid) == (12, 200, 34)


def test_renames_merges_and_adds_are_saved_and_reopen_the_same(qtbot, make_window, window, manager, dataset):
    first, second = (c.id for c in window.session.doc.categories[:2])
    manager.rename_class(first, "alpha")
    manager.merge_class(second, first)
    manager.add_class("omega")
    expected = (category_table(window.session.doc), label_table(window.session.doc))
    assert window.projects.save()
    again = make_window()
    open_and_wait(qtbot, again, again.projects.open_coco, dataset.instances_json("train"))
    assert (category_table(again.session.doc), label_table(again.session.doc)) == expected


def test_refused_changes_say_why_and_change_nothing(window, manager):
    first, second = window.session.doc.categories[:2]
    before = (
        category_table(window.session.doc),
        label_table(window.session.doc),
        len(window.session.history),
    )
    assert not manager.rename_class(first.id, second.name)
    assert f"already a class named {second.name!r}" in manager.message.text()
    assert manager.add_class("  ") is None and "needs a name" in manager.message.text()
    assert not manager.remove_class(used_class(window))
    assert "merge it into another class" in manager.message.text()
    assert not manager.merge_class(first.id, first.id)
    assert (
        category_table(window.session.doc),
        label_table(window.session.doc),
        len(window.session.history),
    ) == before


def test_the_buttons_ask_and_make_the_change(qtbot, window, manager, monkeypatch):
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("kiwi", True)))
    qtbot.mouseClick(manager.add_button, Qt.MouseButton.LeftButton)
    kiwi = next(c.id for c in window.session.doc.categories if c.name == "kiwi")
    assert manager.selected_id() == kiwi
    monkeypatch.setattr(QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor(250, 5, 90)))
    qtbot.mouseClick(manager.colour_button, Qt.MouseButton.LeftButton)
    assert window.session.doc.category(kiwi).color == (250, 5, 90)
    qtbot.mouseClick(manager.remove_button, Qt.MouseButton.LeftButton)
    assert kiwi not in {c.id for c in window.session.doc.categories}
    window.editing.undo()
    window.editing.undo()
    assert window.session.doc.category(kiwi).color is None


def test_a_panoptic_project_refuses_merges_with_a_message(qtbot, window, dataset):
    with qtbot.waitSignal(window.project_opened, timeout=20_000):
        window.projects.open_coco(dataset.panoptic_json("train"))
    dialog = window.editing.manage_classes()
    first, second = window.session.doc.categories[:2]
    assert not dialog.merge_button.isEnabled()
    assert not dialog.merge_class(first.id, second.id)
    assert "panoptic" in dialog.message.text()
    assert dialog.rename_class(first.id, "renamed stuff")
    assert window.session.doc.category(first.id).name == "renamed stuff"
