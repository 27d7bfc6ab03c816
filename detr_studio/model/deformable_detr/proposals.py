"""Two-stage Deformable DETR: every encoder position proposes a box, and the best ones seed the decoder.

Proposal of a position on level l: its pixel centre over the valid extent, width and height 0.05·2^l,
as logits (inverse sigmoid). Padded positions and proposals with any coordinate outside (0.01, 0.99) get
+inf logits and zero memory. The decoder's queries then come from the 128-feature-per-coordinate sine
encoding of the chosen boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def encoder_output_proposals(
    memory: Tensor, padding_mask: Tensor, shapes: Sequence[tuple[int, int]]
) -> tuple[Tensor, Tensor]:
    """memory [N, S, C]; padding_mask [N, S] (True = padding) -> (memory with padded and invalid
    positions zeroed [N, S, C], proposals as logits [N, S, 4] (cx, cy, w, h), +inf where invalid)."""
    n = memory.shape[0]
    proposals = []
    start = 0
    for level, (h, w) in enumerate(shapes):
        pad = padding_mask[:, start : start + h * w].view(n, h, w)
        start = start + h * w
        valid_h = (~pad[:, :, 0]).sum(1)  # [N]
        valid_w = (~pad[:, 0, :]).sum(1)
        ys = torch.arange(h, dtype=torch.float32, device=memory.device)  # = linspace(0, h - 1, h)
        xs = torch.arange(w, dtype=torch.float32, device=memory.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)  # [h, w, 2]
        scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(n, 1, 1, 2)
        grid = (grid.unsqueeze(0).expand(n, -1, -1, -1) + 0.5) / scale  # [N, h, w, 2]
        wh = torch.ones_like(grid) * 0.05 * (2.0**level)
        proposals.append(torch.cat((grid, wh), -1).view(n, -1, 4))
    output_proposals = torch.cat(proposals, 1)  # [N, S, 4]
    valid = ((output_proposals > 0.01) & (output_proposals < 0.99)).all(-1, keepdim=True)  # [N, S, 1]
    output_proposals = torch.log(output_proposals / (1 - output_proposals))
    output_proposals = output_proposals.masked_fill(padding_mask.unsqueeze(-1), float("inf"))
    output_proposals = output_proposals.masked_fill(~valid, float("inf"))
    output_memory = memory.masked_fill(padding_mask.unsqueeze(-1), 0.0)
    output_memory = output_memory.masked_fill(~valid, 0.0)
    return output_memory, output_proposals


def proposal_pos_embed(proposals: Tensor, num_pos_feats: int, temperature: float = 10000) -> Tensor:
    """Box logits [N, Q, 4] -> sine encoding [N, Q, 4·num_pos_feats] (128 at width 256: 512 = 2·d_model) of sigmoid(box)·2π, coordinate by
    coordinate (cx, cy, w, h), sin and cos interleaved; computed in float32."""
    scale = 2 * math.pi
    index = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
    dim_t = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_pos_feats)
    pos = proposals.float().sigmoid() * scale
    pos = pos[:, :, :, None] / dim_t  # [N, Q, 4, F]
    return torch.stack((pos[:, :, :, 0::2].sin(), pos[:, :, :, 1::2].cos()), dim=4).flatten(2)
