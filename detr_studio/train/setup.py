"""Setting up a training run: its datasets and its model.

The model comes from the load pipeline (``model/loading.py``): a base checkpoint (a file, a zoo name or "demo")
read and recognised once, its family's training config (the run's class count, mask head, auxiliary losses),
and every weight that fits loaded, or a model of the run's family built from scratch. Problems come back as
``TrainingError`` with one line naming the file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..common.files import FileProblem, read_json
from ..data.dataset import CocoDetectionDataset, CocoPanopticDataset
from ..data.transforms import make_transforms, scaled_recipe
from ..model.checkpoint import Checkpoint
from ..model.config_fields import ModelConfig
from ..model.family import ModelFamily
from ..model.loading import build_for_training, read_source
from ..model.registry import UnknownFamilyError, family_of
from ..model.state_dicts import CheckpointError
from .config import TrainConfig


class TrainingError(Exception):
    """A problem with the run's set-up (data, weights, options), reported before training starts."""


def _split_ids(ids: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic held-out split: (train ids, val ids)."""
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(ids) * fraction)) if fraction > 0 else 0
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def _sizes(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.scales:
        return {"scales": tuple(cfg.scales), "max_size": cfg.max_size, "val_size": cfg.val_size}
    return {"max_size": cfg.max_size, "val_size": cfg.val_size}


def only_classes(annotations: str, names: list[str]) -> dict[str, Any]:
    """The COCO instances file restricted to the categories called ``names`` (ids kept)."""
    path = Path(annotations)
    try:
        data = read_json(path, "COCO annotation")
        categories = data["categories"]
        by_name = {str(c["name"]): int(c["id"]) for c in categories}
    except FileProblem as exc:
        raise TrainingError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: cannot read its categories ({exc})") from None
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise TrainingError(
            f"{path}: no categories named {', '.join(unknown)} (it has: {', '.join(by_name)})"
        )
    keep = {by_name[n] for n in names}
    data["categories"] = [c for c in categories if int(c["id"]) in keep]
    data["annotations"] = [a for a in data.get("annotations", []) if int(a.get("category_id", -1)) in keep]
    return data


def build_datasets(cfg: TrainConfig) -> tuple[Any, Any | None]:
    """(train dataset, val dataset or None) with the reference's train and val transforms."""
    sizes = _sizes(cfg)
    if cfg.scales and cfg.crop:
        recipe = scaled_recipe(max(cfg.scales))
        crop = recipe["crop"]
        crop_scales = recipe["crop_scales"]
    else:
        crop, crop_scales = (384, 600), (400, 500, 600)
    if cfg.augment:
        train_tf = make_transforms(
            "train",
            crop=crop if cfg.crop else None,
            crop_scales=crop_scales,
            **{k: v for k, v in sizes.items() if k != "val_size"},
        )
    else:
        train_tf = make_transforms("val", **sizes)
    val_tf = make_transforms("val", **sizes)

    def dataset(annotations: Any, images: str, transforms) -> Any:
        if cfg.panoptic:
            pan_root = cfg.panoptic_masks or str(Path(annotations).with_suffix(""))
            return CocoPanopticDataset(
                annotations, images, pan_root, transforms, masks=cfg.masks, seed=cfg.seed
            )
        return CocoDetectionDataset(annotations, images, transforms, masks=cfg.masks, seed=cfg.seed)

    if cfg.classes and cfg.panoptic:
        raise TrainingError("choosing classes is supported for COCO instances files, not panoptic ones")
    train_source: Any = (
        only_classes(cfg.train_annotations, cfg.classes) if cfg.classes else cfg.train_annotations
    )
    train = dataset(train_source, cfg.train_images, train_tf)
    if cfg.image_ids is not None:
        train = train.subset(cfg.image_ids)
    val = None
    if cfg.val_annotations:
        val_source: Any = (
            only_classes(cfg.val_annotations, cfg.classes) if cfg.classes else cfg.val_annotations
        )
        val = dataset(val_source, cfg.val_images or cfg.train_images, val_tf)
    elif cfg.val_split > 0:
        train_ids, val_ids = _split_ids(train.image_ids, cfg.val_split, cfg.seed)
        val = dataset(train_source, cfg.train_images, val_tf).subset(val_ids)
        train = train.subset(train_ids)
    if len(train) == 0:
        raise TrainingError("no training images (check the annotation file and the image selection)")
    return train, val


def load_base(cfg: TrainConfig) -> Checkpoint | None:
    """The checkpoint ``base_weights`` names (a file, a zoo name or "demo"), or None when training from scratch."""
    if not cfg.base_weights:
        return None
    try:
        return read_source(cfg.base_weights)
    except CheckpointError as exc:
        raise TrainingError(str(exc)) from None


@dataclass
class RunModel:
    """The network a run trains and what goes with it. ``branch``: base weights the run does not train but
    its saved models keep (``ModelFamily.untrained_branch``)."""

    model: nn.Module
    family: ModelFamily
    config: ModelConfig
    class_names: dict[int, str] | None
    branch: dict[str, Tensor]


def build_model(cfg: TrainConfig, num_classes: int, base: Checkpoint | None = None) -> RunModel:
    """The model to train: from the base checkpoint (``base``, or read from ``base_weights``; class head reset
    when the class count differs) or from scratch in the run's family."""
    train_backbone = cfg.lr_backbone > 0
    ckpt = base if base is not None else load_base(cfg)
    choices = {
        "num_classes": num_classes,
        "aux_loss": cfg.aux_loss,
        "masks": cfg.masks,
        "dropout": cfg.dropout,
    }
    if ckpt is not None:
        family = ckpt.family
        if cfg.num_queries is not None and cfg.num_queries != ckpt.config.num_queries:
            raise TrainingError(
                f"{cfg.base_weights} has {ckpt.config.num_queries} queries; fine-tuning keeps them (the trained "
                "queries are the point of starting from a checkpoint)"
            )
        try:
            config = family.training_config(ckpt.config, **choices)
            model, _fresh = build_for_training(ckpt, config, train_backbone=train_backbone)
        except (CheckpointError, ValueError) as exc:
            raise TrainingError(
                f"{cfg.base_weights}: {exc}" if not str(exc).startswith(str(ckpt.path)) else str(exc)
            ) from None
        if cfg.stage == "masks":
            for p in family.detector(model).parameters():
                p.requires_grad_(False)
        branch = family.untrained_branch(ckpt.state_dict, ckpt.config, config)
        return RunModel(model, family, config, ckpt.class_names, branch)
    try:
        family = family_of(cfg.family)
        fields = dict(cfg.model)
        if cfg.num_queries is not None:
            fields["num_queries"] = cfg.num_queries
        config = family.training_config(family.config_type.from_dict(fields, prefix="model."), **choices)
    except (UnknownFamilyError, ValueError) as exc:
        raise TrainingError(f"bad model options: {exc}") from None
    return RunModel(family.build(config, train_backbone=train_backbone), family, config, None, {})
