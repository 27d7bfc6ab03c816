"""The architecture of a Deformable DETR model as one small record, and the five released configurations.

``num_classes`` has the official meaning: the number of sigmoid outputs of the class head, which is the
largest category id + 1 (91 for COCO). There is no "no object" output: a query whose every class
probability is low is no object.

Each field is type- and range-checked when a config is made (``model/config_fields.py``), whatever made it: a
sidecar, a Hugging Face ``config.json``, a training record or an ONNX file's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backbone import RESNETS
from ..config_fields import TINY_FIELDS, Choice, ConfigError, Flag, Integer, ModelConfig, Number, checked

FAMILY = "deformable_detr"
MAX_QUERIES = (
    5000  # far above the published 300 (900 in later variants); a typo should not allocate gigabytes
)


@dataclass(frozen=True)
class DeformableDetrConfig(ModelConfig):
    """Every choice that changes the network's shape or behaviour (defaults: the official multi-scale model)."""

    family_name = FAMILY

    num_classes: int = checked(91, Integer(1, 100_000))
    backbone: str = checked("resnet50", Choice(*RESNETS))
    dilation: bool = checked(False, Flag())  # DC5: the last stage at stride 16
    backbone_width: int = checked(64, Integer(8, 512, step=8))  # stem channels of ResNet-18/34 (64: standard)
    hidden_dim: int = checked(256, Integer(32, 4096, step=32))  # the projections' GroupNorm has 32 groups
    nheads: int = checked(8, Integer(1, 64))
    enc_layers: int = checked(6, Integer(1, 48))
    dec_layers: int = checked(6, Integer(1, 48))
    dim_feedforward: int = checked(1024, Integer(1, 65536))
    dropout: float = checked(0.1, Number(0.0, 1.0))
    # 1: single-scale (C5 only); 3 or more: C3-C5 plus extra stride-2 levels
    num_feature_levels: int = checked(4, Integer(1, 8))
    enc_n_points: int = checked(4, Integer(1, 64))
    dec_n_points: int = checked(4, Integer(1, 64))
    num_queries: int = checked(300, Integer(1, MAX_QUERIES))  # also the number of two-stage proposals
    with_box_refine: bool = checked(False, Flag())
    two_stage: bool = checked(False, Flag())
    aux_loss: bool = checked(True, Flag())

    def check(self) -> None:
        if self.hidden_dim % self.nheads:
            raise ConfigError("hidden_dim", f"{self.hidden_dim} is not divisible by nheads {self.nheads}")
        if self.num_feature_levels == 2:
            raise ConfigError(
                "num_feature_levels",
                "must be 1 (single-scale) or at least 3 (C3-C5 plus extra levels), got 2",
            )
        if self.two_stage and not self.with_box_refine:
            raise ConfigError(
                "two_stage", "needs with_box_refine (as in the official code, which fails without it)"
            )
        if self.backbone_width != 64 and self.backbone not in ("resnet18", "resnet34"):
            raise ConfigError(
                "backbone_width", f"only resnet18 and resnet34 take another width, not {self.backbone}"
            )


# The five configurations of the official release (configs/r50_deformable_detr*.sh).
PRESETS: dict[str, DeformableDetrConfig] = {
    "single-scale": DeformableDetrConfig(num_feature_levels=1),
    "single-scale-dc5": DeformableDetrConfig(num_feature_levels=1, dilation=True),
    "multi-scale": DeformableDetrConfig(),
    "box-refine": DeformableDetrConfig(with_box_refine=True),
    "two-stage": DeformableDetrConfig(with_box_refine=True, two_stage=True),
}


def tiny_deformable_config(**changes: Any) -> DeformableDetrConfig:
    """A small, fast configuration for tests, demos and smoke runs."""
    small = {"backbone_width": 16, "num_feature_levels": 4, "enc_n_points": 2, "dec_n_points": 2}
    return DeformableDetrConfig.from_dict({**TINY_FIELDS, **small, **changes})
