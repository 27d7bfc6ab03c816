"""Panoptic quality (PQ, SQ, RQ; all / things / stuff; per category), written in-house.

The rules are those of the COCO panopticapi ``pq_compute``, so the numbers agree with it:

- Segment ids are read from id maps (``id = R + 256 G + 256² B`` in the PNGs); id 0 in the ground truth is
  VOID (unlabelled), and an id in a prediction's map that its ``segments_info`` does not list must be 0.
- A predicted and a ground-truth segment match when they have the same category, the ground truth is not a
  crowd region, and IoU > 0.5. The union leaves out the predicted pixels that fall on VOID. The area of a
  ground-truth segment is its JSON ``area`` when it has one (the pixel count otherwise); a prediction's
  area is always counted in its map.
- Unmatched ground truth is a false negative unless it is a crowd region (``iscrowd=1``). An unmatched
  prediction is a false positive unless more than half of it lies on VOID or on the crowd region of its
  own category (the last crowd segment of that category listed in the image, as panopticapi keeps one).
- Per category PQ = ΣIoU / (TP + FP/2 + FN/2), SQ = ΣIoU / TP, RQ = TP / (TP + FP/2 + FN/2). The averages
  are over the categories with TP + FP + FN > 0 ("things" and "stuff" by the categories' ``isthing``);
  with no such category an average is 0 (panopticapi divides by zero there).

Images are matched one at a time, so a whole validation set never has to sit in memory. ``pq_compute``
works on id maps given by a function or a folder of PNGs, ``pq_compute_files`` on panopticapi's files,
and ``evaluate_panoptic`` runs a DETRsegm model over a ``CocoPanopticDataset``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..common.panoptic_ids import rgb2id
from ..data.dataset import CocoPanopticDataset, collate_fn
from ..data.images import ImageReadError, load_image
from ..model.classes import default_is_thing_map
from ..model.detr.panoptic import PostProcessPanoptic
from ..model.detr.segmentation import DETRsegm

VOID = 0  # ground-truth id of unlabelled pixels
OFFSET = 256 * 256 * 256  # ids in PNGs are below this; pairs are encoded as gt * OFFSET + pred
MATCH_IOU = 0.5  # a match needs IoU strictly above this
IGNORED_FRACTION = 0.5  # an unmatched prediction with more than this on VOID or crowd is not an FP

IdSource = Callable[[Mapping[str, Any]], np.ndarray] | str | os.PathLike[str]
METRIC_KEYS = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")


class PanopticError(ValueError):
    """Panoptic annotations or predictions that cannot be scored; the message names the file and problem."""


# ---------------------------------------------------------------- results


@dataclass
class CategoryQuality:
    """Counts of one category over all images: true positives (with their summed IoU), FP and FN."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0

    @property
    def counted(self) -> bool:
        """Whether the category takes part in the averages (it occurred in the ground truth or predictions)."""
        return self.tp + self.fp + self.fn > 0

    @property
    def rq(self) -> float:
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.tp / denominator if denominator else 0.0

    @property
    def sq(self) -> float:
        return self.iou / self.tp if self.tp else 0.0

    @property
    def pq(self) -> float:
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.iou / denominator if denominator else 0.0

    def add(self, other: CategoryQuality) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou


