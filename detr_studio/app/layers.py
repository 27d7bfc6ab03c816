"""What the canvas shows for one image: names and stable colours of classes, box specs for annotations and
predictions, the mask layer and the attention picture.

`Palette` is built once per refresh from the document's categories and the model's class names (lookups are
dicts, so a thousand boxes cost a thousand lookups). The mask layer is gathered as plain data on the Qt
thread (`mask_jobs`) and drawn on a background thread (`draw_masks`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import numpy as np
from PySide6.QtGui import QImage

from detr_studio.data.coco import CocoDocument, DatasetError, id_map_problems, read_id_png
from detr_studio.data.labels import label_name
from detr_studio.infer.detections import Detections
from detr_studio.model.classes import coco_panoptic_classes, generated_color
from detr_studio.model.kinds import SAMPLING_POINTS, ImageAttention
from detr_studio.session.predictions import ImagePredictions

from .box_items import BoxSpec
from .overlays import (
    heatmap_rgba,
    masks_rgba,
    sampling_points_rgba,
    segments_rgba,
    selection_rgba,
    to_qimage,
    vary,
)

if TYPE_CHECKING:
    from detr_studio.model.deformable_detr.attention import SamplingAttention
    from detr_studio.model.detr.attention import AttentionMaps

Rgb = tuple[int, int, int]
MaskJob = tuple[str, object]


@lru_cache(maxsize=1)
def coco_colours() -> dict[str, Rgb]:
    """The COCO panoptic table's colour for each class name."""
    table = coco_panoptic_classes()
    return {table.names[cid]: table.color(cid) for cid in table.ids}


class Palette:
    """Names and colours: a category's own ``color``, else the COCO colour of its name, else a generated
    one; a predicted label takes the colour of the document's category of the same name."""

    def __init__(self, doc: CocoDocument | None, model_names: Mapping[int, str] | None = None):
        self._names: dict[int, str] = {}
        self._colours: dict[int, Rgb] = {}
        self._ids_by_name: dict[str, int] = {}
        self._model_names = dict(model_names or {})
        known = coco_colours()
        for cat in doc.categories if doc is not None else []:
            self._names[cat.id] = cat.name
            self._colours[cat.id] = cat.color or known.get(cat.name) or generated_color(cat.id)
            self._ids_by_name.setdefault(cat.name, cat.id)

    def category_name(self, category_id: int) -> str:
        return self._names.get(category_id, f"class {category_id}")

    def category_colour(self, category_id: int) -> Rgb:
        return self._colours.get(category_id) or generated_color(category_id)

    def label_name(self, label: int) -> str:
        """The model's name for a predicted label."""
        return label_name(self._model_names, label)

    def label_colour(self, label: int) -> Rgb:
        name = self.label_name(label)
        cid = self._ids_by_name.get(name)
        if cid is not None:
            return self.category_colour(cid)
        return coco_colours().get(name) or generated_color(int(label))


def annotation_specs(
    doc: CocoDocument,
    image_id: int,
    palette: Palette,
    hidden: Collection[int] = (),
    locked: Collection[int] = (),
) -> list[BoxSpec]:
    """Boxes of an image's annotations (or, panoptic, its segments), leaving out the ``hidden`` ids; ``locked``
    ones (and every segment: segments change by their pixels) cannot be moved."""
    specs = []
    if doc.is_panoptic:
        for seg in doc.segments_for(image_id):
            if seg.bbox is not None and seg.id not in hidden:
                x, y, w, h = seg.bbox
                colour, name = (
                    palette.category_colour(seg.category_id),
                    palette.category_name(seg.category_id),
                )
                tip = f"segment {seg.id}: {name}" + (" (stuff)" if seg.isthing is False else "")
                box = (x, y, x + w, y + h)
                specs.append(BoxSpec(seg.id, box, colour, name, tip, editable=False, area=seg.area))
        return specs
    for ann in doc.annotations_for(image_id):
        if ann.id in hidden:
            continue
        name = palette.category_name(ann.category_id)
        label = name
        if ann.source == "model" and ann.score is not None:
            label += f" {ann.score:.2f}"
        if ann.review == "rejected":
            label += " (rejected)"
        tip = f"annotation {ann.id}: {name}, {ann.source}"
        if ann.model:
            tip += f" ({ann.model}" + (f", score {ann.score:.3f})" if ann.score is not None else ")")
        if ann.id in locked:
            tip += "; locked"
        colour = palette.category_colour(ann.category_id)
        editable = ann.id not in locked and not doc.read_only
        specs.append(BoxSpec(ann.id, ann.xyxy, colour, label, tip, editable=editable))
    return specs


