"""Shared COCO test data: a small instances file with fields we do not interpret at every level, a tiny
panoptic file with its PNGs, and comparisons of whole documents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from detr_studio.data.coco import OUR_KEY, CocoDocument, id2rgb


def base_data() -> dict:
    """A small valid instances file with fields we do not interpret at every level."""
    return {
        "info": {"description": "test set", "year": 2024},
        "licenses": [{"id": 1, "name": "CC-BY", "url": "http://example.org"}],
        "images": [
            {"license": 1, "id": 1, "file_name": "a.jpg", "width": 100, "height": 80, "flickr_url": "u"},
            {"id": 2, "file_name": "sub/b.jpg", "width": 60, "height": 60, "date_captured": "2024-01-01"},
            {"id": 3, "file_name": "c.jpg", "width": 50, "height": 40},
        ],
        "annotations": [
            {
                "segmentation": [[10, 10, 30, 10, 30, 40]],
                "area": 600.0,
                "iscrowd": 0,
                "image_id": 1,
                "bbox": [10, 10, 20, 30],
                "category_id": 1,
                "id": 10,
                "note": "keep me",
            },
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [50, 20, 10, 10], "area": 100, "iscrowd": 0},
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 60, 60],
                "area": 3600,
                "iscrowd": 0,
                OUR_KEY: {"source": "model", "score": 0.9, "review": "pending", "model": "detr-r50", "x": 1},
            },
        ],
        "categories": [
            {"supercategory": "animal", "id": 1, "name": "cat", "extra": True},
            {"supercategory": "animal", "id": 2, "name": "dog"},
            {"supercategory": "animal", "id": 5, "name": "bird"},
        ],
        "unknown_top": {"nested": [1, 2, {"a": None}]},
    }


def write_json(folder: Path, data: object, name: str = "instances.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def dumps(doc_or_data: CocoDocument | dict) -> str:
    """Canonical text of a document's JSON: equal strings mean equal content *and* key order everywhere."""
    data = doc_or_data.to_json() if isinstance(doc_or_data, CocoDocument) else doc_or_data
    return json.dumps(data)


def assert_indexes_match(doc: CocoDocument) -> None:
    """The document's indexes agree with a document built afresh from its JSON."""
    fresh = CocoDocument(doc.to_json())
    assert doc.images == fresh.images
    assert doc.categories == fresh.categories
    assert doc.annotations == fresh.annotations
    assert doc.num_classes == fresh.num_classes
    for image in fresh.images:
        assert doc.annotations_for(image.id) == fresh.annotations_for(image.id)
        assert doc.image_by_file_name(image.file_name) == fresh.image_by_file_name(image.file_name)


SEGMENT_IDS = (5, 300, 70000)  # exercises all three colour channels


def panoptic_data() -> dict:
    return {
        "info": {"description": "panoptic"},
        "images": [
            {"id": 1, "file_name": "one.jpg", "width": 8, "height": 6},
            {"id": 2, "file_name": "two.jpg", "width": 8, "height": 6},
        ],
        "annotations": [
            {
                "image_id": 1,
                "file_name": "one.png",
                "segments_info": [
                    {"id": 5, "category_id": 1, "bbox": [0, 0, 4, 6], "area": 24, "iscrowd": 0, "extra": "x"},
                    {"id": 300, "category_id": 2, "bbox": [4, 0, 4, 3], "area": 12, "iscrowd": 0},
                    {"id": 70000, "category_id": 200, "bbox": [4, 3, 4, 3], "area": 12, "iscrowd": 1},
                ],
            },
            {"image_id": 2, "file_name": "two.png", "segments_info": [], "note": "empty"},
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
            {"id": 2, "name": "car", "supercategory": "vehicle", "isthing": 1, "color": [0, 0, 142]},
            {"id": 200, "name": "sky", "supercategory": "sky", "isthing": 0, "color": [70, 130, 180]},
        ],
    }


def panoptic_ids() -> np.ndarray:
    ids = np.zeros((6, 8), dtype=np.int64)  # [H, W]
    ids[:, :4] = 5
    ids[:3, 4:] = 300
    ids[3:, 4:] = 70000
    return ids


def write_panoptic(folder: Path, data: dict | None = None, ids: np.ndarray | None = None) -> Path:
    path = write_json(folder, data or panoptic_data(), "panoptic_val.json")
    png_folder = folder / "panoptic_val"
    png_folder.mkdir(exist_ok=True)
    Image.fromarray(id2rgb(panoptic_ids() if ids is None else ids)).save(png_folder / "one.png")
    Image.fromarray(id2rgb(np.zeros((6, 8), dtype=np.int64))).save(png_folder / "two.png")
    return path
