"""COCO detection and panoptic datasets turn annotation files into the reference's training targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from detr_studio.common.panoptic_ids import id2rgb
from detr_studio.data.coco import CocoDocument, CocoFormatError
from detr_studio.data.dataset import (
    CocoDetectionDataset,
    CocoPanopticDataset,
    DatasetError,
    collate_fn,
    segmentation_to_mask,
)
from detr_studio.data.images import ImageReadError
from detr_studio.data.transforms import Target, make_transforms

W, H = 64, 48
TRIANGLE = [10.0, 10.0, 40.0, 10.0, 10.0, 40.0]  # right triangle, legs of 30 px: area 450


def _write_image(folder: Path, name: str, width: int = W, height: int = H) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / name)


def _square_rle(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    return {"size": [H, W], "counts": [0, *runs] if flat[0] else runs}


def _coco(tmp_path: Path) -> dict:
    _write_image(tmp_path / "images", "a.jpg")
    _write_image(tmp_path / "images", "b.png", 32, 32)
    compressed = coco_mask.encode(np.asfortranarray(_square_rle(40, 30, 60, 45)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    return {
        "images": [
            {"id": 3, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 9, "file_name": "b.png", "width": 32, "height": 32},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 90, "name": "toothbrush"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 7, "bbox": [10, 10, 30, 30], "area": 450.0, "iscrowd": 0,
             "segmentation": [TRIANGLE]},
            {"id": 2, "image_id": 3, "category_id": 90, "bbox": [5, 5, 20, 20], "area": 400.0, "iscrowd": 1,
             "segmentation": _uncompressed_rle(_square_rle(5, 5, 25, 25))},
            {"id": 3, "image_id": 3, "category_id": 90, "bbox": [56, -2, 10, 8], "area": 48.0, "iscrowd": 0,
             "segmentation": _uncompressed_rle(_square_rle(56, 0, 64, 6))},
            {"id": 4, "image_id": 3, "category_id": 18, "bbox": [20, 20, 0, 10], "area": 0.0, "iscrowd": 0,
             "segmentation": []},
            {"id": 5, "image_id": 3, "category_id": 18, "bbox": [40, 30, 20, 15], "area": 300.0, "iscrowd": 0,
             "segmentation": compressed},
        ],
    }  # fmt: skip


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_targets_drop_crowds_and_empty_boxes_clamp_to_the_image_and_keep_category_ids(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(_coco(tmp_path), tmp_path / "images")
    image, target = dataset[0]
    assert isinstance(image, Image.Image) and image.size == (W, H)
    assert target.labels.tolist() == [7, 90, 18]
    assert target.boxes.tolist() == [[10, 10, 40, 40], [56, 0, 64, 6], [40, 30, 60, 45]]
    assert target.area.tolist() == [450.0, 48.0, 300.0]
    assert target.iscrowd.tolist() == [0, 0, 0]
    assert target.image_id.tolist() == [3]
    assert target.orig_size.tolist() == [H, W] and target.size.tolist() == [H, W]
    assert target.masks is None


def test_masks_come_from_polygons_and_both_kinds_of_rle(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(_coco(tmp_path), tmp_path / "images", masks=True)
    _, target = dataset[0]
    assert target.masks.shape == (3, H, W) and target.masks.dtype == torch.uint8
    polygon_area = float(target.masks[0].sum())
    assert abs(polygon_area - 450.0) / 450.0 < 0.1
    assert torch.equal(target.masks[1], torch.from_numpy(_square_rle(56, 0, 64, 6)))
    assert torch.equal(target.masks[2], torch.from_numpy(_square_rle(40, 30, 60, 45)))


def test_segmentation_to_mask_refuses_an_rle_of_another_size() -> None:
    rle = {"size": [10, 10], "counts": [100]}
    with pytest.raises(DatasetError, match=r"annotation 5: RLE size \[10, 10\]"):
        segmentation_to_mask(rle, 20, 20, where="ann.json: annotation 5")


def test_an_image_without_annotations_has_an_empty_target(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(
        _coco(tmp_path), tmp_path / "images", make_transforms("val", scales=[32]), masks=True
    )
    image, target = dataset[1]
    assert tuple(image.shape) == (3, 32, 32)
    assert target.boxes.shape == (0, 4) and target.labels.shape == (0,)
    assert target.masks.shape == (0, 32, 32)


def test_items_follow_image_id_order_and_subset_narrows_them(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(_coco(tmp_path), tmp_path / "images")
    assert dataset.image_ids == [3, 9] and len(dataset) == 2
    only_b = dataset.subset([9])
    assert len(only_b) == 1 and only_b[0][1].image_id.tolist() == [9]
    assert len(dataset) == 2
    assert [a["id"] for a in only_b.coco_dict()["annotations"]] == []
    assert [i["id"] for i in only_b.coco_dict()["images"]] == [9]
    with pytest.raises(ValueError, match="no image with id 42"):
        dataset.subset([9, 42])


def test_num_classes_is_the_largest_category_id_plus_one(tmp_path: Path) -> None:
    assert CocoDetectionDataset(_coco(tmp_path), tmp_path / "images").num_classes == 91


def test_annotations_are_read_from_a_json_file(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "ann.json", _coco(tmp_path))
    dataset = CocoDetectionDataset(path, tmp_path / "images")
    assert dataset[0][1].labels.tolist() == [7, 90, 18]


def test_a_coco_document_can_be_the_source(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "ann.json", _coco(tmp_path))
    dataset = CocoDetectionDataset(CocoDocument.load(path), tmp_path / "images")
    assert dataset[0][1].labels.tolist() == [7, 90, 18]
    assert any("annotation id 3" in w for w in dataset.warnings)  # the box reaching past the edge


def test_rejected_annotations_are_neither_trained_on_nor_evaluated_against(tmp_path: Path) -> None:
    data = _coco(tmp_path)
    data["annotations"][0]["detr_studio"] = {"source": "model", "score": 0.4, "review": "rejected"}
    data["annotations"][2]["detr_studio"] = {"source": "model", "score": 0.9, "review": "pending"}
    dataset = CocoDetectionDataset(data, tmp_path / "images")
    assert dataset[0][1].labels.tolist() == [90, 18]
    assert [a["id"] for a in dataset.coco_dict()["annotations"]] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["annotations"][0].pop("bbox"), "bbox"),
        (lambda d: d["annotations"][0].update(category_id="7"), "category_id"),
        (lambda d: d["annotations"][0].update(image_id=77), "77"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id 3"),
        (lambda d: d.pop("images"), "'images'"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, "x", 4]), "bbox"),
    ],
)
def test_bad_annotation_files_are_refused_naming_the_file(tmp_path: Path, change, fragment: str) -> None:
    data = _coco(tmp_path)
    change(data)
    path = _write_json(tmp_path / "bad.json", data)
    with pytest.raises(ValueError) as info:
        CocoDetectionDataset(path, tmp_path / "images")
    assert str(path) in str(info.value) and fragment in str(info.value)
    with pytest.raises(CocoFormatError):
        CocoDetectionDataset(data, tmp_path / "images")


def test_unreadable_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="broken.json: not valid JSON"):
        CocoDetectionDataset(path, tmp_path)
    with pytest.raises(DatasetError, match="missing.json: no such annotation file"):
        CocoDetectionDataset(tmp_path / "missing.json", tmp_path)


def test_a_missing_image_raises_the_image_error_naming_the_file(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(_coco(tmp_path), tmp_path / "elsewhere")
    with pytest.raises(ImageReadError, match=r"elsewhere/a\.jpg: no such file"):
        dataset[0]


def test_an_image_whose_size_differs_from_the_annotations_is_reported(tmp_path: Path) -> None:
    data = _coco(tmp_path)
    data["images"][0]["width"] = 100
    with pytest.warns(UserWarning, match=r"a\.jpg: image is 64x48 but .* says 100x48"):
        CocoDetectionDataset(data, tmp_path / "images")[0]


def test_collate_pads_images_and_marks_the_padding(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(_coco(tmp_path), tmp_path / "images", make_transforms("val", scales=[32]))
    batch = [dataset[0], dataset[1]]
    nested, targets = collate_fn(batch)
    assert tuple(nested.tensors.shape) == (2, 3, 32, 42)
    assert not nested.mask[0].any()
    assert not nested.mask[1, :, :32].any() and nested.mask[1, :, 32:].all()
    assert torch.equal(nested.tensors[1, :, :, :32], batch[1][0])
    assert all(isinstance(t, Target) for t in targets) and targets[0].labels.tolist() == [7, 90, 18]


def test_a_seeded_dataset_repeats_its_augmentations_and_changes_them_per_epoch(tmp_path: Path) -> None:
    def boxes_over_epochs(dataset: CocoDetectionDataset) -> list[torch.Tensor]:
        out = []
        for epoch in range(6):
            dataset.set_epoch(epoch)
            out.append(dataset[0][1].boxes)
        return out

    transform = make_transforms("train", scales=[40, 48, 56], max_size=None, crop=(20, 40), crop_scales=[48])
    first = boxes_over_epochs(CocoDetectionDataset(_coco(tmp_path), tmp_path / "images", transform, seed=11))
    again = boxes_over_epochs(CocoDetectionDataset(_coco(tmp_path), tmp_path / "images", transform, seed=11))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(first[0].shape != b.shape or not torch.equal(first[0], b) for b in first[1:])


def test_dataloader_batches_with_the_collate_function(tmp_path: Path) -> None:
    dataset = CocoDetectionDataset(
        _coco(tmp_path), tmp_path / "images", make_transforms("val", scales=[32]), masks=True
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_fn)
    nested, targets = next(iter(loader))
    assert nested.tensors.shape[0] == 2 and len(targets) == 2
    assert targets[0].masks.shape[-2:] == tuple(targets[0].size.tolist())


# ---------------------------------------------------------------- panoptic


def _panoptic(tmp_path: Path, with_bbox: bool = True) -> dict:
    _write_image(tmp_path / "images", "p.jpg")
    ids = np.zeros((H, W), dtype=np.int64)
    ids[:24] = 5000  # stuff, top half
    ids[24:] = 6000  # stuff, bottom half
    ids[10:20, 5:25] = 101  # thing
    ids[30:40, 30:60] = 202  # crowd thing
    ids[2:4, 60:63] = 303  # small thing
    (tmp_path / "png").mkdir(exist_ok=True)
    Image.fromarray(id2rgb(ids)).save(tmp_path / "png" / "p.png")
    segments = [
        {"id": 101, "category_id": 1, "iscrowd": 0, "bbox": [5, 10, 20, 10], "area": 200},
        {"id": 202, "category_id": 1, "iscrowd": 1, "bbox": [30, 30, 30, 10], "area": 300},
        {"id": 303, "category_id": 3, "iscrowd": 0, "bbox": [60, 2, 3, 2], "area": 6},
        {"id": 5000, "category_id": 184, "iscrowd": 0, "bbox": [0, 0, 64, 24], "area": 1330},
        {"id": 6000, "category_id": 199, "iscrowd": 0, "bbox": [0, 24, 64, 24], "area": 1236},
    ]
    if not with_bbox:
        for segment in segments:
            del segment["bbox"]
    return {
        "images": [{"id": 4, "file_name": "p.jpg", "width": W, "height": H}],
        "annotations": [{"image_id": 4, "file_name": "p.png", "segments_info": segments}],
        "categories": [
            {"id": 1, "name": "person", "isthing": 1},
            {"id": 3, "name": "car", "isthing": 1},
            {"id": 184, "name": "sky", "isthing": 0},
            {"id": 199, "name": "wall", "isthing": 0},
        ],
    }


def test_panoptic_targets_have_one_mask_per_segment_from_the_png_ids(tmp_path: Path) -> None:
    dataset = CocoPanopticDataset(_panoptic(tmp_path), tmp_path / "images", tmp_path / "png")
    _, target = dataset[0]
    assert target.labels.tolist() == [1, 3, 184, 199]
    assert target.masks.shape == (4, H, W)
    assert target.masks[0, 10:20, 5:25].all() and int(target.masks[0].sum()) == 200
    assert int(target.masks[1].sum()) == 6
    assert int(target.masks[2, :24].sum()) == 24 * 64 - 200 - 6
    assert not bool((target.masks.sum(0) > 1).any())
    assert target.boxes.tolist()[:2] == [[5, 10, 25, 20], [60, 2, 63, 4]]
    assert target.area.tolist() == [200, 6, 1330, 1236]
    assert dataset.is_thing == {1: True, 3: True, 184: False, 199: False}
    assert dataset.num_classes == 200


def test_panoptic_boxes_fall_back_to_the_masks(tmp_path: Path) -> None:
    dataset = CocoPanopticDataset(
        _panoptic(tmp_path, with_bbox=False), tmp_path / "images", tmp_path / "png", masks=False
    )
    _, target = dataset[0]
    assert target.masks is None
    assert target.boxes.tolist() == [[5, 10, 25, 20], [60, 2, 63, 4], [0, 0, 64, 24], [0, 24, 64, 48]]


def test_panoptic_crowd_segments_are_kept_only_when_asked(tmp_path: Path) -> None:
    dataset = CocoPanopticDataset(_panoptic(tmp_path), tmp_path / "images", tmp_path / "png", keep_crowd=True)
    _, target = dataset[0]
    assert target.labels.tolist() == [1, 1, 3, 184, 199]
    assert target.iscrowd.tolist() == [0, 1, 0, 0, 0]
    assert int(target.masks[1].sum()) == 300


def test_panoptic_png_of_the_wrong_size_is_refused_naming_it(tmp_path: Path) -> None:
    data = _panoptic(tmp_path)
    Image.new("RGB", (10, 10)).save(tmp_path / "png" / "p.png")
    dataset = CocoPanopticDataset(data, tmp_path / "images", tmp_path / "png")
    with pytest.raises(DatasetError, match=r"p\.png: panoptic PNG is 10x10 but its image is 64x48"):
        dataset[0]


def test_panoptic_segments_with_duplicate_ids_are_refused(tmp_path: Path) -> None:
    data = _panoptic(tmp_path)
    data["annotations"][0]["segments_info"][1]["id"] = 101
    with pytest.raises(ValueError, match="segment id 101"):
        CocoPanopticDataset(data, tmp_path / "images", tmp_path / "png")


def test_panoptic_ground_truth_for_evaluation_is_one_instance_per_segment(tmp_path: Path) -> None:
    dataset = CocoPanopticDataset(_panoptic(tmp_path), tmp_path / "images", tmp_path / "png")
    gt = dataset.coco_dict()
    anns = gt["annotations"]
    assert [(a["category_id"], a["iscrowd"]) for a in anns] == [(1, 0), (1, 1), (3, 0), (184, 0), (199, 0)]
    assert anns[0]["bbox"] == [5, 10, 20, 10]
    assert int(coco_mask.decode(anns[0]["segmentation"]).sum()) == 200
    assert [i["id"] for i in gt["images"]] == [4]


def test_panoptic_transforms_keep_masks_with_their_segments(tmp_path: Path) -> None:
    dataset = CocoPanopticDataset(
        _panoptic(tmp_path), tmp_path / "images", tmp_path / "png", make_transforms("val", scales=[96])
    )
    image, target = dataset[0]
    assert tuple(image.shape) == (3, 96, 128)
    assert target.masks.shape == (4, 96, 128)
    assert int(target.masks[0].sum()) == 800
