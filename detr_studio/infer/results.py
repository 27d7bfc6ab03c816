"""Raw network outputs -> ``Detections``: the one conversion both inference backends share.

The family scores the class logits (``ModelFamily.score_queries``: DETR's softmax, or a sigmoid family's top
(query, class) pairs) and the shared post-processing gathers each row's box in pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..model.family import ModelFamily
from ..model.kinds import ImageAttention
from ..model.postprocess import box_results
from .detections import Detections, PanopticResult


def outputs_to_detections(
    family: ModelFamily,
    logits: Tensor,
    boxes: Tensor,
    original_sizes: Sequence[tuple[int, int]],
    sources: Sequence[str],
    panoptic: Sequence[dict] | None = None,
    attention: Sequence[ImageAttention | None] | None = None,
) -> list[Detections]:
    """Raw outputs of a batch -> one ``Detections`` per image.

    logits [B, Q, K] (K = C+1 for softmax families, C for sigmoid ones), boxes [B, Q, 4] normalised cxcywh;
    original_sizes (H, W) per image; panoptic: per image {"png_string", "segments_info"} from the family's
    panoptic post-processor, or None; attention: per image, or None.
    """
    logits, boxes = logits.detach().float().cpu(), boxes.detach().float().cpu()
    scores = family.score_queries(logits)
    sizes = torch.tensor([list(s) for s in original_sizes], dtype=torch.float32)  # [B, 2] (h, w)
    rows = box_results(scores, boxes, sizes)
    return [
        Detections(
            image_size=(int(size[0]), int(size[1])),
            boxes=row.boxes.numpy(),
            scores=row.scores.numpy(),
            labels=row.labels.numpy().astype(np.int64),
            probs=scores.probs[i].numpy(),
            query_ids=row.query_index.numpy().astype(np.int64),
            panoptic=None if panoptic is None else panoptic_result(panoptic[i]),
            attention=None if attention is None else attention[i],
            source=source,
            scoring=scores.scoring,
        )
        for i, (row, size, source) in enumerate(zip(rows, original_sizes, sources))
    ]


def panoptic_result(raw: dict) -> PanopticResult:
    """The post-processor's {"png_string", "segments_info", "query_ids"} -> ``PanopticResult``."""
    queries = raw.get("query_ids")
    return PanopticResult(
        segments_info=raw["segments_info"],
        png=raw["png_string"],
        query_ids=tuple(int(q) for q in queries) if queries is not None else None,
    )
