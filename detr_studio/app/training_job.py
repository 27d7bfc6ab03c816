"""The background job of a fine-tuning run (DESIGN.md §3): a child process running
``detr-studio train … --events jsonl``, supervised on a background `Lane`, its JSON lines turned back into
typed events on the Qt thread.

Cancel asks the child to stop (SIGTERM; CTRL+BREAK on Windows): it saves where it is, so Resume goes on from
there. A child that dies without a final event (killed, out of memory, a crash) ends the job with a `Failed`
event that quotes the end of its error output (`train.runs.crash_event`); the checkpoint it saved last stays
on disk. The run folder itself (snapshot, record, history) is `train.runs`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from detr_studio.train.events import Event, Failed, Finished, from_json
from detr_studio.train.runs import append_event, child_command, crash_event, resume_arguments

from .background import Job, Lane

STDERR_TAIL_LINES = 25


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: the final event (``Finished``, or ``Failed`` — made up here when the child died
    without one), whether the user cancelled, the exit code and the end of the child's error output."""

    final: Event | None
    cancelled: bool
    exit_code: int | None
    stderr_tail: str


class _Child:
    """The child process of one run, shared between the lane's thread (which runs it) and the Qt thread
    (which may signal it)."""

    def __init__(self, command: list[str]):
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started = threading.Event()
        self.stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

    def run(self, job: Job) -> tuple[int | None, str]:
        """Run the child to its end, reporting each event it prints; -> (exit code, stderr tail)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                env=env,
                creationflags=flags,
            )
        except OSError as exc:
            self.started.set()
            return None, f"cannot start {self.command[0]}: {exc}"
        self.started.set()
        reader = threading.Thread(target=self._read_stderr, name="detr-studio-train-stderr", daemon=True)
        reader.start()
        assert self.process.stdout is not None
        for line in self.process.stdout:
            text = line.strip()
            if not text:
                continue
            try:
                job.report(from_json(text))
            except (ValueError, TypeError):
                self.stderr.append(text)  # stray output on stdout: kept for the failure message
        code = self.process.wait()
        reader.join(5.0)
        return code, "\n".join(self.stderr)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            if line.strip():
                self.stderr.append(line.rstrip())

    def alive(self) -> subprocess.Popen | None:
        """The process while it runs (waits a little for it to start)."""
        self.started.wait(10.0)
        process = self.process
        return process if process is not None and process.poll() is None else None


class TrainingJob(QObject):
    """One training child at a time. ``event`` carries every typed event as it arrives; ``ended`` a `JobEnd`."""

    event = Signal(object)
    ended = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self._lane = Lane("training", parent=self)
        self._child: _Child | None = None
        self._final: Event | None = None
        self._cancelled = False

    @property
    def running(self) -> bool:
        return self._child is not None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started or after it ended)."""
        child = self._child
        if child is None:
            return None
        child.started.wait(10.0)
        return child.process.pid if child.process is not None else None

    def start(self, run_dir: Path, args: Sequence[str]) -> None:
        """Run ``detr-studio train`` with ``args`` (which write into ``run_dir``) in a child process."""
        if self.running:
            raise RuntimeError("a training run is already going on")
        self.run_dir = Path(run_dir)
        self._final = None
        self._cancelled = False
        child = _Child(child_command(args))
        self._child = child
        self._lane.submit(
            child.run,
            context=True,
            progress=self._on_event,
            done=lambda outcome: self._on_ended(*outcome),
            failed=lambda exc: self._on_ended(None, f"{type(exc).__name__}: {exc}"),
        )

    def resume(self, run_dir: Path) -> None:
        """Continue a run from its ``last.pth`` with its own arguments."""
        self.start(run_dir, resume_arguments(Path(run_dir)))

    def cancel(self) -> None:
        """Ask the child to save and stop (it ends with ``Finished(cancelled=True)``)."""
        process = self._child.alive() if self._child is not None else None
        if process is None:
            return
        self._cancelled = True
        try:
            process.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGTERM)
        except OSError:
            return

    def kill(self) -> None:
        """Stop the child at once, without saving."""
        process = self._child.alive() if self._child is not None else None
        if process is not None:
            try:
                process.kill()
            except OSError:
                return

    def shutdown(self, timeout: float = 10.0) -> None:
        """The window is closing: cancel (the run saves), wait a little, then kill."""
        if self._child is not None:
            self.cancel()
            if not self._lane.wait(timeout):
                self.kill()
                self._lane.wait(5.0)
        self._lane.shutdown()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (Finished, Failed)):
            self._final = event
        self.event.emit(event)

    def _on_ended(self, code: int | None, tail: str) -> None:
        self._child = None
        final = self._final
        if final is None and not self._cancelled:
            final = crash_event(self.run_dir, code, tail)
            if self.run_dir is not None and self.run_dir.is_dir():
                append_event(self.run_dir, final)
            self.event.emit(final)
        self.ended.emit(JobEnd(final, self._cancelled, code, tail))
