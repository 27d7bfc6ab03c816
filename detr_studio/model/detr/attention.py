"""DETR's attention for the window: decoder cross-attention maps per query, encoder attention on demand.

One forward records, per image:
- the last decoder layer's cross-attention, [heads, Q, h, w] (small: Q maps of the feature grid);
- the last encoder layer's attention *inputs*: its queries and keys per head, [heads, n, d] each for the
  n = h * w real (unpadded) cells. The encoder attention of a cell is computed from them when the user probes
  it (`EncoderProbe`): one row of the n × n map, never the whole map, which at 800 pixels and stride 8 would be
  gigabytes per image. The probe equals what the layer computed (the same projections and the same softmax over
  the real cells), up to float rounding.

The forward itself keeps PyTorch's fused attention for the encoder (no weights are asked of it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..family import ATTENTION_MAPS, AttentionCapture, ImageAttention
from ..nested import pad_mask_to

_ROWS_PER_CHUNK = 256  # rows of the n × n map computed at once when every row's normaliser is needed


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


class EncoderProbe:
    """The last encoder layer's self-attention of one image, computed one cell at a time.

    ``queries`` (already scaled by 1/sqrt(d)) and ``keys``: [heads, n, d] float32 for the n = h * w real
    cells in row-major order; ``grid``: (h, w).
    """

    def __init__(self, queries: np.ndarray, keys: np.ndarray, grid: tuple[int, int]):
        if queries.shape != keys.shape or queries.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"encoder probe: queries {queries.shape} and keys {keys.shape} for grid {grid}")
        self.queries = queries
        self.keys = keys
        self.grid = grid
        self._row_lse: np.ndarray | None = None  # [heads, n], computed on the first "to" probe

    @property
    def nbytes(self) -> int:
        return int(self.queries.nbytes + self.keys.nbytes)

    def attention_from(self, cell: int) -> np.ndarray:
        """[heads, h, w]: where cell ``cell`` (row-major index) looks; each head's map sums to 1."""
        logits = np.einsum("hd,hnd->hn", self.queries[:, cell], self.keys)  # [heads, n]
        weights = np.exp(logits - _logsumexp(logits, 1)[:, None])
        return weights.reshape(-1, *self.grid)

    def attention_to(self, cell: int) -> np.ndarray:
        """[heads, h, w]: how much every cell looks at cell ``cell``."""
        if self._row_lse is None:
            parts = []
            for start in range(0, self.queries.shape[1], _ROWS_PER_CHUNK):
                block = np.einsum("hqd,hnd->hqn", self.queries[:, start : start + _ROWS_PER_CHUNK], self.keys)
                parts.append(_logsumexp(block, 2))  # [heads, rows]
            self._row_lse = np.concatenate(parts, axis=1)  # [heads, n]
        logits = np.einsum("hnd,hd->hn", self.queries, self.keys[:, cell])  # [heads, n]
        return np.exp(logits - self._row_lse).reshape(-1, *self.grid)


