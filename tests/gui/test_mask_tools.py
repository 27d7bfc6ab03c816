"""The mask tools on the real canvas, driven with the mouse and keys: draw a polygon (N) and edit its
vertices, brush (B) and erase (Shift+B) with [ and ] for the size, fill holes (H), RLE <-> polygons (Shift+P,
Shift+R); every change one undo step; the saved file loads in pycocotools and `annToMask` works for every
annotation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from .helpers import checked_mask, drag, open_and_wait, view_point


@pytest.fixture
def opened(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    canvas = window.canvas
    canvas.setFocus()
    for ann in window.session.doc.annotations_for(window.session.current_image_id):
        window.session.set_hidden("annotation", [ann.id])  # the synthetic shapes stay out of the way
    return window


def click(qtbot, window, x, y, button=Qt.MouseButton.LeftButton):
    qtbot.mouseClick(window.canvas.viewport(), button, pos=view_point(window, x, y))


def hover(qtbot, window, x, y):
    """Move the mouse to image pixel (x, y) by way of a nearby point (Qt drops a move to where it is)."""
    viewport = window.canvas.viewport()
    qtbot.mouseMove(viewport, view_point(window, x + 2, y + 2))
    qtbot.mouseMove(viewport, view_point(window, x, y))


def draw_polygon(qtbot, window, points) -> int:
    qtbot.keyClick(window.canvas, Qt.Key.Key_N)
    assert window.canvas.mode == "polygon"
    before = {a.id for a in window.session.doc.annotations}
    for x, y in points:
        click(qtbot, window, x, y)
    click(qtbot, window, *points[0])  # a click on the first vertex closes it
    (new,) = {a.id for a in window.session.doc.annotations} - before
    return new


def saved_file_reads_in_pycocotools(window, tmp_path) -> COCO:
    path = tmp_path / "saved.json"
    window.projects.save_as(path)
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        assert mask.shape == (coco.imgs[ann["image_id"]]["height"], coco.imgs[ann["image_id"]]["width"])
    return coco


def test_draw_a_polygon_then_drag_insert_and_delete_its_vertices_each_undone(qtbot, opened, tmp_path):
    window = opened
    doc, canvas = window.session.doc, window.canvas
    aid = draw_polygon(qtbot, window, [(20, 20), (60, 20), (60, 50), (20, 50)])
    assert canvas.mode == "select" and window.session.selection.annotation_ids == (aid,)
    assert doc.annotation(aid).segmentation[0] == pytest.approx([20, 20, 60, 20, 60, 50, 20, 50], abs=0.5)
    assert checked_mask(window, aid).sum() == doc.annotation(aid).area
    polygon = canvas.polygon()
    assert polygon is not None and polygon.key == aid and polygon.vertex_count() == 4
    states = [doc.annotation(aid).segmentation]

    drag(qtbot, window, (60, 50), (70, 58))  # a vertex
    x, y = doc.annotation(aid).segmentation[0][4:6]
    assert (x, y) == pytest.approx((70, 58), abs=1.0)
    states.append(doc.annotation(aid).segmentation)

    click(qtbot, window, 40, 20)  # on the top edge: a new vertex there
    assert canvas.polygon().vertex_count() == 5 and len(doc.annotation(aid).segmentation[0]) == 10
    states.append(doc.annotation(aid).segmentation)

    click(qtbot, window, 20, 50, Qt.MouseButton.RightButton)  # right-click a vertex: it goes
    assert canvas.polygon().vertex_count() == 4
    states.append(doc.annotation(aid).segmentation)

    hover(qtbot, window, 40, 20)  # the inserted vertex: Del deletes it
    qtbot.keyClick(canvas, Qt.Key.Key_Delete)
    assert canvas.polygon().vertex_count() == 3 and aid in {a.id for a in doc.annotations}
    states.append(doc.annotation(aid).segmentation)
    hover(qtbot, window, 60, 20)
    qtbot.keyClick(canvas, Qt.Key.Key_Delete)  # Del over a vertex of a triangle: refused, nothing deleted
    assert aid in {a.id for a in doc.annotations} and doc.annotation(aid).segmentation == states[-1]

    for state in reversed(states[:-1]):
        window.editing.undo()
        assert doc.annotation(aid).segmentation == state
    for state in states[1:]:
        window.editing.redo()
        assert doc.annotation(aid).segmentation == state
    saved_file_reads_in_pycocotools(window, tmp_path)


def test_brush_and_eraser_paint_the_selected_mask_and_the_brush_size_keys(qtbot, opened, tmp_path):
    window = opened
    doc, canvas = window.session.doc, window.canvas
    aid = draw_polygon(qtbot, window, [(20, 20), (40, 20), (40, 40), (20, 40)])
    start = checked_mask(window, aid)
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    assert canvas.mode == "brush"
    radius = canvas.brush_radius
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_radius == pytest.approx(radius / 1.25)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_radius == pytest.approx(radius * 1.25)
    brush = canvas.tools["brush"]
    qtbot.mouseMove(canvas.viewport(), view_point(window, 55, 30))
    assert brush.circle.isVisible() and brush.circle.rect().width() == pytest.approx(2 * canvas.brush_radius)

    drag(qtbot, window, (40, 30), (65, 30), steps=8)
    painted = checked_mask(window, aid)
    assert painted[30, 60] and not start[30, 60] and (painted | start).sum() == painted.sum()
    assert canvas.mode == "brush" and window.session.selection.annotation_ids == (aid,)

    qtbot.keyClick(canvas, Qt.Key.Key_B, Qt.KeyboardModifier.ShiftModifier)
    assert canvas.mode == "erase"
    drag(qtbot, window, (30, 22), (30, 38), steps=6)
    erased = checked_mask(window, aid)
    assert not erased[30, 30] and erased[30, 60]

    window.editing.undo()
    np.testing.assert_array_equal(checked_mask(window, aid), painted)
    window.editing.undo()
    np.testing.assert_array_equal(checked_mask(window, aid), start)
    window.editing.redo()
    window.editing.redo()
    np.testing.assert_array_equal(checked_mask(window, aid), erased)

    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    window.session.select()
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    before = {a.id for a in doc.annotations}
    drag(qtbot, window, (70, 70), (80, 75), steps=3)  # nothing selected: a new annotation
    (new,) = {a.id for a in doc.annotations} - before
    assert checked_mask(window, new)[72, 75]
    saved_file_reads_in_pycocotools(window, tmp_path)


def test_fill_holes_and_the_conversions_from_the_keyboard(qtbot, opened, tmp_path):
    window = opened
    doc, canvas = window.session.doc, window.canvas
    aid = draw_polygon(qtbot, window, [(20, 20), (70, 20), (70, 70), (20, 70)])
    qtbot.keyClick(canvas, Qt.Key.Key_B, Qt.KeyboardModifier.ShiftModifier)
    drag(qtbot, window, (45, 45), (46, 45), steps=1)  # a hole in the middle
    holed = checked_mask(window, aid)
    assert not holed[45, 45] and isinstance(doc.annotation(aid).segmentation, dict)  # painted: RLE
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    steps = len(window.session.history)
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    assert len(window.session.history) == steps  # RLE already: nothing to do
    window.review_panel.tolerance_spin.setValue(0.0)
    qtbot.keyClick(canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ShiftModifier)
    assert isinstance(doc.annotation(aid).segmentation, list)
    np.testing.assert_array_equal(checked_mask(window, aid), holed)  # tolerance 0: exact, hole and all
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    assert isinstance(doc.annotation(aid).segmentation, dict)
    np.testing.assert_array_equal(checked_mask(window, aid), holed)
    qtbot.keyClick(canvas, Qt.Key.Key_H)
    assert checked_mask(window, aid)[45, 45]
    for _ in range(3):
        window.editing.undo()
    np.testing.assert_array_equal(checked_mask(window, aid), holed)
    coco = saved_file_reads_in_pycocotools(window, tmp_path)
    assert json.loads((tmp_path / "saved.json").read_text())["annotations"]
    assert coco.annToMask(coco.anns[aid]).sum() == holed.sum()
    QApplication.processEvents()
    assert not window.services.errors, window.services.errors
