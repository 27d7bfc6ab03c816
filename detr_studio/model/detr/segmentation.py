"""The panoptic / instance segmentation wrapper: DETR plus an attention map and an FPN-style mask head.

Names mirror the reference (``detr.*``, ``bbox_attention.*``, ``mask_head.*``) so that its panoptic
checkpoints load strictly. Beyond the reference, the mask head can run for a chosen subset of queries
(``query_index``), which gives the same masks for those queries at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nested import NestedTensor
from .detr import DETR, DetrOutput


class MHAttentionMap(nn.Module):
    """Attention of each query over the image features, per head: -> [B, Q, heads, h, w].

    As in the reference, the softmax runs jointly over heads and positions (not per head).
    """

    def __init__(
        self, query_dim: int, hidden_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True
    ):
        super().__init__()
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.dropout = nn.Dropout(dropout)
        self.q_linear = nn.Linear(query_dim, hidden_dim, bias=bias)
        self.k_linear = nn.Linear(query_dim, hidden_dim, bias=bias)
        nn.init.zeros_(self.k_linear.bias)
        nn.init.zeros_(self.q_linear.bias)
        nn.init.xavier_uniform_(self.k_linear.weight)
        nn.init.xavier_uniform_(self.q_linear.weight)
        self.normalize_fact = float(hidden_dim / num_heads) ** -0.5

    def forward(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        """q: [B, Q, C]; k: [B, C, h, w]; mask: [B, h, w] (True = padding)."""
        q = self.q_linear(q)
        k = F.conv2d(k, self.k_linear.weight[:, :, None, None], self.k_linear.bias)
        head_dim = self.hidden_dim // self.num_heads
        qh = q.view(q.shape[0], q.shape[1], self.num_heads, head_dim)
        kh = k.view(k.shape[0], self.num_heads, head_dim, k.shape[-2], k.shape[-1])
        weights = torch.einsum("bqnc,bnchw->bqnhw", qh * self.normalize_fact, kh)
        if mask is not None:
            weights = weights.masked_fill(mask[:, None, None], float("-inf"))
        weights = F.softmax(weights.flatten(2), dim=-1).view(weights.shape)
        return self.dropout(weights)


class MaskHeadSmallConv(nn.Module):
    """Upsamples each query's attention map with the backbone's intermediate features into a mask.

    Output masks are at stride 4 of the input: [N, 1, H/4, W/4].
    """

    def __init__(self, dim: int, fpn_dims: list[int], context_dim: int):
        super().__init__()
        inter = [dim, context_dim // 2, context_dim // 4, context_dim // 8, context_dim // 16]
        self.lay1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.gn1 = nn.GroupNorm(8, dim)
        self.lay2 = nn.Conv2d(dim, inter[1], 3, padding=1)
        self.gn2 = nn.GroupNorm(8, inter[1])
        self.lay3 = nn.Conv2d(inter[1], inter[2], 3, padding=1)
        self.gn3 = nn.GroupNorm(8, inter[2])
        self.lay4 = nn.Conv2d(inter[2], inter[3], 3, padding=1)
        self.gn4 = nn.GroupNorm(8, inter[3])
        self.lay5 = nn.Conv2d(inter[3], inter[4], 3, padding=1)
        self.gn5 = nn.GroupNorm(8, inter[4])
        self.out_lay = nn.Conv2d(inter[4], 1, 3, padding=1)
        self.dim = dim
        self.adapter1 = nn.Conv2d(fpn_dims[0], inter[1], 1)
        self.adapter2 = nn.Conv2d(fpn_dims[1], inter[2], 1)
        self.adapter3 = nn.Conv2d(fpn_dims[2], inter[3], 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)

    def forward(
        self, x: Tensor, bbox_mask: Tensor, fpns: list[Tensor], batch_index: Tensor | None = None
    ) -> Tensor:
        """x: [B, C, h, w]; bbox_mask: [B, Q, heads, h, w], or [N, heads, h, w] with ``batch_index`` [N]
        naming each row's image; fpns: layer3, layer2, layer1 features. -> [B*Q or N, 1, H/4, W/4]."""
        if batch_index is None:
            b, q = bbox_mask.shape[:2]
            batch_index = torch.arange(b, device=x.device).repeat_interleave(q)
            bbox_mask = bbox_mask.flatten(0, 1)
        x = torch.cat([x[batch_index], bbox_mask], 1)
        return self.refine(F.relu(self.gn1(self.lay1(x))), fpns, batch_index)

    def refine(self, x: Tensor, fpns: list[Tensor] | tuple[Tensor, ...], batch_index: Tensor) -> Tensor:
        """Everything after the first convolution: x [N, dim, h, w] (``gn1`` applied) -> [N, 1, H/4, W/4]."""
        x = F.relu(self.gn2(self.lay2(x)))
        for adapter, lay, gn, fpn in (
            (self.adapter1, self.lay3, self.gn3, fpns[0]),
            (self.adapter2, self.lay4, self.gn4, fpns[1]),
            (self.adapter3, self.lay5, self.gn5, fpns[2]),
        ):
            cur = adapter(fpn)[batch_index]  # [N, Ci', Hi, Wi]
            x = cur + F.interpolate(x, size=cur.shape[-2:], mode="nearest")
            x = F.relu(gn(lay(x)))
        return self.out_lay(x)


