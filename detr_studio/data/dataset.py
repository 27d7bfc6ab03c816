"""Torch datasets that read COCO detection or COCO panoptic annotations into training targets.

The targets follow the reference (shared/reference/detr-reference-facts.md §4.2): crowd objects are left
out, COCO ``xywh`` boxes become ``xyxy`` clamped to the image, empty boxes are dropped, and labels are the
category ids unchanged. ``collate_fn`` pads a batch into a ``NestedTensor``.

The annotations may be a path to a JSON file, the parsed COCO dict or a ``CocoDocument``; all are read and
checked by ``CocoDocument`` (`open_annotations`), so training and evaluation refuse exactly what the window
refuses, with the same messages, and every refusal is a ``DatasetError`` naming the file and the record. A
panoptic PNG is checked against its ``segments_info`` by the same check when a sample reads it (so that a
large dataset opens without decoding every PNG first). A ``CocoDocument`` is copied, so later edits do not
change a running training; a file or dict is indexed where it is, never held twice. Annotations a reviewer
rejected (``"detr_studio": {"review": "rejected"}``) are never trained on.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torch import Tensor
from torch.utils.data import Dataset

from ..model.box_ops import masks_to_boxes
from ..model.nested import NestedTensor, nested_tensor_from_tensor_list
from .coco import CocoDocument, DatasetError, ImageInfo, is_rejected, resolve_inside
from .images import load_image
from .transforms import Target, Transform

AnnotationSource = str | os.PathLike[str] | Mapping[str, Any] | CocoDocument

__all__ = [
    "CocoDetectionDataset",
    "CocoPanopticDataset",
    "DatasetError",
    "collate_fn",
    "instance_target",
    "is_rejected",
    "open_annotations",
    "segmentation_to_mask",
    "xywh_boxes_in_image",
]


# ---------------------------------------------------------------- reading the annotation file


def open_annotations(
    source: AnnotationSource,
    *,
    panoptic: bool,
    image_root: str | os.PathLike[str] | None = None,
    panoptic_root: str | os.PathLike[str] | None = None,
) -> CocoDocument:
    """The checked document behind ``source`` (a path, a parsed COCO dict, or a ``CocoDocument``), read
    without taking the file's lock: a window may be editing it. Refusals are ``DatasetError``s (most of them
    ``CocoFormatError``s listing every problem) naming the file."""
    roots: dict[str, Any] = {
        "image_root": Path(image_root) if image_root is not None else None,
        "panoptic_root": Path(panoptic_root) if panoptic_root is not None else None,
    }
    kind = True if panoptic else None  # a panoptic file may have no annotations yet; instances are detected
    if isinstance(source, CocoDocument):
        name = str(source.path) if source.path is not None else "COCO document"
        doc = CocoDocument(source.to_json(), source=name, check_masks=False, panoptic=kind, **roots)
        doc.warnings = list(source.warnings)
    elif isinstance(source, (str, os.PathLike)):
        doc = CocoDocument.load(source, check_masks=False, lock=False, panoptic=kind, **roots)
    elif isinstance(source, Mapping):
        doc = CocoDocument(source, source="COCO annotations", check_masks=False, panoptic=kind, **roots)
    else:
        raise TypeError(
            f"annotations must be a path, a COCO dict or a CocoDocument, not {type(source).__name__}"
        )
    if doc.is_panoptic and not panoptic:
        raise DatasetError(
            f"{doc.index.source}: a COCO panoptic file (its annotations have 'segments_info'); read it as"
            " panoptic (--panoptic)"
        )
    return doc


# ---------------------------------------------------------------- targets


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
    labels = torch.tensor([int(a["category_id"]) for a in anns], dtype=torch.int64)
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

    def __init__(self, doc: CocoDocument, image_root: str | os.PathLike[str], transforms, seed) -> None:
        self._doc = doc
        self.image_root = Path(image_root)
        self.transforms: Transform | None = transforms
        self.seed: int | None = seed
        self.epoch = 0
        self.image_ids: list[int] = sorted(doc.image_ids)

    @property
    def document(self) -> CocoDocument:
        """The checked annotations this dataset reads (read it, do not edit it)."""
        return self._doc

    @property
    def name(self) -> str:
        """The annotation file (or a description of the annotations), as messages name it."""
        return self._doc.index.source

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> tuple[Tensor | Image.Image, Target]:
        image_id = self.image_ids[i]
        info = self._doc.image(image_id)
        path = resolve_inside(self.image_root, info.file_name)
        image = load_image(path)
        _warn_on_size_mismatch(info, image, path, self.name)
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
            raise ValueError(f"{self.name}: no image with id {shown} in this dataset")
        narrowed = copy.copy(self)
        narrowed.image_ids = [i for i in self.image_ids if i in wanted]
        return narrowed

    @property
    def warnings(self) -> list[str]:
        """What the annotation check found questionable but usable (e.g. boxes reaching past an edge)."""
        return [str(w) for w in self._doc.warnings]

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self._doc.category_records()

    @property
    def num_classes(self) -> int:
        """The reference's meaning: largest category id + 1 (the class head adds one for no-object)."""
        return max(self._doc.num_classes, 1)

    def coco_dict(self) -> dict[str, Any]:
        """The annotation file restricted to this dataset's images, rejected annotations left out (ground truth
        for COCO evaluation). The records are the dataset's own: read them, do not change them."""
        return self._doc.json_subset(self.image_ids, rejected=False)


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
        doc = open_annotations(annotations, panoptic=False, image_root=image_root)
        super().__init__(doc, image_root, transforms, seed)
        self.masks = masks

    def _target(self, image_id: int, width: int, height: int) -> Target:
        records = self._doc.annotation_records(image_id)
        return instance_target(records, image_id, width, height, masks=self.masks, where=self.name)

    def subset(self, image_ids: Iterable[int]) -> CocoDetectionDataset:
        return super().subset(image_ids)  # type: ignore[return-value]


