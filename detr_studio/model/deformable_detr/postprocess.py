"""Deformable DETR's scoring, as the official ``PostProcess``: a sigmoid over every class of every query, the
top ``k`` (query, class) pairs of the image, label = pair index mod num_classes (the COCO category id for COCO
models). No threshold and no NMS: one query may appear with several labels. The boxes of the pairs are the
shared post-processing's (``model/postprocess.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..kinds import SIGMOID
from ..postprocess import QueryScores

TOP_K = 100


def sigmoid_scores(logits: Tensor, k: int = TOP_K) -> QueryScores:
    """[B, Q, C] class logits -> the best min(k, Q·C) (query, class) pairs of each image, best first: their
    query, label (index mod C) and sigmoid; ``probs`` [B, N, C] each pair's query's sigmoids."""
    b, q, c = logits.shape
    probs = logits.sigmoid()  # [B, Q, C]
    scores, index = probs.reshape(b, q * c).topk(min(k, q * c), dim=1)  # [B, N]
    queries = torch.div(index, c, rounding_mode="floor")
    labels = index % c
    rows = torch.gather(probs, 1, queries[..., None].expand(-1, -1, c))  # [B, N, C]
    return QueryScores(queries, labels, scores, rows, SIGMOID)
