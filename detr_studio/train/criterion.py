"""DETR's set-prediction loss: match queries to objects, then score classes, boxes and masks.

Follows the reference ``SetCriterion`` term by term (see shared/reference/detr-reference-facts.md §4.4):

- ``loss_ce``: weighted cross-entropy over all queries; unmatched queries must say "no object", whose
  class weight is ``eos_coef``. A weighted mean, not divided by the number of boxes.
- ``loss_bbox`` / ``loss_giou``: L1 and 1 - GIoU of the matched boxes, summed and divided by ``num_boxes``.
- ``loss_mask`` / ``loss_dice``: sigmoid focal loss and dice loss of the matched masks (main output only).
- ``class_error`` and ``cardinality_error``: logged, never weighted.

Each decoder layer's auxiliary output gets its own matching and the suffix ``_0``, ``_1``, ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_studio.model.box_ops import box_cxcywh_to_xyxy

from . import distributed
from .matcher import HungarianMatcher, MatchIndices, Targets, check_targets

Matcher = Callable[[Mapping[str, Any], Targets], MatchIndices]

KNOWN_LOSSES = ("labels", "boxes", "cardinality", "masks")


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of each box in [N, 4] xyxy with the box in the same row of [N, 4] xyxy -> [N].

    Equals ``generalized_box_iou(boxes1, boxes2).diagonal()`` without building the N x N matrix.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter_wh = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(
        min=0
    )
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = area1 + area2 - inter
    hull_wh = (torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    hull = hull_wh[:, 0] * hull_wh[:, 1]
    return inter / union - (hull - union) / hull


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss (Lin et al. 2017) of mask logits [N, P] against 0/1 targets [N, P].

    Averaged over the P pixels of each mask, summed over masks, divided by ``num_boxes``.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def dice_loss(logits: Tensor, targets: Tensor, num_boxes: float) -> Tensor:
    """1 - smoothed dice coefficient of mask logits [N, P] against 0/1 targets [N, P], summed / num_boxes."""
    prob = logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1) + 1
    denominator = prob.sum(-1) + targets.sum(-1) + 1
    return (1 - numerator / denominator).sum() / num_boxes


@dataclass
class _TargetBatch:
    """All target objects of the batch, concatenated once and shared by every decoder layer."""

    labels: Tensor  # [N] int64
    boxes: Tensor  # [N, 4] cxcywh
    sizes: list[int]  # objects per image
    offsets: list[int]  # index of each image's first object in the concatenation


@dataclass
class _Matched:
    """Where the matched pairs of one decoder layer live: M pairs in all."""

    batch_idx: Tensor  # [M] image of each pair
    query_idx: Tensor  # [M] query of each pair
    target_idx: Tensor  # [M] index of each pair's object in the concatenated targets
    local_target_idx: Tensor  # [M] index of each pair's object within its image
    counts: list[int]  # pairs per image; the pairs are sorted by image


def _concat_targets(targets: Targets, device: torch.device) -> _TargetBatch:
    sizes = [len(t["labels"]) for t in targets]
    offsets = [0]
    for n in sizes[:-1]:
        offsets.append(offsets[-1] + n)
    if targets:
        labels = torch.cat([t["labels"] for t in targets]).to(device, torch.int64)
        boxes = torch.cat([t["boxes"] for t in targets]).to(device, torch.float32)
    else:
        labels = torch.empty(0, dtype=torch.int64, device=device)
        boxes = torch.empty((0, 4), device=device)
    return _TargetBatch(labels, boxes, sizes, offsets)


def _gather_matches(indices: MatchIndices, batch: _TargetBatch, device: torch.device) -> _Matched:
    if len(indices) != len(batch.sizes):
        raise ValueError(
            f"criterion: the matcher returned {len(indices)} results for {len(batch.sizes)} images"
        )
    rows = [
        torch.stack((torch.full_like(src, i), src, tgt + batch.offsets[i], tgt))
        for i, (src, tgt) in enumerate(indices)
    ]
    table = torch.cat(rows, dim=1) if rows else torch.empty((4, 0), dtype=torch.int64)
    table = table.to(device, torch.int64, non_blocking=True)  # [4, M]: one host-to-device copy
    return _Matched(table[0], table[1], table[2], table[3], [len(src) for src, _ in indices])


class SetCriterion(nn.Module):
    """The DETR loss. forward(outputs, targets) -> dict of named scalar losses.

    outputs: the model's dict {"pred_logits": [B, Q, C+1], "pred_boxes": [B, Q, 4], "pred_masks"?:
    [B, Q, h, w], "aux_outputs"?: [{"pred_logits", "pred_boxes"}, ...]}.
    targets: B dicts {"labels": [n_i] int64, "boxes": [n_i, 4] normalised cxcywh, "masks"?: [n_i, H_i, W_i]}.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: Matcher,
        weight_dict: Mapping[str, float],
        eos_coef: float = 0.1,
        losses: Sequence[str] = ("labels", "boxes", "cardinality"),
    ):
        super().__init__()
        unknown = [name for name in losses if name not in KNOWN_LOSSES]
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {unknown}; known: {list(KNOWN_LOSSES)}")
        if num_classes < 1:
            raise ValueError(f"SetCriterion: num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def forward(self, outputs: Mapping[str, Any], targets: Targets) -> dict[str, Tensor]:
        logits = outputs["pred_logits"]
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"criterion: pred_logits has {logits.shape[-1]} classes, expected num_classes + 1 = "
                f"{self.num_classes + 1}"
            )
        device = logits.device
        check_targets(targets, logits.shape[0])
        batch = _concat_targets(targets, device)
        num_boxes = self.num_boxes(batch.sizes, device)
        main = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        losses = self._level_losses(main, targets, batch, num_boxes, suffix="", is_aux=False)
        for i, aux in enumerate(outputs.get("aux_outputs", ())):
            losses.update(self._level_losses(aux, targets, batch, num_boxes, suffix=f"_{i}", is_aux=True))
        return losses

    @staticmethod
    def num_boxes(sizes: Sequence[int], device: torch.device) -> float:
        """Average number of target objects per process (all processes together), at least 1."""
        total = float(sum(sizes))
        if distributed.is_dist():
            count = distributed.all_reduce_sum(torch.tensor([total], dtype=torch.float32, device=device))
            total = float(count.item())
        return max(total / distributed.world_size(), 1.0)

    def _level_losses(
        self,
        outputs: Mapping[str, Any],
        targets: Targets,
        batch: _TargetBatch,
        num_boxes: float,
        suffix: str,
        is_aux: bool,
    ) -> dict[str, Tensor]:
        indices = self.matcher(outputs, targets)
        matched = _gather_matches(indices, batch, outputs["pred_logits"].device)
        losses: dict[str, Tensor] = {}
        for name in self.losses:
            if name == "labels":
                losses.update(self.loss_labels(outputs, batch, matched, log=not is_aux))
            elif name == "boxes":
                losses.update(self.loss_boxes(outputs, batch, matched, num_boxes))
            elif name == "cardinality":
                losses.update(self.loss_cardinality(outputs, batch))
            elif name == "masks" and not is_aux:
                losses.update(self.loss_masks(outputs, targets, matched, num_boxes))
        return {key + suffix: value for key, value in losses.items()}

    def loss_labels(
        self, outputs: Mapping[str, Any], batch: _TargetBatch, matched: _Matched, log: bool = True
    ) -> dict[str, Tensor]:
        """loss_ce over all queries (unmatched -> no-object), and class_error of the matched ones."""
        logits = outputs["pred_logits"].float()  # [B, Q, C+1]
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        matched_classes = batch.labels[matched.target_idx]  # [M]
        target_classes[matched.batch_idx, matched.query_idx] = matched_classes
        loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, weight=self.empty_weight)
        losses = {"loss_ce": loss_ce}
        if log:
            with torch.no_grad():
                matched_logits = logits[matched.batch_idx, matched.query_idx]  # [M, C+1]
                if len(matched_classes) == 0:
                    accuracy = logits.new_zeros(())
                else:
                    accuracy = (matched_logits.argmax(-1) == matched_classes).float().mean() * 100
                losses["class_error"] = 100 - accuracy
        return losses

    @torch.no_grad()
    def loss_cardinality(self, outputs: Mapping[str, Any], batch: _TargetBatch) -> dict[str, Tensor]:
        """Mean absolute difference between the number of predicted objects and of targets per image."""
        logits = outputs["pred_logits"]  # [B, Q, C+1]
        predicted = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1).float()  # [B]
        expected = torch.as_tensor(batch.sizes, dtype=torch.float32, device=logits.device)  # [B]
        return {"cardinality_error": F.l1_loss(predicted, expected)}

    def loss_boxes(
        self, outputs: Mapping[str, Any], batch: _TargetBatch, matched: _Matched, num_boxes: float
    ) -> dict[str, Tensor]:
        """L1 and 1 - GIoU of the matched boxes (normalised cxcywh), each summed and divided by num_boxes."""
        src = outputs["pred_boxes"][matched.batch_idx, matched.query_idx].float()  # [M, 4]
        tgt = batch.boxes[matched.target_idx]  # [M, 4]
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))  # [M]
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def loss_masks(
        self, outputs: Mapping[str, Any], targets: Targets, matched: _Matched, num_boxes: float
    ) -> dict[str, Tensor]:
        """Focal and dice losses of the matched masks at the batch's padded target-mask size."""
        if "pred_masks" not in outputs:
            raise KeyError("criterion: the 'masks' loss needs 'pred_masks' in the model outputs")
        pred = outputs["pred_masks"]
        if pred.dim() != 4:
            raise ValueError(
                f"criterion: pred_masks must be [B, Q, h, w] for training, got {tuple(pred.shape)} "
                "(masks computed for selected queries only cannot be trained)"
            )
        target_masks = _padded_matched_masks(targets, matched)  # [M, H, W]
        if target_masks.shape[0] == 0:
            zero = pred.sum() * 0
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        src = pred[matched.batch_idx, matched.query_idx].float()  # [M, h, w]
        src = F.interpolate(src[:, None], size=target_masks.shape[-2:], mode="bilinear", align_corners=False)
        src = src[:, 0].flatten(1)  # [M, H*W]
        tgt = target_masks.flatten(1).to(src)  # [M, H*W]
        return {
            "loss_mask": sigmoid_focal_loss(src, tgt, num_boxes),
            "loss_dice": dice_loss(src, tgt, num_boxes),
        }


