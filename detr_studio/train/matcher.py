"""Hungarian matching between DETR's predictions and each image's ground-truth objects.

Every target object is paired with exactly one query (when there are at least as many queries as
objects) so that the summed matching cost is smallest. The cost of pairing query ``q`` with object ``t``
is the reference's::

    cost_bbox * L1(box_q, box_t) - cost_class * p_q(label_t) - cost_giou * GIoU(box_q, box_t)

The costs of the whole batch are computed in one go on the model's device, copied to the CPU once, and
each image's block is solved with ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from detr_studio.model.box_ops import box_cxcywh_to_xyxy, generalized_box_iou

Targets = Sequence[Mapping[str, Tensor]]
MatchIndices = list[tuple[Tensor, Tensor]]


class NonFinitePredictionError(FloatingPointError):
    """The network produced NaN or infinite logits or boxes (training has diverged)."""


def _empty_indices() -> tuple[Tensor, Tensor]:
    return torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)


def _prediction_tensors(outputs: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """Check and return ("pred_logits" [B, Q, C+1], "pred_boxes" [B, Q, 4])."""
    for key in ("pred_logits", "pred_boxes"):
        if key not in outputs:
            raise KeyError(f"matcher: the model outputs have no {key!r} (keys: {sorted(outputs)})")
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    if logits.dim() != 3 or logits.shape[-1] < 2:
        raise ValueError(f"matcher: pred_logits must be [B, Q, C+1] with C >= 1, got {tuple(logits.shape)}")
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or boxes.shape[:2] != logits.shape[:2]:
        raise ValueError(
            f"matcher: pred_boxes must be [B, Q, 4] matching pred_logits {tuple(logits.shape)}, "
            f"got {tuple(boxes.shape)}"
        )
    return logits, boxes


def check_targets(targets: Targets, batch_size: int) -> list[int]:
    """Check the structure of every target dict and return the number of objects per image.

    Raises ValueError or KeyError naming the first bad target.
    """
    if len(targets) != batch_size:
        raise ValueError(f"matcher: {len(targets)} targets for a batch of {batch_size} predictions")
    sizes = []
    for i, target in enumerate(targets):
        for key in ("labels", "boxes"):
            if key not in target:
                raise KeyError(f"matcher: target {i} has no {key!r} (keys: {sorted(target)})")
        labels, boxes = target["labels"], target["boxes"]
        if labels.dim() != 1 or boxes.dim() != 2 or boxes.shape[-1] != 4 or len(labels) != len(boxes):
            raise ValueError(
                f"matcher: target {i} needs labels [n] and boxes [n, 4], "
                f"got labels {tuple(labels.shape)} and boxes {tuple(boxes.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"matcher: target {i} labels must be integer class ids, got {labels.dtype}")
        sizes.append(len(labels))
    return sizes


def _label_problem(labels: Tensor, sizes: Sequence[int], num_classes: int) -> ValueError | None:
    """A ValueError naming the first class id outside [0, num_classes), or None."""
    bad_mask = (labels < 0) | (labels >= num_classes)
    if not bool(bad_mask.any()):
        return None
    bad = int(bad_mask.nonzero()[0, 0])
    image = int(np.searchsorted(np.cumsum(sizes), bad, side="right"))
    value = int(labels[bad])
    hint = " (the no-object index)" if value == num_classes else ""
    return ValueError(
        f"matcher: target {image} has class id {value}{hint}, outside [0, {num_classes}); num_classes must be "
        "the largest category id + 1"
    )


def _explain(
    logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor, sizes: Sequence[int]
) -> Exception:
    """Find out why the inputs cannot be matched and return the exception to raise (the slow path)."""
    if not bool(torch.isfinite(logits).all()) or not bool(torch.isfinite(boxes).all()):
        return NonFinitePredictionError("matcher: the model predicted NaN or infinite logits or boxes")
    label_error = _label_problem(tgt_labels, sizes, logits.shape[-1] - 1)
    if label_error is not None:
        return label_error
    bad_tgt = ~torch.isfinite(tgt_boxes).all(-1) | (tgt_boxes[:, 2:] < 0).any(-1)
    if bool(bad_tgt.any()):
        bad = int(bad_tgt.nonzero()[0, 0])
        image = int(np.searchsorted(np.cumsum(sizes), bad, side="right"))
        within = bad - int(sum(sizes[:image]))
        return ValueError(
            f"matcher: target {image} box {within} is not a valid cxcywh box "
            f"(NaN, infinite or negative size): {tgt_boxes[bad].tolist()}"
        )
    if bool((boxes[..., 2:] < 0).any()):
        return ValueError("matcher: the model predicted boxes with negative width or height")
    return NonFinitePredictionError(
        "matcher: the matching cost is NaN or infinite (a zero-area predicted box on a zero-area target box?)"
    )


def _problem_flags(logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor) -> Tensor:
    """One bool per way the inputs can be wrong, computed on the device: [4].

    Non-finite logits are not looked for here (a full pass over them); they make the cost non-finite,
    which is checked on the host.
    """
    num_classes = logits.shape[-1] - 1
    return torch.stack(
        (
            ~torch.isfinite(boxes).all(),
            ((tgt_labels < 0) | (tgt_labels >= num_classes)).any(),
            ~torch.isfinite(tgt_boxes).all() | (tgt_boxes[:, 2:] < 0).any(),
            (boxes[..., 2:] < 0).any(),
        )
    )


def _batched_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of every box in [B, Q, 4] xyxy with every box of the same batch row in [B, n, 4] -> [B, Q, n].

    The same arithmetic as ``box_ops.generalized_box_iou``, per batch row; the caller checks the boxes.
    """
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])  # [B, Q]
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])  # [B, n]
    a, b = boxes1[:, :, None, :], boxes2[:, None, :, :]  # [B, Q, 1, 4], [B, 1, n, 4]
    inter_wh = (torch.min(a[..., 2:], b[..., 2:]) - torch.max(a[..., :2], b[..., :2])).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]  # [B, Q, n]
    union = area1[:, :, None] + area2[:, None, :] - inter
    iou = inter / union
    hull_wh = (torch.max(a[..., 2:], b[..., 2:]) - torch.min(a[..., :2], b[..., :2])).clamp(min=0)
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def matching_cost(
    logits: Tensor,
    boxes: Tensor,
    tgt_labels: Tensor,
    tgt_boxes: Tensor,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> Tensor:
    """The cost of pairing each prediction with each target object.

    logits [M, C+1], boxes [M, 4] (cxcywh), tgt_labels [N], tgt_boxes [N, 4] (cxcywh) -> cost [M, N].
    Computed in float32 whatever the input precision. Raises ValueError on degenerate boxes.
    """
    prob = logits.float().softmax(-1)  # [M, C+1]
    boxes = boxes.float()
    tgt_boxes = tgt_boxes.float()
    class_term = -prob[:, tgt_labels]  # [M, N]
    l1_term = torch.cdist(boxes, tgt_boxes, p=1)  # [M, N]
    giou_term = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))  # [M, N]
    return cost_bbox * l1_term + cost_class * class_term + cost_giou * giou_term


