"""Panoptic segments in the correction loop: relabel, merge, split, paint, delete and add segments as undoable
edits; the PNG ids always equal ``segments_info``; area and bbox follow the pixels; undo restores exactly."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detr_studio.common.panoptic_ids import id2rgb
from detr_studio.data.coco import CocoDocument, CocoEditError, Edit
from detr_studio.data.coco.brush import MaskCanvas
from detr_studio.data.coco.panoptic_edits import PaintIds, segment_stats
from detr_studio.data.coco.segment_edits import (
    add_segments_edit,
    delete_segments_edit,
    merge_segments_edit,
    new_segment_edit,
    paint_segment_edit,
    relabel_segment_edit,
    split_segment_edit,
)
from detr_studio.infer.detections import Detections, PanopticResult
from detr_studio.session import Session
from detr_studio.session.project import COCO, Project

from .helpers import panoptic_data, panoptic_ids, write_panoptic


def assert_consistent(doc: CocoDocument, image_id: int) -> None:
    """The id map's segment ids are exactly those listed, each with its true area and bbox."""
    ids = doc.id_map(image_id)
    entry = doc.panoptic_record(image_id)
    listed = {s["id"]: s for s in entry["segments_info"]} if entry is not None else {}
    assert set(np.unique(ids).tolist()) - {0} == set(listed)
    for sid, seg in listed.items():
        bbox, area = segment_stats(ids, sid)
        assert (seg["area"], list(seg["bbox"])) == (area, bbox)


def state(doc: CocoDocument, image_id: int = 1) -> tuple[str, bytes]:
    return json.dumps(doc.index.data), doc.id_map(image_id).tobytes()


@pytest.fixture
def doc(tmp_path: Path) -> CocoDocument:
    return CocoDocument.load(write_panoptic(tmp_path))


def mask(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((6, 8), dtype=bool)
    m[rows, cols] = True
    return m


def apply_and_check(doc: CocoDocument, edit: Edit, image_id: int = 1) -> Edit:
    before = state(doc, image_id)
    undo = doc.apply(edit)
    assert_consistent(doc, image_id)
    after = state(doc, image_id)
    redo = doc.apply(undo)
    assert state(doc, image_id) == before  # undo restores JSON and pixels exactly
    assert_consistent(doc, image_id)
    doc.apply(redo)
    assert state(doc, image_id) == after
    return undo


def test_a_panoptic_dataset_opens_editable_and_the_file_is_consistent(doc):
    assert doc.is_panoptic and not doc.read_only
    doc.apply(add_segments_edit(doc, 1, [(mask(slice(0, 1), slice(0, 1)), 2)])[0])
    assert_consistent(doc, 1)


def test_relabelling_a_segment_changes_only_its_category(doc):
    apply_and_check(doc, relabel_segment_edit(doc, 1, 300, 1))
    seg = next(s for s in doc.panoptic_record(1)["segments_info"] if s["id"] == 300)
    assert seg["category_id"] == 1 and seg["area"] == 12
    np.testing.assert_array_equal(doc.id_map(1), panoptic_ids())


def test_relabelling_to_a_stuff_class_the_image_has_merges_into_that_segment(doc):
    apply_and_check(doc, relabel_segment_edit(doc, 1, 300, 200))
    assert [s["id"] for s in doc.panoptic_record(1)["segments_info"]] == [5, 70000]
    assert (doc.id_map(1)[:, 4:] == 70000).all()


def test_merging_segments_keeps_the_first_and_recomputes_it(doc):
    apply_and_check(doc, merge_segments_edit(doc, 1, [70000, 300]))
    (stuff,) = [s for s in doc.panoptic_record(1)["segments_info"] if s["id"] == 70000]
    assert (stuff["area"], stuff["bbox"], stuff["category_id"]) == (24, [4, 0, 4, 6], 200)


def test_splitting_a_segment_by_a_brush_mask_makes_a_new_one(doc):
    canvas = MaskCanvas.empty(6, 8)
    canvas.stroke(0, 0.5, 7.9, 0.5, 0.5)  # the top row, across two segments
    edit, new_id = split_segment_edit(doc, 1, 5, canvas.mask, rect=canvas.dirty)
    apply_and_check(doc, edit)
    new = next(s for s in doc.panoptic_record(1)["segments_info"] if s["id"] == new_id)
    assert new_id == 70001 and (new["category_id"], new["area"], new["bbox"]) == (1, 4, [0, 0, 4, 1])
    assert (doc.id_map(1)[0, 4:] == 300).all()  # only the split segment's pixels move
    with pytest.raises(CocoEditError, match="all of segment"):
        split_segment_edit(doc, 1, 300, np.ones((6, 8), dtype=bool))


def test_painting_pixels_into_a_segment_takes_them_from_others_and_drops_emptied_ones(doc):
    apply_and_check(doc, paint_segment_edit(doc, 1, mask(slice(0, 3), slice(2, 8)), 5))
    listed = [s["id"] for s in doc.panoptic_record(1)["segments_info"]]
    assert listed == [5, 70000]  # segment 300 lost all its pixels
    apply_and_check(doc, paint_segment_edit(doc, 1, mask(slice(5, 6), slice(0, 8)), 0))  # the eraser: void
    assert (doc.id_map(1)[5] == 0).all()


def test_deleting_segments_makes_their_pixels_void(doc):
    apply_and_check(doc, delete_segments_edit(doc, 1, [300, 5]))
    assert [s["id"] for s in doc.panoptic_record(1)["segments_info"]] == [70000]
    assert (doc.id_map(1)[:, :4] == 0).all()


def test_new_segments_and_an_image_without_an_entry(tmp_path):
    data = panoptic_data()
    data["images"].append({"id": 3, "file_name": "sub/three.jpg", "width": 8, "height": 6})
    doc = CocoDocument.load(write_panoptic(tmp_path, data))
    edit, new_id = new_segment_edit(doc, 3, mask(slice(1, 4), slice(1, 5)), 200)
    undo = apply_and_check(doc, edit, image_id=3)
    entry = doc.panoptic_record(3)
    assert entry["file_name"] == "three.png" and entry["segments_info"][0]["id"] == new_id == 1
    doc.apply(undo)
    assert doc.panoptic_record(3) is None
    with pytest.raises(CocoEditError, match="no pixel"):
        add_segments_edit(doc, 1, [(np.zeros((6, 8), dtype=bool), 1)])


def test_an_undo_step_holds_only_the_region_a_stroke_touched(doc):
    canvas = MaskCanvas.empty(6, 8)
    canvas.stroke(1, 1, 2, 1, 0.6)
    undo = doc.apply(paint_segment_edit(doc, 1, canvas.mask, 300, rect=canvas.dirty))
    (paint,) = [e for e in undo.edits if isinstance(e, PaintIds)]
    assert paint.box[2] * paint.box[3] <= 6 and sum(paint.runs[1::2]) == paint.box[2] * paint.box[3]


def test_segment_edits_are_journaled_and_replayed_after_a_crash(tmp_path):
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path)
    doc.apply(merge_segments_edit(doc, 1, [5, 300]))
    doc.apply(split_segment_edit(doc, 1, 70000, mask(slice(4, 6), slice(4, 6)))[0])
    expected = state(doc)
    doc.close()  # the window died: nothing was saved
    again = CocoDocument.load(path)
    assert again.replay_journal() == 2
    assert state(again) == expected
    assert_consistent(again, 1)