def detection_tooltip(dets: Detections, row: int, palette: Palette) -> str:
    top = ", ".join(f"{palette.label_name(c)} {p:.2f}" for c, p in dets.top_classes(row, k=3))
    return f"query {int(dets.query_ids[row])}: {top}; no-object {float(dets.no_object[row]):.2f}"


def prediction_specs(dets: Detections | None, palette: Palette) -> list[BoxSpec]:
    """One read-only box per row, keyed by query id, labelled with class and score."""
    if dets is None:
        return []
    specs = []
    for row in range(len(dets)):
        label = int(dets.labels[row])
        x0, y0, x1, y1 = (float(v) for v in dets.boxes[row])
        specs.append(
            BoxSpec(
                int(dets.query_ids[row]),
                (x0, y0, x1, y1),
                palette.label_colour(label),
                f"{palette.label_name(label)} {float(dets.scores[row]):.2f}",
                detection_tooltip(dets, row, palette),
                editable=False,
            )
        )
    return specs


def mask_jobs(
    doc: CocoDocument,
    image_id: int,
    palette: Palette,
    predictions: ImagePredictions | None,
    visible: Detections | None,
    hidden: Collection[int] = (),
) -> list[MaskJob]:
    """Plain data for `draw_masks`: the annotations' masks (or the panoptic PNG), then the predicted masks
    (a panoptic result, or the instance masks of the ``visible`` rows) when ``predictions`` is given. The
    ``hidden`` annotations (or segments) are left out."""
    jobs: list[MaskJob] = []
    if doc.is_panoptic:
        segments = doc.segments_for(image_id)
        colours = {
            seg.id: vary(palette.category_colour(seg.category_id), k)
            for k, seg in enumerate(segments)
            if seg.id not in hidden
        }
        if doc.is_edited_map(image_id):  # edited here: the map in memory (a copy), not the file
            jobs.append(("doc_ids", (doc.id_map(image_id), colours)))
        else:
            png = doc.panoptic_png(image_id)
            if png is not None:  # checked where it is read, on the lane (opening does not read every PNG)
                size = doc.image_size(image_id)
                jobs.append(("id_png", (png, colours, {seg.id for seg in segments}, size)))
    else:
        for k, ann in enumerate(doc.annotations_for(image_id)):
            if ann.segmentation and ann.id not in hidden:
                jobs.append(
                    ("segmentation", (ann.segmentation, vary(palette.category_colour(ann.category_id), k)))
                )
    if predictions is not None:
        dets = predictions.detections
        if dets.panoptic is not None:
            labels = {seg["id"]: int(seg["category_id"]) for seg in dets.panoptic.segments_info}
            colours = {sid: vary(palette.label_colour(lab), k) for k, (sid, lab) in enumerate(labels.items())}
            jobs.append(("ids", (dets.panoptic.ids, colours)))
        elif visible is not None and visible.masks is not None:
            for row in range(len(visible)):
                jobs.append(("mask", (visible.masks[row], palette.label_colour(int(visible.labels[row])))))
    return jobs


@dataclass(frozen=True)
class MaskLayer:
    """What `draw_masks` made: the picture (None: nothing to show) and the [H, W] segment ids of the
    document's panoptic PNG it drew (None for instances), which the canvas picks segments with."""

    picture: QImage | None
    segment_ids: np.ndarray | None = None