def _padded_matched_masks(targets: Targets, matched: _Matched) -> Tensor:
    """The matched target masks, in pair order, zero-padded at the bottom/right to the batch's largest
    mask size -> [M, H, W] float.

    Padding is to the largest mask of the whole batch (matched or not), as the reference does.
    """
    for i, target in enumerate(targets):
        if "masks" not in target:
            raise KeyError(f"criterion: target {i} has no 'masks' (needed by the 'masks' loss)")
        masks = target["masks"]
        if masks.dim() != 3 or len(masks) != len(target["labels"]):
            raise ValueError(
                f"criterion: target {i} masks must be [n, H, W] with n = {len(target['labels'])} objects, "
                f"got {tuple(masks.shape)}"
            )
    height = max(int(t["masks"].shape[-2]) for t in targets)
    width = max(int(t["masks"].shape[-1]) for t in targets)
    device = matched.batch_idx.device
    out = torch.zeros((len(matched.batch_idx), height, width), device=device)
    start = 0
    for target, count in zip(targets, matched.counts):
        stop = start + count
        if count == 0:
            continue
        masks = target["masks"].to(device)
        h, w = masks.shape[-2:]
        out[start:stop, :h, :w] = masks[matched.local_target_idx[start:stop]].to(out.dtype)
        start = stop
    return out


