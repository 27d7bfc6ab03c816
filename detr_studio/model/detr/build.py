"""Building a DETR network from its config: a ``DETR``, or a ``DETRsegm`` wrapping one when it has masks."""

from __future__ import annotations

from torch import nn

from ..backbone import build_backbone
from .config import DetrConfig
from .detr import DETR
from .segmentation import DETRsegm
from .transformer import Transformer


def build_detr(config: DetrConfig, train_backbone: bool = True) -> nn.Module:
    """Build the network for ``config``: a ``DETR``, or a ``DETRsegm`` wrapping one when ``config.masks``."""
    backbone = build_backbone(
        config.backbone,
        hidden_dim=config.hidden_dim,
        position_embedding=config.position_embedding,
        train_backbone=train_backbone,
        return_interm_layers=config.masks,
        dilation=config.dilation,
        width=config.backbone_width,
        norm=config.backbone_norm,
        stride=config.backbone_stride,
    )
    transformer = Transformer(
        d_model=config.hidden_dim,
        nhead=config.nheads,
        num_encoder_layers=config.enc_layers,
        num_decoder_layers=config.dec_layers,
        dim_feedforward=config.dim_feedforward,
        dropout=config.dropout,
        normalize_before=config.pre_norm,
        return_intermediate_dec=True,
    )
    model = DETR(backbone, transformer, config.num_classes, config.num_queries, config.aux_loss)
    return DETRsegm(model) if config.masks else model
