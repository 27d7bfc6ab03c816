"""Reaching every object: a click picks the smallest object under the cursor, Tab and Shift+Tab step through
the others there, and the Objects dock lists, selects, hides and locks every annotation, segment and
prediction of the image, sharing one selection with the canvas."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from detr_studio.infer.detections import Detections
from detr_studio.session.objects import ANNOTATION, PREDICTION, SEGMENT

from .helpers import annotation_item, drag, open_and_wait, view_point


@pytest.fixture
def nested(qtbot, window, dataset):
    """An image with a large box, a small box inside it, and a prediction under the large box."""
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    session = window.session
    doc, iid = session.doc, session.current_image_id
    for ann in doc.annotations_for(iid):
        session.set_hidden(ANNOTATION, [ann.id])  # the synthetic shapes stay out of the way
    large = window.editing.add_box(_rect(4, 4, 80, 80))
    small = window.editing.add_box(_rect(40, 40, 8, 8))
    dets = Detections(
        image_size=(doc.image(iid).height, doc.image(iid).width),
        boxes=np.array([[10.0, 12.0, 70.0, 75.0]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        labels=np.array([1]),
        probs=np.array([[0.0, 0.9, 0.02, 0.02, 0.02, 0.02, 0.02]], dtype=np.float32),
        query_ids=np.array([7]),
        source=str(doc.image_path(iid)),
    )
    window.worker.predicted.emit(iid, dets, "hand-made")
    session.select()  # nothing selected to start with
    window.canvas.setFocus()
    window.objects_dock.show()
    window.objects_dock.raise_()
    return window, large, small


def _rect(x, y, w, h):
    from PySide6.QtCore import QRectF

    return QRectF(x, y, w, h)


def click(qtbot, window, x, y, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, modifier, view_point(window, x, y))


def hover(qtbot, window, x, y):
    """Move the mouse to image pixel (x, y), by way of a nearby point: Qt drops a move to where the mouse
    already is, also when an earlier test left it there."""
    viewport = window.canvas.viewport()
    qtbot.mouseMove(viewport, view_point(window, x, y) + QPoint(5, 5))
    qtbot.mouseMove(viewport, view_point(window, x, y))


def selected(window) -> tuple:
    sel = window.session.selection
    return sel.annotation_ids, sel.query_ids


def test_a_click_picks_the_small_box_inside_a_large_one_and_the_prediction_under_a_label(qtbot, nested):
    window, large, small = nested
    click(qtbot, window, 44, 44)  # inside all three: the small box is the smallest
    assert selected(window) == ((small,), ())
    click(qtbot, window, 20, 30)  # inside the large box and the prediction: the prediction is smaller
    assert selected(window) == ((), (7,))
    click(qtbot, window, 6, 6)  # only the large box
    assert selected(window) == ((large,), ())
    click(qtbot, window, 44, 44, Qt.KeyboardModifier.ControlModifier)  # Ctrl adds
    assert set(window.session.selection.annotation_ids) == {large, small}


def test_tab_and_shift_tab_step_through_everything_under_the_cursor(qtbot, nested):
    window, large, small = nested
    canvas = window.canvas
    hover(qtbot, window, 44, 44)
    order = []
    for _ in range(4):
        qtbot.keyClick(canvas, Qt.Key.Key_Tab)
        order.append(selected(window))
    assert order == [((small,), ()), ((), (7,)), ((large,), ()), ((small,), ())]
    qtbot.keyClick(canvas, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert selected(window) == ((large,), ())
    assert canvas.hasFocus()  # Tab stepped through objects; it did not move the focus away


def test_a_large_box_picked_with_tab_is_dragged_from_inside_the_small_one(qtbot, nested):
    window, large, small = nested
    canvas = window.canvas
    hover(qtbot, window, 44, 44)
    for _ in range(3):
        qtbot.keyClick(canvas, Qt.Key.Key_Tab)
    assert selected(window) == ((large,), ())
    x0, y0, _, _ = window.session.doc.annotation(large).bbox
    drag(qtbot, window, (44, 44), (41, 42))
    x1, y1, _, _ = window.session.doc.annotation(large).bbox
    assert (x1 - x0, y1 - y0) == pytest.approx((-3, -2), abs=0.6)
    assert window.session.doc.annotation(small).bbox[:2] == pytest.approx((40, 40))


def test_the_object_list_selects_an_object_under_a_larger_one_and_follows_the_canvas(qtbot, nested):
    window, large, small = nested
    panel = window.objects_dock.panel
    rows = {(r.kind, r.key): r for r in panel.model.rows}
    assert {(ANNOTATION, large), (ANNOTATION, small), (PREDICTION, 7)} <= set(rows)
    assert rows[(PREDICTION, 7)].score == pytest.approx(0.9) and rows[(PREDICTION, 7)].review == "open"
    assert rows[(ANNOTATION, small)].source == "human"
    row = panel.row_of(ANNOTATION, small)
    view = panel.view
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(panel.model.index(row, 2)).center()
    )
    assert selected(window) == ((small,), ())
    assert window.canvas.selected_annotation_ids() == [small]
    click(qtbot, window, 20, 30)  # the canvas selects the prediction: the list follows
    assert [i.row() for i in view.selectionModel().selectedRows()] == [panel.row_of(PREDICTION, 7)]


def test_hidden_objects_are_not_drawn_nor_picked_and_locked_ones_do_not_move(qtbot, nested):
    window, large, small = nested
    panel = window.objects_dock.panel
    model = panel.model
    shown_box = model.index(panel.row_of(ANNOTATION, small), 0)
    model.setData(shown_box, Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert annotation_item(window, small) is None
    click(qtbot, window, 44, 44)
    assert selected(window) == ((), (7,))  # the click passes through the hidden box
    lock_box = model.index(panel.row_of(ANNOTATION, large), 1)
    model.setData(lock_box, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    before = window.session.doc.annotation(large).bbox
    click(qtbot, window, 6, 6)
    assert selected(window) == ((large,), ())
    drag(qtbot, window, (6, 6), (16, 16))
    qtbot.keyClick(window.canvas, Qt.Key.Key_Right)
    assert window.session.doc.annotation(large).bbox == before
    panel.show_all_button.click()
    panel.unlock_all_button.click()
    assert annotation_item(window, small) is not None and annotation_item(window, large).editable


def test_a_small_segment_inside_a_large_region_is_picked_by_its_pixels(qtbot, window, dataset):
    with qtbot.waitSignal(window.overlays_ready, timeout=20_000):
        open_and_wait(qtbot, window, window.projects.open_coco, dataset.panoptic_json("train"))
    qtbot.waitUntil(lambda: window.canvas.segment_at(QPoint(0, 0).toPointF()) is not None, timeout=10_000)
    session, canvas = window.session, window.canvas
    segments = session.doc.segments_for(session.current_image_id)
    ids = window.presenter._segment_ids
    stuff = max(segments, key=lambda s: s.area or 0)
    thing = min((s for s in segments if s.isthing), key=lambda s: s.area or 0)
    ys, xs = np.nonzero(ids == thing.id)
    x, y = xs[len(xs) // 2] + 0.5, ys[len(ys) // 2] + 0.5
    click(qtbot, window, x, y)
    assert session.selection.segment_ids == (thing.id,)
    qtbot.waitUntil(lambda: canvas.has_highlight, timeout=5_000)
    ys, xs = np.nonzero(ids == stuff.id)
    click(qtbot, window, xs[0] + 0.5, ys[0] + 0.5)
    assert session.selection.segment_ids == (stuff.id,)
    panel = window.objects_dock.panel
    assert {r.key for r in panel.model.rows if r.kind == SEGMENT} == {s.id for s in segments}
