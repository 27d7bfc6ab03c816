"""Raw network outputs -> ``Detections``: the one conversion both inference backends share."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..model.box_ops import box_cxcywh_to_xyxy
from ..model.postprocess import rgb2id
from .detections import AttentionMaps, Detections, PanopticResult


def outputs_to_detections(
    logits: Tensor,
    boxes: Tensor,
    original_sizes: Sequence[tuple[int, int]],
    sources: Sequence[str],
    panoptic: Sequence[dict] | None = None,
    attention: Sequence[AttentionMaps | None] | None = None,
) -> list[Detections]:
    """Raw DETR outputs of a batch -> one ``Detections`` per image, as the PyTorch backend builds them.

    logits [B, Q, C+1], boxes [B, Q, 4] normalised cxcywh; original_sizes (H, W) per image; panoptic:
    per image {"png_string", "segments_info"} from ``PostProcessPanoptic``, or None; attention: per image
    maps, or None.
    """
    logits, boxes = logits.detach().float().cpu(), boxes.detach().float().cpu()
    probs = logits.softmax(-1)  # [B, Q, C+1]
    scores, labels = probs[..., :-1].max(-1)  # [B, Q]
    sizes = torch.tensor(list(original_sizes), dtype=torch.float32)  # [B, 2]
    scale = torch.stack((sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]), dim=1)[:, None]  # [B, 1, 4]
    xyxy = box_cxcywh_to_xyxy(boxes) * scale  # [B, Q, 4]
    q = logits.shape[1]
    results = []
    for i, (size, source) in enumerate(zip(original_sizes, sources)):
        results.append(
            Detections(
                image_size=(int(size[0]), int(size[1])),
                boxes=xyxy[i].numpy(),
                scores=scores[i].numpy(),
                labels=labels[i].numpy().astype(np.int64),
                probs=probs[i].numpy(),
                query_ids=np.arange(q),
                panoptic=None if panoptic is None else panoptic_result(panoptic[i]),
                attention=None if attention is None else attention[i],
                source=source,
            )
        )
    return results


def panoptic_result(raw: dict) -> PanopticResult:
    """The post-processor's {"png_string", "segments_info"} -> ``PanopticResult`` with its id map."""
    png = raw["png_string"]
    with Image.open(io.BytesIO(png)) as img:
        ids = rgb2id(np.asarray(img.convert("RGB")))
    return PanopticResult(ids=ids.astype(np.int32), segments_info=raw["segments_info"], png=png)
