"""Small datasets made on the fly for training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

# Two 128×128 images, two objects each (equal counts, which the multi-process loss check relies on).
OBJECTS = {
    1: [(1, (10, 12, 60, 70)), (2, (70, 60, 120, 118))],
    2: [(2, (20, 20, 90, 60)), (1, (40, 70, 110, 120))],
}


def make_two_images(root: Path) -> tuple[Path, Path]:
    """Discs (category 1) and boxes (category 2) on noise; -> (annotation file, image folder)."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, objects in OBJECTS.items():
        canvas = Image.fromarray((rng.random((128, 128, 3)) * 60 + 90).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for category, (x0, y0, x1, y1) in objects:
            if category == 1:
                draw.ellipse((x0, y0, x1, y1), fill=(220, 30, 30))
            else:
                draw.rectangle((x0, y0, x1, y1), fill=(30, 30, 220))
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
            )  # fmt: skip
        canvas.save(images_dir / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 128, "height": 128})
    categories = [{"id": 1, "name": "disc"}, {"id": 2, "name": "box"}]
    ann = root / "annotations.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann, images_dir


@pytest.fixture(scope="session")
def two_images(tmp_path_factory) -> tuple[Path, Path]:
    return make_two_images(tmp_path_factory.mktemp("two-images"))