@dataclass
class PanopticMetrics:
    """PQ of a set of images: counts per category id, and the averages panopticapi reports.

    categories: {category id: {"id", "name", "isthing", ...}}.
    unknown_category_segments: predicted segments left out because their class is not one of the
    categories (``evaluate_panoptic`` only: a model may predict a class index the dataset does not use).
    """

    categories: dict[int, dict[str, Any]]
    per_category: dict[int, CategoryQuality] = field(default_factory=dict)
    images: int = 0
    unknown_category_segments: int = 0

    def average(self, isthing: bool | None = None) -> dict[str, float]:
        """{"PQ", "SQ", "RQ", "n"} averaged over the counted categories (things only, stuff only, or all)."""
        chosen = [
            self.per_category.get(cat_id, CategoryQuality())
            for cat_id, cat in self.categories.items()
            if isthing is None or _is_thing(cat) == isthing
        ]
        chosen = [q for q in chosen if q.counted]
        n = len(chosen)
        if n == 0:
            return {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0, "n": 0}
        return {
            "PQ": sum(q.pq for q in chosen) / n,
            "SQ": sum(q.sq for q in chosen) / n,
            "RQ": sum(q.rq for q in chosen) / n,
            "n": n,
        }

    def flat(self) -> dict[str, float]:
        """{"PQ", "SQ", "RQ", "PQ_th", …, "RQ_st"} as fractions in [0, 1], for events and logs."""
        flat: dict[str, float] = {}
        for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
            avg = self.average(isthing)
            flat.update({f"{name}{suffix}": float(avg[name]) for name in ("PQ", "SQ", "RQ")})
        return flat

    def per_class_pq(self) -> dict[str, float]:
        """{category name: PQ} for the categories counted in the averages (absent ones are left out)."""
        names = _display_names(self.categories)
        return {
            names[cat_id]: self.per_category[cat_id].pq
            for cat_id in self.categories
            if cat_id in self.per_category and self.per_category[cat_id].counted
        }

    def table(self) -> str:
        """panopticapi's summary: PQ, SQ, RQ (in %) and the category count for All, Things and Stuff."""
        lines = [f"{'':10}| {'PQ':>5}  {'SQ':>5}  {'RQ':>5}  {'N':>5}"]
        for label, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            avg = self.average(isthing)
            lines.append(
                f"{label:10}| {100 * avg['PQ']:5.1f}  {100 * avg['SQ']:5.1f}  {100 * avg['RQ']:5.1f}  {avg['n']:5d}"
            )
        return "\n".join(lines)


def _is_thing(category: Mapping[str, Any]) -> bool:
    """A category's ``isthing`` flag; a category without one counts as a thing, as in the datasets."""
    return bool(category.get("isthing", 1))


def _display_names(categories: Mapping[int, Mapping[str, Any]]) -> dict[int, str]:
    """Category id -> its name; ids stand in for missing names, and repeated names get their id added."""
    names = {cat_id: str(cat.get("name", cat_id)) for cat_id, cat in categories.items()}
    seen: dict[str, int] = {}
    for name in names.values():
        seen[name] = seen.get(name, 0) + 1
    return {cat_id: (name if seen[name] == 1 else f"{name} ({cat_id})") for cat_id, name in names.items()}


# ---------------------------------------------------------------- checking annotations


def _int_field(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)):
        raise PanopticError(f"{where}: {what} must be an integer, got {value!r}")
    if not float(value).is_integer():
        raise PanopticError(f"{where}: {what} must be an integer, got {value!r}")
    return int(value)


def _category_table(categories: Sequence[Mapping[str, Any]], where: str) -> dict[int, dict[str, Any]]:
    table: dict[int, dict[str, Any]] = {}
    for k, category in enumerate(categories):
        if not isinstance(category, Mapping):
            raise PanopticError(f"{where}: category #{k} is not an object")
        cat_id = _int_field(category.get("id"), "category 'id'", where)
        if cat_id in table:
            raise PanopticError(f"{where}: category id {cat_id} appears twice")
        table[cat_id] = dict(category)
    return table


