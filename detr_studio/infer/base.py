"""What every inference backend shares: reading and preparing images, batching files, and the calls
the window and the command line use (``predict``, ``predict_files``). A backend supplies ``_run``."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch import Tensor

from ..data.images import ImageReadError, load_image
from ..data.preprocess import prepare, resize_image, resized_size
from .box_mask import BoxMask
from .detections import Detections
from .memory import ForwardPlan

ImageLike = Image.Image | str | os.PathLike


@dataclass(frozen=True)
class Prepared:
    tensor: Tensor  # [3, h, w] normalised network input
    original: tuple[int, int]  # (H, W) of the image as read
    source: str


class BasePredictor:
    """Images in, ``Detections`` out. Subclasses set ``size``/``max_size`` and implement ``_run``."""

    size: int = 800
    max_size: int | None = 1333
    last_plan: ForwardPlan | None = None  # how the last prediction ran (backends that plan their memory)

    def _run(self, prepared: list[Prepared], *, attention: bool, panoptic: bool) -> list[Detections]:
        raise NotImplementedError

    def mask_from_box(self, image: ImageLike, box_xyxy: tuple[float, float, float, float]) -> BoxMask:
        """The model's mask for a drawn box (`infer.box_mask`); backends that cannot run the mask head for
        one query refuse."""
        raise ValueError("a mask from a box needs the PyTorch model: its mask head runs for the chosen query")

    def _check_request(self, attention: bool, panoptic: bool) -> None:
        """Refuse a request this backend or model cannot serve (ValueError with a clear message)."""

    def _prepare(self, item: ImageLike) -> Prepared:
        if isinstance(item, Image.Image):
            img, source = item.convert("RGB") if item.mode != "RGB" else item, ""
        else:
            img, source = load_image(item), str(item)
        return Prepared(prepare(img, self.size, self.max_size), (img.height, img.width), source)

    def predict(
        self, images: Sequence[ImageLike], *, attention: bool = False, panoptic: bool = False
    ) -> list[Detections]:
        """Predict one batch. Image files that cannot be read raise ImageReadError naming the file."""
        self._check_request(attention, panoptic)
        if not images:
            return []
        return self._run([self._prepare(item) for item in images], attention=attention, panoptic=panoptic)

    def predict_files(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        batch_size: int = 1,
        attention: bool = False,
        panoptic: bool = False,
    ) -> Iterator[tuple[Path, Detections | ImageReadError]]:
        """Predict many files in batches; unreadable files yield their error and the rest go on."""
        self._check_request(attention, panoptic)
        pending: list[Prepared] = []
        for path in paths:
            try:
                pending.append(self._prepare(path))
            except ImageReadError as exc:
                yield Path(path), exc
                continue
            if len(pending) >= batch_size:
                yield from self._emit(pending, attention, panoptic)
                pending = []
        if pending:
            yield from self._emit(pending, attention, panoptic)

    def _emit(self, prepared: list[Prepared], attention: bool, panoptic: bool):
        for item, dets in zip(prepared, self._run(prepared, attention=attention, panoptic=panoptic)):
            yield Path(item.source), dets

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) of the network input for an image of this size."""
        return resized_size(width, height, self.size, self.max_size)

    def resize(self, img: Image.Image) -> Image.Image:
        return resize_image(img, self.size, self.max_size)
