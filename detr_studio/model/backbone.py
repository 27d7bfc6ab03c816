"""The convolutional backbone: a torchvision ResNet with frozen batch norm, and its position encoding.

Module names follow the reference implementation (``backbone.0.body.*``, ``backbone.1.*``) so that
its checkpoints load unchanged. ImageNet weights are never downloaded: the network is built with
``weights=None`` and gets its weights from a DETR checkpoint.

Two options exist for training small models from scratch, where there is no pretrained backbone to
keep frozen: ResNet-18/34 of another width (``width`` channels in the stem instead of 64), and
``norm="batch"``: ordinary, trainable batch norm with every stage training. A network trained that
way is saved with frozen batch norm (the running statistics become its fixed ones), so the
deployed model has the reference layout and the same outputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter

from .nested import NestedTensor, pad_mask_to
from .position_encoding import build_position_encoding
from .state_dicts import count_indices

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
NORMS = ("frozen", "batch")
_BASIC_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
BODY_PREFIX = "backbone.0.body."  # the ResNet's keys in every family's state dict

# (block type, blocks per stage, stage output widths) of each ResNet we can build.
RESNET_SHAPES: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048)),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (256, 512, 1024, 2048)),
}


def resnet_of(sd: Mapping[str, object]) -> str:
    """Which of ``RESNETS`` the ``backbone.0.body.*`` keys of a state dict are (block type and blocks per
    stage); ValueError naming what they are otherwise."""
    depths = tuple(count_indices(sd, f"{BODY_PREFIX}layer{i}.") for i in range(1, 5))
    block = "bottleneck" if f"{BODY_PREFIX}layer1.0.conv3.weight" in sd else "basic"
    for name, (kind, blocks, _) in RESNET_SHAPES.items():
        if (kind, blocks) == (block, depths):
            return name
    raise ValueError(
        f"backbone weights are a {block} ResNet with blocks {list(depths)}, not ResNet-18/34/50/101"
    )


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
        self,
        backbone: nn.Module,
        train_backbone: bool,
        num_channels: int,
        return_interm_layers: bool,
        train_stem: bool = False,
    ):
        super().__init__()
        stages = ("layer2", "layer3", "layer4")
        for name, parameter in backbone.named_parameters():
            trainable = train_backbone and (train_stem or any(layer in name for layer in stages))
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


class _BasicResNet(torchvision.models.ResNet):
    """torchvision's ResNet-18/34 with ``width`` stem channels (64 in the standard network), no classifier,
    and optionally stride 1 in the last stage (stride 16 overall; basic blocks cannot dilate) or in the last
    two (stride 8: twice the feature map of stride 16 each way, for small objects in small images).

    Parameter names are torchvision's, so at width 64 the state dict is the standard one.
    """

    def __init__(self, blocks: tuple[int, ...], width: int, norm_layer: type[nn.Module], stride: int = 32):
        nn.Module.__init__(self)
        self._norm_layer = norm_layer
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        block = torchvision.models.resnet.BasicBlock
        self.layer1 = self._make_layer(block, width, blocks[0])
        self.layer2 = self._make_layer(block, 2 * width, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, blocks[2], stride=2 if stride > 8 else 1)
        self.layer4 = self._make_layer(block, 8 * width, blocks[3], stride=2 if stride > 16 else 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class Backbone(BackboneBase):
    """A ResNet (18/34/50/101) with frozen batch norm; ``dilation`` gives the DC5 variant (stride 16).

    ``width`` (ResNet-18/34 only) sets the stem channels; ``norm="batch"`` trains batch norm and every
    stage, for networks trained from scratch.
    """

    def __init__(
        self,
        name: str,
        train_backbone: bool,
        return_interm_layers: bool,
        dilation: bool,
        width: int = 64,
        norm: str = "frozen",
        stride: int = 0,
    ):
        if name not in RESNETS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(RESNETS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown backbone norm {norm!r}; choose one of {', '.join(NORMS)}")
        norm_layer = FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d
        small = name in _BASIC_BLOCKS
        stride = stride or (16 if dilation else 32)
        if stride not in (8, 16, 32) or (stride == 8 and not small):
            raise ValueError(f"{name} cannot run at stride {stride}")
        if small:
            net: nn.Module = _BasicResNet(_BASIC_BLOCKS[name], width, norm_layer, stride)
            channels = [width, 2 * width, 4 * width, 8 * width]
        else:
            if width != 64:
                raise ValueError(f"{name} has the standard width only (64), got {width}")
            net = getattr(torchvision.models, name)(
                weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=norm_layer
            )
            channels = [256, 512, 1024, 2048]
        super().__init__(net, train_backbone, channels[-1], return_interm_layers, train_stem=norm == "batch")
        self.layer_channels = channels
        self.stride = stride


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
    width: int = 64,
    norm: str = "frozen",
    stride: int = 0,
) -> Joiner:
    body = Backbone(name, train_backbone, return_interm_layers, dilation, width, norm, stride)
    return Joiner(body, build_position_encoding(position_embedding, hidden_dim))
