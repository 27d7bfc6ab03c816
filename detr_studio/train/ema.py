"""An exponential moving average of the weights, updated after each optimiser step.

Early in a high-learning-rate phase a DETR's validation AP swings from one evaluation to the next; the average
of the last few hundred steps' weights is steadier and usually better. When a run keeps an average, it is what
the run evaluates and saves as its model; the live weights go on training as before, so the losses do not
change. The average starts again at each learning-rate drop.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn


class WeightAverage:
    """``average = d·average + (1 − d)·weights`` after each step, with ``d = min(decay, (1 + n) / (10 + n))``
    at update n (so the first updates follow the live weights closely). Buffers (batch-norm statistics) are
    copied, not averaged."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def rate(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.rate()
        averages = [p for p in self.model.parameters() if p.is_floating_point()]
        live = [p.detach() for p in model.parameters() if p.is_floating_point()]
        torch._foreach_lerp_(averages, live, weight)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)
        self.updates += 1

    def restart(self, model: nn.Module) -> None:
        """Start again from ``model``'s weights, warm-up included. After a learning-rate drop the old average
        still holds the noisier high-rate weights and would lag behind the live ones for hundreds of steps."""
        self.model.load_state_dict(model.state_dict())
        self.updates = 0

    def state_dict(self) -> dict[str, Any]:
        weights: dict[str, Tensor] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return {"updates": self.updates, "weights": weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["weights"], strict=True)
        self.updates = int(state["updates"])