class AttentionMaps(ImageAttention):
    """Attention of the last encoder and decoder layers, cropped to the image's own feature cells.

    ``decoder``: [heads, Q, h, w] cross-attention of each query over the feature map.
    ``encoder``: an `EncoderProbe` (the encoder's attention at any cell, on demand), or None.
    ``stride``: input pixels per feature cell; ``scale``: original pixels per input pixel (y, x).
    """

    kind = ATTENTION_MAPS

    def __init__(
        self, decoder: np.ndarray, encoder: EncoderProbe | None, stride: int, scale: tuple[float, float]
    ):
        self.decoder = decoder
        self.encoder = encoder
        self.stride = stride
        self.scale = scale

    @property
    def feature_size(self) -> tuple[int, int]:
        return int(self.decoder.shape[-2]), int(self.decoder.shape[-1])

    @property
    def nbytes(self) -> int:
        return int(self.decoder.nbytes) + (self.encoder.nbytes if self.encoder is not None else 0)

    def decoder_map(self, query: int, head: int | None = None) -> np.ndarray:
        """[h, w] where decoder query ``query`` looks; mean over heads unless ``head`` is given."""
        maps = self.decoder[:, query].astype(np.float32)
        return maps.mean(0) if head is None else maps[head]

    def cell_at(self, x: float, y: float) -> tuple[int, int]:
        """Feature cell (row, col) under the original-image pixel (x, y)."""
        h, w = self.feature_size
        row = int(y / self.scale[0] // self.stride)
        col = int(x / self.scale[1] // self.stride)
        return min(max(row, 0), h - 1), min(max(col, 0), w - 1)

    def encoder_map(self, x: float, y: float, head: int | None = None, direction: str = "from") -> np.ndarray:
        """[h, w] encoder self-attention at original-image pixel (x, y), computed now for that cell.

        ``direction="from"``: where that location looks; ``"to"``: how much every location looks at it.
        """
        if self.encoder is None:
            raise ValueError("encoder attention was not recorded")
        row, col = self.cell_at(x, y)
        cell = row * self.feature_size[1] + col
        if direction == "from":
            maps = self.encoder.attention_from(cell)
        elif direction == "to":
            maps = self.encoder.attention_to(cell)
        else:
            raise ValueError("direction must be 'from' or 'to'")
        maps = maps.astype(np.float32)
        return maps.mean(0) if head is None else maps[head]


class DetrAttentionCapture(AttentionCapture):
    """Records the last decoder layer's cross-attention and the last encoder layer's queries and keys."""

    def __init__(self, detr: nn.Module):
        self.dec = detr.transformer.decoder.layers[-1]
        self.dec.record_attention = True
        self.stride = detr.backbone[0].stride
        layers = detr.transformer.encoder.layers
        self.enc = layers[-1] if len(layers) else None
        self._qk: tuple[Tensor, Tensor] | None = None  # q [HW, B, C] (scaled), k [HW, B, C]
        self.feature_hw: tuple[int, int] | None = None
        self._hooks = [detr.input_proj.register_forward_hook(self._on_features)]
        if self.enc is not None:
            self._hooks.append(self.enc.register_forward_pre_hook(self._on_encoder))

    def _on_features(self, _module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        self.feature_hw = (int(output.shape[-2]), int(output.shape[-1]))  # output [B, C, h, w]

    def _on_encoder(self, layer: nn.Module, args: tuple) -> None:
        src, _key_padding_mask, pos = args  # [HW, B, C], [B, HW], [HW, B, C]
        x = layer.norm1(src) if layer.normalize_before else src
        qk = x if pos is None else x + pos
        attn = layer.self_attn
        c = attn.embed_dim
        weight, bias = attn.in_proj_weight.float(), attn.in_proj_bias.float()
        q = torch.nn.functional.linear(qk.float(), weight[:c], bias[:c])  # [HW, B, C]
        k = torch.nn.functional.linear(qk.float(), weight[c : 2 * c], bias[c : 2 * c])
        self._qk = (q * (c // attn.num_heads) ** -0.5, k)

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.dec.record_attention = False

    def collect(
        self,
        pad_mask: Tensor,
        input_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[AttentionMaps]:
        self.close()
        dec = self.dec.last_attention  # [B, heads, Q, HW]
        self.dec.last_attention = None
        qk, self._qk = self._qk, None
        if dec is None or self.feature_hw is None:
            raise RuntimeError("attention was not recorded; is this a DETR model?")
        heads = dec.shape[1]
        h, w = self.feature_hw
        feature_pad = pad_mask_to(pad_mask.to(dec.device), (h, w))  # [B, h, w], as the backbone shrinks it
        maps = []
        for i, ((in_h, in_w), (orig_h, orig_w)) in enumerate(zip(input_sizes, original_sizes)):
            valid = ~feature_pad[i]
            vh, vw = int(valid[:, 0].sum()), int(valid[0].sum())
            d = dec[i].float().view(heads, -1, h, w)[:, :, :vh, :vw]
            probe = None
            if qk is not None:
                q, k = (t[:, i].view(h, w, heads, -1)[:vh, :vw].reshape(vh * vw, heads, -1) for t in qk)
                probe = EncoderProbe(
                    q.transpose(0, 1).contiguous().cpu().numpy(),
                    k.transpose(0, 1).contiguous().cpu().numpy(),
                    (vh, vw),
                )
            maps.append(
                AttentionMaps(
                    decoder=d.to(torch.float16).cpu().numpy(),
                    encoder=probe,
                    stride=self.stride,
                    scale=(orig_h / in_h, orig_w / in_w),
                )
            )
        return maps
