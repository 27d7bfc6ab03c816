"""What every family's post-processing shares: the rows a prediction reports, and their boxes in pixels.

A family scores its class logits into `QueryScores` (``ModelFamily.score_queries``: a softmax over classes and
"no object" for DETR, sigmoids and a top-k over (query, class) pairs for Deformable DETR); `box_results` then
gathers each row's box and scales it to the image, the same for every family. COCO evaluation uses these
rows as they are (no threshold), and ``infer`` turns them into ``Detections``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .box_ops import box_cxcywh_to_xyxy

SizeLike = Tensor | Sequence[int]


@dataclass(frozen=True)
class QueryScores:
    """The rows a prediction reports for a batch, N per image.

    query_index [B, N] int64: the decoder query of each row (a sigmoid family may list a query more than
    once, with different classes); labels [B, N] int64 category ids; scores [B, N] the row's confidence;
    probs [B, N, K] the class probabilities of the row's query: K = C+1 with "no object" last (``scoring``
    "softmax"), or K = C independent probabilities ("sigmoid").
    """

    query_index: Tensor
    labels: Tensor
    scores: Tensor
    probs: Tensor
    scoring: str


@dataclass(frozen=True)
class BoxResults:
    """One image's rows: scores [N], labels [N] int64 category ids, boxes [N, 4] absolute xyxy pixels,
    query_index [N] the decoder query of each row."""

    scores: Tensor
    labels: Tensor
    boxes: Tensor
    query_index: Tensor


def size_pair(size: SizeLike, what: str) -> tuple[int, int]:
    """An (h, w) pair of positive ints from a tensor or a sequence; ValueError naming ``what`` otherwise."""
    values = size.tolist() if isinstance(size, Tensor) else list(size)
    if len(values) != 2:
        raise ValueError(f"{what}: expected an (h, w) pair, got {values}")
    h, w = (int(v) for v in values)
    if h <= 0 or w <= 0:
        raise ValueError(f"{what}: sizes must be positive, got (h, w) = ({h}, {w})")
    return h, w


def check_sizes(sizes: Tensor, batch: int, what: str) -> None:
    """Refuse anything but a [batch, 2] tensor of (h, w)."""
    if sizes.ndim != 2 or sizes.shape[1] != 2:
        raise ValueError(f"{what}: expected a [B, 2] tensor of (h, w), got shape {tuple(sizes.shape)}")
    if sizes.shape[0] != batch:
        raise ValueError(f"{what}: {sizes.shape[0]} sizes for a batch of {batch} images")


def boxes_in_pixels(boxes: Tensor, target_sizes: Tensor) -> Tensor:
    """[B, Q, 4] normalised cxcywh -> [B, Q, 4] absolute xyxy for images of ``target_sizes`` [B, 2] (h, w)."""
    img_h, img_w = target_sizes.to(boxes.dtype).unbind(1)
    scale = torch.stack([img_w, img_h, img_w, img_h], dim=1)  # [B, 4]
    return box_cxcywh_to_xyxy(boxes) * scale[:, None, :]


@torch.no_grad()
def box_results(scores: QueryScores, pred_boxes: Tensor, target_sizes: Tensor) -> list[BoxResults]:
    """Each row's box, in pixels of its image. pred_boxes [B, Q, 4] normalised cxcywh; target_sizes [B, 2]
    (h, w) the size the boxes are scaled to (the original image for COCO evaluation)."""
    check_sizes(target_sizes, len(pred_boxes), "post-processing target_sizes")
    xyxy = boxes_in_pixels(pred_boxes, target_sizes)  # [B, Q, 4]
    index = scores.query_index.to(xyxy.device)  # [B, N]
    gathered = torch.gather(xyxy, 1, index[..., None].expand(-1, -1, 4))  # [B, N, 4]
    return [
        BoxResults(s, lab, b, q)
        for s, lab, b, q in zip(scores.scores, scores.labels, gathered, scores.query_index)
    ]
