"""The weight average: its update rule, copied buffers, and its state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detr_studio.train.ema import WeightAverage


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_each_update_moves_the_average_towards_the_weights_at_the_warmed_up_rate():
    model = _model()
    average = WeightAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)  # first update: rate min(0.9, 2/11)
    assert average.model[0].weight == pytest.approx((2 / 11) * start + (9 / 11) * (start + 1.0))
    for _ in range(100):
        average.update(model)
    assert average.rate() == 0.9  # warm-up over: (1 + n) / (10 + n) > 0.9 from n = 82
    assert torch.allclose(average.model[0].weight, start + 1.0, atol=1e-3)


def test_buffers_are_copied_and_the_average_never_trains():
    model = _model()
    average = WeightAverage(model, decay=0.99)
    model.train()
    model(torch.randn(8, 3))  # batch-norm statistics move
    average.update(model)
    assert torch.equal(average.model[1].running_mean, model[1].running_mean)
    assert not average.model.training
    assert not any(p.requires_grad for p in average.model.parameters())


def test_the_state_round_trips_with_its_update_count():
    model = _model()
    average = WeightAverage(model, decay=0.99)
    with torch.no_grad():
        model[0].bias.add_(2.0)
    for _ in range(3):
        average.update(model)
    restored = WeightAverage(_model(), decay=0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 3 and restored.rate() == average.rate()
    assert torch.equal(restored.model[0].bias, average.model[0].bias)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(_model(), decay)


def test_a_restart_takes_the_weights_as_they_are_and_warms_up_again():
    model = _model()
    average = WeightAverage(model, decay=0.99)
    for _ in range(50):
        average.update(model)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    model.train()
    model(torch.randn(8, 3))
    average.restart(model)
    assert average.updates == 0 and average.rate() == 2 / 11
    assert torch.equal(average.model[0].weight, model[0].weight)
    assert torch.equal(average.model[1].running_var, model[1].running_var)
