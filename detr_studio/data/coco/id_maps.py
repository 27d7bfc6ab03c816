"""The panoptic id maps a document edits, held in memory per image: read from the PNG on the first edit of an
image, changed in place by `panoptic_edits.PaintIds`, written by `panoptic_save` when the document is saved.

Only the images being edited are held (an id map of a 640 x 480 image is 1.2 MB as int32), and only the
ones ``changed`` since the last save are written. An edit's inverse keeps the region it changed, never a
copy of the whole map.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .problems import CocoEditError

Loader = Callable[[int], np.ndarray]  # image id -> its [H, W] ids as stored (checked)


class IdMaps:
    """Id maps by image id. ``load`` reads an image's PNG (set by the document that knows its PNG folder)."""

    def __init__(self) -> None:
        self.load: Loader | None = None
        self.maps: dict[int, np.ndarray] = {}  # image id -> [H, W] int32, the edited state
        self.changed: set[int] = set()  # differ from the PNG the entry names (or have none yet)

    def get(self, image_id: int) -> np.ndarray:
        """The [H, W] int32 ids of ``image_id`` as edited so far (read on first use)."""
        ids = self.maps.get(image_id)
        if ids is None:
            if self.load is None:
                raise CocoEditError(
                    "the folder of panoptic PNGs is not known: open the dataset with its PNG folder to edit"
                    " segments"
                )
            ids = self.maps[image_id] = np.ascontiguousarray(self.load(image_id), dtype=np.int32)
        return ids

    def put(self, image_id: int, ids: np.ndarray) -> None:
        """Hold a map that has no PNG yet (a new entry)."""
        self.maps[image_id] = np.ascontiguousarray(ids, dtype=np.int32)
        self.changed.add(image_id)

    def drop(self, image_id: int) -> None:
        self.maps.pop(image_id, None)
        self.changed.discard(image_id)

    def touched(self, image_id: int) -> None:
        self.changed.add(image_id)

    def saved(self) -> None:
        """Every changed map now is what its PNG holds."""
        self.changed.clear()
