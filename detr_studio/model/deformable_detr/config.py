"""The architecture of a Deformable DETR model as one small record, and the five released configurations.

``num_classes`` has the official meaning: the number of sigmoid outputs of the class head, which is the
largest category id + 1 (91 for COCO). There is no "no object" output: a query whose every class
probability is low is no object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

FAMILY = "deformable_detr"


@dataclass(frozen=True)
class DeformableDetrConfig:
    """Every choice that changes the network's shape or behaviour (defaults: the official multi-scale model)."""

    num_classes: int = 91
    backbone: str = "resnet50"
    dilation: bool = False  # DC5: the last stage at stride 16
    backbone_width: int = 64  # stem channels of ResNet-18/34 (64 is the standard network)
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.1
    num_feature_levels: int = 4  # 1: single-scale (C5 only); >1: C3-C5 plus extra stride-2 levels
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_queries: int = 300  # also the number of two-stage proposals
    with_box_refine: bool = False
    two_stage: bool = False
    aux_loss: bool = True

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.num_queries < 1:
            raise ValueError("num_classes and num_queries must be positive")
        if self.hidden_dim % self.nheads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}")
        if self.hidden_dim % 32:
            raise ValueError(
                f"hidden_dim must be a multiple of 32 (GroupNorm(32) projections), got {self.hidden_dim}"
            )
        if self.num_feature_levels < 1 or self.num_feature_levels == 2:
            raise ValueError(
                f"num_feature_levels must be 1 (single-scale) or at least 3 (C3-C5 + extra), got {self.num_feature_levels}"
            )
        if self.enc_n_points < 1 or self.dec_n_points < 1:
            raise ValueError("enc_n_points and dec_n_points must be positive")
        if self.two_stage and not self.with_box_refine:
            raise ValueError(
                "two_stage needs with_box_refine (as in the official code, which fails without it)"
            )
        if self.backbone_width != 64 and self.backbone not in ("resnet18", "resnet34"):
            raise ValueError(f"only resnet18 and resnet34 take another backbone_width, not {self.backbone}")

    @property
    def family(self) -> str:
        return FAMILY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeformableDetrConfig:
        """Build from a dict, refusing unknown keys so that typos do not pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Deformable DETR config keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> DeformableDetrConfig:
        return DeformableDetrConfig.from_dict({**self.to_dict(), **changes})


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
    base = DeformableDetrConfig(
        num_classes=5,
        backbone="resnet18",
        backbone_width=16,
        hidden_dim=32,
        nheads=4,
        enc_layers=2,
        dec_layers=2,
        dim_feedforward=64,
        dropout=0.0,
        num_feature_levels=4,
        enc_n_points=2,
        dec_n_points=2,
        num_queries=10,
    )
    return base.replace(**changes)
