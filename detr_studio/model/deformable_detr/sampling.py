"""Multi-scale deformable sampling in pure PyTorch: where each query looks, and the weighted bilinear read.

The maths of the official ``ms_deform_attn_core_pytorch`` and its CUDA kernel (``grid_sample`` with
``align_corners=False`` and zero padding on ``grid = 2·loc − 1``), arranged to be lean:

- levels are sampled one at a time and accumulated, so the stacked [N·H, D, Lq, L·P] tensor of the
  reference code is never built; outside autograd the weighting is done in place;
- outside autograd and tracing, long query sets (the encoder's) are processed in chunks of
  ``QUERY_CHUNK`` queries, which bounds the per-level sample buffer whatever the image size;
- sizes are read from tensor shapes only (no ``int()``, no shape lists turned into constants), so an ONNX
  graph traced at one size runs at any other;
- locations and the sampling run in float32 whatever the autocast dtype: a bf16 location is off by up to
  1/256 of the image.

Shapes: N batch, Lq queries, H heads, D channels per head, L levels, P points, S = Σ h_l·w_l.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

QUERY_CHUNK = 4096


def at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 when it already is (reduced precision never reaches the sampling)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def level_locations(reference_points: Tensor, offsets: Tensor, level: int, h: int, w: int) -> Tensor:
    """Sampling locations on one level, normalised to [0, 1] of the (padded) feature map.

    reference_points [N, Lq, L, 2] (x, y) or [N, Lq, L, 4] (cx, cy, w, h); offsets [N, Lq, H, L, P, 2]
    -> [N, Lq, H, P, 2]. Offsets are in pixels of the level for point references (divided by (w, h)),
    and in eighths of the box for box references (``/ P · wh · 0.5``).
    """
    offsets = at_least_fp32(offsets[:, :, :, level])  # [N, Lq, H, P, 2]
    ref = at_least_fp32(reference_points[:, :, None, level, None])  # [N, Lq, 1, 1, 2|4]
    if reference_points.shape[-1] == 2:
        x = ref[..., 0] + offsets[..., 0] / w
        y = ref[..., 1] + offsets[..., 1] / h
        return torch.stack((x, y), dim=-1)
    if reference_points.shape[-1] == 4:
        return ref[..., :2] + offsets / offsets.shape[-2] * ref[..., 2:] * 0.5
    raise ValueError(f"reference points must end in 2 or 4 coordinates, got {reference_points.shape[-1]}")


def _lean() -> bool:
    """True where in-place weighting and query chunks are safe: no autograd graph, no tracing, no export."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.compiler.is_compiling()


def _sample_level(value_l: Tensor, locations: Tensor, weights: Tensor, lean: bool) -> Tensor:
    """value_l [N·H, D, h, w]; locations [N·H, P, q, 2] in [0, 1]; weights [N·H, 1, P, q] -> [N·H, D, q].

    Points before queries: ``grid_sample`` then gives [N·H, D, P, q], and the weighted sum runs over a middle
    axis of whole [q] rows, which is many times faster (in PyTorch and ONNX Runtime alike) than a sum over a
    trailing axis of 4 points."""
    grid = 2 * locations - 1
    sampled = F.grid_sample(value_l, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.mul_(weights) if lean else sampled * weights  # [N·H, D, P, q]
    return sampled.sum(2)


def deformable_sample(
    value: Tensor,
    shapes: Sequence[tuple[int, int]],
    reference_points: Tensor,
    offsets: Tensor,
    weights: Tensor,
) -> Tensor:
    """The attention read of every query: Σ over levels and points of weight · bilinear(value, location).

    value [N, S, H, D] (zero at padded positions); shapes: (h_l, w_l) per level, as read from the feature
    maps; reference_points [N, Lq, L, 2|4]; offsets [N, Lq, H, L, P, 2]; weights [N, Lq, H, L, P]
    (softmax over L·P) -> [N, Lq, H·D] in value's dtype.
    """
    n, _, heads, dim = value.shape
    lq = offsets.shape[1]
    points = offsets.shape[-2]
    lean = _lean()
    chunk = QUERY_CHUNK if lean else lq
    maps = []
    start = 0
    for h, w in shapes:
        level = value[:, start : start + h * w]  # [N, h·w, H, D]
        start = start + h * w
        maps.append(at_least_fp32(level).permute(0, 2, 3, 1).reshape(n * heads, dim, h, w))  # [N·H, D, h, w]
    parts = []
    for q0 in range(0, lq, chunk):
        ref, off, att = (t[:, q0 : q0 + chunk] for t in (reference_points, offsets, weights))
        q = off.shape[1]
        att = at_least_fp32(att).permute(0, 2, 3, 4, 1)  # [N, H, L, P, q]
        total = None
        for level, (value_l, (h, w)) in enumerate(zip(maps, shapes)):
            loc = level_locations(ref, off, level, h, w).permute(0, 2, 3, 1, 4)  # [N, H, P, q, 2]
            loc = loc.reshape(n * heads, points, q, 2).to(value_l.dtype)
            wl = att[:, :, level].reshape(n * heads, 1, points, q).to(value_l.dtype)  # [N·H, 1, P, q]
            read = _sample_level(value_l, loc, wl, lean)  # [N·H, D, q]
            total = read if total is None else (total.add_(read) if lean else total + read)
        parts.append(total)
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)  # [N·H, D, Lq]
    return out.view(n, heads * dim, lq).transpose(1, 2).to(value.dtype)  # [N, Lq, H·D]
