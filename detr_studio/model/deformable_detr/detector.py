"""``DeformableDETR``: backbone levels, input projections (plus the extra stride-2 levels on raw C5),
the deformable transformer and the per-layer class and box heads.

Attribute names are the official ones, so its state dicts load with ``strict=True``. Head layout:
- without refinement one class head and one box head are shared by all decoder layers; the state dict
  still lists them once per layer (``class_embed.0…5``, identical tensors);
- with refinement every layer has its own heads, and the decoder holds the same box heads
  (``transformer.decoder.bbox_embed.*``, stored twice);
- two-stage adds a seventh head pair for the encoder's proposals, and the decoder also holds the class
  heads (``transformer.decoder.class_embed.*``).
"""

from __future__ import annotations

import copy
import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import init

from ..backbone import Joiner
from ..detr.detr import MLP, as_nested
from ..nested import NestedTensor
from .backbone import build_levels_backbone
from .config import DeformableDetrConfig
from .decoder import inverse_sigmoid
from .transformer import DeformableTransformer, TransformerOutput

DeformableOutput = dict
"""{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4] normalised cxcywh, "aux_outputs"?: one such dict per
earlier decoder layer, "enc_outputs"?: {"pred_logits": [B, S, C], "pred_boxes": [B, S, 4]} (two-stage)}."""

PRIOR_PROBABILITY = 0.01  # the focal prior: every class starts at this probability
PRIOR_BIAS = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)  # -4.595


