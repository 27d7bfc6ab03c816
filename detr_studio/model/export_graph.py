"""The module every family exports to ONNX: (images, mask) in, a tuple of named outputs out.

``images`` [B, 3, H, W] float32 and ``mask`` [B, H, W] bool (True on padding) arrive already batched, so
the exported graph has no Python loop over images and no size read as an int: batch, height and width all
stay dynamic. With ``half`` the network (converted to fp16 beforehand) runs in fp16 between float32 inputs
and outputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from .nested import NestedTensor


class ExportGraph(nn.Module):
    """``network(NestedTensor(images, mask))`` -> the outputs named by ``names``, as float32, in that order."""

    def __init__(self, network: nn.Module, names: tuple[str, ...], half: bool = False):
        super().__init__()
        self.network = network
        self.names = names
        self.half = half

    def forward(self, images: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        if self.half:
            images = images.half()
        out = self.network(NestedTensor(images, mask))
        return tuple(out[name].float() for name in self.names)