def _solve(cost: np.ndarray) -> tuple[Tensor, Tensor]:
    """One image's [Q, n] cost block -> (query indices, target indices), int64, sorted by query."""
    if cost.shape[1] == 0:
        return _empty_indices()
    rows, cols = linear_sum_assignment(cost)
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


class HungarianMatcher(nn.Module):
    """Optimal one-to-one assignment of queries to target objects, per image.

    forward(outputs, targets) with outputs {"pred_logits": [B, Q, C+1], "pred_boxes": [B, Q, 4]} and
    targets a list of B dicts {"labels": [n_i] int64, "boxes": [n_i, 4] normalised cxcywh}
    -> a list of B pairs (query indices [k_i], target indices [k_i]), int64 on the CPU, sorted by query,
    with k_i = min(Q, n_i). An image without objects gets two empty tensors.

    The costs are those of the reference, computed for the whole batch at once on the model's device;
    unlike the reference, which builds the [B*Q, sum n_i] matrix of every query against every object of
    the batch and then keeps the diagonal blocks, only each image's own block is computed ([B, Q, max n_i],
    objects padded), which is up to B times less work and gives the same numbers.

    Raises NonFinitePredictionError when the predictions hold NaN or infinities, and ValueError
    (naming the image) for invalid targets.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: all matching costs are zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    @torch.no_grad()
    def forward(self, outputs: Mapping[str, Any], targets: Targets) -> MatchIndices:
        logits, boxes = _prediction_tensors(outputs)  # [B, Q, C+1], [B, Q, 4]
        batch_size = logits.shape[0]
        sizes = check_targets(targets, batch_size)
        if sum(sizes) == 0:
            return [_empty_indices() for _ in range(batch_size)]
        device = logits.device
        tgt_labels = torch.cat([t["labels"] for t in targets]).to(device)  # [N]
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(device)  # [N, 4]
        if bool(_problem_flags(logits, boxes, tgt_labels, tgt_boxes).any()):
            raise _explain(logits, boxes, tgt_labels, tgt_boxes, sizes)
        cost = self.padded_cost(logits, boxes, tgt_labels, tgt_boxes, sizes)  # [B, Q, max n_i]
        cost_np = cost.cpu().numpy()
        indices = []
        for i, n in enumerate(sizes):
            block = cost_np[i, :, :n]  # [Q, n_i], a view
            if not np.isfinite(block).all():
                raise _explain(logits, boxes, tgt_labels, tgt_boxes, sizes)
            indices.append(_solve(block))
        return indices

    def padded_cost(
        self, logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor, sizes: Sequence[int]
    ) -> Tensor:
        """Each image's cost block, objects padded to the largest count.

        logits [B, Q, C+1], boxes [B, Q, 4], tgt_labels [N], tgt_boxes [N, 4] (all images concatenated,
        ``sizes`` objects each) -> [B, Q, max n_i]; entries past an image's n_i are meaningless.
        """
        batch_size, num_queries = logits.shape[:2]
        width = max(sizes)
        # Where each object goes in the padded [B * width] layout, worked out on the host.
        slots = np.concatenate([np.arange(n) + i * width for i, n in enumerate(sizes)])
        slots_t = torch.from_numpy(slots).to(logits.device, non_blocking=True)
        labels = tgt_labels.new_zeros(batch_size * width)
        labels[slots_t] = tgt_labels  # (indexed assignment stays allowed under deterministic algorithms)
        # Padding boxes are a valid box (centre 0.5, size 0.5), so that no NaN appears in unused entries.
        padded_boxes = tgt_boxes.new_full((batch_size * width, 4), 0.5)
        padded_boxes[slots_t] = tgt_boxes
        labels = labels.view(batch_size, width)  # [B, n]
        padded_boxes = padded_boxes.view(batch_size, width, 4).float()  # [B, n, 4]
        prob = logits.float().softmax(-1)  # [B, Q, C+1]
        class_term = -prob.gather(2, labels[:, None, :].expand(batch_size, num_queries, width))  # [B, Q, n]
        pred_boxes = boxes.float()
        l1_term = torch.cdist(pred_boxes, padded_boxes, p=1)  # [B, Q, n]
        giou_term = -_batched_generalized_box_iou(
            box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(padded_boxes)
        )  # [B, Q, n]
        return self.cost_bbox * l1_term + self.cost_class * class_term + self.cost_giou * giou_term

    def extra_repr(self) -> str:
        return f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou}"
