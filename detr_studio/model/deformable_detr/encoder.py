"""The Deformable DETR encoder: post-norm layers of deformable self-attention over all levels, then a
feed-forward block; no final norm.

Each flattened position is a query whose reference point is its own pixel centre, normalised by the
valid (unpadded) extent of its level and then scaled by every level's valid ratio, exactly as the
official code does (``Deformable-DETR#36`` questions the double use; checkpoints depend on it).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ms_deform_attn import MSDeformAttn


class DeformableTransformerEncoderLayer(nn.Module):
    """self_attn → dropout1 → norm1, then linear1 → relu → dropout2 → linear2 → dropout3 → norm2."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.keep_query = False  # keep the attention's query and references of the next forward
        self.last_query: tuple[Tensor, Tensor] | None = None

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        shapes: Sequence[tuple[int, int]],
        padding_mask: Tensor | None,
    ) -> Tensor:
        """src, pos [N, S, C]; reference_points [N, S, L, 2]; padding_mask [N, S] -> [N, S, C]."""
        if self.keep_query:
            self.last_query = (src + pos, reference_points)
        src2 = self.self_attn(src + pos, reference_points, src, shapes, padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


def encoder_reference_points(shapes: Sequence[tuple[int, int]], valid_ratios: Tensor) -> Tensor:
    """Pixel centres of every level, normalised by the valid extent, times each level's valid ratio.

    shapes: (h_l, w_l); valid_ratios [N, L, 2] (w, h) -> [N, S, L, 2] (x, y).
    """
    device = valid_ratios.device
    refs = []
    for level, (h, w) in enumerate(shapes):
        ys = torch.arange(h, dtype=torch.float32, device=device) + 0.5  # = linspace(0.5, h - 0.5, h)
        xs = torch.arange(w, dtype=torch.float32, device=device) + 0.5
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")  # [h, w]
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)  # [N, h·w]
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
        refs.append(torch.stack((ref_x, ref_y), -1))  # [N, h·w, 2]
    reference_points = torch.cat(refs, 1)  # [N, S, 2]
    return reference_points[:, :, None] * valid_ratios[:, None]  # [N, S, L, 2]


class DeformableTransformerEncoder(nn.Module):
    """``num_layers`` copies of one encoder layer."""

    def __init__(self, encoder_layer: DeformableTransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers

    def forward(
        self,
        src: Tensor,
        shapes: Sequence[tuple[int, int]],
        valid_ratios: Tensor,
        pos: Tensor,
        padding_mask: Tensor | None,
    ) -> Tensor:
        """src, pos [N, S, C]; valid_ratios [N, L, 2]; padding_mask [N, S] -> memory [N, S, C]."""
        reference_points = encoder_reference_points(shapes, valid_ratios).to(src.dtype)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, shapes, padding_mask)
        return output