class CocoPanopticDataset(_CocoDataset):
    """COCO panoptic: one target object per segment (things and stuff), with its mask from the id PNG.

    Boxes come from the segment's ``bbox`` when it has one, otherwise from its mask. Crowd segments are
    left out unless ``keep_crowd`` (the reference keeps them, with ``iscrowd`` set). Each PNG read is checked
    against its image's size and ``segments_info`` (`CocoDocument.id_map`).
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
        doc = open_annotations(annotations, panoptic=True, image_root=image_root, panoptic_root=panoptic_root)
        super().__init__(doc, image_root, transforms, seed)
        self.masks = masks
        self.keep_crowd = keep_crowd

    @property
    def panoptic_root(self) -> Path:
        """The folder of the panoptic PNGs."""
        assert self._doc.panoptic_root is not None
        return self._doc.panoptic_root

    def panoptic_dict(self) -> dict[str, Any]:
        """The panoptic annotation file restricted to this dataset's images (ground truth for PQ)."""
        return self._doc.json_subset(self.image_ids)

    def coco_dict(self) -> dict[str, Any]:
        """This dataset's segments as COCO instances (one annotation per segment, box and RLE mask from the
        PNG), ground truth for box and mask AP."""
        doc = CocoDocument(self.panoptic_dict(), source=self.name, check_masks=False, panoptic=True)
        return doc.panoptic_to_instances(self.panoptic_root).to_json()

    @property
    def is_thing(self) -> dict[int, bool]:
        """{category id: is a thing}, from the categories' ``isthing`` flags."""
        return {int(c["id"]): bool(c.get("isthing", 1)) for c in self._doc.category_records()}

    def _target(self, image_id: int, width: int, height: int) -> Target:
        entry = self._doc.panoptic_record(image_id)
        segments = list(entry["segments_info"]) if entry is not None else []
        if not self.keep_crowd:
            segments = [s for s in segments if int(s.get("iscrowd", 0) or 0) == 0]
        need_png = self.masks or any(s.get("bbox") is None for s in segments)
        seg_masks = None
        if need_png and entry is not None:
            ids = torch.from_numpy(self._doc.id_map(image_id, (width, height)).astype(np.int64))  # [H, W]
            wanted = torch.tensor([int(s["id"]) for s in segments], dtype=torch.int64)
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
            labels=torch.tensor([int(s["category_id"]) for s in segments], dtype=torch.int64),
            area=area,
            iscrowd=torch.tensor([int(s.get("iscrowd", 0) or 0) for s in segments], dtype=torch.int64),
            image_id=torch.tensor([image_id], dtype=torch.int64),
            orig_size=size,
            size=size.clone(),
            masks=seg_masks if self.masks else None,
        )
        return target.select(keep)


def _warn_on_size_mismatch(info: ImageInfo, image: Image.Image, path: Path, name: str) -> None:
    if info.width and info.height and (info.width, info.height) != image.size:
        warnings.warn(
            f"{path}: image is {image.width}x{image.height} but {name} says {info.width}x{info.height}; "
            "boxes are clamped to the image as read",
            stacklevel=3,
        )


def collate_fn(batch: Sequence[tuple[Tensor, Target]]) -> tuple[NestedTensor, list[Target]]:
    """[(image [3, H_i, W_i], target)] -> (NestedTensor [B, 3, H, W] + mask [B, H, W], targets)."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return nested_tensor_from_tensor_list(images), targets