def build_criterion(
    num_classes: int,
    *,
    aux_layers: int,
    masks: bool,
    set_cost_class: float = 1.0,
    set_cost_bbox: float = 5.0,
    set_cost_giou: float = 2.0,
    bbox_loss_coef: float = 5.0,
    giou_loss_coef: float = 2.0,
    mask_loss_coef: float = 1.0,
    dice_loss_coef: float = 1.0,
    eos_coef: float = 0.1,
) -> tuple[SetCriterion, dict[str, float]]:
    """The reference's criterion and loss weights.

    ``aux_layers`` is the number of auxiliary decoder outputs (``dec_layers - 1`` with the aux loss, else 0).
    The weights cover exactly the terms that ``total_loss`` sums: the mask terms have no aux copies
    because the aux outputs carry no masks.
    """
    if aux_layers < 0:
        raise ValueError(f"build_criterion: aux_layers must be >= 0, got {aux_layers}")
    matcher = HungarianMatcher(cost_class=set_cost_class, cost_bbox=set_cost_bbox, cost_giou=set_cost_giou)
    base = {"loss_ce": 1.0, "loss_bbox": bbox_loss_coef, "loss_giou": giou_loss_coef}
    weight_dict = dict(base)
    for i in range(aux_layers):
        weight_dict.update({f"{key}_{i}": value for key, value in base.items()})
    losses = ["labels", "boxes", "cardinality"]
    if masks:
        weight_dict["loss_mask"] = mask_loss_coef
        weight_dict["loss_dice"] = dice_loss_coef
        losses.append("masks")
    criterion = SetCriterion(num_classes, matcher, weight_dict, eos_coef=eos_coef, losses=losses)
    return criterion, weight_dict


