"""The DETR encoder-decoder transformer.

It differs from ``torch.nn.Transformer`` the way the reference does: position encodings are added to
queries and keys in every attention, the encoder has no final norm (unless pre-norm), and the decoder
returns the output of every layer, each passed through the shared final norm.

Attention weights: set ``record_attention = True`` on a layer and its next forward keeps the per-head
weights in ``last_attention`` ([B, heads, queries, keys]). Off by default, so the fast fused attention
kernel runs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class _RecordingLayer(nn.Module):
    """Shared attention-recording behaviour of encoder and decoder layers."""

    record_attention: bool = False
    last_attention: Tensor | None = None

    def _attend(
        self, attn: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, key_padding_mask
    ) -> Tensor:
        if self.record_attention:
            out, weights = attn(
                q, k, v, key_padding_mask=key_padding_mask, need_weights=True, average_attn_weights=False
            )
            self.last_attention = weights  # [B, heads, Lq, Lk]
            return out
        return attn(q, k, v, key_padding_mask=key_padding_mask, need_weights=False)[0]


class TransformerEncoderLayer(_RecordingLayer):
    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, normalize_before: bool
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _feedforward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src: Tensor, key_padding_mask: Tensor | None, pos: Tensor | None) -> Tensor:
        """src, pos: [HW, B, C]; key_padding_mask: [B, HW] (True = padding)."""
        if self.normalize_before:
            x = self.norm1(src)
            qk = _with_pos(x, pos)
            src = src + self.dropout1(self._attend(self.self_attn, qk, qk, x, key_padding_mask))
            return src + self.dropout2(self._feedforward(self.norm2(src)))
        qk = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self._attend(self.self_attn, qk, qk, src, key_padding_mask)))
        return self.norm2(src + self.dropout2(self._feedforward(src)))


class TransformerDecoderLayer(_RecordingLayer):
    """Self-attention among queries, cross-attention to the image (``multihead_attn``), feed-forward.

    ``record_attention`` records the cross-attention, the one worth showing over the image.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, normalize_before: bool
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _self(self, x: Tensor, query_pos: Tensor | None, groups: int) -> Tensor:
        """Self-attention among the queries; with ``groups`` > 1 only within each group (x: [G*Q, B, C])."""
        if groups > 1:
            x, query_pos = _split_groups(x, groups), _split_groups(query_pos, groups)
        qk = _with_pos(x, query_pos)
        out = self.self_attn(qk, qk, x, need_weights=False)[0]
        return _join_groups(out, groups) if groups > 1 else out

    def _cross(self, x: Tensor, memory: Tensor, mask: Tensor | None, pos, query_pos) -> Tensor:
        return self._attend(
            self.multihead_attn, _with_pos(x, query_pos), _with_pos(memory, pos), memory, mask
        )

    def _feedforward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_padding_mask: Tensor | None,
        pos: Tensor | None,
        query_pos: Tensor | None,
        groups: int = 1,
    ) -> Tensor:
        """tgt, query_pos: [G*Q, B, C]; memory, pos: [HW, B, C]; memory_key_padding_mask: [B, HW].

        Only the self-attention sees the groups; cross-attention and feed-forward treat every query alike.
        """
        if self.normalize_before:
            tgt = tgt + self.dropout1(self._self(self.norm1(tgt), query_pos, groups))
            tgt = tgt + self.dropout2(
                self._cross(self.norm2(tgt), memory, memory_key_padding_mask, pos, query_pos)
            )
            return tgt + self.dropout3(self._feedforward(self.norm3(tgt)))
        tgt = self.norm1(tgt + self.dropout1(self._self(tgt, query_pos, groups)))
        tgt = self.norm2(
            tgt + self.dropout2(self._cross(tgt, memory, memory_key_padding_mask, pos, query_pos))
        )
        return self.norm3(tgt + self.dropout3(self._feedforward(tgt)))


def _split_groups(x: Tensor, groups: int) -> Tensor:
    """[G*Q, B, C] (query index g * Q + q) -> [Q, G*B, C] (batch index g * B + b)."""
    gq, b, c = x.shape
    return x.reshape(groups, gq // groups, b, c).transpose(0, 1).reshape(gq // groups, groups * b, c)


def _join_groups(x: Tensor, groups: int) -> Tensor:
    """The inverse of ``_split_groups``: [Q, G*B, C] -> [G*Q, B, C]."""
    q, gb, c = x.shape
    return x.reshape(q, groups, gb // groups, c).transpose(0, 1).reshape(groups * q, gb // groups, c)


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


class TransformerEncoder(nn.Module):
    def __init__(self, layer: TransformerEncoderLayer, num_layers: int, norm: nn.LayerNorm | None):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: Tensor, src_key_padding_mask: Tensor | None, pos: Tensor | None) -> Tensor:
        out = src
        for layer in self.layers:
            out = layer(out, src_key_padding_mask, pos)
        return out if self.norm is None else self.norm(out)


class TransformerDecoder(nn.Module):
    def __init__(
        self, layer: TransformerDecoderLayer, num_layers: int, norm: nn.LayerNorm, return_intermediate: bool
    ):
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(self, tgt, memory, memory_key_padding_mask, pos, query_pos, groups: int = 1) -> Tensor:
        """-> [L, Q, B, C] (every layer, normed) or [1, Q, B, C] (last layer only)."""
        out = tgt
        outputs = []
        for layer in self.layers:
            out = layer(out, memory, memory_key_padding_mask, pos, query_pos, groups)
            if self.return_intermediate:
                outputs.append(self.norm(out))
        if self.return_intermediate:
            return torch.stack(outputs)
        return self.norm(out).unsqueeze(0)


class Transformer(nn.Module):
    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
        return_intermediate_dec: bool = False,
    ):
        super().__init__()
        enc_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before)
        self.encoder = TransformerEncoder(
            enc_layer, num_encoder_layers, nn.LayerNorm(d_model) if normalize_before else None
        )
        dec_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before)
        self.decoder = TransformerDecoder(
            dec_layer, num_decoder_layers, nn.LayerNorm(d_model), return_intermediate_dec
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model
        self.nhead = nhead

    def forward(
        self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor, groups: int = 1
    ) -> tuple[Tensor, Tensor]:
        """src, pos_embed: [B, C, h, w]; mask: [B, h, w]; query_embed: [G*Q, C].

        ``groups`` > 1 (training only): the queries form G independent groups that share the decoder but
        never attend to one another. Only the decoder's self-attention needs to know: it runs within each
        group, while cross-attention and feed-forward see the G*Q queries of an image together, so the
        image's keys and values are projected once, not once per group.

        -> (hs [L, B, G*Q, C], memory [B, C, h, w]).
        """
        b, c, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)  # [HW, B, C]
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        mask = mask.flatten(1)  # [B, HW]
        memory = self.encoder(src, mask, pos_embed)
        image = memory.permute(1, 2, 0).reshape(b, c, h, w)
        query_pos = query_embed.unsqueeze(1).expand(-1, b, -1)  # [G*Q, B, C]
        hs = self.decoder(torch.zeros_like(query_pos), memory, mask, pos_embed, query_pos, groups)
        return hs.transpose(1, 2), image
