"""Editing a panoptic dataset in the real window: pick segments by their pixels, relabel, merge (G), split (K
and a polygon), paint with the brush, erase, delete (Del: void), accept a panoptic model's segments; undo
and redo every step; save writes PNGs whose ids are exactly ``segments_info``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from detr_studio.common.panoptic_ids import id2rgb
from detr_studio.data.coco import CocoDocument, read_id_png
from detr_studio.infer.detections import Detections, PanopticResult

from .helpers import drag, open_and_wait, view_point


@pytest.fixture
def opened(qtbot, window, dataset):
    with qtbot.waitSignal(window.overlays_ready, timeout=20_000):
        open_and_wait(qtbot, window, window.projects.open_coco, dataset.panoptic_json("train"))
    doc = window.session.doc
    busiest = max(doc.image_ids, key=lambda i: len(doc.segments_for(i)))  # the image with the most segments
    window.navigation.select_image(busiest)
    qtbot.waitUntil(
        lambda: window.session.current_image_id == busiest and window.canvas.has_pixmap, timeout=10_000
    )
    qtbot.waitUntil(lambda: window.presenter._segment_ids is not None, timeout=10_000)
    window.canvas.setFocus()
    assert window.session.panoptic_editable
    return window


def ids_now(window) -> np.ndarray:
    return window.session.doc.id_map(window.session.current_image_id)


def segments_now(window) -> dict[int, int]:
    """segment id -> category id of the image shown."""
    return {s.id: s.category_id for s in window.session.doc.segments_for(window.session.current_image_id)}


def inside(window, segment_id: int) -> tuple[float, float]:
    """An image point well inside a segment (the pixel farthest from its border)."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(ids_now(window) == segment_id)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return x + 0.5, y + 0.5


