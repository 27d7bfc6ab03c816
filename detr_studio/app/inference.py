"""The inference worker of the window: the session's `InferenceEngine` on one background `Lane`.

Requests, newest first in importance: a model load (it cancels a running batch), a single prediction or a
mask for a drawn box (the newest request wins, and one for an image no longer shown is dropped), and one
batch job that lets single requests run between its images, so "Predict" stays responsive during "Predict
all". Outcomes come back as
Qt signals on the Qt thread. torch is imported by the lane's thread on the first model load, never at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from detr_studio.session.inference import BatchSummary, InferenceEngine
from detr_studio.session.model_loading import ModelChoice, ModelInfo

from .background import Job, Lane

SINGLE = "single"


class InferenceWorker(QObject):
    """One loaded model in one thread. Set ``current_image`` to the image shown, so stale requests drop."""

    model_loaded = Signal(object)  # ModelInfo
    model_failed = Signal(str)
    predicted = Signal(int, object, str)  # image id, Detections, model name
    predict_failed = Signal(int, str)
    batch_progress = Signal(int, int)  # done, total
    batch_results = Signal(object, str)  # {image id: Detections}, model name
    batch_finished = Signal(object)  # BatchSummary
    box_masked = Signal(int, object)  # image id, BoxMask: the model's mask for a drawn box
    box_mask_failed = Signal(int, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.current_image: int | None = None  # read by the lane's thread: an int swap is atomic
        self.engine = InferenceEngine()
        self.lane = Lane("inference", parent=self)
        self._batch: Job | None = None

    @property
    def info(self) -> ModelInfo | None:
        return self.engine.info

    @property
    def busy(self) -> bool:
        """A model load, prediction or batch is waiting or running."""
        return self.lane.busy or self.lane.pending > 0

    def load(self, choice: ModelChoice) -> None:
        self.cancel_batch()
        self.lane.submit(
            self.engine.load, choice, key="load", urgent=True, done=self.model_loaded.emit,
            failed=lambda exc: self.model_failed.emit(str(exc)),
        )  # fmt: skip

    def predict(self, image_id: int, path: Path) -> None:
        """Predict one image (with attention, and panoptic segments when the model has a mask head)."""
        self.lane.submit(
            self.engine.predict,
            Path(path),
            key=SINGLE,
            urgent=True,
            wanted=lambda: image_id == self.current_image,  # the user has not moved on
            done=lambda dets: self.predicted.emit(image_id, dets, self._model_name()),
            failed=lambda exc: self.predict_failed.emit(image_id, str(exc)),
        )

    def mask_from_box(self, image_id: int, path: Path, box_xyxy: tuple[float, float, float, float]) -> None:
        """The model's mask for a box drawn on the image (its mask head run for the best-matching query)."""
        self.lane.submit(
            self.engine.mask_from_box,
            Path(path),
            box_xyxy,
            key="mask_box",
            urgent=True,
            wanted=lambda: image_id == self.current_image,
            done=lambda result: self.box_masked.emit(image_id, result),
            failed=lambda exc: self.box_mask_failed.emit(image_id, str(exc)),
        )

    def predict_all(self, items: list[tuple[int, Path]], batch_size: int = 1) -> None:
        """Predict many images in the background; progress, results and a summary come as signals."""
        self._batch = self.lane.submit(
            self._run_batch,
            [(i, Path(p)) for i, p in items],
            batch_size,
            key="batch",
            context=True,
            done=self.batch_finished.emit,
            failed=lambda exc: self.batch_finished.emit(
                BatchSummary(0, len(items), cancelled=False, failure=str(exc))
            ),
            progress=self._on_batch_report,
        )

    def cancel_batch(self) -> None:
        if self._batch is not None:
            self._batch.cancel()

    def shutdown(self, timeout: float = 5.0) -> None:
        self.cancel_batch()
        self.lane.shutdown(timeout)

    def _model_name(self) -> str:
        return self.engine.info.name if self.engine.info is not None else ""

    def _run_batch(self, job: Job, items: list[tuple[int, Path]], batch_size: int) -> BatchSummary:
        name = self._model_name()
        return self.engine.predict_batch(
            items,
            batch_size,
            cancelled=lambda: job.cancelled,
            between=job.serve_urgent,
            progress=lambda done, total: job.report(("progress", (done, total))),
            results=lambda chunk: job.report(("results", (dict(chunk), name))),
        )

    def _on_batch_report(self, report: Any) -> None:
        kind, payload = report
        if kind == "progress":
            self.batch_progress.emit(*payload)
        else:
            self.batch_results.emit(*payload)
