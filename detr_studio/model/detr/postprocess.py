"""DETR's post-processing: one softmax over the classes and "no object", and the instance masks.

Both reproduce the official implementation exactly, quirks included (shared reference facts, §3): every query
reports its best real class (the no-object column is dropped before the argmax), no threshold, no top-k. The
panoptic step is in ``panoptic.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..family import SOFTMAX
from ..postprocess import QueryScores, check_sizes, size_pair


def softmax_scores(logits: Tensor) -> QueryScores:
    """[B, Q, C+1] logits (no-object last) -> one row per query: its best real class and that class's
    probability; ``probs`` the full softmax [B, Q, C+1]. A query whose top class is no-object still
    reports its best real class, with a low score."""
    probs = F.softmax(logits, -1)  # [B, Q, C+1]
    scores, labels = probs[..., :-1].max(-1)  # [B, Q]
    b, q = scores.shape
    index = torch.arange(q, device=logits.device).expand(b, q)
    return QueryScores(index, labels, scores, probs, SOFTMAX)


@torch.no_grad()
def instance_masks(
    outputs: Mapping[str, Tensor],
    orig_target_sizes: Tensor,
    max_target_sizes: Tensor,
    threshold: float = 0.5,
) -> list[Tensor]:
    """A binary mask per query of each image (the reference's ``PostProcessSegm``): [Q, 1, H0, W0] uint8.

    outputs["pred_masks"]: [B, Q, h, w] mask logits (stride 4 of the padded batch; [B, Q, 1, h, w] is
    accepted too). max_target_sizes: [B, 2] (h, w) network input size of each image before padding;
    orig_target_sizes: [B, 2] (h, w) size of the result. The masks are upsampled to the largest input
    size of the batch, thresholded, cropped to each image's own input size, then nearest-resized to its
    original size.
    """
    masks = outputs["pred_masks"]
    if masks.ndim == 5 and masks.shape[2] == 1:
        masks = masks[:, :, 0]
    if masks.ndim != 4:
        raise ValueError(f"instance masks: pred_masks must be [B, Q, h, w], got shape {tuple(masks.shape)}")
    batch = len(masks)
    check_sizes(orig_target_sizes, batch, "instance masks orig_target_sizes")
    check_sizes(max_target_sizes, batch, "instance masks max_target_sizes")
    max_h, max_w = (int(v) for v in max_target_sizes.max(0)[0].tolist())
    up = F.interpolate(masks, size=(max_h, max_w), mode="bilinear", align_corners=False)  # [B, Q, Hm, Wm]
    binary = up.sigmoid() > threshold
    out = []
    for cur, size, orig in zip(binary, max_target_sizes, orig_target_sizes):
        img_h, img_w = size_pair(size, "instance masks max_target_sizes")
        cropped = cur[:, :img_h, :img_w].unsqueeze(1).float()  # [Q, 1, h, w]
        orig_hw = size_pair(orig, "instance masks orig_target_sizes")
        out.append(F.interpolate(cropped, size=orig_hw, mode="nearest").byte())  # [Q, 1, H0, W0]
    return out
