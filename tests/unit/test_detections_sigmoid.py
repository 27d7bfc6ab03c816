"""``Detections`` for a sigmoid head (no "no object" column): the scores, no-object, threshold, ghosts and the
review queue's uncertainty measures mean the same as for DETR's softmax head."""

from __future__ import annotations

import numpy as np
import pytest

from detr_studio.infer.detections import DEFAULT_THRESHOLD, Detections
from detr_studio.infer.uncertainty import ENTROPY, MARGIN, NO_OBJECT, image_uncertainty, query_uncertainty
from detr_studio.model.family import SIGMOID, SOFTMAX


def sigmoid_rows() -> Detections:
    """Three rows of a 3-class sigmoid head: query 0 twice (cat 0.9, dog 0.3), query 1 once (bird 0.5)."""
    probs = np.array([[0.0, 0.9, 0.3], [0.0, 0.9, 0.3], [0.1, 0.0, 0.5]])
    return Detections(
        image_size=(100, 100),
        boxes=np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 20, 20]], dtype=np.float32),
        scores=np.array([0.9, 0.3, 0.5]),
        labels=np.array([1, 2, 2]),
        probs=probs,
        query_ids=np.array([0, 0, 1]),
        scoring=SIGMOID,
    )


def test_a_sigmoid_head_has_no_no_object_column_and_no_object_is_one_minus_the_best_class():
    dets = sigmoid_rows()
    assert dets.num_classes == 3
    np.testing.assert_allclose(dets.class_probs, dets.probs)
    np.testing.assert_allclose(dets.no_object, [0.1, 0.1, 0.5])
    assert dets.top_classes(0, k=2) == [(1, 0.9), (2, 0.3)]


def test_the_distribution_shares_the_best_sigmoid_among_the_classes_and_sums_to_one():
    dist = sigmoid_rows().distribution  # [N, C+1]
    assert dist.shape == (3, 4)
    np.testing.assert_allclose(dist.sum(1), 1.0)
    # row 0: mass 0.9 split 0 : 0.9 : 0.3 -> (0, 0.675, 0.225), no-object 0.1
    np.testing.assert_allclose(dist[0], [0.0, 0.675, 0.225, 0.1])
    # row 2: mass 0.5 split 0.1 : 0 : 0.5 -> (0.0833, 0, 0.4167), no-object 0.5
    np.testing.assert_allclose(dist[2], [0.5 / 6, 0.0, 2.5 / 6, 0.5])


def test_a_softmax_heads_distribution_is_its_probabilities():
    probs = np.array([[0.1, 0.6, 0.3]])
    dets = Detections((10, 10), np.zeros((1, 4)), np.array([0.6]), np.array([1]), probs, np.array([0]))
    assert dets.scoring == SOFTMAX and dets.num_classes == 2
    np.testing.assert_allclose(dets.distribution, probs)
    np.testing.assert_allclose(dets.no_object, [0.3])


def test_threshold_and_sorting_work_on_rows_whatever_the_head():
    dets = sigmoid_rows()
    assert list(dets.above(DEFAULT_THRESHOLD).query_ids) == [0]  # 0.5 is not above 0.5
    assert list(dets.above(0.25).sorted().scores) == [0.9, 0.5, 0.3]


def test_uncertainty_is_highest_where_a_sigmoid_head_cannot_tell_object_from_background():
    dets = sigmoid_rows()
    no_object = query_uncertainty(dets.distribution, NO_OBJECT)
    np.testing.assert_allclose(no_object, [0.2, 0.2, 1.0])  # best sigmoid 0.5: no idea
    assert image_uncertainty(dets, NO_OBJECT) == (pytest.approx(1.0), 1)
    for measure in (ENTROPY, MARGIN):
        values = query_uncertainty(dets.distribution, measure)
        assert ((values >= 0) & (values <= 1)).all()
    # query 1 splits its mass 0.1 : 0.5 and leaves 0.5 to no object: closer to a tie than query 0
    assert image_uncertainty(dets, MARGIN)[1] == 1
    assert image_uncertainty(dets, MARGIN, skip=[1])[1] == 0


def test_an_unknown_scoring_is_refused():
    with pytest.raises(ValueError, match="scoring must be"):
        Detections(
            (1, 1), np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 2)), np.zeros(0), scoring="x"
        )