def click(qtbot, window, point, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(
        window.canvas.viewport(), Qt.MouseButton.LeftButton, modifier, view_point(window, *point)
    )


def wait_drawn(qtbot, window):
    """The mask layer (and the id map it picks with) redrawn after an edit."""
    qtbot.waitUntil(
        lambda: not window.presenter.overlays.pending and not window.presenter.overlays.busy, timeout=10_000
    )
    qtbot.waitUntil(lambda: np.array_equal(window.presenter._segment_ids, ids_now(window)), timeout=10_000)


def consistent(window) -> None:
    """The ids in the map are exactly the segments listed, each with the area and box of its pixels."""
    ids = ids_now(window)
    present = set(np.unique(ids).tolist()) - {0}
    listed = window.session.doc.segments_for(window.session.current_image_id)
    assert present == {s.id for s in listed}
    for seg in listed:
        ys, xs = np.nonzero(ids == seg.id)
        assert seg.area == len(xs)
        assert seg.bbox == pytest.approx(
            (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        )


def test_merge_split_paint_erase_relabel_delete_each_undone_and_saved(qtbot, opened, tmp_path):
    window = opened
    doc = window.session.doc
    history: list[tuple[dict, np.ndarray]] = [(segments_now(window), ids_now(window))]

    def step():
        consistent(window)
        wait_drawn(qtbot, window)
        history.append((segments_now(window), ids_now(window)))

    shapes = {c.id for c in doc.categories if c.supercategory == "shape"}  # the things of the synthetic data
    things = sorted((s for s in doc.segments_for(window.session.current_image_id) if s.category_id in shapes),
                    key=lambda s: -(s.area or 0))  # fmt: skip
    a, b = things[0].id, things[1].id
    click(qtbot, window, inside(window, a))
    click(qtbot, window, inside(window, b), Qt.KeyboardModifier.ControlModifier)
    assert set(window.session.selection.segment_ids) == {a, b}
    qtbot.keyClick(window.canvas, Qt.Key.Key_G)  # merge
    assert b not in segments_now(window) and (ids_now(window) == a).sum() == things[0].area + things[1].area
    step()

    click(qtbot, window, inside(window, a))
    assert window.session.selection.segment_ids == (a,)
    qtbot.keyClick(window.canvas, Qt.Key.Key_K)  # split: the next polygon cuts the segment
    assert window.canvas.mode == "polygon"
    ys, xs = np.nonzero(ids_now(window) == a)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, (ys.min() + ys.max()) / 2
    for point in ((x0 - 1, y0 - 1), (x1 + 1, y0 - 1), (x1 + 1, y1), (x0 - 1, y1)):
        click(qtbot, window, point)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    (new,) = set(segments_now(window)) - set(history[-1][0])
    assert segments_now(window)[new] == segments_now(window)[a] and window.session.selection.segment_ids == (
        new,
    )
    step()

    qtbot.keyClick(window.canvas, Qt.Key.Key_B)  # paint into the selected (new) segment
    target = inside(window, a)
    drag(qtbot, window, inside(window, new), target, steps=6)
    assert ids_now(window)[int(target[1]), int(target[0])] == new
    step()

    qtbot.keyClick(window.canvas, Qt.Key.Key_B, Qt.KeyboardModifier.ShiftModifier)  # erase: void
    drag(qtbot, window, target, (target[0] + 1, target[1]), steps=1)
    assert ids_now(window)[int(target[1]), int(target[0])] == 0
    step()

    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    click(qtbot, window, inside(window, new))
    other = next(c.id for c in doc.categories if c.id != segments_now(window)[new] and c.id in shapes)
    index = next(i for i, c in enumerate(doc.categories) if c.id == other)
    qtbot.keyClick(window.canvas, getattr(Qt.Key, f"Key_{index + 1}"))  # relabel to class index+1
    assert segments_now(window)[new] == other
    step()

    qtbot.keyClick(window.canvas, Qt.Key.Key_Delete)  # its pixels become void
    assert new not in segments_now(window) and not (ids_now(window) == new).any()
    step()

    for segments, ids in reversed(history[:-1]):
        window.editing.undo()
        assert segments_now(window) == segments
        np.testing.assert_array_equal(ids_now(window), ids)
    for segments, ids in history[1:]:
        window.editing.redo()
        assert segments_now(window) == segments
        np.testing.assert_array_equal(ids_now(window), ids)

    assert window.projects.save()
    saved = CocoDocument.load(doc.path, check_masks=True, lock=False)  # every PNG checked against its entry
    for image_id in saved.image_ids:
        entry = saved.panoptic_record(image_id)
        png = read_id_png(saved.panoptic_png(image_id))
        assert set(np.unique(png).tolist()) - {0} == {s["id"] for s in entry["segments_info"]}
    np.testing.assert_array_equal(saved.id_map(window.session.current_image_id), history[-1][1])
    assert not window.services.errors, window.services.errors


def test_accepting_a_panoptic_models_segments_adds_them_as_one_undo_step(qtbot, opened):
    window = opened
    session = window.session
    doc, iid = session.doc, session.current_image_id
    width, height = doc.image_size(iid)
    predicted = np.zeros((height, width), dtype=np.int64)
    predicted[5:25, 5:30] = 1
    predicted[40:60, 10:40] = 2
    with io.BytesIO() as buffer:
        Image.fromarray(id2rgb(predicted)).save(buffer, format="PNG")
        png = buffer.getvalue()
    infos = [{"id": 1, "isthing": True, "category_id": 1, "area": 500},
             {"id": 2, "isthing": True, "category_id": 2, "area": 600}]  # fmt: skip
    dets = Detections(
        image_size=(height, width),
        boxes=np.array([[5, 5, 30, 25], [10, 40, 40, 60]], dtype=np.float32),
        scores=np.array([0.95, 0.9], dtype=np.float32),
        labels=np.array([1, 2]),
        probs=np.array([[0.0, 0.95, 0.02, 0.03], [0.0, 0.05, 0.9, 0.05]], dtype=np.float32),
        query_ids=np.array([3, 8]),
        panoptic=PanopticResult(infos, png, (3, 8)),
        source=str(doc.image_path(iid)),
    )
    window.worker.predicted.emit(iid, dets, "panoptic-model")
    before = segments_now(window)
    click(qtbot, window, (20, 10))  # the smallest object there: the predicted box
    assert session.selection.query_ids == (3,)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    (new,) = set(segments_now(window)) - set(before)
    assert (ids_now(window)[5:25, 5:30] == new).all()
    consistent(window)
    window.editing.undo()
    assert segments_now(window) == before
    window.actions_by_name["accept_all"].trigger()
    assert len(set(segments_now(window)) - set(before)) == 2
    consistent(window)
