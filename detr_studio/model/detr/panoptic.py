"""COCO panoptic results from DETR's mask head: the reference's ``PostProcessPanoptic``, exactly.

The step is split in two so that a fast path can run the mask head only for the queries that will be kept:
``panoptic_keep`` decides from the class logits alone which queries survive, and ``panoptic_from_kept`` turns
the masks of those queries into the PNG and segment list. ``PostProcessPanoptic`` is exactly these two calls in
sequence, so both paths give byte-identical results (see shared reference facts, §3).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ...common.panoptic_ids import id2rgb, rgb2id
from ..postprocess import SizeLike, size_pair

SMALL_SEGMENT_AREA = 4  # segments with at most this many pixels are dropped


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
    "segments_info": [{"id", "isthing", "category_id", "area"}, ...]}, exactly as the reference, plus
    "kept": for each segment, the position of its mask in ``masks`` (not the reference's: which query made
    it, once the caller maps positions to queries).
    """
    if masks.ndim != 3:
        raise ValueError(f"panoptic_from_kept: masks must be [N, h, w], got shape {tuple(masks.shape)}")
    if classes.shape != masks.shape[:1]:
        raise ValueError(f"panoptic_from_kept: {tuple(classes.shape)} classes for {masks.shape[0]} masks")
    hw = size_pair(processed_size, "panoptic processed size")
    target_hw = hw if target_size is None else size_pair(target_size, "panoptic target size")
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
    positions = list(range(len(class_ids)))
    # Drop tiny segments (merged duplicates end with area 0) until none is left; as in the reference,
    # these later passes do not merge stuff duplicates again.
    while any(a <= SMALL_SEGMENT_AREA for a in areas):
        survivors = [i for i, a in enumerate(areas) if a > SMALL_SEGMENT_AREA]
        flat = flat[survivors]
        class_ids = [class_ids[i] for i in survivors]
        positions = [positions[i] for i in survivors]
        image, areas = _ids_and_areas(flat, hw, target_hw, [], void)

    segments_info = [
        {"id": i, "isthing": bool(is_thing_map[cat]), "category_id": cat, "area": area}
        for i, (cat, area) in enumerate(zip(class_ids, areas))
    ]
    with io.BytesIO() as buffer:
        image.save(buffer, format="PNG")
        png = buffer.getvalue()
    return {"png_string": png, "segments_info": segments_info, "kept": positions}


def _with_queries(result: dict, keep: Tensor) -> dict:
    """``result`` with "query_ids": the query that made each segment (``keep`` [Q] the kept queries)."""
    kept_queries = keep.nonzero()[:, 0].tolist()
    result["query_ids"] = [kept_queries[p] for p in result.pop("kept")]
    return result


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
        processed_sizes / target_sizes: B (h, w) pairs. -> per image {"png_string", "segments_info",
        "query_ids"} (the query behind each segment)."""
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
            result = panoptic_from_kept(cur_masks[keep], classes, size, target, self.is_thing_map, self.void)
            results.append(_with_queries(result, keep))
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
            result = panoptic_from_kept(cur_masks, classes, size, target, self.is_thing_map, self.void)
            results.append(_with_queries(result, cur_keep))
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
