"""Augmentations that change an image and its annotations together, and the training target they act on.

The recipe is the official DETR one: a random horizontal
flip, then with even odds either a multi-scale resize or a resize, random crop and multi-scale resize,
then ImageNet normalisation, which also turns the boxes from absolute ``xyxy`` pixels into ``cxcywh``
relative to the image. Boxes, labels, areas, crowd flags and masks stay in step through every step; a
crop drops the objects it cuts away.

Every random draw comes from the ``torch.Generator`` passed to the call, or from torch's global generator
when none is given (``DataLoader`` seeds that one differently in each worker), so a fixed seed repeats the
same augmentations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..model.box_ops import box_xyxy_to_cxcywh
from .preprocess import resize_image, to_normalized_tensor
from .sizes import DEFAULT_CROP, DEFAULT_CROP_SCALES, DEFAULT_MAX_SIZE, DEFAULT_SCALES

PER_OBJECT_FIELDS = ("boxes", "labels", "area", "iscrowd", "masks")


@dataclass(eq=False)
class Target(Mapping[str, Tensor]):
    """The annotations of one image, as the matcher and the losses consume them.

    It reads like the reference's target dict (``target["boxes"]``, ``target.items()``); ``masks`` is
    left out of the keys when absent. Until normalisation, boxes are absolute ``xyxy`` pixels of the
    current image; after it they are ``cxcywh`` divided by the image (w, h, w, h).
    """

    boxes: Tensor  # [N, 4] float32
    labels: Tensor  # [N] int64, category ids unchanged
    area: Tensor  # [N] float32, pixels of the current image
    iscrowd: Tensor  # [N] int64
    image_id: Tensor  # [1] int64
    orig_size: Tensor  # [2] int64 (h, w) of the image as read
    size: Tensor  # [2] int64 (h, w) of the image now
    masks: Tensor | None = None  # [N, H, W] uint8, H and W as in ``size``

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> tuple[str, ...]:
        return _TARGET_KEYS if self.masks is not None else _TARGET_KEYS_NO_MASKS

    @property
    def num_objects(self) -> int:
        return int(self.labels.shape[0])

    def replace(self, **changes: Any) -> Target:
        return dataclasses.replace(self, **changes)

    def select(self, keep: Tensor) -> Target:
        """Only the objects where ``keep`` ([N] bool, or indices) says so."""
        return self.replace(
            boxes=self.boxes[keep],
            labels=self.labels[keep],
            area=self.area[keep],
            iscrowd=self.iscrowd[keep],
            masks=None if self.masks is None else self.masks[keep],
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Target:
        moved = {key: value.to(device, non_blocking=non_blocking) for key, value in self.items()}
        return self.replace(**moved)

    def pin_memory(self) -> Target:
        """Page-locked copies, so ``DataLoader(pin_memory=True)`` keeps the Target type."""
        return self.replace(**{key: value.pin_memory() for key, value in self.items()})


# computed once: the criterion reads a target's keys many times a step
_TARGET_KEYS = tuple(f.name for f in dataclasses.fields(Target))
_TARGET_KEYS_NO_MASKS = tuple(n for n in _TARGET_KEYS if n != "masks")

ImageLike = Image.Image | Tensor


class Transform(Protocol):
    def __call__(
        self, image: ImageLike, target: Target, generator: torch.Generator | None = None
    ) -> tuple[ImageLike, Target]: ...


# ---------------------------------------------------------------- deterministic operations


def hflip(image: Image.Image, target: Target) -> tuple[Image.Image, Target]:
    """Mirror left to right."""
    w = image.width
    flipped = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    boxes = target.boxes[:, [2, 1, 0, 3]] * torch.tensor([-1.0, 1.0, -1.0, 1.0]) + torch.tensor(
        [w, 0.0, w, 0.0]
    )
    masks = None if target.masks is None else target.masks.flip(-1)
    return flipped, target.replace(boxes=boxes, masks=masks)


def resize(image: Image.Image, target: Target, size: int, max_size: int | None) -> tuple[Image.Image, Target]:
    """Shorter side to ``size``, longer side at most ``max_size``, rounded as the reference does."""
    resized = resize_image(image, size, max_size)
    if resized.size == image.size:
        return image, target
    ratio_w = resized.width / image.width
    ratio_h = resized.height / image.height
    boxes = target.boxes * torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h])
    area = target.area * (ratio_w * ratio_h)
    masks = target.masks
    if masks is not None:
        new_hw = (resized.height, resized.width)
        if masks.shape[0] == 0:
            masks = masks.new_zeros((0, *new_hw))
        else:
            masks = (F.interpolate(masks[:, None].float(), size=new_hw, mode="nearest")[:, 0] > 0.5).to(
                torch.uint8
            )
    size_hw = torch.tensor([resized.height, resized.width], dtype=torch.int64)
    return resized, target.replace(boxes=boxes, area=area, masks=masks, size=size_hw)


def crop(
    image: Image.Image, target: Target, top: int, left: int, height: int, width: int
) -> tuple[Image.Image, Target]:
    """Cut out a region; boxes are clipped to it, areas recomputed, and emptied objects dropped."""
    cropped = image.crop((left, top, left + width, top + height))
    shifted = target.boxes - torch.tensor([left, top, left, top], dtype=torch.float32)
    corners = torch.min(shifted.reshape(-1, 2, 2), torch.tensor([width, height], dtype=torch.float32))
    corners = corners.clamp(min=0)
    area = (corners[:, 1, :] - corners[:, 0, :]).prod(dim=1)
    keep = (corners[:, 1, :] > corners[:, 0, :]).all(dim=1)
    masks = None if target.masks is None else target.masks[:, top : top + height, left : left + width]
    size_hw = torch.tensor([height, width], dtype=torch.int64)
    clipped = target.replace(boxes=corners.reshape(-1, 4), area=area, masks=masks, size=size_hw)
    return cropped, clipped.select(keep)


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high], both ends included."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _coin(p: float, generator: torch.Generator | None) -> bool:
    return bool(torch.rand((), generator=generator) < p)


# ---------------------------------------------------------------- transforms


class Compose:
    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(
        self, image: ImageLike, target: Target, generator: torch.Generator | None = None
    ) -> tuple[ImageLike, Target]:
        for transform in self.transforms:
            image, target = transform(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(
        self, image: Image.Image, target: Target, generator: torch.Generator | None = None
    ) -> tuple[Image.Image, Target]:
        if _coin(self.p, generator):
            return hflip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomResize:
    """Shorter side to one of ``sizes`` picked at random, longer side capped at ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None) -> None:
        if not sizes:
            raise ValueError("RandomResize needs at least one size")
        self.sizes = tuple(int(s) for s in sizes)
        self.max_size = max_size

    def __call__(
        self, image: Image.Image, target: Target, generator: torch.Generator | None = None
    ) -> tuple[Image.Image, Target]:
        size = (
            self.sizes[_randint(0, len(self.sizes) - 1, generator)] if len(self.sizes) > 1 else self.sizes[0]
        )
        return resize(image, target, size, self.max_size)

    def __repr__(self) -> str:
        return f"RandomResize(sizes={list(self.sizes)}, max_size={self.max_size})"


