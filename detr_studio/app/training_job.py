"""Fine-tuning from the window: the run folder, the training snapshot, and the background job.

A run lives in ``<project folder>/.detr-studio/runs/<timestamp>/``. Starting one writes the chosen images of
the open document (saved or not) as COCO files into that folder (``train.json``, and ``val.json`` for the
held-out images), so the trainer reads one consistent snapshot while the user goes on editing. The trainer
itself writes ``last.pth``, ``best.safetensors`` + ``.json``, ``events.jsonl`` and ``config.json`` there.
We add ``command.json`` (the ``detr-studio train`` arguments, so a run can be resumed even when it died
before the trainer wrote anything) and ``comparison.json`` (AP of the base and the trained model).

`TrainingJob` is the background job of DESIGN.md §3: a QThread supervises a child process running
``detr-studio train … --events jsonl`` and turns its JSON lines back into typed events, posted as Qt signals.
Cancel asks the child to stop (SIGTERM; CTRL+BREAK on Windows): it saves where it is, so Resume goes on from
there. A child that dies without a final event (killed, out of memory, a crash) ends the job with a
``Failed`` event that quotes the end of its error output; the checkpoint it saved last stays on disk.

The Qt-free functions here (snapshot, arguments, history) are used by the panel and by tests alike.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from detr_studio.data.coco import Annotation, CocoDocument
from detr_studio.train.events import EpochEnd, Evaluated, Event, Failed, Finished, Started, from_json

RUNS_FOLDER = Path(".detr-studio") / "runs"
REVIEWED, ANNOTATED = "reviewed", "annotated"
STDERR_TAIL_LINES = 25


class TrainingSetupError(ValueError):
    """The run cannot start as asked (no images, a panoptic document, no classes); the message says why."""


# ------------------------------------------------------------------------------------------- options


@dataclass
class TrainingOptions:
    """What the panel asks for; defaults are the reference fine-tuning recipe on the reviewed images."""

    base_weights: str | None = None  # checkpoint path or zoo name (None: the trainer's from-scratch default)
    classes: list[str] | None = None  # category names to train on (None: all of the project's)
    images: str = REVIEWED  # REVIEWED or ANNOTATED
    holdout: float = 0.2  # fraction of the chosen images kept for validation and the before/after AP
    epochs: int = 10
    lr: float = 1e-4
    lr_backbone: float = 1e-5
    batch_size: int = 2
    device: str = "auto"
    size: int = 800  # largest training shorter side; also the validation size
    max_size: int = 1333
    workers: int = 2
    seed: int = 42
    augment: bool = True


@dataclass(frozen=True)
class Snapshot:
    """The data a run trains on, as written into its folder."""

    run_dir: Path
    train_json: Path
    val_json: Path | None
    image_root: Path
    train_ids: list[int]
    val_ids: list[int]


def project_folder(doc: CocoDocument, location: Path | None = None) -> Path:
    """The folder that holds a project's runs: the annotation file's folder, else the opened folder."""
    if doc.path is not None:
        return Path(doc.path).resolve().parent
    if location is not None:
        return location.resolve() if location.is_dir() else location.resolve().parent
    if doc.image_root is not None:
        return Path(doc.image_root).resolve()
    raise TrainingSetupError("the project has no folder yet: save it first")


def new_run_dir(project_dir: Path) -> Path:
    """A fresh, empty ``.detr-studio/runs/<timestamp>`` folder under ``project_dir``."""
    root = project_dir / RUNS_FOLDER
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = root / stamp
    suffix = 1
    while run.exists():
        suffix += 1
        run = root / f"{stamp}-{suffix}"
    run.mkdir(parents=True)
    return run


def is_trusted(ann: Annotation) -> bool:
    """Labels a run trains on (and the review queue checks against): all but rejected ones and model
    proposals nobody has looked at yet."""
    return ann.review != "rejected" and not (ann.source == "model" and ann.review == "pending")


def choose_images(doc: CocoDocument, which: str) -> list[int]:
    """Image ids for ``which``: REVIEWED (marked reviewed) or ANNOTATED (reviewed, or with trusted labels)."""
    if which not in (REVIEWED, ANNOTATED):
        raise ValueError(f"images must be {REVIEWED!r} or {ANNOTATED!r}, got {which!r}")
    reviewed = doc.reviewed_image_ids()
    if which == REVIEWED:
        return reviewed
    keep = set(reviewed)
    keep.update(a.image_id for a in doc.annotations if is_trusted(a))
    return [i for i in doc.image_ids if i in keep]


def split_images(ids: Sequence[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic split into (train ids, held-out ids); at least one of each when holdout > 0."""
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    count = 0
    if holdout > 0 and len(shuffled) > 1:
        count = min(max(1, round(len(shuffled) * holdout)), len(shuffled) - 1)
    return sorted(shuffled[count:]), sorted(shuffled[:count])


