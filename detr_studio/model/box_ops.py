"""Box utilities: format conversion, IoU, generalised IoU and boxes from masks.

Boxes are either ``cxcywh`` (centre, width, height; what the network predicts, normalised to the
image) or ``xyxy`` (corners; what users and COCO evaluation see, usually in pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """[..., 4] (x0, y0, x1, y1) -> COCO [..., 4] (x, y, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0, y0, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """[N, 4] xyxy -> [N] areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of [N, 4] and [M, 4] xyxy boxes -> ([N, M] IoU, [N, M] union area)."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2 - inter
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019) of [N, 4] and [M, 4] xyxy boxes -> [N, M].

    Degenerate boxes (x1 < x0 or y1 < y0, or NaN) would give meaningless values, so they are refused
    with a ValueError instead of the reference implementation's bare assert.
    """
    if not bool((boxes1[:, 2:] >= boxes1[:, :2]).all()):
        raise ValueError("generalized_box_iou: first boxes are degenerate or not finite")
    if not bool((boxes2[:, 2:] >= boxes2[:, :2]).all()):
        raise ValueError("generalized_box_iou: second boxes are degenerate or not finite")
    iou, union = box_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def masks_to_boxes(masks: Tensor) -> Tensor:
    """[N, H, W] binary masks -> [N, 4] xyxy boxes in pixel indices (inclusive max, as the reference).

    An empty mask gives the box (0, 0, 0, 0).
    """
    if masks.numel() == 0:
        return torch.zeros((0, 4), device=masks.device)
    h, w = masks.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32, device=masks.device)
    xs = torch.arange(w, dtype=torch.float32, device=masks.device)
    on = masks.bool()
    big = torch.tensor(1e8, device=masks.device)
    x_on = on.any(1)  # [N, W]
    y_on = on.any(2)  # [N, H]
    x_max = torch.where(x_on, xs, torch.zeros_like(xs)).amax(-1)
    x_min = torch.where(x_on, xs, big).amin(-1)
    y_max = torch.where(y_on, ys, torch.zeros_like(ys)).amax(-1)
    y_min = torch.where(y_on, ys, big).amin(-1)
    empty = ~on.flatten(1).any(1)
    boxes = torch.stack((x_min, y_min, x_max, y_max), dim=1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)
