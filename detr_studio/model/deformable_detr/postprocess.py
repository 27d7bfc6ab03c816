"""Post-processing of Deformable DETR outputs, as the official ``PostProcess``: sigmoid over every class
of every query, the top ``k`` (query, class) pairs of the image, label = pair index mod num_classes (the
COCO category id for COCO models). No threshold and no NMS: one query may appear with several labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..box_ops import box_cxcywh_to_xyxy

TOP_K = 100


@dataclass(frozen=True)
class TopDetections:
    """The kept (query, class) pairs of one image, best first."""

    scores: Tensor  # [K] sigmoid probabilities
    labels: Tensor  # [K] class indices (COCO category ids for COCO models)
    boxes: Tensor  # [K, 4] xyxy in the pixels of ``target_size``
    queries: Tensor  # [K] the query each pair comes from


def top_detections(
    logits: Tensor, boxes: Tensor, target_sizes: Tensor, k: int = TOP_K
) -> list[TopDetections]:
    """logits [B, Q, C]; boxes [B, Q, 4] normalised cxcywh; target_sizes [B, 2] (height, width) ->
    one ``TopDetections`` per image, with k = min(k, Q·C) pairs."""
    b, q, c = logits.shape
    prob = logits.float().sigmoid().view(b, q * c)
    scores, index = prob.topk(min(k, q * c), dim=1)  # [B, K]
    queries = torch.div(index, c, rounding_mode="floor")
    labels = index % c
    xyxy = box_cxcywh_to_xyxy(boxes.float())  # [B, Q, 4]
    picked = torch.gather(xyxy, 1, queries.unsqueeze(-1).expand(-1, -1, 4))  # [B, K, 4]
    h, w = target_sizes.float().unbind(1)
    picked = picked * torch.stack([w, h, w, h], 1)[:, None, :]
    return [TopDetections(scores[i], labels[i], picked[i], queries[i]) for i in range(b)]