def write_snapshot(doc: CocoDocument, run_dir: Path, options: TrainingOptions) -> Snapshot:
    """Write the chosen images of ``doc`` (as they are in memory now) into ``run_dir`` as COCO files."""
    if doc.is_panoptic:
        raise TrainingSetupError(
            "training from the window needs an instances dataset; train panoptic data with "
            "`detr-studio train --panoptic`"
        )
    data = doc.to_json()
    categories = data["categories"]
    if options.classes is not None:
        wanted = set(options.classes)
        categories = [c for c in categories if c["name"] in wanted]
    if not categories:
        raise TrainingSetupError("no classes chosen: the project has no categories, or none is ticked")
    ids = choose_images(doc, options.images)
    if not ids:
        hint = (
            "mark images as reviewed (R) or train on all annotated images"
            if options.images == REVIEWED
            else "label some images first"
        )
        raise TrainingSetupError(f"no {options.images} images to train on: {hint}")
    train_ids, val_ids = split_images(ids, options.holdout, options.seed)
    category_ids = {int(c["id"]) for c in categories}
    trusted = {a.id for a in doc.annotations if is_trusted(a) and a.category_id in category_ids}
    labels = [a for a in data["annotations"] if int(a["id"]) in trusted]
    images_by_id = {int(img["id"]): img for img in data["images"]}

    def write(name: str, chosen: list[int]) -> Path:
        keep = set(chosen)
        part = {
            "info": {"description": f"DETR Studio training snapshot ({name})", "source": str(doc.path or "")},
            "images": [images_by_id[i] for i in chosen],
            "annotations": [a for a in labels if int(a["image_id"]) in keep],
            "categories": categories,
        }
        path = run_dir / f"{name}.json"
        path.write_text(json.dumps(part), encoding="utf-8")
        return path

    root = Path(doc.image_root).resolve() if doc.image_root is not None else Path.cwd()
    return Snapshot(
        run_dir=run_dir,
        train_json=write("train", train_ids),
        val_json=write("val", val_ids) if val_ids else None,
        image_root=root,
        train_ids=train_ids,
        val_ids=val_ids,
    )


def _number(value: float) -> str:
    return f"{value:g}"


def training_scales(size: int) -> list[int]:
    """Multi-scale training sides up to ``size``: the reference's 480..800 scaled, multiples of 8."""
    steps = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    return sorted({max(8, round(size * s / 800 / 8) * 8) for s in steps})


def train_arguments(snapshot: Snapshot, options: TrainingOptions, *, local: bool = True) -> list[str]:
    """The ``detr-studio train`` arguments of a run (``local=False`` leaves out what a GPU cluster picks
    for itself: device and loader processes)."""
    args = ["train", "--data", str(snapshot.train_json), "--images", str(snapshot.image_root)]
    if snapshot.val_json is not None:
        args += ["--val-data", str(snapshot.val_json)]
    if options.base_weights:
        args += ["--weights", options.base_weights]
    args += [
        "--epochs", str(options.epochs),
        "--lr", _number(options.lr),
        "--lr-backbone", _number(options.lr_backbone),
        "--batch", str(options.batch_size),
        "--scales", ",".join(str(s) for s in training_scales(options.size)),
        "--max-size", str(options.max_size),
        "--val-size", str(options.size),
        "--seed", str(options.seed),
        "--out", str(snapshot.run_dir),
    ]  # fmt: skip
    if not options.augment:
        args.append("--no-augment")
    if local:
        args += ["--device", options.device, "--workers", str(options.workers)]
    return args


def torchrun_command(args: Sequence[str], processes: int) -> str:
    """The same run on ``processes`` GPUs of one machine, as a shell line."""
    line = ["torchrun", f"--nproc_per_node={processes}", "-m", "detr_studio", *args]
    return shlex.join(line)


def child_command(args: Sequence[str]) -> list[str]:
    """The child process for ``args`` (``train …``), printing its events as JSON lines."""
    if getattr(sys, "frozen", False):  # a packaged build: the program itself is the command line
        return [sys.executable, *args, "--events", "jsonl"]
    return [sys.executable, "-m", "detr_studio", *args, "--events", "jsonl"]


# ------------------------------------------------------------------------------------------- history


