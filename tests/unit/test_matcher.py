"""Hungarian matcher: agreement with per-image and reference-style computations, brute force, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from detr_studio.train.matcher import (
    HungarianMatcher,
    NonFinitePredictionError,
    matching_cost,
)
from tests.model_helpers import match_per_image_loop

NUM_CLASSES = 91  # COCO: a 92-way head, no-object last


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 4] valid normalised cxcywh boxes."""
    centre = torch.rand(n, 2, generator=generator) * 0.8 + 0.1
    size = torch.rand(n, 2, generator=generator) * 0.3 + 0.02
    return torch.cat((centre, size), dim=1)


def random_problem(sizes: list[int], num_queries: int, num_classes: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_logits": torch.randn(len(sizes), num_queries, num_classes + 1, generator=generator) * 3,
        "pred_boxes": torch.stack([random_boxes(num_queries, generator) for _ in sizes]),
    }
    targets = [
        {
            "labels": torch.randint(0, num_classes, (n,), generator=generator),
            "boxes": random_boxes(n, generator),
        }
        for n in sizes
    ]
    return outputs, targets


def assert_same_indices(got, expected) -> None:
    assert len(got) == len(expected)
    for (src, tgt), (src_e, tgt_e) in zip(got, expected):
        assert src.dtype == tgt.dtype == torch.int64
        assert torch.equal(src, src_e)
        assert torch.equal(tgt, tgt_e)


def reference_full_matrix_match(outputs, targets, weights=(1.0, 5.0, 2.0)):
    """The reference's way: one [B*Q, sum n_i] cost for every query against every object, split per image."""
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    b, q = logits.shape[:2]
    labels = torch.cat([t["labels"] for t in targets])
    tgt_boxes = torch.cat([t["boxes"] for t in targets])
    cost = matching_cost(logits.flatten(0, 1), boxes.flatten(0, 1), labels, tgt_boxes, *weights)
    cost = cost.view(b, q, -1)
    sizes = [len(t["boxes"]) for t in targets]
    result = []
    for i, block in enumerate(cost.split(sizes, -1)):
        rows, cols = linear_sum_assignment(block[i].numpy())
        result.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return result


def pair_cost_by_hand(logits_row, pred_box, label, tgt_box, weights=(1.0, 5.0, 2.0)) -> float:
    """The matching cost of one (query, object) pair with plain floats, independent of the library."""
    w_class, w_bbox, w_giou = weights
    exps = [math.exp(v) for v in logits_row]
    prob = exps[label] / sum(exps)
    l1 = sum(abs(a - b) for a, b in zip(pred_box, tgt_box))

    def corners(box):
        cx, cy, w, h = box
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    ax0, ay0, ax1, ay1 = corners(pred_box)
    bx0, by0, bx1, by1 = corners(tgt_box)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    giou = inter / union - (hull - union) / hull
    return w_bbox * l1 - w_class * prob - w_giou * giou