class DeformableDETR(nn.Module):
    def __init__(
        self,
        backbone: Joiner,
        transformer: DeformableTransformer,
        num_classes: int,
        num_queries: int,
        num_feature_levels: int,
        aux_loss: bool = True,
        with_box_refine: bool = False,
        two_stage: bool = False,
    ):
        super().__init__()
        self.num_queries = num_queries
        self.transformer = transformer
        hidden_dim = transformer.d_model
        class_embed = nn.Linear(hidden_dim, num_classes)
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.num_feature_levels = num_feature_levels
        if not two_stage:
            self.query_embed = nn.Embedding(num_queries, hidden_dim * 2)
        self.input_proj = self._input_projections(backbone[0].level_channels, hidden_dim, num_feature_levels)
        self.backbone = backbone
        self.aux_loss = aux_loss
        self.with_box_refine = with_box_refine
        self.two_stage = two_stage

        init.constant_(class_embed.bias, PRIOR_BIAS)
        init.constant_(bbox_embed.layers[-1].weight, 0)
        init.constant_(bbox_embed.layers[-1].bias, 0)
        for proj in self.input_proj:
            init.xavier_uniform_(proj[0].weight, gain=1)
            init.constant_(proj[0].bias, 0)
        num_pred = transformer.decoder.num_layers + (1 if two_stage else 0)
        if with_box_refine:
            self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(num_pred))
            self.bbox_embed = nn.ModuleList(copy.deepcopy(bbox_embed) for _ in range(num_pred))
            init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
            self.transformer.decoder.bbox_embed = self.bbox_embed
        else:
            init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * num_pred)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
        if two_stage:
            self.transformer.decoder.class_embed = self.class_embed
            for box_embed in self.bbox_embed:
                init.constant_(box_embed.layers[-1].bias[2:], 0.0)

    @staticmethod
    def _input_projections(channels: list[int], hidden_dim: int, levels: int) -> nn.ModuleList:
        """1×1 conv + GroupNorm(32) per backbone level, then 3×3 stride-2 conv + GroupNorm(32) per extra
        level (the first on raw C5, later ones on the previous projection)."""
        projections = [
            nn.Sequential(nn.Conv2d(c, hidden_dim, 1), nn.GroupNorm(32, hidden_dim)) for c in channels
        ]
        in_channels = channels[-1]
        for _ in range(levels - len(channels)):
            conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=3, stride=2, padding=1)
            projections.append(nn.Sequential(conv, nn.GroupNorm(32, hidden_dim)))
            in_channels = hidden_dim
        return nn.ModuleList(projections)

    @property
    def num_classes(self) -> int:
        return self.class_embed[0].out_features

    def reset_class_heads(self) -> None:
        """Every class head afresh, for a new class list: default weights and the focal prior bias."""
        for head in self.class_embed:
            head.reset_parameters()
            init.constant_(head.bias, PRIOR_BIAS)

    @property
    def level_strides(self) -> list[int]:
        """Input pixels per feature cell of each level: the backbone's, then twice the last per extra level."""
        strides = list(self.backbone[0].level_strides)
        while len(strides) < self.num_feature_levels:
            strides.append(strides[-1] * 2)
        return strides

    def levels(self, samples: NestedTensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """-> per level: projected features [B, C, h, w], padding masks [B, h, w], position encodings [B, C, h, w]."""
        features, pos = self.backbone(samples)
        srcs = [proj(feature.tensors) for proj, feature in zip(self.input_proj, features)]
        masks = [feature.mask for feature in features]
        pos = list(pos)
        for level in range(len(features), self.num_feature_levels):
            source = features[-1].tensors if level == len(features) else srcs[-1]
            src = self.input_proj[level](source)
            mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(samples.mask.dtype)[0]
            srcs.append(src)
            masks.append(mask)
            pos.append(self.backbone[1](NestedTensor(src, mask)).to(src.dtype))
        return srcs, masks, pos

    def forward(self, samples: NestedTensor | list[Tensor] | Tensor) -> DeformableOutput:
        """samples: a NestedTensor, a list of [3, H, W] images, or a [B, 3, H, W] batch -> DeformableOutput."""
        samples = as_nested(samples)
        srcs, masks, pos = self.levels(samples)
        query_embed = None if self.two_stage else self.query_embed.weight
        out = self.transformer(srcs, masks, pos, query_embed)
        return self.heads(out)

    def heads(self, out: TransformerOutput) -> DeformableOutput:
        """Class logits and boxes of every decoder layer: each layer's box is its head's output plus the
        inverse sigmoid of the reference it started from (only x, y for a 2-d reference)."""
        logits, boxes = [], []
        for layer, hs in enumerate(out.hs):
            reference = inverse_sigmoid(out.init_reference if layer == 0 else out.inter_references[layer - 1])
            tmp = self.bbox_embed[layer](hs)  # [B, Q, 4]
            if reference.shape[-1] == 4:
                tmp = tmp + reference
            else:
                tmp = F.pad(reference, (0, 2)) + tmp
            logits.append(self.class_embed[layer](hs))  # [B, Q, C]
            boxes.append(tmp.sigmoid())
        result: DeformableOutput = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            result["aux_outputs"] = [
                {"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])
            ]
        if self.two_stage:
            assert out.enc_outputs_class is not None and out.enc_outputs_coord_unact is not None
            result["enc_outputs"] = {
                "pred_logits": out.enc_outputs_class,
                "pred_boxes": out.enc_outputs_coord_unact.sigmoid(),
            }
        return result


def build_deformable_detr(config: DeformableDetrConfig, train_backbone: bool = True) -> DeformableDETR:
    """The network for ``config``, initialised as the official code initialises it."""
    backbone = build_levels_backbone(config, train_backbone)
    transformer = DeformableTransformer(
        d_model=config.hidden_dim,
        nhead=config.nheads,
        num_encoder_layers=config.enc_layers,
        num_decoder_layers=config.dec_layers,
        dim_feedforward=config.dim_feedforward,
        dropout=config.dropout,
        num_feature_levels=config.num_feature_levels,
        dec_n_points=config.dec_n_points,
        enc_n_points=config.enc_n_points,
        two_stage=config.two_stage,
        two_stage_num_proposals=config.num_queries,
    )
    return DeformableDETR(
        backbone,
        transformer,
        config.num_classes,
        config.num_queries,
        config.num_feature_levels,
        aux_loss=config.aux_loss,
        with_box_refine=config.with_box_refine,
        two_stage=config.two_stage,
    )