def draw_masks(jobs: list[MaskJob], height: int, width: int) -> MaskLayer:
    """The mask layer from `mask_jobs` (runs on a background thread); later jobs paint over earlier ones."""
    layers: list[np.ndarray] = []
    masks: list[tuple[np.ndarray, Rgb]] = []
    segment_ids = None
    for kind, payload in jobs:
        if kind == "segmentation":
            from detr_studio.data.dataset import segmentation_to_mask

            segmentation, colour = payload  # type: ignore[misc]
            masks.append((segmentation_to_mask(segmentation, height, width).astype(bool), colour))
        elif kind == "id_png":
            png, colours, listed, size = payload  # type: ignore[misc]
            ids = read_id_png(png)  # [H, W]
            problems = id_map_problems(ids, listed, size, png)
            if problems:
                raise DatasetError("; ".join(problems))
            layers.append(segments_rgba(ids, colours))
            segment_ids = ids
        elif kind in ("doc_ids", "ids"):
            ids, colours = payload  # type: ignore[misc]
            if ids.shape == (height, width):
                layers.append(segments_rgba(ids, colours))
                if kind == "doc_ids":
                    segment_ids = ids
        elif kind == "mask":
            masks.append(payload)  # type: ignore[arg-type]
    if masks:
        layers.append(masks_rgba(masks, height, width))
    if not layers:
        return MaskLayer(None, segment_ids)
    out = layers[0].copy()
    for layer in layers[1:]:
        covered = layer[..., 3] > 0
        out[covered] = layer[covered]
    return MaskLayer(to_qimage(out), segment_ids)


def highlight_picture(ids: np.ndarray, selected: Collection[int]) -> QImage | None:
    """The selected segments' pixels of a [H, W] id map, light with a dark outline (runs on a background
    thread); None when none of them is in the map."""
    if not selected:
        return None
    rgba = selection_rgba(ids, selected)
    return to_qimage(rgba) if rgba is not None else None


def attention_picture(
    maps: ImageAttention | None,
    query: int | None,
    probe: tuple[float, float] | None,
    head: int | None,
) -> tuple[QImage, tuple[float, float]] | None:
    """Where decoder ``query`` looks, or (no query) where the encoder looks from pixel ``probe``; with the
    image pixels one picture pixel covers (x, y). A heatmap of attention maps, or the sampling points of a
    deformable model. None when there is nothing to show."""
    if maps is None:
        return None
    if maps.kind == SAMPLING_POINTS:
        return _sampling_picture(cast("SamplingAttention", maps), query, probe, head)
    maps = cast("AttentionMaps", maps)
    if query is not None:
        values = maps.decoder_map(query, head)  # [h, w]
    elif probe is not None and maps.encoder is not None:
        values = maps.encoder_map(probe[0], probe[1], head)  # [h, w]
    else:
        return None
    cell = (maps.stride * maps.scale[1], maps.stride * maps.scale[0])
    return to_qimage(heatmap_rgba(values)), cell


SAMPLING_PICTURE_SIDE = 1024  # the points are drawn at most this many pixels wide, then scaled to the image


def _sampling_picture(
    maps: SamplingAttention, query: int | None, probe: tuple[float, float] | None, head: int | None
) -> tuple[QImage, tuple[float, float]] | None:
    if query is not None:
        points = maps.decoder_points(query)
    elif probe is not None and maps.has_encoder:
        points = maps.encoder_points(probe[0], probe[1])
    else:
        return None
    height, width = maps.image_size
    step = max(1.0, max(height, width) / SAMPLING_PICTURE_SIDE)  # image pixels per picture pixel
    size = (max(1, round(height / step)), max(1, round(width / step)))
    rgba = sampling_points_rgba(
        points.reference.numpy() / step, points.locations.numpy() / step, points.weights.numpy(), size, head
    )
    return to_qimage(rgba), (step, step)
