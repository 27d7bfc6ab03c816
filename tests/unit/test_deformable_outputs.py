"""Deformable DETR outputs through its family: sigmoid scoring (top-k over queries × classes, label = index
mod classes), class probabilities, parameter groups, and the sampling points offered for display (one
detection's decoder query, one probed pixel's encoder query) in pixels of the original image."""

from __future__ import annotations

import math

import torch

from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.deformable_detr.detector import build_deformable_detr
from detr_studio.model.deformable_detr.family import DEFORMABLE_DETR_FAMILY as FAMILY
from detr_studio.model.kinds import SAMPLING_POINTS, SIGMOID
from detr_studio.model.nested import nested_tensor_from_tensor_list


def test_top_pairs_over_queries_and_classes_with_label_mod_classes():
    logits = torch.full((1, 3, 4), -10.0)  # [B, Q=3, C=4]
    logits[0, 2, 1] = 3.0  # best: query 2, class 1 -> index 9
    logits[0, 0, 3] = 2.0  # second: query 0, class 3
    logits[0, 2, 3] = 1.0  # third: query 2 again, another class
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.75, 0.5, 0.5]]])
    (top,) = FAMILY.postprocess({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[200, 100]]))
    assert top.query_index[:3].tolist() == [2, 0, 2]
    assert top.labels[:3].tolist() == [1, 3, 3]
    assert torch.allclose(top.scores[:3], torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))
    assert torch.allclose(top.boxes[0], torch.tensor([0.0, 100.0, 50.0, 200.0]))  # xyxy, w=100 h=200
    assert top.scores.numel() == 12  # k = min(100, Q·C)
    scores = FAMILY.score_queries(logits)
    assert scores.scoring == SIGMOID and scores.probs.shape == (1, 12, 4)
    assert torch.equal(scores.probs[0, 0], logits[0, 2].sigmoid())  # each row: its query's sigmoids
    assert torch.equal(FAMILY.class_probs(logits), logits.sigmoid())


