"""Folding each frozen batch norm into the convolution before it, for inference.

A frozen batch norm is a fixed per-channel scale and shift, so ``bn(conv(x))`` equals one convolution
with scaled weights and a bias. Folding removes a full pass over every backbone activation (about a
fifth of the forward time on CPUs). Outputs change only by float rounding (~1e-6 relative). Only
inference copies are folded: checkpoints and training keep the reference's modules and names.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import FrozenBatchNorm2d


class FoldedConv2d(nn.Conv2d):
    """Marker type: a convolution that already includes its frozen batch norm."""


def _folded(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> FoldedConv2d:
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()  # [C_out]
    shift = bn.bias - bn.running_mean * scale
    fused = FoldedConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        bias = conv.bias * scale + shift if conv.bias is not None else shift
        fused.bias.copy_(bias)
    fused.requires_grad_(False)
    return fused


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every ``conv`` directly followed by a ``FrozenBatchNorm2d`` sibling (torchvision's
    ResNet naming: conv1/bn1, conv2/bn2, conv3/bn3, downsample.0/downsample.1). Returns the count."""
    count = 0
    for parent in list(module.modules()):
        children = dict(parent.named_children())
        pairs = [(f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
        if isinstance(parent, nn.Sequential) and len(children) == 2:
            pairs.append(("0", "1"))
        for conv_name, bn_name in pairs:
            conv, bn = children.get(conv_name), children.get(bn_name)
            if (
                isinstance(conv, nn.Conv2d)
                and not isinstance(conv, FoldedConv2d)
                and isinstance(bn, FrozenBatchNorm2d)
            ):
                setattr(parent, conv_name, _folded(conv, bn))
                setattr(parent, bn_name, nn.Identity())
                count += 1
    return count