def _by_image(annotations: Sequence[Mapping[str, Any]], where: str) -> dict[int, Mapping[str, Any]]:
    """Index panoptic annotations by image id, checking what scoring relies on."""
    if not isinstance(annotations, Sequence) or isinstance(annotations, (str, bytes)):
        raise PanopticError(f"{where}: 'annotations' must be a list")
    out: dict[int, Mapping[str, Any]] = {}
    for k, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            raise PanopticError(f"{where}: annotation #{k} is not an object")
        image_id = _int_field(ann.get("image_id"), f"annotation #{k} 'image_id'", where)
        if image_id in out:
            raise PanopticError(f"{where}: image {image_id} has more than one panoptic annotation")
        segments = ann.get("segments_info")
        if not isinstance(segments, list) or not all(isinstance(s, Mapping) for s in segments):
            raise PanopticError(f"{where}: image {image_id} needs a 'segments_info' list of objects")
        out[image_id] = ann
    return out


def _segments(ann: Mapping[str, Any], image_id: int, where: str) -> dict[int, Mapping[str, Any]]:
    """{segment id: segment} of one image's annotation."""
    segments: dict[int, Mapping[str, Any]] = {}
    for segment in ann["segments_info"]:
        seg_id = _int_field(segment.get("id"), "segment 'id'", f"{where}, image {image_id}")
        if seg_id in segments:
            raise PanopticError(f"{where}: image {image_id} lists segment id {seg_id} twice")
        _int_field(
            segment.get("category_id"), f"segment {seg_id} 'category_id'", f"{where}, image {image_id}"
        )
        segments[seg_id] = segment
    return segments


# ---------------------------------------------------------------- id maps


def _png_ids(path: Path) -> np.ndarray:
    """A panoptic PNG -> [H, W] int64 id map."""
    try:
        image = load_image(path)
    except ImageReadError as exc:
        raise PanopticError(str(exc)) from None
    return rgb2id(np.asarray(image)).astype(np.int64)


