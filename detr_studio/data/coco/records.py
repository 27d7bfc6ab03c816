"""Typed, read-only views of COCO records (`ImageInfo`, `Category`, `Annotation`, `Segment`), made from the
stored JSON objects, and our own fields inside them.

Our own fields live under one key. Per annotation: ``"detr_studio": {"source": "model"|"human", "score":
float|None, "review": "pending"|"accepted"|"rejected", "model": str|None}``, plus ``"mask": "box"`` when the
annotation's ``segmentation`` is only its box's outline (a box without a mask in a dataset with masks); per
image: ``"detr_studio": {"reviewed": bool}``. Annotations without the key count as human-made and accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUR_KEY = "detr_studio"
SOURCES = ("model", "human")
REVIEW_STATES = ("pending", "accepted", "rejected")


@dataclass(frozen=True)
class ImageInfo:
    id: int
    file_name: str
    width: int
    height: int
    reviewed: bool = False


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    supercategory: str | None = None
    isthing: bool | None = None
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Annotation:
    """An instance annotation. ``segmentation`` is the stored object itself: read it, do not change it."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # x, y, width, height in pixels
    area: float
    iscrowd: bool
    segmentation: Any = None
    source: str = "human"
    score: float | None = None
    review: str = "accepted"
    model: str | None = None
    box_mask: bool = False  # the segmentation is only the box's outline (our "mask": "box")

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic annotation; ``bbox`` and ``area`` are None where the file does not give them."""

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float] | None
    area: float | None
    iscrowd: bool
    isthing: bool | None


def default_ours(review: str | None = None, source: str = "human") -> dict[str, Any]:
    """Our fields of a new annotation; ``review`` defaults to "pending" for model boxes, "accepted" otherwise."""
    if review is None:
        review = "pending" if source == "model" else "accepted"
    return {"source": source, "score": None, "review": review, "model": None}


def is_rejected(record: dict[str, Any]) -> bool:
    """Whether a reviewer rejected this annotation record."""
    ours = record.get(OUR_KEY)
    return isinstance(ours, dict) and ours.get("review") == "rejected"


def image_info(img: dict) -> ImageInfo:
    ours = img.get(OUR_KEY)
    reviewed = bool(ours.get("reviewed", False)) if isinstance(ours, dict) else False
    width, height = img.get("width", 0), img.get("height", 0)  # 0: not read yet (lazy sizes)
    return ImageInfo(img["id"], img["file_name"], int(width), int(height), reviewed)


def category_info(cat: dict) -> Category:
    sup = cat.get("supercategory")
    isthing = cat.get("isthing")
    color = cat.get("color")
    return Category(
        cat["id"],
        cat["name"],
        sup if isinstance(sup, str) else None,
        bool(isthing) if isthing is not None else None,
        (color[0], color[1], color[2]) if isinstance(color, list) else None,
    )


def annotation_info(ann: dict) -> Annotation:
    x, y, w, h = (float(v) for v in ann["bbox"])
    area = ann.get("area")
    ours = ann.get(OUR_KEY)
    ours = ours if isinstance(ours, dict) else {}
    source = ours.get("source", "human")
    score = ours.get("score")
    return Annotation(
        id=ann["id"],
        image_id=ann["image_id"],
        category_id=ann["category_id"],
        bbox=(x, y, w, h),
        area=float(area) if area is not None else w * h,
        iscrowd=bool(ann.get("iscrowd", 0)),
        segmentation=ann.get("segmentation"),
        source=source,
        score=float(score) if score is not None else None,
        review=ours.get("review", "pending" if source == "model" else "accepted"),
        model=ours.get("model"),
        box_mask=ours.get("mask") == "box",
    )


def segment_info(image_id: int, seg: dict, category: dict) -> Segment:
    """The view of one panoptic segment; ``category`` is its category record (for ``isthing``)."""
    box = seg.get("bbox")
    area = seg.get("area")
    isthing = seg.get("isthing", category.get("isthing"))
    return Segment(
        seg["id"],
        image_id,
        seg["category_id"],
        (float(box[0]), float(box[1]), float(box[2]), float(box[3])) if box is not None else None,
        float(area) if area is not None else None,
        bool(seg.get("iscrowd", 0)),
        bool(isthing) if isthing is not None else None,
    )
