"""Position encodings added to the image features: sine (the default) and learned tables."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .nested import NestedTensor


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of each feature location, y half first then x half.

    Coordinates are the running count of real (unpadded) pixels, optionally normalised to (0, scale]:
    ``(count + offset) / (valid count + 1e-6) * scale``. DETR uses ``offset`` 0; Deformable DETR takes the
    pixel centre, ``offset`` -0.5, so its values lie in (0, scale).
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000,
        normalize: bool = False,
        scale: float | None = None,
        offset: float = 0.0,
    ):
        super().__init__()
        if (scale is not None or offset) and not normalize:
            raise ValueError("scale and offset are only used when normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.offset = offset

    def forward(self, features: NestedTensor) -> Tensor:
        """-> [B, 2 * num_pos_feats, h, w]."""
        mask = features.mask
        valid = ~mask
        y = valid.cumsum(1, dtype=torch.float32)  # [B, h, w]
        x = valid.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_end, x_end = y[:, -1:, :], x[:, :, -1:]
            if self.offset:
                y, x = y + self.offset, x + self.offset
            y = y / (y_end + eps) * self.scale
            x = x / (x_end + eps) * self.scale
        index = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        freq = self.temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / self.num_pos_feats)
        px = x[..., None] / freq  # [B, h, w, F]
        py = y[..., None] / freq
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingLearned(nn.Module):
    """Learned row and column tables (50 entries each), x half first then y half."""

    def __init__(self, num_pos_feats: int = 256):
        super().__init__()
        self.row_embed = nn.Embedding(50, num_pos_feats)
        self.col_embed = nn.Embedding(50, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, features: NestedTensor) -> Tensor:
        """-> [B, 2 * num_pos_feats, h, w]; feature maps larger than 50×50 are refused."""
        x = features.tensors
        h, w = x.shape[-2:]
        if h > 50 or w > 50:
            raise ValueError(f"learned position embedding covers at most 50x50 features, got {h}x{w}")
        cols = self.col_embed(torch.arange(w, device=x.device))  # [w, F]
        rows = self.row_embed(torch.arange(h, device=x.device))  # [h, F]
        pos = torch.cat((cols.unsqueeze(0).expand(h, -1, -1), rows.unsqueeze(1).expand(-1, w, -1)), dim=-1)
        return pos.permute(2, 0, 1).unsqueeze(0).expand(x.shape[0], -1, -1, -1)


def build_position_encoding(kind: str, hidden_dim: int) -> nn.Module:
    half = hidden_dim // 2
    if kind in ("sine", "v2"):
        return PositionEmbeddingSine(half, normalize=True)
    if kind in ("learned", "v3"):
        return PositionEmbeddingLearned(half)
    raise ValueError(f"unknown position embedding {kind!r}; use 'sine' or 'learned'")