def _id_reader(source: IdSource, name: str) -> Callable[[Mapping[str, Any], int], tuple[np.ndarray, str]]:
    """A function (annotation, image id) -> ([H, W] int64 id map, how to name it in messages)."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise PanopticError(f"{folder}: no such folder of panoptic PNGs ({name})")

        def from_folder(ann: Mapping[str, Any], image_id: int) -> tuple[np.ndarray, str]:
            file_name = ann.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                raise PanopticError(f"{name}: image {image_id} has no PNG 'file_name'")
            path = folder / file_name
            return _png_ids(path), str(path)

        return from_folder

    def from_function(ann: Mapping[str, Any], image_id: int) -> tuple[np.ndarray, str]:
        return np.asarray(source(ann)), f"{name}, id map of image {image_id}"

    return from_function


def _check_id_map(ids: np.ndarray, what: str) -> np.ndarray:
    if ids.ndim != 2:
        raise PanopticError(f"{what}: an id map must be [H, W], got shape {tuple(ids.shape)}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise PanopticError(f"{what}: an id map must hold integers, got {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= OFFSET):
        raise PanopticError(f"{what}: segment ids must lie in [0, {OFFSET}), got {ids.min()}..{ids.max()}")
    return ids.astype(np.int64)


# ---------------------------------------------------------------- matching one image


def _match_image(
    image_id: int,
    gt_segments: Mapping[int, Mapping[str, Any]],
    gt_map: np.ndarray,
    pred_segments: Mapping[int, Mapping[str, Any]],
    pred_map: np.ndarray,
    categories: Mapping[int, Mapping[str, Any]],
    gt_what: str,
    pred_what: str,
) -> dict[int, CategoryQuality]:
    """TP / FP / FN per category id for one image, by panopticapi's rules (module docstring).

    gt_map, pred_map: [H, W] int64 segment ids; gt_what / pred_what name them in messages.
    """
    if gt_map.shape != pred_map.shape:
        raise PanopticError(
            f"{pred_what}: id map is {pred_map.shape[1]}x{pred_map.shape[0]} but the ground truth "
            f"{gt_what} is {gt_map.shape[1]}x{gt_map.shape[0]}"
        )
    for seg_id, segment in gt_segments.items():
        if int(segment["category_id"]) not in categories:
            raise PanopticError(
                f"{gt_what}: segment {seg_id} of image {image_id} has category {segment['category_id']}, "
                "which is not in the categories"
            )

    pred_area: dict[int, int] = {}
    labels, counts = np.unique(pred_map, return_counts=True)
    for label, count in zip(labels.tolist(), counts.tolist()):
        if label not in pred_segments:
            if label == VOID:
                continue
            raise PanopticError(
                f"{pred_what}: segment id {label} is in the PNG but not in the segments_info of image {image_id}"
            )
        pred_area[label] = count
        category = int(pred_segments[label]["category_id"])
        if category not in categories:
            raise PanopticError(
                f"{pred_what}: segment {label} of image {image_id} has unknown category_id {category}"
            )
    missing = sorted(set(pred_segments) - set(pred_area))
    if missing:
        raise PanopticError(
            f"{pred_what}: segment ids {missing} of image {image_id} are in the segments_info but not in the PNG"
        )

    gt_area: dict[int, int] = {}
    gt_labels, gt_counts = np.unique(gt_map, return_counts=True)
    gt_pixels = dict(zip(gt_labels.tolist(), gt_counts.tolist()))
    for seg_id, segment in gt_segments.items():
        area = segment.get("area")
        gt_area[seg_id] = int(area) if isinstance(area, (int, float)) else gt_pixels.get(seg_id, 0)

    pairs, overlaps = np.unique(gt_map * OFFSET + pred_map, return_counts=True)
    overlap = {
        (pair // OFFSET, pair % OFFSET): count for pair, count in zip(pairs.tolist(), overlaps.tolist())
    }

    stats: dict[int, CategoryQuality] = {}

    def stat(category: int) -> CategoryQuality:
        return stats.setdefault(category, CategoryQuality())

    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    for (gt_id, pred_id), intersection in overlap.items():
        if gt_id not in gt_segments or pred_id not in pred_segments:
            continue
        gt_segment = gt_segments[gt_id]
        if int(gt_segment.get("iscrowd", 0) or 0) == 1:
            continue
        category = int(gt_segment["category_id"])
        if category != int(pred_segments[pred_id]["category_id"]):
            continue
        union = pred_area[pred_id] + gt_area[gt_id] - intersection - overlap.get((VOID, pred_id), 0)
        iou = intersection / union
        if iou > MATCH_IOU:
            stat(category).tp += 1
            stat(category).iou += iou
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    crowd_by_category: dict[int, int] = {}
    for gt_id, gt_segment in gt_segments.items():
        if gt_id in gt_matched:
            continue
        category = int(gt_segment["category_id"])
        if int(gt_segment.get("iscrowd", 0) or 0) == 1:
            crowd_by_category[category] = gt_id
            continue
        stat(category).fn += 1

    for pred_id, pred_segment in pred_segments.items():
        if pred_id in pred_matched:
            continue
        category = int(pred_segment["category_id"])
        ignored = overlap.get((VOID, pred_id), 0)
        if category in crowd_by_category:
            ignored += overlap.get((crowd_by_category[category], pred_id), 0)
        if ignored / pred_area[pred_id] > IGNORED_FRACTION:
            continue
        stat(category).fp += 1
    return stats


# ---------------------------------------------------------------- public entry points


class _Accumulator:
    """Sums the per-image counts into a ``PanopticMetrics``."""

    def __init__(self, categories: Sequence[Mapping[str, Any]], where: str) -> None:
        self.metrics = PanopticMetrics(_category_table(categories, where))

    def add(self, image_stats: Mapping[int, CategoryQuality]) -> None:
        for category, quality in image_stats.items():
            self.metrics.per_category.setdefault(category, CategoryQuality()).add(quality)
        self.metrics.images += 1


def pq_compute(
    gt_annotations: Sequence[Mapping[str, Any]],
    gt_ids: IdSource,
    pred_annotations: Sequence[Mapping[str, Any]],
    pred_ids: IdSource,
    categories: Sequence[Mapping[str, Any]],
    gt_name: str = "ground truth",
    pred_name: str = "predictions",
) -> PanopticMetrics:
    """Panoptic quality of predictions against ground truth, image by image.

    gt_annotations / pred_annotations: COCO panoptic annotations ({"image_id", "file_name",
    "segments_info": [{"id", "category_id", "iscrowd", "area"}, …]}); every ground-truth image needs a
    prediction, and predictions for other images are ignored (as panopticapi does).
    gt_ids / pred_ids: a function annotation -> [H, W] int id map, or a folder holding each annotation's
    PNG under its ``file_name``. categories: [{"id", "name", "isthing"}, …].
    gt_name / pred_name: what to call the two sides in error messages (e.g. their JSON files).
    """
    accumulator = _Accumulator(categories, gt_name)
    gt_by_image = _by_image(gt_annotations, gt_name)
    pred_by_image = _by_image(pred_annotations, pred_name)
    read_gt = _id_reader(gt_ids, gt_name)
    read_pred = _id_reader(pred_ids, pred_name)
    for image_id, gt_ann in gt_by_image.items():
        if image_id not in pred_by_image:
            raise PanopticError(f"{pred_name}: no prediction for image {image_id}")
        pred_ann = pred_by_image[image_id]
        gt_map, gt_what = read_gt(gt_ann, image_id)
        pred_map, pred_what = read_pred(pred_ann, image_id)
        accumulator.add(
            _match_image(
                image_id,
                _segments(gt_ann, image_id, gt_name),
                _check_id_map(gt_map, gt_what),
                _segments(pred_ann, image_id, pred_name),
                _check_id_map(pred_map, pred_what),
                accumulator.metrics.categories,
                gt_what,
                pred_what,
            )
        )
    return accumulator.metrics


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise PanopticError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise PanopticError(f"{path}: is a folder, not a {what} JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PanopticError(f"{path}: cannot read {what} file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise PanopticError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PanopticError(
            f"{path}: a COCO panoptic file must hold a JSON object, not {type(data).__name__}"
        )
    if not isinstance(data.get("annotations"), list):
        raise PanopticError(f"{path}: missing the 'annotations' list")
    return data


def pq_compute_files(
    gt_json: str | os.PathLike[str],
    gt_folder: str | os.PathLike[str],
    pred_json: str | os.PathLike[str],
    pred_folder: str | os.PathLike[str],
) -> PanopticMetrics:
    """panopticapi's ``pq_compute`` on files: COCO panoptic JSONs and their folders of id PNGs.

    The categories come from the ground-truth JSON. Errors name the file at fault.
    """
    gt_path, pred_path = Path(gt_json), Path(pred_json)
    gt = _read_json(gt_path, "ground-truth")
    pred = _read_json(pred_path, "prediction")
    categories = gt.get("categories")
    if not isinstance(categories, list):
        raise PanopticError(f"{gt_path}: missing the 'categories' list")
    return pq_compute(
        gt["annotations"],
        gt_folder,
        pred["annotations"],
        pred_folder,
        categories,
        gt_name=str(gt_path),
        pred_name=str(pred_path),
    )


# ---------------------------------------------------------------- evaluating a model


def _decode_prediction(
    result: Mapping[str, Any], categories: Mapping[int, Any]
) -> tuple[np.ndarray, list, int]:
    """A ``PostProcessPanoptic`` result -> ([H, W] int64 id map, segments_info, segments left out).

    The post-processor numbers segments from 0, and 0 is also the colour of its first segment, so ids
    are shifted up by one here; segments whose class is not a category become 0 (unlabelled).
    """
    with Image.open(io.BytesIO(result["png_string"])) as png:
        ids = rgb2id(np.asarray(png.convert("RGB"))).astype(np.int64) + 1  # [H, W]
    # Nothing kept (or everything dropped as too small) leaves an all-zero map with no segments: unlabelled.
    listed = [int(s["id"]) + 1 for s in result["segments_info"]]
    ids[~np.isin(ids, listed)] = VOID
    segments = []
    dropped = 0
    for segment in result["segments_info"]:
        new_id = int(segment["id"]) + 1
        if int(segment["category_id"]) in categories:
            segments.append({**segment, "id": new_id})
        else:
            ids[ids == new_id] = VOID
            dropped += 1
    return ids, segments, dropped


def _fp32_select(post: PostProcessPanoptic) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """``post.select`` on fp32 logits, so that the choice made under autocast is the one
    ``from_selected`` checks afterwards."""

    def select(outputs: Mapping[str, Tensor]) -> Tensor:
        return post.select({"pred_logits": outputs["pred_logits"].float()})

    return select


@torch.no_grad()
def evaluate_panoptic(
    model: nn.Module,
    dataset: CocoPanopticDataset,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    progress: Callable[[int, int], None] | None = None,
    threshold: float = 0.85,
    batch_size: int = 1,
) -> PanopticMetrics:
    """PQ of a DETRsegm ``model`` on a panoptic ``dataset`` built with the val transforms.

    The model's class indices are the dataset's category ids (DETR's convention). Its panoptic results
    come from ``PostProcessPanoptic`` (``threshold`` on the class probability), with masks computed only
    for the kept queries, at each image's original size; the ground truth is the dataset's panoptic PNGs.
    ``progress(done, total)`` is called after each batch.
    """
    if not isinstance(model, DETRsegm):
        raise TypeError(
            f"evaluate_panoptic needs a DETRsegm model (with a mask head), not {type(model).__name__}"
        )
    if not isinstance(dataset, CocoPanopticDataset):
        raise TypeError(f"evaluate_panoptic needs a CocoPanopticDataset, not {type(dataset).__name__}")
    gt_data = dataset.panoptic_dict()
    gt_name = f"panoptic ground truth in {dataset.panoptic_root}"
    accumulator = _Accumulator(dataset.categories, gt_name)
    categories = accumulator.metrics.categories
    gt_by_image = _by_image(gt_data["annotations"], gt_name)
    read_gt = _id_reader(dataset.panoptic_root, gt_name)

    is_thing_map = default_is_thing_map(model.num_classes)
    is_thing_map.update(dataset.is_thing)
    post = PostProcessPanoptic(is_thing_map, threshold=threshold)
    select = _fp32_select(post)

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=0)
    done = 0
    for samples, targets in loader:
        samples = samples.to(device)
        with autocast():
            outputs = model(samples, select=select)
        outputs = {
            "pred_logits": outputs["pred_logits"].float(),  # [B, Q, C+1]
            "pred_masks": outputs["pred_masks"].float(),  # [N, H/4, W/4], kept queries only
            "mask_index": outputs["mask_index"],  # [N, 2] (image, query)
        }
        processed = torch.stack([t["size"] for t in targets])  # [B, 2] (h, w)
        original = torch.stack([t["orig_size"] for t in targets])  # [B, 2] (h, w)
        results = post.from_selected(outputs, processed, original)
        for target, result in zip(targets, results):
            image_id = int(target["image_id"])
            if image_id not in gt_by_image:
                continue
            gt_ann = gt_by_image[image_id]
            gt_map, gt_what = read_gt(gt_ann, image_id)
            pred_map, pred_segments, dropped = _decode_prediction(result, categories)
            accumulator.metrics.unknown_category_segments += dropped
            accumulator.add(
                _match_image(
                    image_id,
                    _segments(gt_ann, image_id, gt_name),
                    _check_id_map(gt_map, gt_what),
                    {s["id"]: s for s in pred_segments},
                    pred_map,
                    categories,
                    gt_what,
                    f"prediction for image {image_id}",
                )
            )
        done += len(targets)
        if progress is not None:
            progress(done, len(dataset))
    return accumulator.metrics
