"""``MSDeformAttn``: multi-scale deformable attention, with the official layers, names and initialisation.

Each query predicts, per head, level and point, a sampling offset and an attention weight (one softmax
over levels × points per head); the values it reads are bilinear samples of the projected input at
those locations (``sampling.deformable_sample``). The value path never carries the position encoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import init

from .sampling import at_least_fp32, deformable_sample


class MSDeformAttn(nn.Module):
    """Deformable attention over ``n_levels`` feature maps, ``n_heads`` heads, ``n_points`` points each."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Offsets start on a grid: head h points along angle h·2π/H, point p at distance p+1 (in level
        pixels); attention starts uniform; the projections are Xavier with zero bias."""
        init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)  # [H, 2]
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)  # [H, L, P, 2]
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        init.constant_(self.attention_weights.weight, 0.0)
        init.constant_(self.attention_weights.bias, 0.0)
        init.xavier_uniform_(self.value_proj.weight)
        init.constant_(self.value_proj.bias, 0.0)
        init.xavier_uniform_(self.output_proj.weight)
        init.constant_(self.output_proj.bias, 0.0)

    def offsets_and_weights(self, query: Tensor) -> tuple[Tensor, Tensor]:
        """query [N, Lq, C] -> (offsets [N, Lq, H, L, P, 2], attention weights [N, Lq, H, L, P] at least float32)."""
        n, lq, _ = query.shape
        h, lv, p = self.n_heads, self.n_levels, self.n_points
        offsets = self.sampling_offsets(query).view(n, lq, h, lv, p, 2)
        logits = at_least_fp32(self.attention_weights(query).view(n, lq, h, lv * p))
        return offsets, logits.softmax(-1).view(n, lq, h, lv, p)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        shapes: Sequence[tuple[int, int]],
        input_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """query [N, Lq, C] (position encoding included); reference_points [N, Lq, L, 2] in [0, 1] of each
        level, or [N, Lq, L, 4] boxes; input_flatten [N, S, C]; shapes: (h_l, w_l) per level;
        input_padding_mask [N, S] (True = padding) -> [N, Lq, C]."""
        n, s, _ = input_flatten.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)  # [N, S, H, D]
        offsets, weights = self.offsets_and_weights(query)
        out = deformable_sample(value, shapes, reference_points, offsets, weights)  # [N, Lq, C]
        return self.output_proj(out.to(query.dtype))
