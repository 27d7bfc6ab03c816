"""Where weights come from: a path on disk or a model-zoo name; and the class names that go with them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .classes import coco_detection_classes, coco_panoptic_classes
from .config import DetrConfig


def resolve(
    source: str | os.PathLike[str], progress: Callable[[int, int | None], None] | None = None
) -> Path:
    """A checkpoint path for ``source``: an existing file or folder, else a zoo name (downloaded on
    first use, with ``progress(done_bytes, total_bytes)``). Unknown names raise ValueError listing the zoo."""
    from . import zoo

    path = Path(source)
    if path.exists():
        return path
    names = [entry.name for entry in zoo.list_entries()]
    if str(source) in names:
        return zoo.download(str(source), progress=progress)
    raise ValueError(
        f"{source}: no such file, and not a model-zoo name (zoo: {', '.join(names)}; see `detr-studio zoo list`)"
    )


def default_class_names(config: DetrConfig) -> dict[int, str] | None:
    """COCO names for the official class counts (91 detection, 250 panoptic); None otherwise."""
    if config.num_classes == 91:
        return dict(coco_detection_classes().names)
    if config.num_classes == 250:
        return dict(coco_panoptic_classes().names)
    return None