class RandomSizeCrop:
    """Crop a random region whose width and height are each uniform in [min_size, min(side, max_size)].

    An image side shorter than ``min_size`` is kept whole along that side (the reference would fail).
    """

    def __init__(self, min_size: int, max_size: int) -> None:
        if not 0 < min_size <= max_size:
            raise ValueError(f"RandomSizeCrop needs 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size = min_size
        self.max_size = max_size

    def __call__(
        self, image: Image.Image, target: Target, generator: torch.Generator | None = None
    ) -> tuple[Image.Image, Target]:
        img_w, img_h = image.size
        width = _randint(min(self.min_size, img_w), min(img_w, self.max_size), generator)
        height = _randint(min(self.min_size, img_h), min(img_h, self.max_size), generator)
        top = _randint(0, img_h - height, generator)
        left = _randint(0, img_w - width, generator)
        return crop(image, target, top, left, height, width)

    def __repr__(self) -> str:
        return f"RandomSizeCrop({self.min_size}, {self.max_size})"


class RandomSelect:
    """``first`` with probability ``p``, otherwise ``second``."""

    def __init__(self, first: Transform, second: Transform, p: float = 0.5) -> None:
        self.first = first
        self.second = second
        self.p = p

    def __call__(
        self, image: ImageLike, target: Target, generator: torch.Generator | None = None
    ) -> tuple[ImageLike, Target]:
        if _coin(self.p, generator):
            return self.first(image, target, generator)
        return self.second(image, target, generator)

    def __repr__(self) -> str:
        return f"RandomSelect({self.first!r}, {self.second!r}, p={self.p})"


class ToNormalizedTensor:
    """PIL image -> [3, H, W] float32 with the ImageNet mean and std; boxes -> cxcywh relative to (w, h)."""

    def __call__(
        self, image: Image.Image, target: Target, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Target]:
        tensor = to_normalized_tensor(image)  # [3, H, W]
        h, w = tensor.shape[-2:]
        boxes = box_xyxy_to_cxcywh(target.boxes) / torch.tensor([w, h, w, h], dtype=torch.float32)
        return tensor, target.replace(boxes=boxes)

    def __repr__(self) -> str:
        return "ToNormalizedTensor()"


# ---------------------------------------------------------------- recipes


def make_transforms(
    split: str,
    scales: Sequence[int] = DEFAULT_SCALES,
    max_size: int | None = DEFAULT_MAX_SIZE,
    crop: tuple[int, int] | None = DEFAULT_CROP,
    crop_scales: Sequence[int] = DEFAULT_CROP_SCALES,
    val_size: int | None = None,
) -> Compose:
    """The reference's train or val pipeline, with its sizes adjustable for small images.

    ``split`` is "train" or "val". ``crop=None`` leaves out the crop branch, so training only flips and
    resizes. The val pipeline resizes the shorter side to ``val_size`` (default: the largest scale).
    """
    if not scales:
        raise ValueError("make_transforms: scales must not be empty")
    if split == "train":
        multi_scale = RandomResize(scales, max_size=max_size)
        if crop is None:
            chosen: Transform = multi_scale
        else:
            resize_crop_resize = Compose(
                [RandomResize(crop_scales), RandomSizeCrop(*crop), RandomResize(scales, max_size=max_size)]
            )
            chosen = RandomSelect(multi_scale, resize_crop_resize)
        return Compose([RandomHorizontalFlip(), chosen, ToNormalizedTensor()])
    if split == "val":
        size = max(scales) if val_size is None else val_size
        return Compose([RandomResize([size], max_size=max_size), ToNormalizedTensor()])
    raise ValueError(f"make_transforms: split must be 'train' or 'val', not {split!r}")