@dataclass
class RunRecord:
    """What the panel remembers about a run beside the trainer's files (``run.json``)."""

    created: str
    base_weights: str | None
    options: dict[str, Any]
    train_images: int
    val_images: int
    image_root: str = ""
    args: list[str] = field(default_factory=list)  # the run for a GPU machine (no device, no loaders)

    def save(self, run_dir: Path) -> None:
        (run_dir / "run.json").write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord | None:
        try:
            data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def read_events(path: Path) -> list[Event]:
    """The events of an ``events.jsonl`` file; lines that are not events (a torn last line) are skipped."""
    events: list[Event] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return events
    for line in text.splitlines():
        if line.strip():
            try:
                events.append(from_json(line))
            except (ValueError, TypeError):
                continue
    return events


def append_event(run_dir: Path, event: Event) -> None:
    """Add an event the trainer could not write (its process died) to the run's history."""
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write(event.to_json() + "\n")


@dataclass(frozen=True)
class RunSummary:
    """One line of the run history."""

    path: Path
    state: str  # "finished", "cancelled", "failed", "stopped" (no final event), "new"
    epochs_done: int
    epochs: int
    best_ap: float | None
    has_last: bool
    has_best: bool

    @property
    def name(self) -> str:
        return self.path.name

    def label(self) -> str:
        ap = f", AP {self.best_ap:.3f}" if self.best_ap is not None else ""
        return f"{self.name} — {self.state}, epoch {self.epochs_done}/{self.epochs}{ap}"


def summarize_run(run_dir: Path) -> RunSummary:
    """A run's state from its events: "stopped" when it started but has no final event (still running,
    or its process vanished), "new" when it never started."""
    events = read_events(run_dir / "events.jsonl")
    state, done, epochs, best = "new", 0, 0, None
    for event in events:
        if isinstance(event, Started):
            state, epochs = "stopped", event.epochs
        elif isinstance(event, EpochEnd):
            done = event.epoch
        elif isinstance(event, Evaluated):
            ap = event.metrics.get("AP")
            if ap is not None and (best is None or ap > best):
                best = ap
        elif isinstance(event, Finished):
            state, done = ("cancelled" if event.cancelled else "finished"), event.epochs_done
        elif isinstance(event, Failed):
            state = "failed"
    if state == "new" and (run_dir / "command.json").is_file():
        record = RunRecord.load(run_dir)
        epochs = int(record.options.get("epochs", 0)) if record else 0
    return RunSummary(
        run_dir,
        state,
        done,
        epochs,
        best,
        (run_dir / "last.pth").is_file(),
        (run_dir / "best.safetensors").is_file(),
    )


def list_runs(project_dir: Path) -> list[RunSummary]:
    """The project's runs, newest first."""
    root = project_dir / RUNS_FOLDER
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / "command.json").is_file()]
    return [summarize_run(p) for p in sorted(runs, key=lambda p: p.name, reverse=True)]


def save_command(run_dir: Path, args: Sequence[str]) -> None:
    (run_dir / "command.json").write_text(json.dumps(list(args), indent=2), encoding="utf-8")


def load_command(run_dir: Path) -> list[str]:
    path = run_dir / "command.json"
    try:
        args = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingSetupError(f"{path}: cannot read the run's command ({exc})") from None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise TrainingSetupError(f"{path}: not a list of arguments")
    return args


def resume_arguments(run_dir: Path) -> list[str]:
    """The run's own arguments plus ``--resume``; it must have saved a checkpoint (``last.pth``)."""
    if not (run_dir / "last.pth").is_file():
        raise TrainingSetupError(f"{run_dir}: nothing to resume from (no last.pth was saved)")
    return [*load_command(run_dir), "--resume", str(run_dir)]


# ------------------------------------------------------------------------------------------- evaluation


def evaluate_weights(
    weights: str, data: Path, images: Path, size: int, max_size: int, device: str = "auto"
) -> dict[str, float]:
    """Box AP of a checkpoint on a COCO file (what ``detr-studio eval`` prints), for a background thread."""
    import torch

    from detr_studio.data.dataset import CocoDetectionDataset
    from detr_studio.data.transforms import make_transforms
    from detr_studio.infer.device import pick_device
    from detr_studio.model.loading import load_model
    from detr_studio.train.evaluate import evaluate_coco, flatten_metrics

    loaded = load_model(weights)
    model = loaded.model
    target = pick_device(None if device in ("", "auto") else device)
    dataset = CocoDetectionDataset(
        str(data), str(images), make_transforms("val", scales=[size], max_size=max_size)
    )
    model.to(target).eval()
    with torch.inference_mode():
        return flatten_metrics(evaluate_coco(model, loaded.family, dataset, target, batch_size=2))


# ------------------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class JobEnd:
    """How a job ended: the final event (``Finished``, or ``Failed`` — made up here when the child died
    without one), whether the user cancelled, the exit code and the end of the child's error output."""

    final: Event | None
    cancelled: bool
    exit_code: int | None
    stderr_tail: str


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory, or stopped from outside)" if name == "SIGKILL" else ""
        return f"was stopped by {name}{hint}"
    return f"exited with code {code}"


