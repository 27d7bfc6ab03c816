"""Correcting labels on the real canvas: draw, move, resize, nudge, delete, relabel, duplicate, review, and
undo/redo of every one of them."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from detr_studio.app.canvas import ANNOTATIONS
from detr_studio.data.coco import CocoDocument

from .helpers import annotation_item, drag, open_and_wait, view_point


def boxes(doc: CocoDocument) -> dict[int, tuple]:
    return {a.id: (a.image_id, a.category_id, a.bbox) for a in doc.annotations}


@pytest.fixture
def opened(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    window.canvas.setFocus()
    return window


def draw_box(qtbot, window, start, end) -> int:
    qtbot.keyClick(window.canvas, Qt.Key.Key_W)
    assert window.canvas.mode == "draw"
    before = set(boxes(window.session.doc))
    drag(qtbot, window, start, end)
    (new,) = set(boxes(window.session.doc)) - before
    return new


def test_drawing_a_box_with_w_adds_a_human_annotation_on_the_canvas(qtbot, opened):
    window = opened
    iid = window.session.current_image_id
    new = draw_box(qtbot, window, (10, 12), (40, 52))
    ann = window.session.doc.annotation(new)
    assert ann.image_id == iid and ann.source == "human"
    x, y, w, h = ann.bbox
    assert abs(x - 10) < 1.5 and abs(y - 12) < 1.5 and abs(w - 30) < 2 and abs(h - 40) < 2
    assert ann.category_id == window.editing.new_box_category()
    assert annotation_item(window, new) is not None
    assert window.canvas.selected_annotation_ids() == [new]
    assert window.canvas.mode == "select"
    assert window.session.doc.dirty and window.isWindowModified()


def test_a_click_in_draw_mode_adds_nothing(qtbot, opened):
    window = opened
    before = boxes(window.session.doc)
    qtbot.keyClick(window.canvas, Qt.Key.Key_W)
    drag(qtbot, window, (20, 20), (20.2, 20.2), steps=1)
    assert boxes(window.session.doc) == before


def test_move_resize_nudge_delete_each_undo_and_redo(qtbot, opened):
    window = opened
    new = draw_box(qtbot, window, (10, 10), (40, 50))
    states = [boxes(window.session.doc)]
    _, _, w0, h0 = window.session.doc.annotation(new).bbox

    drag(qtbot, window, (25, 30), (35, 35))  # move by the body
    x, y, w, h = window.session.doc.annotation(new).bbox
    assert x > 15 and w == pytest.approx(w0, abs=0.011) and h == pytest.approx(h0, abs=0.011)
    states.append(boxes(window.session.doc))

    drag(qtbot, window, (x + w, y + h), (x + w + 8, y + h - 6))  # bottom-right handle
    x2, y2, w2, h2 = window.session.doc.annotation(new).bbox
    assert (x2, y2) == (x, y) and w2 > w + 4 and h2 < h - 2
    states.append(boxes(window.session.doc))

    for _ in range(3):
        qtbot.keyClick(window.canvas, Qt.Key.Key_Right)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    x3, y3, _, _ = window.session.doc.annotation(new).bbox
    assert x3 == pytest.approx(x2 + 3) and y3 == pytest.approx(y2 + 10)
    states.append(boxes(window.session.doc))

    qtbot.keyClick(window.canvas, Qt.Key.Key_Delete)
    assert new not in boxes(window.session.doc)
    assert annotation_item(window, new) is None
    states.append(boxes(window.session.doc))

    # The four nudges are one undo step; every other edit is its own.
    for expected in reversed(states[:-1]):
        qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert boxes(window.session.doc) == expected
    window.editing.undo()  # and the draw itself
    assert new not in boxes(window.session.doc) and annotation_item(window, new) is None
    for expected in states:
        qtbot.keyClick(
            window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
        )
        assert boxes(window.session.doc) == expected
    window.editing.undo()
    qtbot.keyClick(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert boxes(window.session.doc) == states[-1]


def test_boxes_cannot_be_dragged_out_of_the_image(qtbot, opened):
    window = opened
    new = draw_box(qtbot, window, (5, 5), (25, 25))
    info = window.session.doc.image(window.session.current_image_id)
    drag(qtbot, window, (15, 15), (15 + 500, 15 + 500))
    x, y, w, h = window.session.doc.annotation(new).bbox
    assert x + w <= info.width + 1e-6 and y + h <= info.height + 1e-6
    assert w == pytest.approx(20, abs=1) and h == pytest.approx(20, abs=1)


def test_relabel_with_number_keys_and_duplicate_undo(qtbot, opened):
    window = opened
    new = draw_box(qtbot, window, (10, 10), (30, 30))
    categories = window.session.doc.categories
    qtbot.keyClick(window.canvas, Qt.Key.Key_3)
    assert window.session.doc.annotation(new).category_id == categories[2].id
    assert annotation_item(window, new).spec.label == categories[2].name
    qtbot.keyClick(window.canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    copies = [a for a in window.canvas.selected_annotation_ids() if a != new]
    assert len(copies) == 1 and window.session.doc.annotation(copies[0]).category_id == categories[2].id
    window.editing.undo()
    assert copies[0] not in boxes(window.session.doc)
    window.editing.undo()
    assert window.session.doc.annotation(new).category_id == categories[0].id
    window.editing.redo()
    assert window.session.doc.annotation(new).category_id == categories[2].id


def test_marking_reviewed_is_undoable_and_shows_in_the_list(qtbot, opened):
    window = opened
    iid = window.session.current_image_id
    qtbot.keyClick(window.canvas, Qt.Key.Key_R)
    assert window.session.doc.image(iid).reviewed
    row = window.image_panel.model.index(window.image_panel.model.row_of(iid))
    assert "reviewed" in row.data()
    window.editing.undo()
    assert not window.session.doc.image(iid).reviewed


def test_rubber_band_selects_several_boxes_and_delete_removes_them_in_one_step(qtbot, opened):
    window = opened
    a = draw_box(qtbot, window, (5, 5), (15, 15))
    b = draw_box(qtbot, window, (20, 5), (30, 15))
    window.canvas.scene().clearSelection()
    viewport = window.canvas.viewport()
    start, end = view_point(window, 1, 1), view_point(window, 34, 19)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, QPoint((start.x() + end.x()) // 2, (start.y() + end.y()) // 2))
    qtbot.mouseMove(viewport, end)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    assert {a, b} <= set(window.canvas.selected_annotation_ids())
    selected = set(window.canvas.selected_annotation_ids())
    window.editing.delete_selected()
    assert not selected & set(boxes(window.session.doc))
    window.editing.undo()
    assert selected <= set(boxes(window.session.doc))


def test_wheel_zooms_and_fit_and_actual_size(qtbot, opened):
    window = opened
    canvas = window.canvas
    fitted = canvas.zoom
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom == pytest.approx(1.0)
    canvas.zoom_by(2.0)
    assert canvas.zoom == pytest.approx(2.0)
    qtbot.keyClick(window.canvas, Qt.Key.Key_F)
    assert canvas.zoom == pytest.approx(fitted)
    assert "zoom" in window.status.zoom_label.text()


def test_hiding_the_annotation_layer_hides_its_boxes(qtbot, opened):
    window = opened
    window.presenter.set_layer_visible(ANNOTATIONS, False)
    assert all(not b.isVisible() for b in window.canvas.boxes(ANNOTATIONS))
    window.presenter.set_layer_visible(ANNOTATIONS, True)
    assert all(b.isVisible() for b in window.canvas.boxes(ANNOTATIONS))
