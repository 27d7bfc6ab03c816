"""A tiny random Deformable DETR in the real window: its predictions (one box per query, sigmoid scores), the
sampling points of a selected detection per head, and the encoder's points at a probed pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from detr_studio.app.canvas import ATTENTION, PREDICTIONS
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.deformable_detr.family import DEFORMABLE_DETR_FAMILY

from .helpers import CLASS_NAMES, predicted_window, probe_pictures, shot


@pytest.fixture(scope="module")
def deformable_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_deformable_config(num_classes=6)
    model = DEFORMABLE_DETR_FAMILY.build(config)
    with torch.no_grad():
        for parameter in model.parameters():  # offsets and weights start flat: give the points some shape
            parameter.add_(torch.randn_like(parameter) * 0.05)
        for head in model.class_embed:
            head.bias.normal_(0.0, 1.0)
    folder = tmp_path_factory.mktemp("deformable")
    return save_checkpoint(model, folder / "deformable", config, CLASS_NAMES)


@pytest.fixture
def predicted(qtbot, window, dataset, deformable_checkpoint):
    return predicted_window(qtbot, window, dataset, deformable_checkpoint)


def test_a_deformable_model_shows_one_box_per_query(qtbot, predicted):
    window = predicted
    dets = window.session.store.get(window.session.current_image_id).detections
    assert dets.scoring == "sigmoid" and len(dets) == 10 * 6  # every (query, class) pair of 10 x 6
    keys = [item.key for item in window.canvas.prediction_items()]
    assert sorted(keys) == sorted(set(keys)) == list(range(10))
    for item in window.canvas.prediction_items():  # each box is its query's best (class, score) row
        best = float(dets.scores[dets.query_ids == item.key].max())
        assert item.spec.label.endswith(f"{best:.2f}")
    assert window.review_panel.head_combo.count() == 1 + 4


def test_a_selected_detection_shows_its_sampling_points_per_head(qtbot, predicted, tmp_path):
    window = predicted
    query = window.canvas.prediction_items()[0].key
    window.canvas.select(PREDICTIONS, [query])
    assert window.canvas.has_attention
    every = window.canvas._attention_item.pixmap().toImage()
    window.review_panel.head_combo.setCurrentIndex(2)
    assert window.presenter.attention_head == 1
    one = window.canvas._attention_item.pixmap().toImage()
    assert every != one
    drawn = np.frombuffer(one.constBits(), np.uint8).reshape(one.height(), -1)[:, 3::4]
    assert 0 < (drawn > 0).mean() < 0.2  # a few discs and a ring, the image visible around them
    shot(window, tmp_path, "deformable-sampling-points")
    window.presenter.set_layer_visible(ATTENTION, False)
    assert not window.canvas._attention_item.isVisible()


def test_probe_mode_shows_the_encoder_points_of_the_clicked_pixel(qtbot, predicted):
    window = predicted
    qtbot.keyClick(window.canvas, Qt.Key.Key_E)
    assert window.canvas.mode == "probe"
    info = window.session.doc.image(window.session.current_image_id)
    images = probe_pictures(qtbot, window, ((10, 10), (info.width - 10, info.height - 10)))
    assert images[0] != images[1]
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert not window.canvas.has_attention