def test_editing_needs_the_png_folder(tmp_path):
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path, panoptic_root=tmp_path / "missing", check_masks=False)
    with pytest.raises(CocoEditError, match="cannot read|not found|folder"):
        doc.apply(merge_segments_edit(doc, 1, [5, 300]))


def test_accepting_predicted_segments_on_a_panoptic_project_is_one_undo_step(tmp_path):
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path, image_root=tmp_path)
    session = Session()
    session.set_project(Project(doc, COCO, path, None))
    session.show_image(1)
    assert session.panoptic_editable and not session.editable
    predicted = np.zeros((6, 8), dtype=np.int64)
    predicted[4:, :3] = 1  # a thing (model label 3) in the bottom-left corner
    predicted[:2, 5:] = 2  # and stuff (label 9) at the top right
    with io.BytesIO() as buffer:
        Image.fromarray(id2rgb(predicted)).save(buffer, format="PNG")
        png = buffer.getvalue()
    segments = [{"id": 1, "isthing": True, "category_id": 3}, {"id": 2, "isthing": False, "category_id": 9}]
    probs = np.full((2, 11), 0.05, dtype=np.float32)
    dets = Detections(
        image_size=(6, 8),
        boxes=np.array([[0, 4, 3, 6], [5, 0, 8, 2]], dtype=np.float32),
        scores=np.array([0.9, 0.95], dtype=np.float32),
        labels=np.array([3, 9]),
        probs=probs,
        query_ids=np.array([4, 8]),
        source=str(doc.image_path(1)),
    )
    dets = replace(dets, panoptic=PanopticResult(segments, png, query_ids=(4, 8)))
    session.put_predictions({1: dets}, "model")
    before = state(doc)
    assert session.accept([4, 8], "accept segments")
    assert_consistent(doc, 1)
    ids = doc.id_map(1)
    assert (ids[4:, :3] == 70001).all() and (ids[:2, 5:] == 70002).all()
    names = {c.id: c.name for c in doc.categories}
    added = doc.panoptic_record(1)["segments_info"][-2:]
    assert [names[s["category_id"]] for s in added] == ["class 3", "class 9"]  # no class names: new classes
    assert [c.isthing for c in doc.categories if c.name.startswith("class")] == [True, False]
    session.undo()
    assert state(doc) == before
    session.redo()
    assert_consistent(doc, 1)