class GroupedCriterion(nn.Module):
    """The set loss for Group DETR training: the outputs' queries form ``groups`` equal groups, each matched
    to the targets on its own; every loss term is the mean over the groups.

    The groups are stacked as extra images of one batch (each with a copy of its targets), so the matcher
    and the losses run once. Every group sees the same targets with the same number of queries, so the
    batch-wide normalisations (``num_boxes``, the weighted cross-entropy mean) give exactly the mean of the
    per-group losses.
    """

    def __init__(self, criterion: SetCriterion, groups: int):
        super().__init__()
        if groups < 2:
            raise ValueError(f"GroupedCriterion needs at least 2 groups, got {groups}")
        self.criterion = criterion
        self.groups = groups

    def forward(self, outputs: Mapping[str, Any], targets: Targets) -> dict[str, Tensor]:
        return self.criterion(_groups_as_images(outputs, self.groups), list(targets) * self.groups)


def _groups_as_images(outputs: Mapping[str, Any], groups: int) -> dict[str, Any]:
    """[B, G*Q, ...] outputs -> [G*B, Q, ...], image g*B + b holding group g of image b."""

    def stack(x: Tensor) -> Tensor:
        b, gq = x.shape[:2]
        grouped = x.reshape(b, groups, gq // groups, *x.shape[2:]).transpose(0, 1)  # [G, B, Q, ...]
        return grouped.reshape(groups * b, gq // groups, *x.shape[2:])

    out: dict[str, Any] = {k: stack(v) for k, v in outputs.items() if k != "aux_outputs"}
    if "aux_outputs" in outputs:
        out["aux_outputs"] = [_groups_as_images(aux, groups) for aux in outputs["aux_outputs"]]
    return out


def group_outputs(outputs: Mapping[str, Any], group: int, groups: int) -> dict[str, Any]:
    """The outputs of query group ``group`` of ``groups`` (queries [B, G*Q, ...] -> [B, Q, ...])."""
    queries = outputs["pred_logits"].shape[1] // groups
    part = slice(group * queries, (group + 1) * queries)
    out: dict[str, Any] = {k: v[:, part] for k, v in outputs.items() if k != "aux_outputs"}
    if "aux_outputs" in outputs:
        out["aux_outputs"] = [group_outputs(aux, group, groups) for aux in outputs["aux_outputs"]]
    return out


def total_loss(loss_dict: Mapping[str, Tensor], weight_dict: Mapping[str, float]) -> Tensor:
    """Sum of ``weight * loss`` over the weighted terms (class_error and cardinality_error are not weighted).

    Every weighted term must be present: a missing one means the model and the criterion were built
    with different settings (aux loss, masks).
    """
    missing = sorted(key for key in weight_dict if key not in loss_dict)
    if missing:
        raise KeyError(
            f"total_loss: weighted terms {missing} are missing from the losses; do the model's aux_loss/masks "
            "settings match the criterion's?"
        )
    unweighted = sorted(key for key in loss_dict if key.startswith("loss_") and key not in weight_dict)
    if unweighted:
        raise KeyError(
            f"total_loss: losses {unweighted} have no weight; do the model's aux_loss/masks settings match the "
            "criterion's? (give a weight of 0 to drop a term on purpose)"
        )
    if not weight_dict:
        raise ValueError("total_loss: no weighted terms")
    terms = [loss_dict[key] * weight for key, weight in weight_dict.items()]
    return torch.stack(terms).sum()
