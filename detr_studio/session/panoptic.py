"""Accepting the segments a panoptic model predicted into a panoptic document (the panoptic side of
``Session.accept``).

A prediction's segments are named by the decoder query that made each (`PanopticResult.query_ids`), so
accepting queries on a panoptic document takes their segments: each becomes a new segment of the image
(painted over what is there), of the category its label maps to (`data.labels.category_for_label`; a
category the document lacks is added first, a thing or stuff class as the model says). Editing segments
by hand is `data.coco.segment_edits`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from detr_studio.data.coco import AddCategory, Batch, CocoDocument, CocoEditError, Edit
from detr_studio.data.coco.segment_edits import add_segments_edit
from detr_studio.data.labels import category_for_label
from detr_studio.infer.detections import Detections


def accept_segments_edit(
    doc: CocoDocument,
    image_id: int,
    detections: Detections,
    query_ids: Iterable[int],
    class_names: Mapping[int, str],
) -> tuple[Edit, list[int]]:
    """(one undoable edit adding the segments the queries made, the new segment ids). `CocoEditError` when
    none of the queries made a segment."""
    result = detections.panoptic
    if result is None or result.query_ids is None:
        raise CocoEditError("these predictions have no panoptic segments")
    width, height = doc.image_size(image_id)
    predicted = result.ids  # [h, w]
    if predicted.shape != (height, width):
        raise CocoEditError(
            f"the prediction is {predicted.shape[1]}x{predicted.shape[0]}, the image {width}x{height}"
        )
    new_categories: dict[int, dict] = {}
    parts: list[tuple[np.ndarray, int]] = []
    for query in query_ids:
        if int(query) not in result.query_ids:
            continue
        seg = result.segments_info[result.query_ids.index(int(query))]
        label = int(seg["category_id"])
        cid = category_for_label(doc.categories, label, class_names, new_categories)
        if cid in new_categories:
            new_categories[cid].setdefault("isthing", int(bool(seg.get("isthing", True))))
        parts.append((predicted == seg["id"], cid))
    if not parts:
        raise CocoEditError(
            "none of these predictions made a segment (they are below the panoptic threshold)"
        )
    segments, new_ids = add_segments_edit(doc, image_id, parts, planned_categories=set(new_categories))
    steps: list[Edit] = [AddCategory(rec) for rec in new_categories.values()]
    return (Batch([*steps, segments], segments.label) if steps else segments), new_ids
