"""Mask from box (M) with a tiny random segmentation model: the box drawn goes to the model's mask head on
the inference lane and comes back as a new annotation with that mask; a model without a mask head gets a
clear message. Accepting a prediction keeps its mask; the saved file reads in pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from PySide6.QtCore import QRectF, Qt

from detr_studio.infer.detections import Detections
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config

from .helpers import CLASS_NAMES, checked_mask, drag, load_tiny_model, open_and_wait


@pytest.fixture(scope="module")
def tiny_mask_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    config = tiny_config(num_classes=6, masks=True)
    folder = tmp_path_factory.mktemp("mask-model")
    return save_checkpoint(build_detr(config), folder / "tiny-masks", config, CLASS_NAMES)


@pytest.fixture
def opened(qtbot, window, dataset):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    window.canvas.setFocus()
    return window


def test_mask_from_box_runs_the_models_mask_head_and_adds_the_mask(
    qtbot, opened, tiny_mask_checkpoint, tmp_path
):
    window = opened
    load_tiny_model(qtbot, window, tiny_mask_checkpoint)
    assert window.session.model_info.supports_masks
    doc = window.session.doc
    before = {a.id for a in doc.annotations}
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    assert window.canvas.mode == "mask_box"
    with qtbot.waitSignal(window.worker.box_masked, timeout=60_000) as answer:
        drag(qtbot, window, (10, 10), (70, 60))
    assert window.canvas.mode == "select"
    image_id, result = answer.args
    assert image_id == window.session.current_image_id and result.mask.any()
    qtbot.waitUntil(lambda: len(doc.annotations) == len(before) + 1, timeout=5_000)
    (new,) = {a.id for a in doc.annotations} - before
    np.testing.assert_array_equal(checked_mask(window, new), result.mask)
    assert doc.annotation(new).category_id == window.editing.new_box_category()
    assert window.session.selection.annotation_ids == (new,)
    window.editing.undo()
    assert new not in {a.id for a in doc.annotations}
    window.editing.redo()
    assert new in {a.id for a in doc.annotations}
    path = tmp_path / "saved.json"
    window.projects.save_as(path)
    coco = COCO(str(path))
    assert all(coco.annToMask(a).shape for a in coco.loadAnns(coco.getAnnIds()))
    assert not window.services.errors


def test_a_model_without_a_mask_head_says_so(qtbot, opened, tiny_checkpoint):
    window = opened
    window.masks.ask_mask_from_box(QRectF(10, 10, 40, 40))
    assert "no model" in window.services.errors[-1].lower()
    load_tiny_model(qtbot, window, tiny_checkpoint)
    before = len(window.session.doc.annotations)
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    drag(qtbot, window, (10, 10), (70, 60))
    assert "no mask head" in window.services.errors[-1]
    assert len(window.session.doc.annotations) == before


def test_accepting_a_prediction_keeps_its_mask(qtbot, opened, tmp_path):
    window = opened
    session = window.session
    doc, iid = session.doc, session.current_image_id
    width, height = doc.image_size(iid)
    yy, xx = np.mgrid[:height, :width]
    disc = (xx - 40) ** 2 + (yy - 40) ** 2 <= 15**2
    dets = Detections(
        image_size=(height, width),
        boxes=np.array([[25.0, 25.0, 56.0, 56.0]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        labels=np.array([1]),
        probs=np.array([[0.0, 0.9, 0.02, 0.02, 0.02, 0.02, 0.02]], dtype=np.float32),
        query_ids=np.array([4]),
        masks=disc[None],
        source=str(doc.image_path(iid)),
    )
    window.worker.predicted.emit(iid, dets, "hand-made")
    window.canvas.select("predictions", [4])
    before = {a.id for a in doc.annotations}
    qtbot.keyClick(window.canvas, Qt.Key.Key_Space)
    (new,) = {a.id for a in doc.annotations} - before
    np.testing.assert_array_equal(checked_mask(window, new), disc)
    assert doc.annotation(new).source == "model" and doc.annotation(new).review == "accepted"
    window.editing.undo()
    assert new not in {a.id for a in doc.annotations}
    window.editing.redo()
    path = tmp_path / "accepted.json"
    window.projects.save_as(path)
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(ann).shape == (
            coco.imgs[ann["image_id"]]["height"],
            coco.imgs[ann["image_id"]]["width"],
        )
    assert coco.annToMask(coco.anns[new]).sum() == disc.sum()
