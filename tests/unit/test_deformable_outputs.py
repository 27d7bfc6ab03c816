"""Deformable DETR post-processing (sigmoid, top-k over queries × classes, label = index mod classes) and
the sampling points offered for display (one detection's decoder query, one probed pixel's encoder query)."""

from __future__ import annotations

import torch

from detr_studio.model.deformable_detr.attention import SamplingRecorder
from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.deformable_detr.detector import build_deformable_detr
from detr_studio.model.deformable_detr.postprocess import top_detections
from detr_studio.model.nested import nested_tensor_from_tensor_list


def test_top_pairs_over_queries_and_classes_with_label_mod_classes():
    logits = torch.full((1, 3, 4), -10.0)  # [B, Q=3, C=4]
    logits[0, 2, 1] = 3.0  # best: query 2, class 1 -> index 9
    logits[0, 0, 3] = 2.0  # second: query 0, class 3
    logits[0, 2, 3] = 1.0  # third: query 2 again, another class
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.75, 0.5, 0.5]]])
    (top,) = top_detections(logits, boxes, torch.tensor([[200, 100]]), k=3)
    assert top.queries.tolist() == [2, 0, 2]
    assert top.labels.tolist() == [1, 3, 3]
    assert torch.allclose(top.scores, torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))
    assert torch.allclose(
        top.boxes[0], torch.tensor([0.0, 100.0, 50.0, 200.0])
    )  # xyxy in (w=100, h=200) pixels
    assert top_detections(logits, boxes, torch.tensor([[1, 1]]))[0].scores.numel() == 12  # k capped at Q·C


def _model():
    torch.manual_seed(0)
    return build_deformable_detr(tiny_deformable_config()).eval()


def test_decoder_points_of_a_fresh_model_lie_on_the_initial_grid():
    """At initialisation offsets are the grid bias (head 0 points along +x, point p at p+1 level pixels)."""
    model = _model()
    batch = nested_tensor_from_tensor_list([torch.randn(3, 96, 128)])
    with SamplingRecorder(model) as rec, torch.no_grad():
        model(batch)
    points = rec.decoder_points(0, 4)
    heads, levels, n_points = 4, 4, 2
    assert points.locations.shape == (heads, levels, n_points, 2) and points.reference.shape == (2,)
    assert torch.allclose(points.weights.sum((1, 2)), torch.ones(heads))
    shapes = [(12, 16), (6, 8), (3, 4), (2, 2)]
    for level, (_h, w) in enumerate(shapes):
        for p in range(n_points):
            expected = points.reference + torch.tensor([(p + 1) / w, 0.0])
            assert torch.allclose(points.locations[0, level, p], expected, atol=1e-6)
    pixels = points.scaled(128, 96)
    assert torch.allclose(pixels.locations[..., 0], points.locations[..., 0] * 128)


def test_probed_pixel_uses_its_own_position_as_reference():
    model = build_deformable_detr(tiny_deformable_config(with_box_refine=True))
    model.eval()
    batch = nested_tensor_from_tensor_list([torch.randn(3, 96, 128), torch.randn(3, 64, 64)])
    with SamplingRecorder(model) as rec, torch.no_grad():
        model(batch)
    probe = rec.encoder_points(0, x=0.3, y=0.6)  # level 0 is 12x16: pixel (row 7, col 4)
    assert torch.allclose(probe.reference, torch.tensor([4.5 / 16, 7.5 / 12]))
    box = rec.decoder_points(1, 0)  # with refinement the last layer's reference is a box
    assert box.reference.shape == (4,)
    assert torch.allclose(box.weights.sum((1, 2)), torch.ones(4))
    assert not model.transformer.encoder.layers[-1].keep_query  # recording ends with the block
