"""Mask from a drawn box: DETR as its own click-to-segment assistant.

The user draws a box; the model's query whose predicted box overlaps it best (IoU) is chosen, and the model's
own mask head is run for that one query only (a mask-head model's ``forward(samples, select=...)`` computes
masks for the selected (image, query) rows, the same path panoptic prediction takes). The mask is
post-processed as the reference's instance masks are (``family.instance_masks``: bilinear upsampling to the
input, threshold 0.5, nearest resize to the image), so it is exactly that query's instance mask.
`Predictor.mask_from_box` runs it (on the inference worker's thread); a family without a mask head refuses
with a message naming it. `session.mask_from_box` turns the result into an annotation edit. torch is
imported where the model runs, so that the window can use `BoxMask` without it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class BoxMask:
    """The mask the model gives for a drawn box: ``mask`` [H, W] bool at the image's size; the chosen
    ``query_id``, its ``label`` and ``score`` (its best class), its predicted ``box`` (xyxy pixels) and that
    box's ``iou`` with the drawn one."""

    mask: np.ndarray
    query_id: int
    label: int
    score: float
    box: tuple[float, float, float, float]
    iou: float


def best_query(
    pred_boxes: Tensor, drawn_xyxy: tuple[float, float, float, float], image_hw: tuple[int, int]
) -> tuple[int, float, Tensor]:
    """(query, IoU, its xyxy box in pixels) of the predicted box [Q, 4] (normalised cxcywh) that best
    overlaps ``drawn_xyxy`` (pixels of an image of ``image_hw`` (H, W)); ties go to the lower query."""
    import torch

    from ..model.box_ops import box_cxcywh_to_xyxy, box_iou

    height, width = image_hw
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=pred_boxes.device)
    boxes = box_cxcywh_to_xyxy(pred_boxes.float()) * scale  # [Q, 4]
    drawn = torch.tensor([drawn_xyxy], dtype=torch.float32, device=pred_boxes.device)  # [1, 4]
    iou, _ = box_iou(boxes, drawn)
    iou = torch.nan_to_num(iou[:, 0], nan=0.0)  # [Q]
    query = int(torch.argmax(iou))
    return query, float(iou[query]), boxes[query]


class QueryChooser:
    """The ``select`` function for a mask-head forward: picks the query of image 0 that `best_query` names,
    and remembers it (``query``, ``iou``, ``box``)."""

    def __init__(self, drawn_xyxy: tuple[float, float, float, float], image_hw: tuple[int, int]):
        self.drawn = drawn_xyxy
        self.image_hw = image_hw
        self.query = -1
        self.iou = 0.0
        self.box: Tensor | None = None

    def __call__(self, outputs: dict[str, Tensor]) -> Tensor:
        """outputs "pred_boxes" [1, Q, 4] -> bool [1, Q] with only the chosen query set."""
        import torch

        boxes = outputs["pred_boxes"]
        self.query, self.iou, self.box = best_query(boxes[0], self.drawn, self.image_hw)
        chosen = torch.zeros(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        chosen[0, self.query] = True
        return chosen
