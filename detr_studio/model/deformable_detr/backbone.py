"""The backbone of Deformable DETR: the shared ResNet, returning C3, C4, C5 (multi-scale) or C5 alone.

Unlike DETR's mask mode it never returns C2 (``layer1``). Module names stay the official ones
(``backbone.0.body.*``, ``backbone.1`` the position encoding), so official state dicts load unchanged.
"""

from __future__ import annotations

from torchvision.models._utils import IntermediateLayerGetter

from ..backbone import Backbone, Joiner
from ..position_encoding import PositionEmbeddingSine
from .config import DeformableDetrConfig

MULTI_SCALE_LAYERS = {"layer2": "0", "layer3": "1", "layer4": "2"}  # C3, C4, C5: strides 8, 16, 32
SINGLE_SCALE_LAYERS = {"layer4": "0"}  # C5: stride 32 (16 with DC5)
PIXEL_CENTRE = -0.5  # the sine encoding's offset: coordinates at the pixel centre


class LevelsBackbone(Backbone):
    """The shared ``Backbone`` with Deformable DETR's return layers; ``num_channels`` lists one width per level."""

    def __init__(self, config: DeformableDetrConfig, train_backbone: bool = True):
        super().__init__(
            config.backbone,
            train_backbone,
            return_interm_layers=False,
            dilation=config.dilation,
            width=config.backbone_width,
        )
        multi = config.num_feature_levels > 1
        layers = MULTI_SCALE_LAYERS if multi else SINGLE_SCALE_LAYERS
        self.body = IntermediateLayerGetter(self.body, return_layers=layers)
        self.level_channels = self.layer_channels[1:] if multi else self.layer_channels[-1:]
        last = self.stride
        self.level_strides = [8, 16, last] if multi else [last]


def build_levels_backbone(config: DeformableDetrConfig, train_backbone: bool = True) -> Joiner:
    """``Joiner(backbone, position encoding)``: ``(features per level, position encodings per level)``."""
    position = PositionEmbeddingSine(config.hidden_dim // 2, normalize=True, offset=PIXEL_CENTRE)
    return Joiner(LevelsBackbone(config, train_backbone), position)
