"""Work that must not run on the Qt thread: the inference worker and a small background task runner.

`InferenceWorker` owns one `Predictor` in one Python thread. Requests wait in slots, not a queue: a model load,
the newest single-image request (older ones are replaced, and one for an image no longer shown is dropped),
and one batch job that runs between single requests, so "Predict" stays responsive during "Predict all".
Results come back as Qt signals, which Qt queues to the window's thread. Batch results are posted in chunks a
few times a second, so the window never redraws per image. torch is imported by the worker thread on the
first model load, never at start-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from detr_studio.data.images import ImageReadError

_RESULT_INTERVAL_S = 0.3  # how often a batch posts its results
_PROGRESS_INTERVAL_S = 0.1


@dataclass(frozen=True)
class ModelChoice:
    """What to load: a checkpoint file/folder or a zoo name, where to run it, and the input size."""

    source: str
    device: str | None = None  # None or "auto": the GPU when there is one
    precision: str = "fp32"
    size: int = 800
    max_size: int | None = 1333

    @property
    def name(self) -> str:
        path = Path(self.source)
        return path.name if path.exists() else self.source

    @property
    def is_onnx(self) -> bool:
        """An exported ``.onnx`` file, run by ONNX Runtime with the input size stored in the file."""
        return Path(self.source).suffix.lower() == ".onnx"


@dataclass(frozen=True)
class ModelInfo:
    """What the window needs to know about the loaded model."""

    name: str
    description: str  # device and precision, for the status bar
    class_names: dict[int, str]
    supports_masks: bool
    num_heads: int
    num_queries: int
    has_attention: bool = True


@dataclass
class BatchSummary:
    done: int
    total: int
    cancelled: bool
    errors: list[str] = field(default_factory=list)
    failure: str | None = None  # the whole batch stopped on this error


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, (ImageReadError, ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class InferenceWorker(QObject):
    """One loaded model in one thread. Set ``current_image`` to the image shown, so stale requests drop."""

    model_loaded = Signal(object)  # ModelInfo
    model_failed = Signal(str)
    predicted = Signal(int, object, str)  # image id, Detections, model name
    predict_failed = Signal(int, str)
    batch_progress = Signal(int, int)  # done, total
    batch_results = Signal(object, str)  # {image id: Detections}, model name
    batch_finished = Signal(object)  # BatchSummary

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.current_image: int | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._load: ModelChoice | None = None
        self._single: tuple[int, Path] | None = None
        self._batch: list[tuple[int, Path]] | None = None
        self._batch_size = 1
        self._cancel = threading.Event()
        self._predictor: Any = None  # a Predictor or an OnnxPredictor
        self._attention = True
        self._info: ModelInfo | None = None
        self._busy = False

    # ---- requests (Qt thread) ----------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    @property
    def busy(self) -> bool:
        """A model load, prediction or batch is waiting or running."""
        with self._cond:
            return self._busy or any(x is not None for x in (self._load, self._single, self._batch))

    def load(self, choice: ModelChoice) -> None:
        self._cancel.set()
        self._post(lambda: setattr(self, "_load", choice))

    def predict(self, image_id: int, path: Path) -> None:
        """Predict one image (with attention, and panoptic segments when the model has a mask head)."""
        self._post(lambda: setattr(self, "_single", (image_id, Path(path))))

    def predict_all(self, items: Sequence[tuple[int, Path]], batch_size: int = 1) -> None:
        """Predict many images in the background; progress, results and a summary come as signals."""
        self._cancel.clear()
        self._batch_size = max(1, int(batch_size))
        self._post(lambda: setattr(self, "_batch", [(i, Path(p)) for i, p in items]))

    def cancel_batch(self) -> None:
        self._cancel.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        self._cancel.set()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _post(self, change: Callable[[], None]) -> None:
        with self._cond:
            change()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="detr-studio-inference", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    # ---- the worker thread -------------------------------------------------------------------------------

    def _next_job(self) -> tuple[str, Any] | None:
        with self._cond:
            while not self._stop and self._load is None and self._single is None and self._batch is None:
                self._busy = False
                self._cond.wait()
            if self._stop:
                return None
            self._busy = True
            if self._load is not None:
                job, self._load = ("load", self._load), None
            elif self._single is not None:
                job, self._single = ("single", self._single), None
            else:
                job, self._batch = ("batch", self._batch), None
            return job

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, payload = job
            if kind == "load":
                self._do_load(payload)
            elif kind == "single":
                self._do_single(*payload)
            else:
                self._do_batch(payload)

    def _do_load(self, choice: ModelChoice) -> None:
        device = choice.device if choice.device not in (None, "", "auto") else None
        try:
            if choice.is_onnx:
                from detr_studio.infer.onnx_backend import OnnxPredictor

                providers = {None: "auto", "cpu": "cpu", "cuda": "cuda"}.get(device, "auto")
                predictor = OnnxPredictor.from_weights(choice.source, providers=providers, name=choice.name)
            else:
                from detr_studio.infer.predictor import Predictor

                predictor = Predictor.from_weights(
                    choice.source,
                    device=device,
                    precision=choice.precision,
                    size=choice.size,
                    max_size=choice.max_size,
                    name=choice.name,
                )
        except Exception as exc:
            self.model_failed.emit(f"{choice.source}: {_describe_error(exc)}")
            return
        self._predictor = predictor
        self._attention = not choice.is_onnx  # ONNX files cannot give attention maps
        config = predictor.config
        self._info = ModelInfo(
            name=choice.name,
            description=predictor.description,
            class_names=dict(predictor.class_names),
            supports_masks=predictor.supports_masks,
            num_heads=config.nheads,
            num_queries=config.num_queries,
            has_attention=self._attention,
        )
        self.model_loaded.emit(self._info)

    def _do_single(self, image_id: int, path: Path) -> None:
        if self._predictor is None:
            self.predict_failed.emit(image_id, "no model is loaded: choose one first (Model > Choose model)")
            return
        if image_id != self.current_image:
            return  # the user moved on
        try:
            dets = self._predictor.predict(
                [path], attention=self._attention, panoptic=self._predictor.supports_masks
            )[0]
        except Exception as exc:
            self.predict_failed.emit(image_id, _describe_error(exc))
            return
        self.predicted.emit(image_id, dets, self._info.name if self._info else "")

    def _do_batch(self, items: list[tuple[int, Path]]) -> None:
        summary = BatchSummary(done=0, total=len(items), cancelled=False)
        if self._predictor is None:
            summary.failure = "no model is loaded: choose one first (Model > Choose model)"
            self.batch_finished.emit(summary)
            return
        name = self._info.name if self._info else ""
        ids_by_path: dict[str, list[int]] = {}
        for image_id, path in items:
            ids_by_path.setdefault(str(path), []).append(image_id)
        pending: dict[int, Any] = {}
        last_post = last_progress = time.monotonic()
        results: Iterator = self._predictor.predict_files(
            [p for _, p in items], batch_size=self._batch_size, panoptic=self._predictor.supports_masks
        )
        try:
            while True:
                if self._cancel.is_set():
                    summary.cancelled = True
                    break
                self._serve_single_between_batches()
                try:
                    path, outcome = next(results)
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
                if now - last_progress >= _PROGRESS_INTERVAL_S:
                    self.batch_progress.emit(summary.done, summary.total)
                    last_progress = now
                if pending and now - last_post >= _RESULT_INTERVAL_S:
                    self.batch_results.emit(pending, name)
                    pending, last_post = {}, now
        except Exception as exc:
            summary.failure = _describe_error(exc)
        if pending:
            self.batch_results.emit(pending, name)
        self.batch_progress.emit(summary.done, summary.total)
        self.batch_finished.emit(summary)

    def _serve_single_between_batches(self) -> None:
        with self._cond:
            single, self._single = self._single, None
        if single is not None:
            self._do_single(*single)


class TaskRunner(QObject):
    """Runs plain functions on a thread pool; ``done(tag, result)`` or ``failed(tag, exception)`` come back
    on the Qt thread. The tag says what the result is for, so a stale one can be ignored.

    Results always arrive through the event loop, never inside ``submit``: a task that finishes before
    ``submit`` returns would otherwise be reported at once (``add_done_callback`` calls back immediately on a
    finished future), before the caller has connected what should follow it.
    """

    done = Signal(object, object)
    failed = Signal(object, object)
    _settled = Signal(object, object)  # tag, future: from any thread, queued to this object's thread

    def __init__(self, workers: int = 1, parent: QObject | None = None):
        super().__init__(parent)
        self._settled.connect(self._finish, Qt.ConnectionType.QueuedConnection)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detr-studio-task")
        self._pending = 0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def submit(self, tag: object, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the pool; after `shutdown` (the window is closing) the task is dropped."""
        with self._lock:
            if self._closed:
                return
            self._pending += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda f: self._settled.emit(tag, f))

    def _finish(self, tag: object, future: Future) -> None:
        with self._lock:
            self._pending -= 1
        if future.cancelled():  # dropped by `shutdown`
            return
        exc = future.exception()
        if exc is not None:
            self.failed.emit(tag, exc)
        else:
            self.done.emit(tag, future.result())

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
