"""Torch datasets that read COCO detection or COCO panoptic annotations into training targets.

The targets follow the reference (shared/reference/detr-reference-facts.md §4.2): crowd objects are left
out, COCO ``xywh`` boxes become ``xyxy`` clamped to the image, empty boxes are dropped, and labels are the
category ids unchanged. ``collate_fn`` pads a batch into a ``NestedTensor``.

The annotations may be a path to a JSON file, the parsed COCO dict or a ``CocoDocument``; all are checked by
``CocoDocument``. The dataset indexes a snapshot, so later edits to a document do not change a running
training. Annotations a reviewer rejected (``"detr_studio": {"review": "rejected"}``) are never trained on.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torch import Tensor
from torch.utils.data import Dataset

from ..common.panoptic_ids import rgb2id
from ..model.box_ops import masks_to_boxes
from ..model.nested import NestedTensor, nested_tensor_from_tensor_list
from .coco import OUR_KEY, CocoDocument
from .images import load_image
from .transforms import Target, Transform

AnnotationSource = str | os.PathLike[str] | Mapping[str, Any] | CocoDocument


class DatasetError(ValueError):
    """Annotations that cannot be used for training; the message names the file and the problem."""


# ---------------------------------------------------------------- reading the annotation file


def _coco_dict(source: Any) -> tuple[Mapping[str, Any], str, list[str]]:
    """The COCO dict behind ``source``, a name for it in messages, and the document's warnings.

    ``source`` is a path to a JSON file, a parsed COCO dict, or a ``CocoDocument``. Files and dicts are
    checked by ``CocoDocument`` (which raises ``CocoFormatError`` naming the file and every problem), so
    training refuses exactly what the rest of the application refuses.
    """
    if isinstance(source, CocoDocument):
        name = str(source.path) if source.path is not None else "COCO document"
        return source.to_json(), name, [str(w) for w in source.warnings]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data = _read_json(path)
        name = str(path)
    elif isinstance(source, Mapping):
        data, name = source, "COCO annotations"
    else:
        raise TypeError(
            f"annotations must be a path, a COCO dict or a CocoDocument, not {type(source).__name__}"
        )
    checked = CocoDocument(data, source=name, check_masks=False)
    return data, name, [str(w) for w in checked.warnings]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such annotation file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder, not a COCO JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a COCO file must hold a JSON object, not {type(data).__name__}")
    return data


def _as_int(value: Any, what: str, name: str) -> int:
    if isinstance(value, bool):
        raise DatasetError(f"{name}: {what} must be an integer, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{name}: {what} must be an integer, got {value!r}") from None
    if not as_float.is_integer():
        raise DatasetError(f"{name}: {what} must be an integer, got {value!r}")
    return int(as_float)


def _list_of_dicts(data: Mapping[str, Any], key: str, name: str, required: bool = True) -> list[Mapping]:
    if key not in data:
        if required:
            raise DatasetError(f"{name}: missing the '{key}' list")
        return []
    items = data[key]
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise DatasetError(f"{name}: '{key}' must be a list of objects")
    return items


@dataclass
class _CocoIndex:
    """A COCO file indexed by image id, validated enough that reading a sample cannot trip on it."""

    name: str  # the file (or a description) used in messages
    images: dict[int, Mapping[str, Any]]  # image id -> image entry
    by_image: dict[int, list[Mapping[str, Any]]]  # image id -> its annotations
    categories: list[Mapping[str, Any]]
    data: Mapping[str, Any]
    warnings: list[str]


def _index(source: Any, panoptic: bool) -> _CocoIndex:
    data, name, doc_warnings = _coco_dict(source)
    images: dict[int, Mapping[str, Any]] = {}
    for entry in _list_of_dicts(data, "images", name):
        image_id = _as_int(entry.get("id"), "image 'id'", name)
        if image_id in images:
            raise DatasetError(f"{name}: image id {image_id} appears twice")
        if not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            raise DatasetError(f"{name}: image {image_id} has no 'file_name'")
        images[image_id] = entry
    categories = _list_of_dicts(data, "categories", name, required=False)
    for category in categories:
        _as_int(category.get("id"), "category 'id'", name)
    by_image: dict[int, list[Mapping[str, Any]]] = {image_id: [] for image_id in images}
    for position, ann in enumerate(_list_of_dicts(data, "annotations", name, required=False)):
        where = f"annotation {ann.get('id', f'#{position}')}"
        image_id = _as_int(ann.get("image_id"), f"{where} 'image_id'", name)
        if image_id not in images:
            raise DatasetError(f"{name}: {where} refers to image {image_id}, which is not in 'images'")
        if panoptic:
            _check_panoptic_annotation(ann, where, name)
        else:
            _check_instance(ann, where, name)
        by_image[image_id].append(ann)
    if panoptic:
        for image_id, anns in by_image.items():
            if len(anns) > 1:
                raise DatasetError(
                    f"{name}: image {image_id} has {len(anns)} panoptic annotations, expected one"
                )
    return _CocoIndex(name, images, by_image, categories, data, doc_warnings)


def _check_instance(ann: Mapping[str, Any], where: str, name: str) -> None:
    _as_int(ann.get("category_id"), f"{where} 'category_id'", name)
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise DatasetError(f"{name}: {where} needs a 'bbox' of four numbers [x, y, w, h], got {bbox!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in bbox):
        raise DatasetError(f"{name}: {where} has a 'bbox' that is not four finite numbers: {bbox!r}")
    area = ann.get("area", 0.0)
    if not isinstance(area, (int, float)) or isinstance(area, bool):
        raise DatasetError(f"{name}: {where} has an 'area' that is not a number: {area!r}")


def _check_panoptic_annotation(ann: Mapping[str, Any], where: str, name: str) -> None:
    if not isinstance(ann.get("file_name"), str):
        raise DatasetError(f"{name}: panoptic {where} has no PNG 'file_name'")
    segments = ann.get("segments_info")
    if not isinstance(segments, list) or not all(isinstance(s, Mapping) for s in segments):
        raise DatasetError(f"{name}: panoptic {where} needs a 'segments_info' list")
    seen: set[int] = set()
    for segment in segments:
        segment_id = _as_int(segment.get("id"), f"{where} segment 'id'", name)
        if segment_id in seen:
            raise DatasetError(f"{name}: {where} has segment id {segment_id} twice")
        seen.add(segment_id)
        _as_int(segment.get("category_id"), f"{where} segment {segment_id} 'category_id'", name)
        bbox = segment.get("bbox")
        if bbox is not None and (not isinstance(bbox, (list, tuple)) or len(bbox) != 4):
            raise DatasetError(f"{name}: {where} segment {segment_id} has a malformed 'bbox': {bbox!r}")


# ---------------------------------------------------------------- targets


def is_rejected(ann: Mapping[str, Any]) -> bool:
    """Whether a reviewer rejected this annotation (our own ``detr_studio`` field)."""
    ours = ann.get(OUR_KEY)
    return isinstance(ours, Mapping) and ours.get("review") == "rejected"


def xywh_boxes_in_image(xywh: Sequence[Sequence[float]], width: int, height: int) -> tuple[Tensor, Tensor]:
    """COCO [x, y, w, h] boxes -> ([N, 4] xyxy clamped to the image, [N] bool: the box is not empty)."""
    boxes = torch.as_tensor(xywh, dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2].clamp_(min=0, max=width)
    boxes[:, 1::2].clamp_(min=0, max=height)
    keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
    return boxes, keep


def segmentation_to_mask(
    segmentation: Any, height: int, width: int, where: str = "segmentation"
) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed RLE or compressed RLE) -> [H, W] uint8 mask.

    Missing or empty polygons give an empty mask.
    """
    if segmentation is None or segmentation == []:
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, list):
        polygons = [
            [float(v) for v in poly] for poly in segmentation if isinstance(poly, list) and len(poly) >= 6
        ]
        if not polygons:
            return np.zeros((height, width), dtype=np.uint8)
        rles = coco_mask.frPyObjects(polygons, height, width)
        return coco_mask.decode(coco_mask.merge(rles)).astype(np.uint8)
    if isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation:
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise DatasetError(
                f"{where}: RLE size {size} does not match the image (h, w) = ({height}, {width})"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = coco_mask.frPyObjects({"size": size, "counts": counts}, height, width)
        else:
            rle = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return coco_mask.decode(rle).astype(np.uint8)
    raise DatasetError(f"{where}: unknown segmentation format ({type(segmentation).__name__})")


def instance_target(
    anns: Iterable[Mapping[str, Any]],
    image_id: int,
    width: int,
    height: int,
    masks: bool = False,
    where: str = "annotations",
) -> Target:
    """COCO instance annotations of one image -> the reference's training target (boxes in xyxy pixels).

    Crowd and rejected annotations are left out; boxes are clamped to the image and empty ones dropped.
    """
    anns = [a for a in anns if int(a.get("iscrowd", 0) or 0) == 0 and not is_rejected(a)]
    boxes, keep = xywh_boxes_in_image([a["bbox"] for a in anns], width, height)
    labels = torch.tensor([int(float(a["category_id"])) for a in anns], dtype=torch.int64)
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = torch.tensor([float(a["area"]) if "area" in a else 0.0 for a in anns], dtype=torch.float32)
    area = torch.where(torch.tensor(["area" in a for a in anns], dtype=torch.bool), area, box_areas)
    mask_tensor = None
    if masks:
        stack = [
            segmentation_to_mask(
                a.get("segmentation"), height, width, f"{where}: annotation {a.get('id', '?')}"
            )
            for a in anns
        ]
        mask_tensor = (
            torch.from_numpy(np.stack(stack)) if stack else torch.zeros((0, height, width), dtype=torch.uint8)
        )
    size = torch.tensor([height, width], dtype=torch.int64)
    target = Target(
        boxes=boxes,
        labels=labels,
        area=area,
        iscrowd=torch.zeros(len(anns), dtype=torch.int64),
        image_id=torch.tensor([image_id], dtype=torch.int64),
        orig_size=size,
        size=size.clone(),
        masks=mask_tensor,
    )
    return target.select(keep)


# ---------------------------------------------------------------- datasets


class _CocoDataset(Dataset):
    """What both datasets share: the image list, subsets, seeding and the category table."""

    def __init__(
        self,
        index: _CocoIndex,
        image_root: str | os.PathLike[str],
        transforms: Transform | None,
        seed: int | None,
    ) -> None:
        self._index = index
        self.image_root = Path(image_root)
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0
        self.image_ids: list[int] = sorted(index.images)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> tuple[Tensor | Image.Image, Target]:
        image_id = self.image_ids[i]
        entry = self._index.images[image_id]
        path = self.image_root / entry["file_name"]
        image = load_image(path)
        _warn_on_size_mismatch(entry, image, path, self._index.name)
        target = self._target(image_id, image.width, image.height)
        if self.transforms is not None:
            image, target = self.transforms(image, target, self._generator(image_id))
        return image, target

    def _target(self, image_id: int, width: int, height: int) -> Target:
        raise NotImplementedError

    def _generator(self, image_id: int) -> torch.Generator | None:
        """With a seed, each (seed, epoch, image) gets its own stream, whatever the worker or order."""
        if self.seed is None:
            return None
        state = np.random.SeedSequence([self.seed, self.epoch, image_id]).generate_state(1, dtype=np.uint64)
        return torch.Generator().manual_seed(int(state[0]) & 0x7FFF_FFFF_FFFF_FFFF)

    def set_epoch(self, epoch: int) -> None:
        """Draw different augmentations each epoch when seeded (takes effect in workers started after it)."""
        self.epoch = epoch

    def subset(self, image_ids: Iterable[int]) -> _CocoDataset:
        """The same dataset restricted to ``image_ids`` (kept in this dataset's order)."""
        wanted = {int(i) for i in image_ids}
        unknown = wanted - set(self.image_ids)
        if unknown:
            shown = ", ".join(str(i) for i in sorted(unknown)[:10])
            raise ValueError(f"{self._index.name}: no image with id {shown} in this dataset")
        narrowed = copy.copy(self)
        narrowed.image_ids = [i for i in self.image_ids if i in wanted]
        return narrowed

    @property
    def warnings(self) -> list[str]:
        """What the annotation check found questionable but usable (e.g. boxes reaching past an edge)."""
        return list(self._index.warnings)

    @property
    def categories(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self._index.categories]

    @property
    def num_classes(self) -> int:
        """The reference's meaning: largest category id + 1 (the class head adds one for no-object)."""
        ids = [int(float(c["id"])) for c in self._index.categories]
        for anns in self._index.by_image.values():
            ids.extend(self._category_ids(anns))
        return max(ids, default=0) + 1

    def _category_ids(self, anns: list[Mapping[str, Any]]) -> list[int]:
        return [int(float(a["category_id"])) for a in anns]

    def coco_dict(self) -> dict[str, Any]:
        """The annotation file restricted to this dataset's images, rejected annotations left out (ground truth
        for COCO evaluation)."""
        data = dict(self._index.data)
        data["images"] = [self._index.images[i] for i in self.image_ids]
        data["annotations"] = [
            a for i in self.image_ids for a in self._index.by_image[i] if not is_rejected(a)
        ]
        data.setdefault("categories", [])
        return data


class CocoDetectionDataset(_CocoDataset):
    """COCO instances: each item is (image [3, H, W] after ``transforms``, ``Target``).

    Without ``transforms`` the item is the PIL image and a target with ``xyxy`` pixel boxes. With
    ``masks=True`` targets carry [N, H, W] masks rasterised from polygons or RLE.
    """

    def __init__(
        self,
        annotations: AnnotationSource,
        image_root: str | os.PathLike[str],
        transforms: Transform | None = None,
        masks: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(_index(annotations, panoptic=False), image_root, transforms, seed)
        self.masks = masks

    def _target(self, image_id: int, width: int, height: int) -> Target:
        return instance_target(
            self._index.by_image[image_id], image_id, width, height, masks=self.masks, where=self._index.name
        )

    def subset(self, image_ids: Iterable[int]) -> CocoDetectionDataset:
        return super().subset(image_ids)  # type: ignore[return-value]


class CocoPanopticDataset(_CocoDataset):
    """COCO panoptic: one target object per segment (things and stuff), with its mask from the id PNG.

    Boxes come from the segment's ``bbox`` when it has one, otherwise from its mask. Crowd segments are
    left out unless ``keep_crowd`` (the reference keeps them, with ``iscrowd`` set).
    """

    def __init__(
        self,
        annotations: AnnotationSource,
        image_root: str | os.PathLike[str],
        panoptic_root: str | os.PathLike[str],
        transforms: Transform | None = None,
        masks: bool = True,
        keep_crowd: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(_index(annotations, panoptic=True), image_root, transforms, seed)
        self.panoptic_root = Path(panoptic_root)
        self.masks = masks
        self.keep_crowd = keep_crowd

    def _category_ids(self, anns: list[Mapping[str, Any]]) -> list[int]:
        return [int(float(s["category_id"])) for a in anns for s in a["segments_info"]]

    def panoptic_dict(self) -> dict[str, Any]:
        """The panoptic annotation file restricted to this dataset's images (ground truth for PQ)."""
        return super().coco_dict()

    def coco_dict(self) -> dict[str, Any]:
        """This dataset's segments as COCO instances (one annotation per segment, box and RLE mask from the
        PNG), ground truth for box and mask AP."""
        doc = CocoDocument(self.panoptic_dict(), source=self._index.name, check_masks=False)
        return doc.panoptic_to_instances(self.panoptic_root).to_json()

    @property
    def is_thing(self) -> dict[int, bool]:
        """{category id: is a thing}, from the categories' ``isthing`` flags."""
        return {int(float(c["id"])): bool(c.get("isthing", 1)) for c in self._index.categories}

    def _target(self, image_id: int, width: int, height: int) -> Target:
        anns = self._index.by_image[image_id]
        segments = list(anns[0]["segments_info"]) if anns else []
        if not self.keep_crowd:
            segments = [s for s in segments if int(s.get("iscrowd", 0) or 0) == 0]
        need_png = self.masks or any(s.get("bbox") is None for s in segments)
        seg_masks = None
        if need_png and anns:
            ids = self._read_ids(anns[0]["file_name"], width, height)  # [H, W]
            wanted = torch.tensor([int(float(s["id"])) for s in segments], dtype=torch.int64)
            seg_masks = (ids[None] == wanted[:, None, None]).to(torch.uint8)  # [N, H, W]
        elif need_png:
            seg_masks = torch.zeros((0, height, width), dtype=torch.uint8)
        mask_boxes = None
        if seg_masks is not None:
            mask_boxes = masks_to_boxes(seg_masks)
            mask_boxes[:, 2:] += 1  # inclusive last pixel -> exclusive edge, as COCO boxes
        boxes = torch.zeros((len(segments), 4), dtype=torch.float32)
        for k, segment in enumerate(segments):
            if segment.get("bbox") is not None:
                boxes[k] = torch.as_tensor(segment["bbox"], dtype=torch.float32)
                boxes[k, 2:] += boxes[k, :2]
            elif mask_boxes is not None:
                boxes[k] = mask_boxes[k]
        boxes[:, 0::2].clamp_(min=0, max=width)
        boxes[:, 1::2].clamp_(min=0, max=height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if seg_masks is not None:
            keep &= seg_masks.flatten(1).bool().any(1)
        area = torch.tensor([float(s.get("area", 0.0)) for s in segments], dtype=torch.float32)
        if seg_masks is not None:
            has_area = torch.tensor(["area" in s for s in segments], dtype=torch.bool)
            area = torch.where(has_area, area, seg_masks.flatten(1).sum(1).float())
        size = torch.tensor([height, width], dtype=torch.int64)
        target = Target(
            boxes=boxes,
            labels=torch.tensor([int(float(s["category_id"])) for s in segments], dtype=torch.int64),
            area=area,
            iscrowd=torch.tensor([int(s.get("iscrowd", 0) or 0) for s in segments], dtype=torch.int64),
            image_id=torch.tensor([image_id], dtype=torch.int64),
            orig_size=size,
            size=size.clone(),
            masks=seg_masks if self.masks else None,
        )
        return target.select(keep)

    def _read_ids(self, file_name: str, width: int, height: int) -> Tensor:
        path = self.panoptic_root / file_name
        png = load_image(path)
        if png.size != (width, height):
            raise DatasetError(
                f"{path}: panoptic PNG is {png.width}x{png.height} but its image is {width}x{height}"
            )
        return torch.from_numpy(rgb2id(np.asarray(png)).astype(np.int64))


def _warn_on_size_mismatch(entry: Mapping[str, Any], image: Image.Image, path: Path, name: str) -> None:
    width, height = entry.get("width"), entry.get("height")
    if isinstance(width, int) and isinstance(height, int) and (width, height) != image.size:
        warnings.warn(
            f"{path}: image is {image.width}x{image.height} but {name} says {width}x{height}; "
            "boxes are clamped to the image as read",
            stacklevel=3,
        )


def collate_fn(batch: Sequence[tuple[Tensor, Target]]) -> tuple[NestedTensor, list[Target]]:
    """[(image [3, H_i, W_i], target)] -> (NestedTensor [B, 3, H, W] + mask [B, H, W], targets)."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return nested_tensor_from_tensor_list(images), targets
