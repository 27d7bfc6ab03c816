"""The one way the window runs work off the Qt thread: a `Lane` of background threads with typed results.

``lane.submit(fn, *args, done=..., failed=..., progress=...)`` runs ``fn(*args)`` on one of the lane's
threads; what it returns goes to ``done(result)`` and what it raises to ``failed(exception)``, both called on
the Qt thread through one queued Qt signal. A job that wants to report progress or see a cancel request is
submitted with ``context=True`` and called as ``fn(job, *args)``: ``job.report(value)`` sends ``value`` to
``progress`` on the Qt thread, ``job.cancelled`` says whether `Job.cancel` was asked for.

Requests that go stale are dropped, not run: a job submitted with a ``key`` replaces the job of that key still
waiting (the newest request wins), and one with ``wanted`` runs only if ``wanted()`` still holds when its turn
comes (a prediction for an image no longer shown). A lane runs its jobs in order, or newest first
(``newest_first``: thumbnails of the rows just scrolled to). ``urgent`` jobs go before the others, and a long
job may call ``job.serve_urgent()`` to let them run in between (a single "Predict" during "Predict all").

Each lane holds the `MainThreadCollector` while it lives: Python code on its threads (building a model,
decoding images) may trigger the cyclic garbage collector, and a cycle holding a Qt object must then be freed
on the Qt thread, never on a worker thread (see ``main_thread_gc.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, Qt, Signal

from .main_thread_gc import MainThreadCollector

T = TypeVar("T")
_DONE, _FAILED, _PROGRESS = "done", "failed", "progress"


@dataclass(eq=False)
class Job(Generic[T]):
    """One request on a lane. The callbacks run on the Qt thread."""

    fn: Callable[..., T]
    args: tuple
    key: object = None
    context: bool = False
    urgent: bool = False
    wanted: Callable[[], bool] | None = None
    done: Callable[[T], object] | None = None
    failed: Callable[[BaseException], object] | None = None
    progress: Callable[[Any], object] | None = None
    number: int = 0
    _cancel: threading.Event = field(default_factory=threading.Event)
    _lane: Lane | None = None

    def cancel(self) -> None:
        """Ask the job to stop: it sees ``cancelled`` (also when it has not started yet, so that it can still
        say how far it got)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def report(self, value: Any) -> None:
        """From the job's thread: hand ``value`` to ``progress`` on the Qt thread."""
        if self._lane is not None:
            self._lane._post(self, _PROGRESS, value)

    def serve_urgent(self) -> None:
        """From the job's thread: run the urgent jobs waiting on this lane now, then go on."""
        if self._lane is not None:
            self._lane._serve_urgent()


class Lane(QObject):
    """``threads`` background threads working through one queue; see the module docstring."""

    _posted = Signal(object, str, object)  # job, what, value: from any thread, queued to the Qt thread

    def __init__(
        self, name: str, threads: int = 1, *, newest_first: bool = False, parent: QObject | None = None
    ):
        super().__init__(parent)
        self.name = name
        self._size = max(1, threads)
        self._newest_first = newest_first
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._unsettled = 0  # submitted, and its result not yet handed over on the Qt thread
        self._closed = False
        self._numbers = itertools.count(1)
        self._posted.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        MainThreadCollector.acquire()
        self._holds_collector = True

    # ---- the Qt thread -----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Jobs submitted whose outcome has not been handed over yet (waiting, running or on their way)."""
        with self._cond:
            return self._unsettled

    @property
    def busy(self) -> bool:
        """A job is waiting or running."""
        with self._cond:
            return bool(self._queue) or self._running > 0

    def submit(
        self,
        fn: Callable[..., T],
        *args: Any,
        key: object = None,
        context: bool = False,
        urgent: bool = False,
        wanted: Callable[[], bool] | None = None,
        done: Callable[[T], object] | None = None,
        failed: Callable[[BaseException], object] | None = None,
        progress: Callable[[Any], object] | None = None,
    ) -> Job[T]:
        """Queue ``fn(*args)`` (``fn(job, *args)`` with ``context``); after `shutdown` it is dropped."""
        job: Job[T] = Job(fn, args, key, context, urgent, wanted, done, failed, progress, next(self._numbers))
        job._lane = self
        with self._cond:
            if self._closed:
                return job
            if key is not None:
                stale = [j for j in self._queue if j.key == key]
                for old in stale:
                    self._queue.remove(old)
                self._unsettled -= len(stale)
            urgent_waiting = sum(1 for j in self._queue if j.urgent)
            if urgent or self._newest_first:  # urgent ones in order, before the rest
                self._queue.insert(urgent_waiting, job)
            else:
                self._queue.append(job)
            self._unsettled += 1
            if len(self._threads) < self._size and len(self._threads) - self._running < len(self._queue):
                thread = threading.Thread(target=self._work, name=f"detr-studio-{self.name}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
        return job

    def clear(self, key: object = None) -> None:
        """Drop the waiting jobs (of ``key`` only, when given); running ones go on."""
        with self._cond:
            dropped = [j for j in self._queue if key is None or j.key == key]
            for job in dropped:
                self._queue.remove(job)
            self._unsettled -= len(dropped)

    def shutdown(self, wait_s: float = 0.0) -> None:
        """Drop the waiting jobs and take no more; running jobs are asked to cancel. Safe to call twice."""
        with self._cond:
            self._closed = True
            self._unsettled -= len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if wait_s > 0:
                thread.join(wait_s)
        if self._holds_collector:
            self._holds_collector = False
            MainThreadCollector.release()

    def wait(self, timeout_s: float) -> bool:
        """Block until no job waits or runs (for shutting down and tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and self._running == 0, timeout_s)

    def _deliver(self, job: Job, what: str, value: object) -> None:
        if what == _PROGRESS:
            if job.progress is not None:
                job.progress(value)
            return
        with self._cond:
            self._unsettled -= 1
        if what == _DONE and job.done is not None:
            job.done(value)
        elif what == _FAILED and job.failed is not None:
            job.failed(value)  # type: ignore[arg-type]

    # ---- the lane's threads ------------------------------------------------------------------------------

    def _post(self, job: Job, what: str, value: object) -> None:
        with contextlib.suppress(RuntimeError):  # the window (and this lane with it) is already gone
            self._posted.emit(job, what, value)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._running += 1
            return self._queue.popleft()

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        if job.wanted is not None and not job.wanted():
            with self._cond:
                self._unsettled -= 1  # stale: dropped without an outcome
            return
        try:
            result = job.fn(job, *job.args) if job.context else job.fn(*job.args)
        except Exception as exc:
            self._post(job, _FAILED, exc)
            return
        self._post(job, _DONE, result)

    def _serve_urgent(self) -> None:
        while True:
            with self._cond:
                if not self._queue or not self._queue[0].urgent or self._closed:
                    return
                job = self._queue.popleft()
            self._run(job)