def test_the_official_hundred_pairs_of_ninety_one_classes():
    logits = torch.randn(2, 300, 91)
    scores = FAMILY.score_queries(logits)
    assert scores.labels.shape == (2, 100)
    flat = logits.sigmoid().view(2, -1)
    best = flat.topk(100, dim=1)
    assert torch.equal(scores.scores, best.values)
    assert torch.equal(scores.labels, best.indices % 91)
    assert torch.equal(scores.query_index, best.indices // 91)


def test_parameter_groups_follow_the_official_names():
    model = build_deformable_detr(tiny_deformable_config(with_box_refine=True))
    groups = {g.name: g for g in FAMILY.param_groups(model)}
    names = {id(p): n for n, p in model.named_parameters()}
    linear = groups["sampling offsets and references"]
    assert linear.lr_scale == 0.1 and not linear.backbone
    assert {names[id(p)].rsplit(".", 2)[-2] for p in linear.params} == {
        "sampling_offsets",
        "reference_points",
    }
    assert (
        all("backbone.0" in names[id(p)] for p in groups["backbone"].params) and groups["backbone"].backbone
    )
    every = [p for g in groups.values() for p in g.params]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(every) == len({id(p) for p in every}) == len(trainable)  # each parameter once


def _model(**flags):
    torch.manual_seed(0)
    return build_deformable_detr(tiny_deformable_config(**flags)).eval()


def _record(model, images):
    batch = nested_tensor_from_tensor_list(images)
    sizes = [tuple(img.shape[-2:]) for img in images]
    with FAMILY.capture_attention(model) as capture, torch.no_grad():
        model(batch)
    return capture.collect(batch.mask, sizes, sizes)


def test_decoder_points_of_a_fresh_model_lie_on_the_initial_grid():
    """At initialisation offsets are the grid bias (head 0 points along +x, point p at p+1 level pixels)."""
    model = _model()
    (attention,) = _record(model, [torch.randn(3, 96, 128)])
    assert attention.kind == SAMPLING_POINTS
    points = attention.decoder_points(4)
    heads, levels, n_points = 4, 4, 2
    assert points.locations.shape == (heads, levels, n_points, 2) and points.reference.shape == (2,)
    assert torch.allclose(points.weights.sum((1, 2)), torch.ones(heads))
    strides = [8, 16, 32, 64]
    shapes = [(12, 16), (6, 8), (3, 4), (2, 2)]
    assert attention.shapes == tuple(shapes)
    for level, ((_h, w), stride) in enumerate(zip(shapes, strides)):
        extent = w * stride  # input pixels the padded level covers
        for p in range(n_points):
            expected_x = points.reference[0] / 128 * extent + (p + 1) * stride
            assert math.isclose(points.locations[0, level, p, 0].item(), expected_x, abs_tol=1e-3)
            assert math.isclose(
                points.locations[0, level, p, 1].item(),
                points.reference[1].item() / 96 * shapes[level][0] * stride,
                abs_tol=1e-3,
            )


def test_probed_pixel_uses_its_own_position_as_reference():
    model = _model(with_box_refine=True)
    first, second = _record(model, [torch.randn(3, 96, 128), torch.randn(3, 64, 64)])
    probe = first.encoder_points(x=38.0, y=60.0)  # level 0 is 12x16 cells of 8 pixels: row 7, col 4
    assert first.encoder_cell(38.0, 60.0) == (7, 4)
    assert torch.allclose(probe.reference, torch.tensor([4.5 * 8, 7.5 * 8]))
    assert second.valid_cells == (8, 8)  # the 64x64 image is padded to 96x128: its own cells only
    assert second.encoder_cell(500.0, 500.0) == (7, 7)
    box = second.decoder_points(0)  # with refinement the last layer's reference is a box
    assert box.reference.shape == (4,)
    assert torch.allclose(box.weights.sum((1, 2)), torch.ones(4))
    assert not model.transformer.encoder.layers[-1].keep_query  # recording ends with the block


def test_probed_points_equal_what_the_layer_computed():
    """The on-demand points of a pixel are the last encoder layer's own: its offsets and weights for that
    position, recomputed from the recorded (fp16) query."""
    model = _model()
    with torch.no_grad():
        for parameter in model.parameters():  # offsets and weights start at zero weight: make them depend
            parameter.add_(torch.randn_like(parameter) * 0.05)
    layer = model.transformer.encoder.layers[-1]
    seen = {}

    def keep(module, args):
        query, refs = args[0], args[1]  # [N, S, C] (position included), [N, S, L, 2]
        seen["offsets"], seen["weights"] = module.offsets_and_weights(query)
        seen["refs"] = refs

    hook = layer.self_attn.register_forward_pre_hook(keep)
    (attention,) = _record(model, [torch.randn(3, 96, 128)])
    hook.remove()
    row, col = 5, 9
    index = row * 16 + col
    probe = attention.encoder_points(x=(col + 0.5) * 8, y=(row + 0.5) * 8)
    assert torch.allclose(probe.weights, seen["weights"][0, index], atol=2e-3)
    level0 = seen["refs"][0, index, 0] + seen["offsets"][0, index, :, 0] / torch.tensor(
        [16.0, 12.0]
    )  # [H, P, 2]
    assert torch.allclose(probe.locations[:, 0] / torch.tensor([128.0, 96.0]), level0, atol=2e-3)


def test_points_are_in_pixels_of_the_original_image():
    model = _model()
    image = torch.randn(3, 96, 128)
    batch = nested_tensor_from_tensor_list([image])
    with FAMILY.capture_attention(model) as capture, torch.no_grad():
        model(batch)
    (scaled,) = capture.collect(batch.mask, [(96, 128)], [(192, 256)])  # the original was twice as large
    (plain,) = _record(model, [image])
    assert torch.allclose(
        scaled.decoder_points(3).locations, 2 * plain.decoder_points(3).locations, atol=1e-4
    )
    assert scaled.encoder_cell(2 * 38.0, 2 * 60.0) == (7, 4)
