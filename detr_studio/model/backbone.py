"""The convolutional backbone: a torchvision ResNet with frozen batch norm, and its position encoding.

Module names follow the reference implementation (``backbone.0.body.*``, ``backbone.1.*``) so that
its checkpoints load unchanged. ImageNet weights are never downloaded: the network is built with
``weights=None`` and gets its weights from a DETR checkpoint.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter

from .nested import NestedTensor, pad_mask_to
from .position_encoding import build_position_encoding

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all stored as buffers.

    Checkpoints written with a regular BatchNorm2d carry ``num_batches_tracked``; it is dropped on load.
    """

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        # Cast to the activation dtype so that reduced precision stays reduced through the backbone.
        return x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]


class BackboneBase(nn.Module):
    def __init__(
        self, backbone: nn.Module, train_backbone: bool, num_channels: int, return_interm_layers: bool
    ):
        super().__init__()
        for name, parameter in backbone.named_parameters():
            trainable = train_backbone and any(layer in name for layer in ("layer2", "layer3", "layer4"))
            parameter.requires_grad_(trainable)
        if return_interm_layers:
            return_layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
        else:
            return_layers = {"layer4": "0"}
        self.body = IntermediateLayerGetter(backbone, return_layers=return_layers)
        self.num_channels = num_channels

    def forward(self, images: NestedTensor) -> dict[str, NestedTensor]:
        features = self.body(images.tensors)
        return {name: NestedTensor(x, pad_mask_to(images.mask, x.shape[-2:])) for name, x in features.items()}


class Backbone(BackboneBase):
    """A ResNet (18/34/50/101) with frozen batch norm; ``dilation`` gives the DC5 variant (stride 16)."""

    def __init__(self, name: str, train_backbone: bool, return_interm_layers: bool, dilation: bool):
        if name not in RESNETS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(RESNETS)}")
        small = name in ("resnet18", "resnet34")
        if small and dilation:
            raise ValueError(f"{name} does not support dilation (DC5)")
        net = getattr(torchvision.models, name)(
            weights=None,
            replace_stride_with_dilation=None if small else [False, False, dilation],
            norm_layer=FrozenBatchNorm2d,
        )
        num_channels = 512 if small else 2048
        super().__init__(net, train_backbone, num_channels, return_interm_layers)
        self.layer_channels = [64, 128, 256, 512] if small else [256, 512, 1024, 2048]
        self.stride = 16 if dilation else 32


class Joiner(nn.Sequential):
    """``self[0]`` is the backbone, ``self[1]`` the position encoding."""

    def __init__(self, backbone: Backbone, position_embedding: nn.Module):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels

    def forward(self, images: NestedTensor) -> tuple[list[NestedTensor], list[Tensor]]:
        features = self[0](images)
        out = list(features.values())
        pos = [self[1](x).to(x.tensors.dtype) for x in out]
        return out, pos


def build_backbone(
    name: str = "resnet50",
    *,
    hidden_dim: int = 256,
    position_embedding: str = "sine",
    train_backbone: bool = True,
    return_interm_layers: bool = False,
    dilation: bool = False,
) -> Joiner:
    body = Backbone(name, train_backbone, return_interm_layers, dilation)
    return Joiner(body, build_position_encoding(position_embedding, hidden_dim))
