"""``MSDeformAttn`` against a brute-force bilinear sampler written here: pixel (x, y) = loc · (W, H) − 0.5,
four neighbours weighted by their distances, zero outside the map (the CUDA kernel's rule), offsets divided
by (W, H) of each level, one softmax over levels × points per head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detr_studio.model.deformable_detr import sampling
from detr_studio.model.deformable_detr.encoder import encoder_reference_points
from detr_studio.model.deformable_detr.ms_deform_attn import MSDeformAttn
from detr_studio.model.deformable_detr.transformer import valid_ratios

SHAPES = [(6, 4), (3, 5), (2, 1)]  # non-square levels (h, w)


def bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """image [D, H, W]; x, y normalised -> [D], zero padding, align_corners=False."""
    _, h, w = image.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = np.zeros(image.shape[0])
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * image[:, yy, xx]
    return out


def brute_force(value: np.ndarray, shapes, locations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """value [N, S, H, D]; locations [N, Q, H, L, P, 2]; weights [N, Q, H, L, P] -> [N, Q, H·D]."""
    n, _, heads, dim = value.shape
    q, points = locations.shape[1], locations.shape[4]
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = np.zeros((n, q, heads, dim))
    for b in range(n):
        for lv, (h, w) in enumerate(shapes):
            maps = value[b, starts[lv] : starts[lv + 1]].reshape(h, w, heads, dim).transpose(2, 3, 0, 1)
            for i in range(q):
                for m in range(heads):
                    for p in range(points):
                        x, y = locations[b, i, m, lv, p]
                        out[b, i, m] += weights[b, i, m, lv, p] * bilinear(maps[m], x, y)
    return out.reshape(n, q, heads * dim)


def _inputs(n=2, q=5, heads=2, dim=3, points=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in SHAPES)
    value = torch.rand(n, s, heads, dim, generator=g, dtype=torch.float64)
    offsets = torch.randn(n, q, heads, len(SHAPES), points, 2, generator=g, dtype=torch.float64) * 2
    weights = torch.rand(n, q, heads, len(SHAPES), points, generator=g, dtype=torch.float64)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    return value, offsets, weights


def _point_locations(refs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """refs [N, Q, L, 2], offsets [N, Q, H, L, P, 2] -> locations: ref + offset / (W, H) of the level."""
    norm = torch.tensor([[w, h] for h, w in SHAPES], dtype=offsets.dtype)  # [L, 2] (W, H)
    return refs[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]


def test_points_on_and_beyond_the_borders():
    value, offsets, weights = _inputs()
    refs = torch.tensor([0.0, 1.0, -0.2, 1.3, 0.5, 0.999, 0.001, 1.0 / 8, 0.75, 1.1], dtype=torch.float64)
    refs = refs.view(1, 5, 1, 2).expand(2, 5, len(SHAPES), 2).contiguous()
    offsets[:, 0] = 0.0  # exactly on the corner (0, 1) of every level
    got = sampling.deformable_sample(value, SHAPES, refs, offsets, weights)
    want = brute_force(value.numpy(), SHAPES, _point_locations(refs, offsets).numpy(), weights.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    far = refs.clone()
    far[..., 0] = 3.0  # every point far outside: all samples read zeros
    zero = sampling.deformable_sample(value, SHAPES, far, torch.zeros_like(offsets), weights)
    assert torch.count_nonzero(zero) == 0


def test_box_references_scale_the_offsets_by_the_box():
    value, offsets, weights = _inputs(seed=1)
    g = torch.Generator().manual_seed(3)
    boxes = torch.rand(2, 5, 1, 4, generator=g, dtype=torch.float64).expand(2, 5, len(SHAPES), 4).contiguous()
    points = offsets.shape[-2]
    loc = boxes[:, :, None, :, None, :2] + offsets / points * boxes[:, :, None, :, None, 2:] * 0.5
    got = sampling.deformable_sample(value, SHAPES, boxes, offsets, weights)
    np.testing.assert_allclose(
        got.numpy(), brute_force(value.numpy(), SHAPES, loc.numpy(), weights.numpy()), atol=1e-12
    )


def test_module_with_padding_and_different_valid_ratios(monkeypatch):
    """The whole module on a batch whose two images have different valid extents: padded values are
    zeroed, encoder reference points follow each image's valid ratios, and chunked queries change nothing."""
    torch.manual_seed(0)
    heads, points, d = 2, 3, 8
    module = MSDeformAttn(d, len(SHAPES), heads, points).double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    masks = []
    for valid in [(1.0, 1.0), (0.5, 0.75)]:  # (height, width) fraction of each image that is real
        per_level = []
        for h, w in SHAPES:
            m = torch.ones(h, w, dtype=torch.bool)
            m[: max(1, round(h * valid[0])), : max(1, round(w * valid[1]))] = False
            per_level.append(m)
        masks.append(per_level)
    level_masks = [torch.stack([masks[b][lv] for b in range(2)]) for lv in range(len(SHAPES))]
    ratios = torch.stack([valid_ratios(m) for m in level_masks], 1).double()  # [N, L, 2]
    assert not torch.equal(ratios[0], ratios[1])
    refs = encoder_reference_points(SHAPES, ratios)  # [N, S, L, 2]
    s = refs.shape[1]
    x = torch.randn(2, s, d, dtype=torch.float64)
    pad = torch.cat([m.flatten(1) for m in level_masks], 1)  # [N, S]
    got = module(x, refs, x, SHAPES, pad)

    with torch.no_grad():
        value = module.value_proj(x).masked_fill(pad[..., None], 0.0).view(2, s, heads, d // heads)
        offsets = module.sampling_offsets(x).view(2, s, heads, len(SHAPES), points, 2)
        weights = (
            module.attention_weights(x)
            .view(2, s, heads, -1)
            .softmax(-1)
            .view(2, s, heads, len(SHAPES), points)
        )
        read = brute_force(value.numpy(), SHAPES, _point_locations(refs, offsets).numpy(), weights.numpy())
        want = module.output_proj(torch.from_numpy(read))
    np.testing.assert_allclose(got.detach().numpy(), want.numpy(), atol=1e-10)

    monkeypatch.setattr(sampling, "QUERY_CHUNK", 7)
    with torch.no_grad():
        lean = module(x, refs, x, SHAPES, pad)
    np.testing.assert_allclose(lean.numpy(), got.detach().numpy(), atol=1e-12)


def test_reference_points_follow_each_images_valid_extent():
    ratios = torch.tensor([[[1.0, 1.0]], [[0.5, 0.25]]])  # [N, L=1, 2] (w, h)
    refs = encoder_reference_points([(4, 2)], ratios)  # [N, 8, 1, 2]
    assert torch.allclose(refs[0, 0, 0], torch.tensor([0.25, 0.125]))
    # normalised by the valid extent, then scaled by the valid ratio again: (0.5 / (0.5·2)) · 0.5
    assert torch.allclose(refs[1, 0, 0], torch.tensor([0.25, 0.125]))


def test_initial_offsets_form_the_published_grid():
    module = MSDeformAttn(256, 4, 8, 4)
    bias = module.sampling_offsets.bias.view(8, 4, 4, 2)  # [H, L, P, 2]
    directions = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
    for h, (dx, dy) in enumerate(directions):
        for p in range(4):
            assert torch.allclose(
                bias[h, :, p], torch.tensor([dx, dy], dtype=torch.float32) * (p + 1), atol=1e-6
            )
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    assert torch.count_nonzero(module.attention_weights.weight) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_reduced_precision_keeps_locations_in_float32(dtype):
    """Under bf16 the offsets come out of a bf16 linear, but locations and sampling run in float32."""
    value, offsets, weights = _inputs(seed=4)
    refs = torch.rand(2, 5, len(SHAPES), 2, dtype=torch.float64)
    want = sampling.deformable_sample(value.float(), SHAPES, refs.float(), offsets.float(), weights.float())
    got = sampling.deformable_sample(
        value.to(dtype), SHAPES, refs.float(), offsets.to(dtype), weights.float()
    )
    assert got.dtype == dtype
    assert (got.float() - want).abs().max() < 0.05
