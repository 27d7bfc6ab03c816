"""A batch of images padded to one size, with the mask that says which pixels are padding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class NestedTensor:
    """``tensors`` [B, C, H, W] and ``mask`` [B, H, W] (True on padded pixels)."""

    tensors: Tensor
    mask: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> NestedTensor:
        return NestedTensor(
            self.tensors.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
        )

    def decompose(self) -> tuple[Tensor, Tensor]:
        return self.tensors, self.mask


def nested_tensor_from_tensor_list(images: list[Tensor] | Tensor, size_divisibility: int = 0) -> NestedTensor:
    """Pad [C, H_i, W_i] images at the bottom and right to the largest size in the batch.

    A 4-D tensor is treated as an already uniform batch (mask all False), as the reference does.
    """
    if isinstance(images, Tensor) and images.dim() == 4:
        b, _, h, w = images.shape
        return NestedTensor(images, torch.zeros((b, h, w), dtype=torch.bool, device=images.device))
    if len(images) == 0:
        raise ValueError("cannot batch an empty list of images")
    if any(img.dim() != 3 for img in images):
        raise ValueError("every image must be a [C, H, W] tensor")
    max_h = max(int(img.shape[1]) for img in images)
    max_w = max(int(img.shape[2]) for img in images)
    if size_divisibility > 1:
        max_h = (max_h + size_divisibility - 1) // size_divisibility * size_divisibility
        max_w = (max_w + size_divisibility - 1) // size_divisibility * size_divisibility
    first = images[0]
    batch = first.new_zeros((len(images), first.shape[0], max_h, max_w))
    mask = torch.ones((len(images), max_h, max_w), dtype=torch.bool, device=first.device)
    for i, img in enumerate(images):
        h, w = img.shape[1:]
        batch[i, :, :h, :w].copy_(img)
        mask[i, :h, :w] = False
    return NestedTensor(batch, mask)


def pad_mask_to(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Shrink a [B, H, W] padding mask to a feature map size with nearest sampling (as the reference)."""
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]
