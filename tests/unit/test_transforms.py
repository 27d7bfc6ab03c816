"""Augmentations keep images, boxes and masks in step, and follow the reference's sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.data import transforms as T
from detr_studio.data.preprocess import prepare, resized_size
from detr_studio.data.sizes import scaled_recipe
from detr_studio.data.transforms import Target, make_transforms
from detr_studio.model.box_ops import box_cxcywh_to_xyxy, masks_to_boxes


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _box_target(width: int, height: int, boxes: list[list[int]], with_masks: bool = True) -> Target:
    """Integer xyxy boxes, each with a mask filling exactly its pixels."""
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros((len(boxes), height, width), dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = 1
    size = torch.tensor([height, width])
    return Target(
        boxes=box_tensor,
        labels=torch.arange(1, len(boxes) + 1),
        area=(box_tensor[:, 2] - box_tensor[:, 0]) * (box_tensor[:, 3] - box_tensor[:, 1]),
        iscrowd=torch.zeros(len(boxes), dtype=torch.int64),
        image_id=torch.tensor([7]),
        orig_size=size,
        size=size.clone(),
        masks=masks if with_masks else None,
    )


def _mask_boxes(target: Target) -> torch.Tensor:
    """xyxy boxes around each mask, with exclusive right/bottom edges like the boxes themselves."""
    boxes = masks_to_boxes(target.masks)
    boxes[:, 2:] += 1
    return boxes


BOXES = [[10, 20, 50, 60], [0, 0, 30, 15], [70, 40, 120, 90]]


def test_hflip_mirrors_boxes_and_masks_together() -> None:
    image, target = _image(120, 90), _box_target(120, 90, BOXES)
    flipped, out = T.hflip(image, target)
    assert flipped.size == image.size
    assert torch.equal(out.boxes, torch.tensor([[70.0, 20, 110, 60], [90, 0, 120, 15], [0, 40, 50, 90]]))
    assert torch.equal(_mask_boxes(out), out.boxes)
    assert np.array_equal(np.asarray(flipped)[:, ::-1], np.asarray(image))


@pytest.mark.parametrize("size", [45, 90, 200, 333])
def test_resize_scales_boxes_masks_and_area_alike(size: int) -> None:
    image, target = _image(120, 90), _box_target(120, 90, BOXES)
    resized, out = T.resize(image, target, size, max_size=None)
    expected_h, expected_w = resized_size(120, 90, size, None)
    assert resized.size == (expected_w, expected_h)
    assert out.masks.shape[-2:] == (expected_h, expected_w)
    assert out.size.tolist() == [expected_h, expected_w]
    ratio_w, ratio_h = expected_w / 120, expected_h / 90
    assert torch.allclose(out.boxes, target.boxes * torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h]))
    assert torch.allclose(out.area, target.area * ratio_w * ratio_h)
    tolerance = max(ratio_w, ratio_h, 1.0)
    assert (_mask_boxes(out) - out.boxes).abs().max() <= tolerance


def test_crop_clips_boxes_recomputes_area_and_keeps_masks_aligned() -> None:
    image, target = _image(120, 90), _box_target(120, 90, BOXES)
    cropped, out = T.crop(image, target, top=30, left=20, height=50, width=80)
    assert cropped.size == (80, 50)
    assert out.size.tolist() == [50, 80]
    # box 0 -> (0, 0, 30, 30); box 1 lies above the crop and is dropped; box 2 -> (50, 10, 80, 50)
    assert torch.equal(out.boxes, torch.tensor([[0.0, 0, 30, 30], [50, 10, 80, 50]]))
    assert out.labels.tolist() == [1, 3]
    assert out.area.tolist() == [900.0, 1200.0]
    assert out.masks.shape == (2, 50, 80)
    assert torch.equal(_mask_boxes(out), out.boxes)


def test_crop_drops_every_field_of_emptied_objects() -> None:
    image, target = _image(120, 90), _box_target(120, 90, BOXES)
    _, out = T.crop(image, target, top=0, left=55, height=35, width=10)
    assert out.num_objects == 0
    for key in ("boxes", "labels", "area", "iscrowd", "masks"):
        assert out[key].shape[0] == 0, key
    assert out.masks.shape == (0, 35, 10)


def test_random_size_crop_respects_its_limits() -> None:
    crop = T.RandomSizeCrop(30, 60)
    generator = torch.Generator().manual_seed(3)
    for _ in range(40):
        cropped, out = crop(_image(120, 90), _box_target(120, 90, BOXES), generator)
        assert 30 <= cropped.width <= 60 and 30 <= cropped.height <= 60
        assert out.size.tolist() == [cropped.height, cropped.width]
        assert torch.equal(_mask_boxes(out), out.boxes)


def test_random_size_crop_keeps_a_side_shorter_than_its_minimum_whole() -> None:
    cropped, _ = T.RandomSizeCrop(384, 600)(_image(500, 200), _box_target(500, 200, [[0, 0, 10, 10]]))
    assert cropped.height == 200
    assert 384 <= cropped.width <= 500


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (1000, 300), (800, 800), (37, 53)])
def test_val_transform_matches_the_inference_preprocessing(width: int, height: int) -> None:
    image = _image(width, height)
    tensor, out = make_transforms("val")(
        image, _box_target(width, height, [[1, 1, 20, 30]], with_masks=False)
    )
    expected_h, expected_w = resized_size(width, height, 800, 1333)
    assert tuple(tensor.shape) == (3, expected_h, expected_w)
    assert out.size.tolist() == [expected_h, expected_w]
    assert out.orig_size.tolist() == [height, width]
    assert torch.equal(tensor, prepare(image))


def test_normalised_boxes_are_cxcywh_relative_to_the_image() -> None:
    target = _box_target(120, 90, [[0, 0, 120, 90], [30, 45, 60, 90]])
    tensor, out = T.ToNormalizedTensor()(_image(120, 90), target)
    assert torch.allclose(out.boxes, torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.375, 0.75, 0.25, 0.5]]))
    assert tensor.dtype == torch.float32


@pytest.mark.parametrize("seed", range(12))
def test_train_pipeline_keeps_boxes_inside_unit_square_and_on_their_masks(seed: int) -> None:
    transform = make_transforms("train", **scaled_recipe(160))
    generator = torch.Generator().manual_seed(seed)
    tensor, out = transform(
        _image(200, 150, seed), _box_target(200, 150, [*BOXES, [150, 100, 200, 150]]), generator
    )
    h, w = tensor.shape[-2:]
    assert out.size.tolist() == [h, w]
    assert min(h, w) <= 160
    assert bool((out.boxes >= 0).all()) and bool((out.boxes <= 1).all())
    assert bool((out.boxes[:, 2:] > 0).all())
    pixels = box_cxcywh_to_xyxy(out.boxes) * torch.tensor([w, h, w, h])
    assert out.masks.shape == (out.num_objects, h, w)
    assert out.labels.shape[0] == out.area.shape[0] == out.iscrowd.shape[0] == out.num_objects
    if out.num_objects:  # two nearest-neighbour mask resizes may each move an edge by about a pixel
        assert (_mask_boxes(out) - pixels).abs().max() <= 3.0


def test_same_generator_seed_repeats_the_augmentation() -> None:
    transform = make_transforms("train", **scaled_recipe(160))

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        tensor, out = transform(
            _image(200, 150), _box_target(200, 150, BOXES), torch.Generator().manual_seed(seed)
        )
        return tensor, out.boxes

    first, again = run(5), run(5)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    outcomes = {tuple(run(seed)[0].shape) + tuple(run(seed)[1].flatten().tolist()) for seed in range(8)}
    assert len(outcomes) > 1


def test_train_recipe_uses_the_reference_structure() -> None:
    transform = make_transforms("train")
    flip, select, normalise = transform.transforms
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    assert isinstance(select, T.RandomSelect) and select.p == 0.5
    assert select.first.sizes == tuple(range(480, 801, 32)) and select.first.max_size == 1333
    resize_first, crop, resize_last = select.second.transforms
    assert resize_first.sizes == (400, 500, 600) and resize_first.max_size is None
    assert (crop.min_size, crop.max_size) == (384, 600)
    assert resize_last.sizes == select.first.sizes
    assert isinstance(normalise, T.ToNormalizedTensor)


def test_train_recipe_without_crop_only_flips_and_resizes() -> None:
    transform = make_transforms("train", scales=[64], max_size=None, crop=None)
    assert isinstance(transform.transforms[1], T.RandomResize)
    tensor, _ = transform(_image(200, 100), _box_target(200, 100, BOXES))
    assert tuple(tensor.shape) == (3, 64, 128)


def test_scaled_recipe_shrinks_every_size_in_proportion() -> None:
    recipe = scaled_recipe(320)
    assert max(recipe["scales"]) == 320 and min(recipe["scales"]) == 192
    assert recipe["max_size"] == 533
    assert recipe["crop"] == (154, 240)
    assert recipe["crop_scales"] == (160, 200, 240)
    tensor, _ = make_transforms("val", **recipe)(
        _image(640, 480), _box_target(640, 480, BOXES, with_masks=False)
    )
    assert tuple(tensor.shape[-2:]) == resized_size(640, 480, 320, 533)


def test_make_transforms_rejects_an_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        make_transforms("test")


def test_target_reads_like_the_reference_dict() -> None:
    target = _box_target(120, 90, BOXES, with_masks=False)
    assert set(target) == {"boxes", "labels", "area", "iscrowd", "image_id", "orig_size", "size"}
    assert "masks" not in target
    assert target["labels"] is target.labels
    with pytest.raises(KeyError):
        target["masks"]
    moved = target.to("cpu")
    assert isinstance(moved, Target) and torch.equal(moved.boxes, target.boxes)
    assert "masks" in _box_target(120, 90, BOXES)
