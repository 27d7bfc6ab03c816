"""Inference for the window, without Qt: one loaded model, single predictions and batch runs.

`InferenceEngine` keeps one predictor (loaded through `model_loading`) and is driven from one background
thread at a time. A batch run reports progress and chunks of results through callbacks a few times a second
(so the window never redraws per image), asks ``cancelled()`` between images, and calls ``between()`` there
too, which lets a single "Predict" that arrives during "Predict all" run at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detr_studio.infer.detections import Detections

from .model_loading import ModelChoice, ModelInfo, describe_error, load_predictor

if TYPE_CHECKING:  # torch: the window imports this module at start, torch comes later
    from detr_studio.infer.box_mask import BoxMask

RESULT_INTERVAL_S = 0.3  # how often a batch posts its results
PROGRESS_INTERVAL_S = 0.1
NO_MODEL = "no model is loaded: choose one first (Model > Choose model)"


class NoModelError(RuntimeError):
    """A prediction was asked for before a model was loaded."""


@dataclass
class BatchSummary:
    done: int
    total: int
    cancelled: bool
    errors: list[str] = field(default_factory=list)
    failure: str | None = None  # the whole batch stopped on this error


class InferenceEngine:
    """One loaded model; see the module docstring."""

    def __init__(self) -> None:
        self._predictor: Any = None  # a Predictor or an OnnxPredictor
        self.info: ModelInfo | None = None

    @property
    def loaded(self) -> bool:
        return self._predictor is not None

    def load(self, choice: ModelChoice) -> ModelInfo:
        """Load ``choice`` (replacing the model); raises with a message naming the source when it cannot."""
        try:
            predictor, info = load_predictor(choice)
        except Exception as exc:
            raise RuntimeError(f"{choice.source}: {describe_error(exc)}") from exc
        self._predictor, self.info = predictor, info
        return info

    def predict(self, path: Path) -> Detections:
        """One image, with attention maps (torch models) and panoptic segments when there is a mask head."""
        if self._predictor is None or self.info is None:
            raise NoModelError(NO_MODEL)
        try:
            return self._predictor.predict(
                [path], attention=self.info.has_attention, panoptic=self._predictor.supports_masks
            )[0]
        except Exception as exc:
            raise RuntimeError(describe_error(exc)) from exc

    def mask_from_box(self, path: Path, box_xyxy: tuple[float, float, float, float]) -> BoxMask:
        """The loaded model's mask for a box drawn on the image at ``path`` (`Predictor.mask_from_box`); raises
        with a message when there is no model, no mask head, or the image cannot be read."""
        if self._predictor is None:
            raise NoModelError(NO_MODEL)
        try:
            return self._predictor.mask_from_box(path, box_xyxy)
        except Exception as exc:
            raise RuntimeError(describe_error(exc)) from exc

    def predict_batch(
        self,
        items: Sequence[tuple[int, Path]],
        batch_size: int,
        *,
        cancelled: Callable[[], bool],
        between: Callable[[], None],
        progress: Callable[[int, int], None],
        results: Callable[[dict[int, Detections]], None],
    ) -> BatchSummary:
        """Predict ``items`` ((image id, path)); ``progress(done, total)`` and ``results({id: dets})`` are
        called every so often and once at the end."""
        summary = BatchSummary(done=0, total=len(items), cancelled=False)
        if self._predictor is None:
            summary.failure = NO_MODEL
            return summary
        ids_by_path: dict[str, list[int]] = {}
        for image_id, path in items:
            ids_by_path.setdefault(str(path), []).append(image_id)
        pending: dict[int, Detections] = {}
        last_post = last_progress = time.monotonic()
        outcomes: Iterator = self._predictor.predict_files(
            [p for _, p in items], batch_size=max(1, int(batch_size)), panoptic=self._predictor.supports_masks
        )
        try:
            while True:
                if cancelled():
                    summary.cancelled = True
                    break
                between()
                try:
                    path, outcome = next(outcomes)
                except StopIteration:
                    break
                ids = ids_by_path.get(str(path)) or [-1]
                image_id = ids.pop(0)
                summary.done += 1
                if isinstance(outcome, Exception):
                    summary.errors.append(str(outcome))
                else:
                    pending[image_id] = outcome
                now = time.monotonic()
                if now - last_progress >= PROGRESS_INTERVAL_S:
                    progress(summary.done, summary.total)
                    last_progress = now
                if pending and now - last_post >= RESULT_INTERVAL_S:
                    results(pending)
                    pending, last_post = {}, now
        except Exception as exc:
            summary.failure = describe_error(exc)
        if pending:
            results(pending)
        progress(summary.done, summary.total)
        return summary
