"""Turn raw DETR outputs into results: detections, instance masks and COCO panoptic PNGs.

Each function reproduces the official implementation's post-processing exactly, quirks included
(see shared/reference/detr-reference-facts.md, §3), so that scores, masks and panoptic PNG bytes match
it for the same network outputs.

The panoptic step is split in two so that a fast path can run the mask head only for the queries that
will be kept: ``panoptic_keep`` decides from the class logits alone which queries survive, and
``panoptic_from_kept`` turns the masks of those queries into the PNG and segment list. The public
``PostProcessPanoptic`` is exactly these two calls in sequence, so both paths give byte-identical results.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .box_ops import box_cxcywh_to_xyxy

COCO_LAST_THING_ID = 90
SMALL_SEGMENT_AREA = 4  # segments with at most this many pixels are dropped

SizeLike = Tensor | Sequence[int]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Panoptic id map [H, W] (non-negative ints) -> RGB image [H, W, 3] uint8, id = R + 256 G + 256² B."""
    ids = np.asarray(ids)
    if ids.size and int(ids.min()) < 0:
        raise ValueError("id2rgb: panoptic ids must be non-negative")
    wide = ids.astype(np.int64)
    return np.stack([(wide >> shift) & 0xFF for shift in (0, 8, 16)], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """RGB image [H, W, 3] -> panoptic id map [H, W] int32 (int64 for wider input), id = R + 256 G + 256² B."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb2id: expected an [H, W, 3] image, got shape {tuple(rgb.shape)}")
    wide = rgb.astype(np.int32) if rgb.dtype == np.uint8 else rgb
    return wide[..., 0] + 256 * wide[..., 1] + 256 * 256 * wide[..., 2]


def coco_panoptic_is_thing(cat_id: int) -> bool:
    """COCO panoptic convention: category ids up to 90 are things, the rest are stuff."""
    return cat_id <= COCO_LAST_THING_ID


def default_is_thing_map(num_classes: int) -> dict[int, bool]:
    """{class id: is a thing} for every class id 0..num_classes-1, with the COCO panoptic convention."""
    return {i: coco_panoptic_is_thing(i) for i in range(num_classes)}


def _size_pair(size: SizeLike, what: str) -> tuple[int, int]:
    values = size.tolist() if isinstance(size, Tensor) else list(size)
    if len(values) != 2:
        raise ValueError(f"{what}: expected an (h, w) pair, got {values}")
    h, w = (int(v) for v in values)
    if h <= 0 or w <= 0:
        raise ValueError(f"{what}: sizes must be positive, got (h, w) = ({h}, {w})")
    return h, w


def _check_sizes(sizes: Tensor, batch: int, what: str) -> None:
    if sizes.ndim != 2 or sizes.shape[1] != 2:
        raise ValueError(f"{what}: expected a [B, 2] tensor of (h, w), got shape {tuple(sizes.shape)}")
    if sizes.shape[0] != batch:
        raise ValueError(f"{what}: {sizes.shape[0]} sizes for a batch of {batch} images")


# ---------------------------------------------------------------------------------------------- detection


@torch.no_grad()
def post_process_detection(outputs: Mapping[str, Tensor], target_sizes: Tensor) -> list[dict[str, Tensor]]:
    """Every query's best real class, its score and its box in pixels; no threshold, no top-k.

    outputs: "pred_logits" [B, Q, C+1] (no-object last), "pred_boxes" [B, Q, 4] normalised cxcywh.
    target_sizes: [B, 2] as (h, w), the size the boxes are scaled to.
    -> per image {"scores": [Q], "labels": [Q] int64, "boxes": [Q, 4] absolute xyxy}.
    The no-object column is dropped before the argmax, so a query whose top class is no-object still
    reports its best real class (with a low score).
    """
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]  # [B, Q, C+1], [B, Q, 4]
    _check_sizes(target_sizes, len(logits), "post_process_detection target_sizes")
    prob = F.softmax(logits, -1)
    scores, labels = prob[..., :-1].max(-1)  # [B, Q]
    img_h, img_w = target_sizes.unbind(1)
    scale = torch.stack([img_w, img_h, img_w, img_h], dim=1)  # [B, 4]
    xyxy = box_cxcywh_to_xyxy(boxes) * scale[:, None, :]  # [B, Q, 4]
    return [{"scores": s, "labels": lab, "boxes": b} for s, lab, b in zip(scores, labels, xyxy)]


class PostProcess:
    """Callable form of ``post_process_detection`` (the reference's ``PostProcess``)."""

    def __call__(self, outputs: Mapping[str, Tensor], target_sizes: Tensor) -> list[dict[str, Tensor]]:
        return post_process_detection(outputs, target_sizes)


# ------------------------------------------------------------------------------------------ instance masks


@torch.no_grad()
def post_process_segm(
    results: list[dict[str, Tensor]],
    outputs: Mapping[str, Tensor],
    orig_target_sizes: Tensor,
    max_target_sizes: Tensor,
    threshold: float = 0.5,
) -> list[dict[str, Tensor]]:
    """Add a binary mask per query to each image's detection results, as results[i]["masks"].

    outputs["pred_masks"]: [B, Q, h, w] mask logits (stride 4 of the padded batch; [B, Q, 1, h, w] is
    accepted too). max_target_sizes: [B, 2] (h, w) network input size of each image before padding;
    orig_target_sizes: [B, 2] (h, w) size of the result. The masks are upsampled to the largest input
    size of the batch, thresholded, cropped to each image's own input size, then nearest-resized to its
    original size -> [Q, 1, H0, W0] uint8. ``results`` is changed in place and returned.
    """
    masks = outputs["pred_masks"]
    if masks.ndim == 5 and masks.shape[2] == 1:
        masks = masks[:, :, 0]
    if masks.ndim != 4:
        raise ValueError(
            f"post_process_segm: pred_masks must be [B, Q, h, w], got shape {tuple(masks.shape)}"
        )
    batch = len(masks)
    _check_sizes(orig_target_sizes, batch, "post_process_segm orig_target_sizes")
    _check_sizes(max_target_sizes, batch, "post_process_segm max_target_sizes")
    if len(results) != batch:
        raise ValueError(f"post_process_segm: {len(results)} results for a batch of {batch} images")
    max_h, max_w = (int(v) for v in max_target_sizes.max(0)[0].tolist())
    up = F.interpolate(masks, size=(max_h, max_w), mode="bilinear", align_corners=False)  # [B, Q, Hm, Wm]
    binary = up.sigmoid() > threshold
    for result, cur, size, orig in zip(results, binary, max_target_sizes, orig_target_sizes):
        img_h, img_w = _size_pair(size, "post_process_segm max_target_sizes")
        cropped = cur[:, :img_h, :img_w].unsqueeze(1).float()  # [Q, 1, h, w]
        orig_hw = _size_pair(orig, "post_process_segm orig_target_sizes")
        result["masks"] = F.interpolate(cropped, size=orig_hw, mode="nearest").byte()  # [Q, 1, H0, W0]
    return results


class PostProcessSegm:
    """Callable form of ``post_process_segm`` with its threshold (the reference's ``PostProcessSegm``)."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def __call__(
        self,
        results: list[dict[str, Tensor]],
        outputs: Mapping[str, Tensor],
        orig_target_sizes: Tensor,
        max_target_sizes: Tensor,
    ) -> list[dict[str, Tensor]]:
        return post_process_segm(results, outputs, orig_target_sizes, max_target_sizes, self.threshold)


# ----------------------------------------------------------------------------------------------- panoptic


def panoptic_scores(logits: Tensor) -> tuple[Tensor, Tensor]:
    """[..., Q, C+1] logits -> (scores, classes), each [..., Q]: the top of the softmax over ALL columns,
    no-object included (unlike detection)."""
    return logits.softmax(-1).max(-1)


def panoptic_keep(logits: Tensor, threshold: float = 0.85) -> Tensor:
    """[Q, C+1] or [B, Q, C+1] logits -> bool [Q] or [B, Q]: the queries whose masks the panoptic result
    uses (top class is not no-object and its probability is above ``threshold``)."""
    scores, classes = panoptic_scores(logits)
    return classes.ne(logits.shape[-1] - 1) & (scores > threshold)


def _id_map_to_image(ids: Tensor, target_hw: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """[h, w] id map -> (RGB id image NEAREST-resized to target_hw, its id map [H, W] read back)."""
    final_h, final_w = target_hw
    image = Image.fromarray(id2rgb(ids.cpu().numpy()))
    image = image.resize(size=(final_w, final_h), resample=Image.NEAREST)
    return image, rgb2id(np.asarray(image))


def _segment_ids(flat_masks: Tensor, hw: tuple[int, int], void: bool = False) -> Tensor:
    """[N, h*w] mask logits -> [h, w] int64: per pixel, the index of the winning mask (0 if N == 0).

    ``void``: a pixel where no mask is on (every logit below 0) gets index N, which names no segment."""
    if flat_masks.shape[0] == 0:
        return torch.zeros(hw, dtype=torch.long, device=flat_masks.device)
    ids = flat_masks.transpose(0, 1).softmax(-1).argmax(-1)
    if void:
        ids = ids.masked_fill(flat_masks.amax(0) < 0, flat_masks.shape[0])
    return ids.view(hw)


def _ids_and_areas(
    flat_masks: Tensor,
    hw: tuple[int, int],
    target_hw: tuple[int, int],
    merge: list[list[int]],
    void: bool = False,
) -> tuple[Image.Image, list[int]]:
    """One rendering pass: id map, merge of each group into its first index, resize, area per index."""
    ids = _segment_ids(flat_masks, hw, void)
    for group in merge:
        for index in group:
            ids.masked_fill_(ids.eq(index), group[0])
    image, final_ids = _id_map_to_image(ids, target_hw)
    count = flat_masks.shape[0]
    areas = np.bincount(final_ids.ravel(), minlength=count)[:count]
    return image, [int(a) for a in areas]


def panoptic_from_kept(
    masks: Tensor,
    classes: Tensor,
    processed_size: SizeLike,
    target_size: SizeLike | None,
    is_thing_map: Mapping[int, bool],
    void: bool = False,
) -> dict:
    """The panoptic result of one image from the masks of its kept queries only.

    ``void`` (not the reference): pixels that no kept mask covers (all logits below 0) belong to no segment
    (their id is the segment count, absent from segments_info) instead of going to the strongest mask.
    For models without stuff classes, whose backgrounds no class describes.

    masks: [N, h, w] mask logits of the kept queries, in query order (stride 4 of the padded batch).
    classes: [N] their class ids (``panoptic_scores`` classes at the kept queries).
    processed_size: (h, w) network input size before padding; target_size: (h, w) of the result
    (defaults to processed_size). -> {"png_string": PNG bytes of the RGB id image,
    "segments_info": [{"id", "isthing", "category_id", "area"}, ...]}, exactly as the reference.
    """
    if masks.ndim != 3:
        raise ValueError(f"panoptic_from_kept: masks must be [N, h, w], got shape {tuple(masks.shape)}")
    if classes.shape != masks.shape[:1]:
        raise ValueError(f"panoptic_from_kept: {tuple(classes.shape)} classes for {masks.shape[0]} masks")
    hw = _size_pair(processed_size, "panoptic processed size")
    target_hw = hw if target_size is None else _size_pair(target_size, "panoptic target size")
    class_ids = [int(c) for c in classes.tolist()]
    unknown = sorted({c for c in class_ids if c not in is_thing_map})
    if unknown:
        raise KeyError(f"panoptic: is_thing_map has no entry for class id(s) {unknown}")

    if masks.shape[0] > 0:
        up = F.interpolate(masks[None], size=hw, mode="bilinear", align_corners=False)[0]  # [N, h, w]
    else:
        up = masks.new_zeros((0, *hw))
    flat = up.flatten(1)  # [N, h*w]

    # Several kept queries may predict the same stuff class: on the first pass they become one segment.
    stuff_groups: dict[int, list[int]] = {}
    for index, cat in enumerate(class_ids):
        if not is_thing_map[cat]:
            stuff_groups.setdefault(cat, []).append(index)
    merge = [group for group in stuff_groups.values() if len(group) > 1]

    image, areas = _ids_and_areas(flat, hw, target_hw, merge, void)
    # Drop tiny segments (merged duplicates end with area 0) until none is left; as in the reference,
    # these later passes do not merge stuff duplicates again.
    while any(a <= SMALL_SEGMENT_AREA for a in areas):
        survivors = [i for i, a in enumerate(areas) if a > SMALL_SEGMENT_AREA]
        flat = flat[survivors]
        class_ids = [class_ids[i] for i in survivors]
        image, areas = _ids_and_areas(flat, hw, target_hw, [], void)

    segments_info = [
        {"id": i, "isthing": bool(is_thing_map[cat]), "category_id": cat, "area": area}
        for i, (cat, area) in enumerate(zip(class_ids, areas))
    ]
    with io.BytesIO() as buffer:
        image.save(buffer, format="PNG")
        png = buffer.getvalue()
    return {"png_string": png, "segments_info": segments_info}


class PostProcessPanoptic:
    """COCO panoptic results from DETRsegm outputs (the reference's ``PostProcessPanoptic``).

    is_thing_map: {class id: is a thing}, e.g. ``default_is_thing_map(num_classes)``.
    threshold: a query is kept when its top class (softmax over all columns) is not no-object and has a
    probability above this.
    void: leave pixels no kept mask covers out of every segment (see ``panoptic_from_kept``); the reference
    gives them to the strongest mask, which suits models with stuff classes only.
    """

    def __init__(self, is_thing_map: Mapping[int, bool], threshold: float = 0.85, void: bool = False):
        self.is_thing_map = is_thing_map
        self.threshold = threshold
        self.void = void

    @classmethod
    def for_model(cls, is_thing_map: Mapping[int, bool], threshold: float = 0.85) -> PostProcessPanoptic:
        """What the prediction backends use: the reference, except that a model without stuff classes
        (nothing describes its background) leaves uncovered pixels void."""
        return cls(is_thing_map, threshold, void=all(is_thing_map.values()))

    def select(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """The queries that need masks: bool [B, Q]. Fits ``DETRsegm.forward(select=...)``."""
        return panoptic_keep(outputs["pred_logits"], self.threshold)

    @torch.no_grad()
    def __call__(
        self,
        outputs: Mapping[str, Tensor],
        processed_sizes: Sequence[SizeLike] | Tensor,
        target_sizes: Sequence[SizeLike] | Tensor | None = None,
    ) -> list[dict]:
        """outputs: "pred_logits" [B, Q, C+1], "pred_masks" [B, Q, h, w] (masks of every query).
        processed_sizes / target_sizes: B (h, w) pairs. -> per image {"png_string", "segments_info"}."""
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]  # [B, Q, C+1], [B, Q, h, w]
        if masks.ndim != 4 or masks.shape[:2] != logits.shape[:2]:
            raise ValueError(
                f"panoptic: pred_masks must be [B, Q, h, w] matching pred_logits {tuple(logits.shape)}, "
                f"got shape {tuple(masks.shape)}"
            )
        target_sizes = self._target_sizes(processed_sizes, target_sizes, len(logits))
        results = []
        for cur_logits, cur_masks, size, target in zip(logits, masks, processed_sizes, target_sizes):
            keep = panoptic_keep(cur_logits, self.threshold)  # [Q]
            classes = panoptic_scores(cur_logits)[1][keep]
            results.append(
                panoptic_from_kept(cur_masks[keep], classes, size, target, self.is_thing_map, self.void)
            )
        return results

    @torch.no_grad()
    def from_selected(
        self,
        outputs: Mapping[str, Tensor],
        processed_sizes: Sequence[SizeLike] | Tensor,
        target_sizes: Sequence[SizeLike] | Tensor | None = None,
    ) -> list[dict]:
        """The same results from outputs whose masks were computed for the kept queries only.

        outputs: "pred_logits" [B, Q, C+1], "pred_masks" [N, h, w] and "mask_index" [N, 2] (image,
        query) in row-major order, as ``DETRsegm.forward(select=self.select)`` returns them.
        """
        logits, masks, index = outputs["pred_logits"], outputs["pred_masks"], outputs["mask_index"]
        keep = panoptic_keep(logits, self.threshold)  # [B, Q]
        expected = keep.nonzero()  # [N, 2]
        if index.shape != expected.shape or not torch.equal(index.to(expected.device), expected):
            raise ValueError("panoptic: mask_index does not match the queries this post-processor keeps")
        if masks.ndim != 3 or masks.shape[0] != len(index):
            raise ValueError(f"panoptic: pred_masks must be [N, h, w] for {len(index)} kept queries")
        target_sizes = self._target_sizes(processed_sizes, target_sizes, len(logits))
        counts = keep.sum(1).tolist()
        results = []
        for cur_logits, cur_keep, cur_masks, size, target in zip(
            logits, keep, masks.split(counts), processed_sizes, target_sizes
        ):
            classes = panoptic_scores(cur_logits)[1][cur_keep]
            results.append(panoptic_from_kept(cur_masks, classes, size, target, self.is_thing_map, self.void))
        return results

    @staticmethod
    def _target_sizes(
        processed_sizes: Sequence[SizeLike] | Tensor,
        target_sizes: Sequence[SizeLike] | Tensor | None,
        batch: int,
    ) -> Sequence[SizeLike] | Tensor:
        if target_sizes is None:
            target_sizes = processed_sizes
        if len(processed_sizes) != batch or len(target_sizes) != batch:
            raise ValueError(
                f"panoptic: {len(processed_sizes)} processed sizes and {len(target_sizes)} target sizes "
                f"for a batch of {batch} images"
            )
        return target_sizes
