"""The architecture of a DETR model as one small record, saved beside our checkpoints.

Each field is type- and range-checked when a config is made (see ``model/config_fields.py``), so a sidecar or
a Hugging Face ``config.json`` with ``nheads: 0`` or ``enc_layers: "3"`` is refused naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config_fields import TINY_FIELDS, Choice, ConfigError, Flag, Integer, ModelConfig, Number, checked

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
MAX_QUERIES = 5000  # far above any published DETR (100 to 900 queries); a typo should not allocate gigabytes


@dataclass(frozen=True)
class DetrConfig(ModelConfig):
    """Every choice that changes the network's shape or behaviour.

    ``num_classes`` has the reference meaning: the largest category id + 1. The classifier has
    ``num_classes + 1`` outputs and the last one is "no object".
    """

    family_name = "detr"

    num_classes: int = checked(91, Integer(1, 100_000))
    backbone: str = checked("resnet50", Choice(*RESNETS))
    # last stage at stride 16 (dilated for ResNet-50/101, undilated for 18/34)
    dilation: bool = checked(False, Flag())
    backbone_width: int = checked(64, Integer(8, 512, step=8))  # stem channels of ResNet-18/34 (64: standard)
    # "batch": trainable batch norm, for backbones trained from scratch
    backbone_norm: str = checked("frozen", Choice("frozen", "batch"))
    # 0: 32 (16 with dilation); 8: ResNet-18/34 with their last two stages at stride 1
    backbone_stride: int = checked(0, Integer(0, 8, step=8))
    position_embedding: str = checked("sine", Choice("sine", "learned"))
    hidden_dim: int = checked(256, Integer(1, 4096))
    nheads: int = checked(8, Integer(1, 64))
    enc_layers: int = checked(6, Integer(0, 48))
    dec_layers: int = checked(6, Integer(1, 48))
    dim_feedforward: int = checked(2048, Integer(1, 65536))
    dropout: float = checked(0.1, Number(0.0, 1.0))
    pre_norm: bool = checked(False, Flag())
    num_queries: int = checked(100, Integer(1, MAX_QUERIES))
    aux_loss: bool = checked(False, Flag())
    masks: bool = checked(False, Flag())

    def check(self) -> None:
        if self.hidden_dim % self.nheads:
            raise ConfigError("hidden_dim", f"{self.hidden_dim} is not divisible by nheads {self.nheads}")
        small = self.backbone in ("resnet18", "resnet34")
        if self.backbone_width != 64 and not small:
            raise ConfigError(
                "backbone_width", f"only resnet18 and resnet34 take another width, not {self.backbone}"
            )
        if self.backbone_stride == 8 and not small:
            raise ConfigError(
                "backbone_stride", f"only resnet18 and resnet34 take stride 8, not {self.backbone}"
            )
        if self.masks and (
            self.hidden_dim < 128 or self.hidden_dim % 16 or (self.hidden_dim + self.nheads) % 8
        ):
            raise ConfigError(
                "masks",
                "the mask head needs hidden_dim >= 128, a multiple of 16, with hidden_dim + nheads a multiple "
                f"of 8 (its group norms use 8 groups); got hidden_dim={self.hidden_dim}, nheads={self.nheads}",
            )

    @property
    def has_masks(self) -> bool:
        return self.masks


def tiny_config(**changes: Any) -> DetrConfig:
    """A small, fast configuration for tests, demos and smoke runs (masks=True widens it to 128, the
    smallest width the mask head allows)."""
    if changes.get("masks"):
        changes = {"hidden_dim": 128, "nheads": 8, "dim_feedforward": 128, **changes}
    return DetrConfig.from_dict({**TINY_FIELDS, **changes})