class _Supervisor(QThread):
    """Runs one child process to its end, reading events from its stdout and keeping its stderr tail."""

    event_read = Signal(object)  # Event
    ended = Signal(object, object)  # exit code (int | None), stderr tail (str)

    def __init__(self, command: list[str], parent: QObject | None = None):
        super().__init__(parent)
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started_process = threading.Event()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

    def run(self) -> None:
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
            self.started_process.set()
            self.ended.emit(None, f"cannot start {self.command[0]}: {exc}")
            return
        self.started_process.set()
        reader = threading.Thread(target=self._read_stderr, name="detr-studio-train-stderr", daemon=True)
        reader.start()
        assert self.process.stdout is not None
        for line in self.process.stdout:
            text = line.strip()
            if not text:
                continue
            try:
                self.event_read.emit(from_json(text))
            except (ValueError, TypeError):
                self._stderr.append(text)  # stray output on stdout: kept for the failure message
        code = self.process.wait()
        reader.join(5.0)
        self.ended.emit(code, "\n".join(self._stderr))

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())


class TrainingJob(QObject):
    """One training child at a time. ``event`` carries every typed event as it arrives; ``ended`` a `JobEnd`."""

    event = Signal(object)
    ended = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self._supervisor: _Supervisor | None = None
        self._final: Event | None = None
        self._cancelled = False

    @property
    def running(self) -> bool:
        return self._supervisor is not None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started or after it ended)."""
        supervisor = self._supervisor
        if supervisor is None:
            return None
        supervisor.started_process.wait(10.0)
        return supervisor.process.pid if supervisor.process is not None else None

    def start(self, run_dir: Path, args: Sequence[str]) -> None:
        """Run ``detr-studio train`` with ``args`` (which write into ``run_dir``) in a child process."""
        if self.running:
            raise RuntimeError("a training run is already going on")
        self.run_dir = Path(run_dir)
        self._final = None
        self._cancelled = False
        supervisor = _Supervisor(child_command(args), self)
        supervisor.event_read.connect(self._on_event)
        supervisor.ended.connect(self._on_ended)
        self._supervisor = supervisor
        supervisor.start()

    def resume(self, run_dir: Path) -> None:
        """Continue a run from its ``last.pth`` with its own arguments."""
        self.start(run_dir, resume_arguments(Path(run_dir)))

    def cancel(self) -> None:
        """Ask the child to save and stop (it ends with ``Finished(cancelled=True)``)."""
        process = self._process()
        if process is None:
            return
        self._cancelled = True
        try:
            if os.name == "nt":
                process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                process.send_signal(signal.SIGTERM)
        except OSError:
            return

    def kill(self) -> None:
        """Stop the child at once, without saving."""
        process = self._process()
        if process is not None:
            try:
                process.kill()
            except OSError:
                return

    def shutdown(self, timeout: float = 10.0) -> None:
        """The window is closing: cancel (the run saves), wait a little, then kill."""
        supervisor = self._supervisor
        if supervisor is None:
            return
        self.cancel()
        if not supervisor.wait(int(timeout * 1000)):
            self.kill()
            supervisor.wait(5000)

    def _process(self) -> subprocess.Popen | None:
        supervisor = self._supervisor
        if supervisor is None:
            return None
        supervisor.started_process.wait(10.0)
        process = supervisor.process
        return process if process is not None and process.poll() is None else None

    def _on_event(self, event: Event) -> None:
        if isinstance(event, (Finished, Failed)):
            self._final = event
        self.event.emit(event)

    def _on_ended(self, code: int | None, tail: str) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.wait(2000)
            supervisor.deleteLater()
        final = self._final
        if final is None and not self._cancelled:
            final = self._crash_event(code, tail)
            if self.run_dir is not None and self.run_dir.is_dir():
                append_event(self.run_dir, final)
            self.event.emit(final)
        self.ended.emit(JobEnd(final, self._cancelled, code, tail))

    def _crash_event(self, code: int | None, tail: str) -> Failed:
        last = self.run_dir / "last.pth" if self.run_dir is not None else None
        kept = last is not None and last.is_file()
        lines = [f"The training process {_exit_text(code)} before it finished."]
        lines.append(
            f"The last checkpoint is kept: {last} (Resume goes on from it)."
            if kept
            else "It had not saved a checkpoint yet."
        )
        if tail:
            lines += ["", "The end of its error output:", tail]
        return Failed(message="\n".join(lines), last_checkpoint=str(last) if kept else "")
