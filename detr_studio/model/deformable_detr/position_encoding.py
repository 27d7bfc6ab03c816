"""The sine position encoding of Deformable DETR: DETR's, with the coordinate taken at the pixel centre.

Deformable DETR normalises ``(cumsum - 0.5) / (count + 1e-6) * 2π`` where DETR normalises
``cumsum / (count + 1e-6) * 2π``, so values lie in (0, 2π) instead of (0, 2π]. Everything else (128
features per axis, temperature 10000, y half first) is DETR's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..nested import NestedTensor

HALF_PIXEL = -0.5


class PositionEmbeddingSineHalfPixel(nn.Module):
    """Sine/cosine encoding of each feature location (y half first, then x), normalised with the -0.5 offset."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000, scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, features: NestedTensor) -> Tensor:
        """features.mask [B, h, w] (True = padding) -> [B, 2 * num_pos_feats, h, w] float32."""
        valid = ~features.mask
        y = valid.cumsum(1, dtype=torch.float32)  # [B, h, w], 1 … h_valid
        x = valid.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y = (y + HALF_PIXEL) / (y[:, -1:, :] + eps) * self.scale
        x = (x + HALF_PIXEL) / (x[:, :, -1:] + eps) * self.scale
        index = torch.arange(self.num_pos_feats, dtype=torch.float32, device=valid.device)
        freq = self.temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / self.num_pos_feats)
        px = x[..., None] / freq  # [B, h, w, F]
        py = y[..., None] / freq
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)
