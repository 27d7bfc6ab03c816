"""The architecture of a DETR model as one small record, saved beside our checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DetrConfig:
    """Every choice that changes the network's shape or behaviour.

    ``num_classes`` has the reference meaning: the largest category id + 1. The classifier has
    ``num_classes + 1`` outputs and the last one is "no object".
    """

    num_classes: int = 91
    backbone: str = "resnet50"
    dilation: bool = False  # last stage at stride 16 (dilated for ResNet-50/101, undilated for 18/34)
    backbone_width: int = 64  # stem channels of ResNet-18/34 (64 is the standard network)
    backbone_norm: str = "frozen"  # "batch": trainable batch norm, for backbones trained from scratch
    backbone_stride: int = (
        0  # 0: 32 (16 with dilation); 8: ResNet-18/34 with their last two stages at stride 1
    )
    position_embedding: str = "sine"
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    pre_norm: bool = False
    num_queries: int = 100
    aux_loss: bool = False
    masks: bool = False

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.num_queries < 1:
            raise ValueError("num_classes and num_queries must be positive")
        if self.hidden_dim % self.nheads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}")
        if self.backbone_width != 64 and self.backbone not in ("resnet18", "resnet34"):
            raise ValueError(f"only resnet18 and resnet34 take another backbone_width, not {self.backbone}")
        if self.backbone_width < 8 or self.backbone_width % 8:
            raise ValueError(f"backbone_width must be a positive multiple of 8, got {self.backbone_width}")
        if self.backbone_stride not in (0, 8):
            raise ValueError(f"backbone_stride must be 0 (from dilation) or 8, got {self.backbone_stride}")
        if self.backbone_stride == 8 and self.backbone not in ("resnet18", "resnet34"):
            raise ValueError(f"only resnet18 and resnet34 take backbone_stride 8, not {self.backbone}")
        if self.backbone_norm not in ("frozen", "batch"):
            raise ValueError(f"backbone_norm must be 'frozen' or 'batch', got {self.backbone_norm!r}")
        if self.masks and (
            self.hidden_dim < 128 or self.hidden_dim % 16 or (self.hidden_dim + self.nheads) % 8
        ):
            raise ValueError(
                "the mask head needs hidden_dim >= 128, a multiple of 16, with hidden_dim + nheads a multiple of 8 "
                f"(its group norms use 8 groups); got hidden_dim={self.hidden_dim}, nheads={self.nheads}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetrConfig:
        """Build from a dict, refusing unknown keys so that typos do not pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> DetrConfig:
        return DetrConfig.from_dict({**self.to_dict(), **changes})


def tiny_config(**changes: Any) -> DetrConfig:
    """A small, fast configuration for tests, demos and smoke runs (masks=True widens it to 128, the
    smallest width the mask head allows)."""
    if changes.get("masks"):
        changes = {"hidden_dim": 128, "nheads": 8, "dim_feedforward": 128, **changes}
    base = DetrConfig(
        num_classes=5,
        backbone="resnet18",
        hidden_dim=32,
        nheads=4,
        enc_layers=2,
        dec_layers=2,
        dim_feedforward=64,
        dropout=0.0,
        num_queries=10,
        aux_loss=True,
    )
    return base.replace(**changes)
