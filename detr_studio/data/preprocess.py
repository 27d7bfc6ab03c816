"""The reference's evaluation preprocessing: resize (shorter side 800, longer at most 1333), ImageNet
normalisation, and batching with a padding mask."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..model.nested import NestedTensor, nested_tensor_from_tensor_list

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(width: int, height: int, size: int = 800, max_size: int | None = 1333) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to ``size`` with the longer capped at ``max_size``,
    rounding exactly as the reference does."""
    if max_size is not None:
        short, long = float(min(width, height)), float(max(width, height))
        if long / short * size > max_size:
            size = round(max_size * short / long)
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_image(img: Image.Image, size: int = 800, max_size: int | None = 1333) -> Image.Image:
    h, w = resized_size(img.width, img.height, size, max_size)
    if (h, w) == (img.height, img.width):
        return img
    return img.resize((w, h), Image.BILINEAR)


def to_normalized_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> [3, H, W] float32, ImageNet-normalised."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return arr.sub_(mean).div_(std)


def prepare(img: Image.Image, size: int = 800, max_size: int | None = 1333) -> Tensor:
    """The full evaluation transform for one image: -> [3, H', W']."""
    return to_normalized_tensor(resize_image(img, size, max_size))


def batch(tensors: list[Tensor]) -> NestedTensor:
    """Pad to the largest image of the batch: tensors [B, 3, H, W], mask [B, H, W] (True = padding)."""
    return nested_tensor_from_tensor_list(tensors)