class DETRsegm(nn.Module):
    """DETR with a mask per query. ``freeze_detr`` trains only the mask branch (the reference's
    second stage of panoptic training)."""

    def __init__(self, detr: DETR, freeze_detr: bool = False):
        super().__init__()
        self.detr = detr
        if freeze_detr:
            for p in self.parameters():
                p.requires_grad_(False)
        hidden_dim, nheads = detr.transformer.d_model, detr.transformer.nhead
        self.bbox_attention = MHAttentionMap(hidden_dim, hidden_dim, nheads, dropout=0.0)
        channels = detr.backbone[0].layer_channels
        self.mask_head = MaskHeadSmallConv(
            hidden_dim + nheads, [channels[2], channels[1], channels[0]], hidden_dim
        )
        self.mask_chunk = 0  # rows of the mask head run at a time; 0: all at once

    @property
    def num_classes(self) -> int:
        return self.detr.num_classes

    @property
    def num_queries(self) -> int:
        return self.detr.num_queries

    def forward(
        self,
        samples: NestedTensor | list[Tensor] | Tensor,
        select: Callable[[DetrOutput], Tensor] | None = None,
    ) -> DetrOutput:
        """-> the DETR outputs plus "pred_masks" [B, Q, H/4, W/4] (mask logits).

        ``select``: optional function of the output dict returning a bool [B, Q] of the queries that
        need masks. Then "pred_masks" is [N, H/4, W/4] for the selected queries only, in row-major
        (image, query) order, and "mask_index" [N, 2] holds each row's (image, query).
        With ``mask_chunk`` set, the mask head runs that many rows at a time (the same masks, less memory).
        """
        decoding = self.detr.decode(samples)
        out = self.detr.heads(decoding.hs)
        features, src_proj = decoding.features, decoding.projected
        fpns = [features[2].tensors, features[1].tensors, features[0].tensors]
        bbox_mask = self.bbox_attention(
            decoding.hs[-1], decoding.memory, mask=decoding.mask
        )  # [B, Q, heads, h, w]
        b, q = bbox_mask.shape[:2]
        if select is None:
            index = torch.stack(torch.meshgrid(torch.arange(b), torch.arange(q), indexing="ij"), -1).flatten(
                0, 1
            )
            seg = self._mask_rows(src_proj, bbox_mask, index.to(src_proj.device), fpns)
            out["pred_masks"] = seg.view(b, q, seg.shape[-2], seg.shape[-1])
            return out
        index = select(out).nonzero()  # [N, 2]
        if len(index) == 0:
            h4, w4 = features[0].tensors.shape[-2:]
            out["pred_masks"] = src_proj.new_zeros((0, h4, w4))
        else:
            out["pred_masks"] = self._mask_rows(src_proj, bbox_mask, index, fpns)
        out["mask_index"] = index
        return out

    def _mask_rows(self, src_proj: Tensor, bbox_mask: Tensor, index: Tensor, fpns: list[Tensor]) -> Tensor:
        """Mask logits [N, H/4, W/4] of the (image, query) rows ``index`` [N, 2], ``mask_chunk`` at a time."""
        step = self.mask_chunk or len(index)
        parts = [
            self.mask_head(src_proj, bbox_mask[rows[:, 0], rows[:, 1]], fpns, batch_index=rows[:, 0])[:, 0]
            for rows in index.split(max(step, 1))
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)