def cost_table_by_hand(outputs, target, image: int = 0) -> np.ndarray:
    logits = outputs["pred_logits"][image].tolist()
    boxes = outputs["pred_boxes"][image].tolist()
    return np.array(
        [
            [
                pair_cost_by_hand(logits[q], boxes[q], int(lab), box)
                for lab, box in zip(target["labels"], target["boxes"].tolist())
            ]
            for q in range(len(logits))
        ]
    ).reshape(len(logits), len(target["labels"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_matching_equals_per_image_loop(seed):
    generator = torch.Generator().manual_seed(100 + seed)
    sizes = torch.randint(0, 30, (4,), generator=generator).tolist()
    sizes[seed % 4] = 0  # always one image without objects
    outputs, targets = random_problem(sizes, num_queries=100, num_classes=NUM_CLASSES, seed=seed)
    batched = HungarianMatcher()(outputs, targets)
    assert_same_indices(batched, match_per_image_loop(outputs, targets))
    assert [len(src) for src, _ in batched] == sizes


def test_batched_matching_equals_reference_full_cost_matrix():
    outputs, targets = random_problem([7, 3, 12, 1], num_queries=100, num_classes=NUM_CLASSES, seed=5)
    assert_same_indices(HungarianMatcher()(outputs, targets), reference_full_matrix_match(outputs, targets))


def test_batched_matching_uses_the_cost_weights():
    outputs, targets = random_problem([6, 9], num_queries=20, num_classes=5, seed=8)
    weights = (2.0, 1.0, 0.5)
    got = HungarianMatcher(*weights)(outputs, targets)
    assert_same_indices(got, reference_full_matrix_match(outputs, targets, weights))
    assert_same_indices(got, match_per_image_loop(outputs, targets, *weights))


def test_empty_targets_give_empty_int64_indices():
    outputs, targets = random_problem([0, 3, 0], num_queries=10, num_classes=4, seed=1)
    indices = HungarianMatcher()(outputs, targets)
    for i in (0, 2):
        src, tgt = indices[i]
        assert src.shape == tgt.shape == (0,)
        assert src.dtype == tgt.dtype == torch.int64
    assert len(indices[1][0]) == 3


def test_whole_batch_without_targets_gives_empty_indices():
    outputs, targets = random_problem([0, 0], num_queries=10, num_classes=4, seed=2)
    indices = HungarianMatcher()(outputs, targets)
    assert len(indices) == 2
    assert all(len(src) == 0 and len(tgt) == 0 and src.dtype == torch.int64 for src, tgt in indices)
    assert_same_indices(indices, match_per_image_loop(outputs, targets))


def test_exact_predictions_are_matched_to_their_objects():
    generator = torch.Generator().manual_seed(3)
    target_boxes = random_boxes(4, generator)
    labels = torch.tensor([2, 0, 3, 1])
    order = torch.tensor(
        [1, 3, 0, 2, 4, 5]
    )  # query q predicts object order[q] (queries 4, 5 predict nothing)
    boxes = torch.cat((target_boxes, random_boxes(2, generator)))[order]
    logits = torch.zeros(6, 5)
    logits[torch.arange(6), torch.cat((labels, torch.tensor([4, 4])))[order]] = 8.0
    outputs = {"pred_logits": logits[None], "pred_boxes": boxes[None]}
    ((src, tgt),) = HungarianMatcher()(outputs, [{"labels": labels, "boxes": target_boxes}])
    assert src.tolist() == [0, 1, 2, 3]  # sorted by query
    assert tgt.tolist() == [1, 3, 0, 2]


def test_more_objects_than_queries_matches_every_query_once():
    outputs, targets = random_problem([7], num_queries=3, num_classes=4, seed=4)
    ((src, tgt),) = HungarianMatcher()(outputs, targets)
    assert sorted(src.tolist()) == [0, 1, 2]
    assert len(set(tgt.tolist())) == 3
    cost = cost_table_by_hand(outputs, targets[0])
    best = min(sum(cost[q, t] for q, t in enumerate(perm)) for perm in itertools.permutations(range(7), 3))
    assert cost[src.numpy(), tgt.numpy()].sum() == pytest.approx(best, abs=1e-4)


@settings(max_examples=100, deadline=None)
@given(
    num_queries=st.integers(1, 5),
    data=st.data(),
    num_classes=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_matching_equals_brute_force(num_queries, data, num_classes, seed):
    n = data.draw(st.integers(0, num_queries), label="objects")
    outputs, targets = random_problem([n], num_queries, num_classes, seed)
    ((src, tgt),) = HungarianMatcher()(outputs, targets)
    assert len(src) == len(tgt) == n
    assert sorted(tgt.tolist()) == list(range(n))  # every object matched once
    assert len(set(src.tolist())) == n  # by distinct queries
    cost = cost_table_by_hand(outputs, targets[0])
    # perm[t] is the query given to object t; try every injective assignment.
    best = min(
        (
            sum(cost[q, t] for t, q in enumerate(perm))
            for perm in itertools.permutations(range(num_queries), n)
        ),
        default=0.0,
    )
    assert cost[src.numpy(), tgt.numpy()].sum() == pytest.approx(best, abs=1e-4)


def test_chosen_assignment_cannot_be_improved_by_any_swap():
    outputs, targets = random_problem([12], num_queries=40, num_classes=NUM_CLASSES, seed=9)
    ((src, tgt),) = HungarianMatcher()(outputs, targets)
    cost = cost_table_by_hand(outputs, targets[0])
    query_of = dict(zip(tgt.tolist(), src.tolist()))
    total = sum(cost[q, t] for t, q in query_of.items())
    unused = set(range(40)) - set(query_of.values())
    for t, q in query_of.items():
        for other in unused:  # give object t to an unused query
            assert total - cost[q, t] + cost[other, t] >= total - 1e-5
        for t2, q2 in query_of.items():  # exchange the queries of two objects
            swapped = total - cost[q, t] - cost[q2, t2] + cost[q2, t] + cost[q, t2]
            assert swapped >= total - 1e-5


def test_matching_cost_agrees_with_hand_arithmetic():
    outputs, targets = random_problem([3], num_queries=4, num_classes=3, seed=11)
    cost = matching_cost(
        outputs["pred_logits"][0], outputs["pred_boxes"][0], targets[0]["labels"], targets[0]["boxes"]
    )
    np.testing.assert_allclose(cost.numpy(), cost_table_by_hand(outputs, targets[0]), atol=1e-5)


def test_half_precision_predictions_are_matched_in_float32():
    outputs, targets = random_problem([5, 2], num_queries=12, num_classes=4, seed=12)
    half = {k: v.to(torch.bfloat16) for k, v in outputs.items()}
    as_float = {k: v.float() for k, v in half.items()}
    assert_same_indices(HungarianMatcher()(half, targets), HungarianMatcher()(as_float, targets))


def test_nan_logits_raise_non_finite_prediction_error():
    outputs, targets = random_problem([2, 1], num_queries=5, num_classes=3, seed=0)
    outputs["pred_logits"][1, 3, 0] = float("nan")
    with pytest.raises(NonFinitePredictionError, match="NaN or infinite"):
        HungarianMatcher()(outputs, targets)
    with pytest.raises(NonFinitePredictionError, match="NaN or infinite"):
        match_per_image_loop(outputs, targets)


def test_nan_boxes_raise_non_finite_prediction_error():
    outputs, targets = random_problem([2, 1], num_queries=5, num_classes=3, seed=0)
    outputs["pred_boxes"][0, 0, 2] = float("inf")
    with pytest.raises(NonFinitePredictionError):
        HungarianMatcher()(outputs, targets)
    with pytest.raises(NonFinitePredictionError):
        match_per_image_loop(outputs, targets)


def test_degenerate_target_box_names_the_image_and_box():
    outputs, targets = random_problem([2, 3], num_queries=5, num_classes=3, seed=0)
    targets[1]["boxes"][2, 3] = -0.1
    with pytest.raises(ValueError, match="target 1 box 2"):
        HungarianMatcher()(outputs, targets)


@pytest.mark.parametrize(("label", "message"), [(3, "no-object"), (7, "outside"), (-1, "outside")])
def test_out_of_range_class_id_is_refused(label, message):
    outputs, targets = random_problem([2, 2], num_queries=5, num_classes=3, seed=0)
    targets[1]["labels"][0] = label
    with pytest.raises(ValueError, match=f"target 1 has class id {label}.*{message}"):
        HungarianMatcher()(outputs, targets)


def test_malformed_targets_are_refused_clearly():
    outputs, targets = random_problem([2, 2], num_queries=5, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="1 targets for a batch of 2"):
        HungarianMatcher()(outputs, targets[:1])
    del targets[0]["boxes"]
    with pytest.raises(KeyError, match="target 0 has no 'boxes'"):
        HungarianMatcher()(outputs, targets)
    outputs, targets = random_problem([2, 2], num_queries=5, num_classes=3, seed=0)
    targets[1]["labels"] = targets[1]["labels"].float()
    with pytest.raises(ValueError, match="integer class ids"):
        HungarianMatcher()(outputs, targets)


def test_all_zero_cost_weights_are_refused():
    with pytest.raises(ValueError, match="all matching costs are zero"):
        HungarianMatcher(0, 0, 0)
