"""``TrainConfig``: everything one training run needs, as one JSON-serialisable record.

Defaults are the reference recipe (AdamW lr 1e-4, backbone 1e-5, weight decay 1e-4, gradient
clipping 0.1, step decay ×0.1, auxiliary decoding losses, batch 2 per process).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    # data
    train_annotations: str
    train_images: str
    val_annotations: str | None = None
    val_images: str | None = None
    val_split: float = 0.0  # fraction of the training images held out when no val file is given
    image_ids: list[int] | None = None  # train on these images only (e.g. the reviewed ones)
    classes: list[str] | None = None  # train on these category names only (instances files)
    panoptic: bool = False  # annotations are COCO panoptic (PNG folder beside the JSON)
    panoptic_masks: str | None = None  # folder of panoptic PNGs (default: <json stem>/ beside the JSON)
    # model
    base_weights: str | None = None  # checkpoint path or zoo name; None trains from scratch
    family: str = "detr"  # the model family of a model built from scratch (a base checkpoint brings its own)
    model: dict[str, Any] = field(default_factory=dict)  # DetrConfig fields for a model built from scratch
    masks: bool = False  # train the mask head (segmentation)
    stage: str = (
        "full"  # "full", or "masks": the second panoptic stage (mask head on frozen detection weights)
    )
    num_queries: int | None = None
    query_groups: int = 1  # Group DETR: >1 trains that many query groups (only the first is kept)
    dropout: float | None = None
    # optimisation
    epochs: int = 50
    lr: float = 1e-4
    lr_backbone: float = 1e-5  # 0 freezes the backbone
    weight_decay: float = 1e-4
    lr_drop: int = 200  # epochs between ×0.1 steps
    clip_max_norm: float = 0.1
    batch_size: int = 2  # per process
    accumulate: int = 1  # gradient accumulation steps
    eos_coef: float = 0.1
    # >0 keeps an average of the weights, evaluated and saved in place of the live ones
    ema_decay: float = 0.0
    aux_loss: bool = True
    # augmentation
    scales: list[int] | None = None  # training shorter sides (default: the reference's 480..800)
    max_size: int = 1333
    val_size: int | None = None
    crop: bool = True
    augment: bool = True
    # run
    device: str = "auto"
    amp: bool = True  # mixed precision on GPUs (bf16 where supported, else fp16)
    seed: int = 42
    num_workers: int = 2
    out_dir: str = "runs/detr"
    resume: str | None = None
    eval_every: int = 1
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs, benchmarks)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.batch_size < 1 or self.accumulate < 1:
            raise ValueError("batch_size and accumulate must be at least 1")
        if not 0.0 <= self.val_split < 1.0:
            raise ValueError("val_split must be in [0, 1)")
        if self.stage not in ("full", "masks"):
            raise ValueError("stage must be 'full' or 'masks'")
        if self.stage == "masks" and not (self.masks and self.base_weights):
            raise ValueError("the 'masks' stage needs masks=True and base_weights (the trained detector)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1) (0 keeps no weight average)")
        if self.query_groups < 1:
            raise ValueError("query_groups must be at least 1")
        if self.query_groups > 1 and self.masks:
            raise ValueError("query groups are for training boxes; train the mask head with query_groups=1")
        if self.lr <= 0 or self.lr_backbone < 0:
            raise ValueError("lr must be positive and lr_backbone non-negative")
