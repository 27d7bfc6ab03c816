"""The DETR set criterion, checked term by term against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from detr_studio.model.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.train import distributed
from detr_studio.train.criterion import (
    SetCriterion,
    build_criterion,
    dice_loss,
    paired_generalized_box_iou,
    sigmoid_focal_loss,
    total_loss,
)
from detr_studio.train.matcher import HungarianMatcher

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)
WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}


class FixedMatcher:
    """A matcher that returns given indices and counts its calls."""

    def __init__(self, indices):
        self.indices = [
            (torch.tensor(src, dtype=torch.int64), torch.tensor(tgt, dtype=torch.int64))
            for src, tgt in indices
        ]
        self.calls = 0

    def __call__(self, outputs, targets):
        self.calls += 1
        return self.indices


def hand_example():
    """One image, Q = 2 queries, 2 classes (+ no-object at index 2), one target of class 1.

    Query 0: logits (0, ln2, 0) -> exp (1, 2, 1) / 4 -> p = (0.25, 0.5, 0.25); box (0.55, 0.5, 0.2, 0.2).
    Query 1: logits (0, 0, ln4) -> exp (1, 1, 4) / 6 -> p = (1/6, 1/6, 2/3); box (0.2, 0.2, 0.1, 0.1).
    Target: class 1, box (0.5, 0.5, 0.2, 0.2), i.e. xyxy (0.4, 0.4, 0.6, 0.6).

    Matching costs (1 * class + 5 * L1 + 2 * GIoU):
      query 0: -0.5 + 5 * 0.05 - 2 * 0.6 = -1.45
      query 1: -1/6 + 5 * 0.8 - 2 * (0 - (0.2025 - 0.05) / 0.2025) ≈ 5.34   -> query 0 is matched.
    """
    outputs = {
        "pred_logits": torch.tensor([[[0.0, LN2, 0.0], [0.0, 0.0, LN4]]], requires_grad=True),  # [1, 2, 3]
        "pred_boxes": torch.tensor(
            [[[0.55, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]], requires_grad=True
        ),  # [1, 2, 4]
    }
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    return outputs, targets


# loss_ce: query 0 -> class 1: -ln 0.5 = ln 2, weight 1; query 1 -> no-object: -ln(2/3) = ln 1.5, weight 0.1.
# Weighted mean = (ln 2 + 0.1 ln 1.5) / (1 + 0.1) = (0.693147 + 0.040547) / 1.1
HAND_LOSS_CE = 0.6669942648825106
# loss_bbox: |0.55 - 0.5| + 0 + 0 + 0 = 0.05, one box.
HAND_LOSS_BBOX = 0.05
# loss_giou: prediction xyxy (0.45, 0.4, 0.65, 0.6). Intersection 0.15 x 0.2 = 0.03, areas 0.04 each,
# union 0.05, IoU 0.6; the enclosing box (0.4..0.65) x (0.4..0.6) = 0.05 = union, so GIoU = 0.6 -> 1 - 0.6.
HAND_LOSS_GIOU = 0.4


def test_each_loss_equals_the_hand_computed_value():
    outputs, targets = hand_example()
    criterion = SetCriterion(2, HungarianMatcher(), WEIGHTS, eos_coef=0.1)
    losses = criterion(outputs, targets)
    assert set(losses) == {"loss_ce", "class_error", "loss_bbox", "loss_giou", "cardinality_error"}
    assert losses["loss_ce"].item() == pytest.approx(HAND_LOSS_CE, abs=1e-6)
    assert losses["loss_bbox"].item() == pytest.approx(HAND_LOSS_BBOX, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(HAND_LOSS_GIOU, abs=1e-6)
    assert losses["class_error"].item() == pytest.approx(0.0)  # query 0's top class is 1, the target's
    # Query 0 says class 1 (an object), query 1 says no-object: 1 predicted object for 1 target.
    assert losses["cardinality_error"].item() == pytest.approx(0.0)


def test_unmatched_queries_are_trained_towards_no_object():
    # Three queries; only query 0 is matched (to class 1). The others must predict no-object (index 2):
    #   query 0: p = (0.25, 0.5, 0.25), target 1 -> ln 2, weight 1
    #   query 1: p = (1/6, 1/6, 2/3),   target 2 -> ln 1.5, weight 0.1
    #   query 2: logits (ln4, 0, 0) -> p = (2/3, 1/6, 1/6), target 2 -> ln 6, weight 0.1
    # loss_ce = (ln 2 + 0.1 ln 1.5 + 0.1 ln 6) / 1.2 = (0.693147 + 0.040547 + 0.179176) / 1.2
    outputs = {
        "pred_logits": torch.tensor([[[0.0, LN2, 0.0], [0.0, 0.0, LN4], [LN4, 0.0, 0.0]]]),
        "pred_boxes": torch.full((1, 3, 4), 0.5),
    }
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])}]
    criterion = SetCriterion(2, FixedMatcher([([0], [0])]), WEIGHTS, eos_coef=0.1, losses=("labels",))
    assert criterion(outputs, targets)["loss_ce"].item() == pytest.approx(0.7607246985779726, abs=1e-6)


def test_eos_coef_weights_only_the_no_object_class():
    outputs, targets = hand_example()
    # With eos_coef = 1 the loss is the plain mean: (ln 2 + ln 1.5) / 2.
    criterion = SetCriterion(2, HungarianMatcher(), WEIGHTS, eos_coef=1.0, losses=("labels",))
    assert criterion(outputs, targets)["loss_ce"].item() == pytest.approx((LN2 + math.log(1.5)) / 2, abs=1e-6)
    assert SetCriterion(2, HungarianMatcher(), WEIGHTS, eos_coef=0.3).empty_weight.tolist() == pytest.approx(
        [1.0, 1.0, 0.3]
    )


def test_class_error_is_100_minus_top1_accuracy_of_matched_queries():
    # Two matched queries: query 0 (top class 1) is right, query 1 (top class 0) is wrong -> 50% -> error 50.
    outputs = {
        "pred_logits": torch.tensor([[[0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 3.0]]]),
        "pred_boxes": torch.full((1, 3, 4), 0.5),
    }
    targets = [{"labels": torch.tensor([1, 1]), "boxes": torch.full((2, 4), 0.5)}]
    criterion = SetCriterion(2, FixedMatcher([([0, 1], [0, 1])]), WEIGHTS, losses=("labels",))
    assert criterion(outputs, targets)["class_error"].item() == pytest.approx(50.0)


def test_cardinality_error_counts_predicted_objects_per_image():
    # Image 0 predicts 2 objects (queries with top class 0 and 1) for 1 target: |2 - 1| = 1.
    # Image 1 predicts none (all no-object) for 2 targets: |0 - 2| = 2. Mean over images = 1.5.
    logits = torch.tensor(
        [
            [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]],
            [[0.0, 0.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 3.0]],
        ]
    )
    outputs = {"pred_logits": logits, "pred_boxes": torch.full((2, 3, 4), 0.5)}
    targets = [
        {"labels": torch.tensor([0]), "boxes": torch.full((1, 4), 0.5)},
        {"labels": torch.tensor([0, 1]), "boxes": torch.full((2, 4), 0.5)},
    ]
    criterion = SetCriterion(2, HungarianMatcher(), WEIGHTS, losses=("cardinality",))
    losses = criterion(outputs, targets)
    assert losses["cardinality_error"].item() == pytest.approx(1.5)
    assert not losses["cardinality_error"].requires_grad


def two_image_box_example():
    """Image 0: one object; image 1: two. Each matched prediction is 0.1 off in one coordinate (L1 0.3 in all)."""
    outputs = {
        "pred_logits": torch.zeros(2, 2, 3),
        "pred_boxes": torch.tensor(
            [
                [[0.6, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]],
                [[0.3, 0.4, 0.2, 0.2], [0.7, 0.7, 0.2, 0.3]],
            ]
        ),
    }
    targets = [
        {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])},
    ]
    matcher = FixedMatcher([([0], [0]), ([0, 1], [0, 1])])
    return outputs, targets, SetCriterion(2, matcher, WEIGHTS, losses=("boxes",))


def test_box_losses_are_divided_by_the_number_of_target_boxes():
    outputs, targets, criterion = two_image_box_example()
    losses = criterion(outputs, targets)
    # (0.1 + 0.1 + 0.1) / 3 boxes, not / 2 images and not a mean over 12 coordinates.
    assert losses["loss_bbox"].item() == pytest.approx(0.1, abs=1e-6)
    # GIoU of each pair by hand: shifts of 0.1 along a 0.2-wide box -> IoU 0.01/0.03 = 1/3, hull = union.
    # The third pair (height 0.3 vs 0.2, same centre): IoU 0.04/0.06 = 2/3, hull = union.
    expected_giou = ((1 - 1 / 3) + (1 - 1 / 3) + (1 - 2 / 3)) / 3
    assert losses["loss_giou"].item() == pytest.approx(expected_giou, abs=1e-6)


def test_num_boxes_is_averaged_over_processes(monkeypatch):
    outputs, targets, criterion = two_image_box_example()
    single = criterion(outputs, targets)
    # Pretend to be one of 2 processes, the other holding 5 boxes: num_boxes = (3 + 5) / 2 = 4.
    monkeypatch.setattr(distributed, "is_dist", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t.add_(5))
    shared = criterion(outputs, targets)
    assert shared["loss_bbox"].item() == pytest.approx(0.3 / 4, abs=1e-6)
    assert shared["loss_giou"].item() == pytest.approx(single["loss_giou"].item() * 3 / 4, abs=1e-6)


def test_num_boxes_is_at_least_one(monkeypatch):
    assert SetCriterion.num_boxes([0, 0], torch.device("cpu")) == 1.0
    assert SetCriterion.num_boxes([2, 3], torch.device("cpu")) == 5.0
    monkeypatch.setattr(distributed, "is_dist", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t)
    assert SetCriterion.num_boxes([1, 1], torch.device("cpu")) == 1.0  # 2 / 4 = 0.5 -> 1


def _num_boxes_worker(rank: int, world: int, init_file: str, sizes: list[list[int]], out_dir: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's thread pool
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        num_boxes = SetCriterion.num_boxes(sizes[rank], torch.device("cpu"))
        mean = distributed.all_reduce_mean(torch.tensor([float(rank)]))
        facts = [
            num_boxes,
            mean.item(),
            distributed.world_size(),
            distributed.rank(),
            distributed.rank() == 0,
        ]
        torch.save(facts, f"{out_dir}/{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_num_boxes_all_reduce_across_two_real_processes(tmp_path):
    # Forked rather than spawned: a spawned child re-imports torch and this module (tens of seconds here).
    sizes = [[1, 2], [4, 1]]  # 3 + 5 boxes on 2 processes -> 4 each
    mp.start_processes(
        _num_boxes_worker,
        args=(2, str(tmp_path / "init"), sizes, str(tmp_path)),
        nprocs=2,
        start_method="fork",
    )
    for rank in range(2):
        num_boxes, mean, world, got_rank, is_main = torch.load(tmp_path / f"{rank}.pt")
        assert num_boxes == pytest.approx(4.0)
        assert mean == pytest.approx(0.5)  # (0 + 1) / 2
        assert (world, got_rank, is_main) == (2, rank, rank == 0)


def test_distributed_helpers_are_no_ops_without_a_process_group():
    assert not distributed.is_dist()
    assert (distributed.world_size(), distributed.rank(), distributed.rank() == 0) == (1, 0, True)
    t = torch.tensor([3.0])
    assert distributed.all_reduce_sum(t) is t and t.item() == 3.0
    assert distributed.all_reduce_mean(t) is t and t.item() == 3.0


def mask_outputs():
    """The hand example plus 2 x 2 mask logits for each query."""
    outputs, targets = hand_example()
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 0] = torch.tensor([[0.0, LN3], [LN3, -LN3]])  # sigmoid: (0.5, 0.75, 0.75, 0.25)
    outputs["pred_masks"] = masks.requires_grad_()
    targets[0]["masks"] = torch.tensor([[[True, True], [False, False]]])
    return outputs, targets


def test_focal_and_dice_losses_on_a_2x2_mask_by_hand():
    outputs, targets = mask_outputs()
    criterion = SetCriterion(2, FixedMatcher([([0], [0])]), WEIGHTS, losses=("masks",))
    losses = criterion(outputs, targets)
    # Focal loss per pixel, alpha_t * (1 - p_t)^2 * BCE (alpha_t = 0.25 for t = 1, 0.75 for t = 0):
    #   x = 0,    t = 1: p_t = 0.5,  0.25 * 0.25   * ln 2        = 0.0433217
    #   x = ln3,  t = 1: p_t = 0.75, 0.25 * 0.0625 * ln(4/3)     = 0.0044950
    #   x = ln3,  t = 0: p_t = 0.25, 0.75 * 0.5625 * ln 4        = 0.5848429
    #   x = -ln3, t = 0: p_t = 0.75, 0.75 * 0.0625 * ln(4/3)     = 0.0134851
    # Mean over the 4 pixels = 0.6461448 / 4, divided by num_boxes = 1.
    assert losses["loss_mask"].item() == pytest.approx(0.16153619047767168, abs=1e-6)
    # Dice: sum(sigmoid * t) = 0.5 + 0.75 = 1.25; sum(sigmoid) = 2.25; sum(t) = 2.
    # 1 - (2 * 1.25 + 1) / (2.25 + 2 + 1) = 1 - 3.5 / 5.25 = 1/3.
    assert losses["loss_dice"].item() == pytest.approx(1 / 3, abs=1e-6)


def test_mask_losses_use_matched_masks_padded_to_the_batch_maximum():
    generator = torch.Generator().manual_seed(0)
    # Three images; the middle one has no objects but the largest mask canvas (5 x 6), which sets the
    # padded size, as in the reference.
    pred = torch.randn(3, 2, 2, 2, generator=generator)
    masks = [
        torch.rand(2, 2, 2, generator=generator) > 0.5,
        torch.zeros(0, 5, 6),
        torch.rand(1, 3, 4, generator=generator) > 0.5,
    ]
    targets = [
        {"labels": torch.tensor([0, 1]), "boxes": torch.full((2, 4), 0.5), "masks": masks[0]},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4), "masks": masks[1]},
        {"labels": torch.tensor([1]), "boxes": torch.full((1, 4), 0.5), "masks": masks[2]},
    ]
    outputs = {
        "pred_logits": torch.zeros(3, 2, 3),
        "pred_boxes": torch.full((3, 2, 4), 0.5),
        "pred_masks": pred,
    }
    # Image 0: query 1 <- object 0 and query 0 <- object 1; image 2: query 1 <- object 0.
    matcher = FixedMatcher([([0, 1], [1, 0]), ([], []), ([1], [0])])
    losses = SetCriterion(2, matcher, WEIGHTS, losses=("masks",))(outputs, targets)

    def padded(mask):
        return F.pad(mask.float(), (0, 6 - mask.shape[-1], 0, 5 - mask.shape[-2]))

    src = torch.stack((pred[0, 0], pred[0, 1], pred[2, 1]))  # matched predictions, in pair order
    src = F.interpolate(src[:, None], size=(5, 6), mode="bilinear", align_corners=False)[:, 0].flatten(1)
    tgt = torch.stack((padded(masks[0][1]), padded(masks[0][0]), padded(masks[2][0]))).flatten(1)
    assert losses["loss_mask"].item() == pytest.approx(sigmoid_focal_loss(src, tgt, 3).item(), abs=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(dice_loss(src, tgt, 3).item(), abs=1e-6)


def test_mask_losses_without_matches_are_zero_and_keep_the_graph():
    outputs, targets = mask_outputs()
    targets = [
        {
            "labels": torch.zeros(0, dtype=torch.int64),
            "boxes": torch.zeros(0, 4),
            "masks": torch.zeros(0, 2, 2),
        }
    ]
    losses = SetCriterion(2, HungarianMatcher(), WEIGHTS, losses=("masks",))(outputs, targets)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    (losses["loss_mask"] + losses["loss_dice"]).backward()
    assert outputs["pred_masks"].grad is not None


def test_mask_loss_refuses_missing_or_per_query_masks():
    outputs, targets = mask_outputs()
    criterion = SetCriterion(2, HungarianMatcher(), WEIGHTS, losses=("masks",))
    del targets[0]["masks"]
    with pytest.raises(KeyError, match="target 0 has no 'masks'"):
        criterion(outputs, targets)
    outputs, targets = mask_outputs()
    outputs["pred_masks"] = outputs["pred_masks"][0]  # [N, h, w]: masks of selected queries only
    with pytest.raises(ValueError, match=r"pred_masks must be \[B, Q, h, w\]"):
        criterion(outputs, targets)


def test_aux_outputs_are_matched_independently_and_suffixed():
    outputs, targets = mask_outputs()
    # The aux layer predicts the same things with the two queries swapped: its own matching picks
    # query 1, so its losses equal the main ones. Reusing the main matching (query 0) would give
    # loss_bbox_0 = L1((0.2, 0.2, 0.1, 0.1), target) = 0.8.
    swap = [1, 0]
    outputs["aux_outputs"] = [
        {"pred_logits": outputs["pred_logits"][:, swap], "pred_boxes": outputs["pred_boxes"][:, swap]},
        {"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]},
    ]
    criterion, weight_dict = build_criterion(2, aux_layers=2, masks=True)
    losses = criterion(outputs, targets)
    main_keys = {
        "loss_ce",
        "class_error",
        "loss_bbox",
        "loss_giou",
        "cardinality_error",
        "loss_mask",
        "loss_dice",
    }
    aux_keys = {
        f"{k}_{i}" for i in range(2) for k in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error")
    }
    assert set(losses) == main_keys | aux_keys  # no class_error or mask terms for the aux outputs
    for i in range(2):
        assert losses[f"loss_ce_{i}"].item() == pytest.approx(HAND_LOSS_CE, abs=1e-6)
        assert losses[f"loss_bbox_{i}"].item() == pytest.approx(HAND_LOSS_BBOX, abs=1e-6)
        assert losses[f"loss_giou_{i}"].item() == pytest.approx(HAND_LOSS_GIOU, abs=1e-6)
    assert set(weight_dict) == (main_keys | aux_keys) - {"class_error", "cardinality_error"} - {
        f"cardinality_error_{i}" for i in range(2)
    }


def test_each_output_level_gets_its_own_matcher_call():
    outputs, targets = hand_example()
    outputs["aux_outputs"] = [dict(outputs) for _ in range(3)]
    matcher = FixedMatcher([([0], [0])])
    SetCriterion(2, matcher, WEIGHTS)(outputs, targets)
    assert matcher.calls == 4


def test_gradients_flow_to_logits_boxes_and_masks():
    outputs, targets = mask_outputs()
    aux_logits = outputs["pred_logits"].detach().clone().requires_grad_()
    aux_boxes = outputs["pred_boxes"].detach().clone().requires_grad_()
    outputs["aux_outputs"] = [{"pred_logits": aux_logits, "pred_boxes": aux_boxes}]
    criterion, weight_dict = build_criterion(2, aux_layers=1, masks=True)
    total_loss(criterion(outputs, targets), weight_dict).backward()
    for tensor in (
        outputs["pred_logits"],
        outputs["pred_boxes"],
        outputs["pred_masks"],
        aux_logits,
        aux_boxes,
    ):
        assert tensor.grad is not None
        assert torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_build_criterion_weights_follow_the_reference_defaults():
    criterion, weight_dict = build_criterion(91, aux_layers=5, masks=False)
    assert weight_dict["loss_ce"] == 1 and weight_dict["loss_bbox"] == 5 and weight_dict["loss_giou"] == 2
    assert weight_dict["loss_bbox_4"] == 5 and "loss_bbox_5" not in weight_dict
    assert len(weight_dict) == 3 * 6
    assert criterion.losses == ("labels", "boxes", "cardinality")
    assert criterion.empty_weight.shape == (92,) and criterion.empty_weight[-1].item() == pytest.approx(0.1)
    matcher = criterion.matcher
    assert (matcher.cost_class, matcher.cost_bbox, matcher.cost_giou) == (1, 5, 2)
    _, masked = build_criterion(250, aux_layers=0, masks=True, mask_loss_coef=3, dice_loss_coef=4)
    assert masked == {"loss_ce": 1, "loss_bbox": 5, "loss_giou": 2, "loss_mask": 3, "loss_dice": 4}


def test_total_loss_is_the_weighted_sum():
    losses = {"loss_ce": torch.tensor(2.0), "loss_bbox": torch.tensor(0.5), "class_error": torch.tensor(40.0)}
    assert total_loss(losses, {"loss_ce": 1.0, "loss_bbox": 5.0}).item() == pytest.approx(2.0 + 2.5)


def test_total_loss_refuses_mismatched_terms():
    with pytest.raises(KeyError, match="missing"):
        total_loss({"loss_ce": torch.tensor(1.0)}, {"loss_ce": 1.0, "loss_ce_0": 1.0})
    with pytest.raises(KeyError, match="no weight"):
        total_loss({"loss_ce": torch.tensor(1.0), "loss_ce_0": torch.tensor(1.0)}, {"loss_ce": 1.0})


def test_paired_giou_equals_the_diagonal_of_pairwise_giou():
    generator = torch.Generator().manual_seed(0)
    a = torch.cat((torch.rand(20, 2, generator=generator), torch.rand(20, 2, generator=generator) * 0.5), 1)
    b = torch.cat((torch.rand(20, 2, generator=generator), torch.rand(20, 2, generator=generator) * 0.5), 1)
    a, b = box_cxcywh_to_xyxy(a), box_cxcywh_to_xyxy(b)
    torch.testing.assert_close(paired_generalized_box_iou(a, b), generalized_box_iou(a, b).diagonal())


def test_criterion_refuses_bad_configuration_and_outputs():
    with pytest.raises(ValueError, match="unknown losses"):
        SetCriterion(2, HungarianMatcher(), WEIGHTS, losses=("labels", "boxs"))
    outputs, targets = hand_example()
    with pytest.raises(ValueError, match="expected num_classes \\+ 1 = 6"):
        SetCriterion(5, HungarianMatcher(), WEIGHTS)(outputs, targets)
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        SetCriterion(2, HungarianMatcher(), WEIGHTS)(outputs, targets * 2)


def test_criterion_trains_a_tiny_detr_end_to_end():
    config = tiny_config(num_classes=3)
    model = build_detr(config)
    images = [torch.rand(3, 64, 80), torch.rand(3, 48, 64)]
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]
    criterion, weight_dict = build_criterion(
        config.num_classes, aux_layers=config.dec_layers - 1, masks=False
    )
    loss = total_loss(criterion(model(images), targets), weight_dict)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.class_embed.weight.grad.abs().sum() > 0
    assert model.bbox_embed.layers[-1].weight.grad.abs().sum() > 0
