"""The Deformable DETR decoder: post-norm layers of query self-attention, deformable cross-attention to
the encoder memory, and a feed-forward block; every layer's output is returned, with no final norm.

Official norm names: ``norm2`` follows self-attention, ``norm1`` cross-attention, ``norm3`` the
feed-forward block. With iterative box refinement the decoder holds the detector's box heads
(``bbox_embed``) and each layer moves the reference to its refined, detached box; layer 0 uses the 2-d
reference point, later layers 4-d boxes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ms_deform_attn import MSDeformAttn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """log(x / (1 − x)) with x clamped to [0, 1] and both terms to at least ``eps`` (the official form)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class DeformableTransformerDecoderLayer(nn.Module):
    """self_attn → norm2, cross_attn → norm1, linear1 → relu → linear2 → norm3 (the official order)."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.keep_query = False  # keep the cross-attention's query and references of the next forward
        self.last_query: tuple[Tensor, Tensor] | None = None

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        src: Tensor,
        shapes: Sequence[tuple[int, int]],
        src_padding_mask: Tensor | None,
    ) -> Tensor:
        """tgt, query_pos [N, Q, C]; reference_points [N, Q, L, 2|4]; src [N, S, C] -> [N, Q, C]."""
        q = k = (tgt + query_pos).transpose(0, 1)  # [Q, N, C]
        tgt2 = self.self_attn(q, k, tgt.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        if self.keep_query:
            self.last_query = (tgt + query_pos, reference_points)
        tgt2 = self.cross_attn(tgt + query_pos, reference_points, src, shapes, src_padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(tgt2))


def scaled_references(reference_points: Tensor, valid_ratios: Tensor) -> Tensor:
    """[N, Q, 2|4] references over the padded image -> [N, Q, L, 2|4] per level (times the valid ratios)."""
    if reference_points.shape[-1] == 4:
        return reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
    return reference_points[:, :, None] * valid_ratios[:, None]


class DeformableTransformerDecoder(nn.Module):
    """``num_layers`` copies of one decoder layer. ``bbox_embed`` / ``class_embed`` are set by the detector
    (box refinement, two-stage); None otherwise."""

    def __init__(self, decoder_layer: DeformableTransformerDecoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.bbox_embed: nn.ModuleList | None = None
        self.class_embed: nn.ModuleList | None = None

    def forward(
        self,
        tgt: Tensor,
        reference_points: Tensor,
        src: Tensor,
        shapes: Sequence[tuple[int, int]],
        valid_ratios: Tensor,
        query_pos: Tensor,
        src_padding_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """tgt, query_pos [N, Q, C]; reference_points [N, Q, 2|4]; src [N, S, C]; valid_ratios [N, L, 2]
        -> (every layer's output [layers, N, Q, C], the reference each layer ended with [layers, N, Q, 2|4])."""
        output = tgt
        intermediate, references = [], []
        for index, layer in enumerate(self.layers):
            reference_input = scaled_references(reference_points, valid_ratios)
            output = layer(output, query_pos, reference_input, src, shapes, src_padding_mask)
            if self.bbox_embed is not None:
                tmp = self.bbox_embed[index](output)  # [N, Q, 4]
                if reference_points.shape[-1] == 4:
                    refined = tmp + inverse_sigmoid(reference_points)
                else:
                    refined = torch.cat((tmp[..., :2] + inverse_sigmoid(reference_points), tmp[..., 2:]), -1)
                reference_points = refined.sigmoid().detach()
            intermediate.append(output)
            references.append(reference_points)
        return torch.stack(intermediate), torch.stack(references)
