"""Fine-tuning runs started from the window: the run folder, the training snapshot, the run history, and the
before/after comparison on the held-out images.

A run lives in ``<project folder>/.detr-studio/runs/<timestamp>/``. Starting one writes the chosen images of
the open document (saved or not) as COCO files into that folder (``train.json``, and ``val.json`` for the
held-out images), so the trainer reads one consistent snapshot while the user goes on editing. The trainer
itself writes ``last.pth``, ``best.safetensors`` + ``.json``, ``events.jsonl`` and ``config.json`` there.
We add ``command.json`` (the ``detr-studio train`` arguments, so a run can be resumed even when it died
before the trainer wrote anything), ``run.json`` (`RunRecord`) and ``comparison.json`` (AP of the base and
the trained model). Nothing here imports torch at module level: the window plans runs on its own thread.

Masks (``TrainingOptions.task``): `BOXES` trains the detector; `MASKS` is the official two-stage recipe, boxes
first (in the run folder), then the mask head on the frozen detector (``--masks --stage masks`` from the
first stage's model, in ``<run>/masks``: `next_stage` tells the window what to start when the first stage
finishes); `MASK_HEAD` is the second stage alone, from a box model. Panoptic documents train the same way on
their segments (``--panoptic``; their PNGs are part of the snapshot, `panoptic_snapshot`). The comparison is
then mask AP (instances) or PQ (panoptic) beside box AP, on the held-out images (`held_out_metrics`).
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..common.files import FileProblem, atomic_write, read_json
from ..data.coco import CocoDocument
from ..data.labels import is_trusted
from ..data.sizes import scaled_recipe
from .config import split_ids
from .events import EpochEnd, Evaluated, Event, Failed, Finished, Started, from_json
from .panoptic_snapshot import annotated_panoptic_images, write_panoptic_files

RUNS_FOLDER = Path(".detr-studio") / "runs"
REVIEWED, ANNOTATED = "reviewed", "annotated"
BEFORE, AFTER = "before", "after"
BOXES, MASKS, MASK_HEAD = "boxes", "masks", "mask-head"
TASKS = {
    BOXES: "Boxes",
    MASKS: "Boxes, then masks (two stages)",
    MASK_HEAD: "Mask head only, from a box model",
}
MASK_STAGE = "masks"  # the folder of a two-stage run's second stage


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
    task: str = BOXES  # BOXES, MASKS (two stages) or MASK_HEAD (the second stage alone)


@dataclass(frozen=True)
class Snapshot:
    """The data a run trains on, as written into its folder."""

    run_dir: Path
    train_json: Path
    val_json: Path | None
    image_root: Path
    train_ids: list[int]
    val_ids: list[int]
    panoptic_root: Path | None = None  # the PNG folder of a panoptic snapshot


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


def choose_images(doc: CocoDocument, which: str) -> list[int]:
    """Image ids for ``which``: REVIEWED (marked reviewed) or ANNOTATED (reviewed, or with trusted labels)."""
    if which not in (REVIEWED, ANNOTATED):
        raise ValueError(f"images must be {REVIEWED!r} or {ANNOTATED!r}, got {which!r}")
    reviewed = doc.reviewed_image_ids()
    if which == REVIEWED:
        return reviewed
    keep = set(reviewed)
    if doc.is_panoptic:
        keep.update(annotated_panoptic_images(doc))
    else:
        keep.update(a.image_id for a in doc.annotations if is_trusted(a))
    return [i for i in doc.image_ids if i in keep]


def split_images(ids: Sequence[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids): the trainer's own ``--val-split`` rule (`train.config.split_ids`)."""
    return split_ids(ids, holdout, seed)


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def write_snapshot(doc: CocoDocument, run_dir: Path, options: TrainingOptions) -> Snapshot:
    """Write the chosen images of ``doc`` (as they are in memory now) into ``run_dir`` as COCO files."""
    if options.task not in TASKS:
        raise TrainingSetupError(f"unknown training task {options.task!r}")
    if doc.is_panoptic:
        return _panoptic_snapshot(doc, run_dir, options)
    data = doc.to_json()
    categories = data["categories"]
    if options.classes is not None:
        wanted = set(options.classes)
        categories = [c for c in categories if c["name"] in wanted]
    if not categories:
        raise TrainingSetupError("no classes chosen: the project has no categories, or none is ticked")
    train_ids, val_ids = split_images(_chosen_ids(doc, options), options.holdout, options.seed)
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
        atomic_write(path, json.dumps(part).encode("utf-8"))
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


def _chosen_ids(doc: CocoDocument, options: TrainingOptions) -> list[int]:
    """The images ``options`` chooses; `TrainingSetupError` with a hint when there are none."""
    ids = choose_images(doc, options.images)
    if not ids:
        hint = (
            "mark images as reviewed (R) or train on all annotated images"
            if options.images == REVIEWED
            else "label some images first"
        )
        raise TrainingSetupError(f"no {options.images} images to train on: {hint}")
    return ids


def _panoptic_snapshot(doc: CocoDocument, run_dir: Path, options: TrainingOptions) -> Snapshot:
    if options.classes is not None:
        raise TrainingSetupError("a panoptic dataset trains on all of its classes: tick them all")
    train_ids, val_ids = split_images(_chosen_ids(doc, options), options.holdout, options.seed)
    files, folder = write_panoptic_files(doc, run_dir, {"train": train_ids, "val": val_ids})
    root = Path(doc.image_root).resolve() if doc.image_root is not None else Path.cwd()
    return Snapshot(run_dir, files["train"], files.get("val"), root, train_ids, val_ids, folder)


def training_scales(size: int) -> list[int]:
    """Multi-scale training sides up to ``size``: the reference recipe scaled (`data.sizes.scaled_recipe`)."""
    return list(scaled_recipe(size)["scales"])


def train_arguments(
    snapshot: Snapshot, options: TrainingOptions, *, local: bool = True, stage: int = 1
) -> list[str]:
    """The ``detr-studio train`` arguments of a run's ``stage`` (1, or 2: a two-stage run's mask head;
    ``local=False`` leaves out what a GPU cluster picks for itself: device and loader processes)."""
    args = ["train", "--data", str(snapshot.train_json), "--images", str(snapshot.image_root)]
    if snapshot.val_json is not None:
        args += ["--val-data", str(snapshot.val_json)]
    if snapshot.panoptic_root is not None:
        args += ["--panoptic", "--panoptic-masks", str(snapshot.panoptic_root)]
    out = snapshot.run_dir
    weights = options.base_weights
    if options.task == MASKS and stage == 2:
        out = snapshot.run_dir / MASK_STAGE
        weights = str(snapshot.run_dir / "best.safetensors")  # the first stage's detector
    if options.task == MASK_HEAD or (options.task == MASKS and stage == 2):
        if not weights:
            raise TrainingSetupError("training the mask head alone needs a box model to start from")
        args += ["--masks", "--stage", "masks"]
    if weights:
        args += ["--weights", weights]
    args += [
        "--epochs", str(options.epochs),
        "--lr", f"{options.lr:g}",
        "--lr-backbone", f"{options.lr_backbone:g}",
        "--batch", str(options.batch_size),
        "--scales", ",".join(str(s) for s in training_scales(options.size)),
        "--max-size", str(options.max_size),
        "--val-size", str(options.size),
        "--seed", str(options.seed),
        "--out", str(out),
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


def cluster_command(record: RunRecord, processes: int) -> str:
    """The run (both stages of a two-stage run, one after the other) on ``processes`` GPUs, as a shell line."""
    lines = [torchrun_command(record.args, processes)]
    if record.mask_stage_args:
        lines.append(torchrun_command(record.mask_stage_args, processes))
    return " && ".join(lines)


def next_stage(run_dir: Path) -> tuple[Path, list[str]] | None:
    """(folder, arguments) of the stage to start now that the run's first stage finished: a two-stage run's
    mask head, when it has not started yet; None otherwise."""
    stage = run_dir / MASK_STAGE
    if not (stage / "command.json").is_file() or summarize_run(stage).state != "new":
        return None
    if summarize_run(run_dir).state != "finished" or not (run_dir / "best.safetensors").is_file():
        return None
    return stage, load_command(stage)


def final_weights(run_dir: Path) -> Path:
    """The model a run ends with: a two-stage run's mask stage, else its own ``best.safetensors``."""
    stage = run_dir / MASK_STAGE
    if (stage / "command.json").is_file():
        return stage / "best.safetensors"
    return run_dir / "best.safetensors"


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
    panoptic_root: str = ""  # the snapshot's PNG folder (panoptic runs)
    mask_stage_args: list[str] = field(
        default_factory=list
    )  # a two-stage run's second stage, for a GPU machine

    @property
    def task(self) -> str:
        return str(self.options.get("task", BOXES))

    def save(self, run_dir: Path) -> None:
        _write_json(run_dir / "run.json", asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord | None:
        try:
            return cls(**read_json(run_dir / "run.json", "run record"))
        except (FileProblem, TypeError):
            return None


def prepare_run(doc: CocoDocument, folder: Path, options: TrainingOptions) -> tuple[Path, list[str]]:
    """A new run folder under ``folder`` with the snapshot, its record and its command; -> (run folder,
    ``detr-studio train`` arguments). On failure the folder this made is removed again."""
    run_dir = new_run_dir(folder)
    try:
        snapshot = write_snapshot(doc, run_dir, options)
        args = train_arguments(snapshot, options)
        save_command(run_dir, args)
        second: list[str] = []
        if options.task == MASKS:
            (run_dir / MASK_STAGE).mkdir()
            save_command(run_dir / MASK_STAGE, train_arguments(snapshot, options, stage=2))
            second = train_arguments(snapshot, options, local=False, stage=2)
        RunRecord(
            created=run_dir.name,
            base_weights=options.base_weights,
            options=asdict(options),
            train_images=len(snapshot.train_ids),
            val_images=len(snapshot.val_ids),
            image_root=str(snapshot.image_root),
            args=train_arguments(snapshot, options, local=False),
            mask_stage_args=second,
            panoptic_root=str(snapshot.panoptic_root or ""),
        ).save(run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # the folder this attempt made, nothing else
        raise
    return run_dir, args


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
    _write_json(run_dir / "command.json", list(args))


def load_command(run_dir: Path) -> list[str]:
    path = run_dir / "command.json"
    try:
        args = read_json(path, "run command", expect=list)
    except FileProblem as exc:
        raise TrainingSetupError(f"cannot read the run's command: {exc}") from None
    if not all(isinstance(a, str) for a in args):
        raise TrainingSetupError(f"{path}: not a list of arguments")
    return args


def resume_arguments(run_dir: Path) -> list[str]:
    """The run's own arguments plus ``--resume``; it must have saved a checkpoint (``last.pth``)."""
    if not (run_dir / "last.pth").is_file():
        raise TrainingSetupError(f"{run_dir}: nothing to resume from (no last.pth was saved)")
    return [*load_command(run_dir), "--resume", str(run_dir)]


def exit_text(code: int | None) -> str:
    """How a child process ended, in words."""
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


def crash_event(run_dir: Path | None, code: int | None, stderr_tail: str) -> Failed:
    """The `Failed` event of a child that died without a final event, saying what is kept."""
    last = run_dir / "last.pth" if run_dir is not None else None
    kept = last is not None and last.is_file()
    lines = [f"The training process {exit_text(code)} before it finished."]
    lines.append(
        f"The last checkpoint is kept: {last} (Resume goes on from it)."
        if kept
        else "It had not saved a checkpoint yet."
    )
    if stderr_tail:
        lines += ["", "The end of its error output:", stderr_tail]
    return Failed(message="\n".join(lines), last_checkpoint=str(last) if kept else "")


# ------------------------------------------------------------------------------------------- before / after


def read_comparison(run_dir: Path) -> dict[str, Any]:
    """The run's AP before (base model) and after (trained), as stored in ``comparison.json``."""
    try:
        return read_json(run_dir / "comparison.json", "comparison")
    except FileProblem:
        return {}


def store_comparison(run_dir: Path, which: str, result: dict[str, Any]) -> None:
    """Record ``result`` (metrics, or {"error": message}) as the ``which`` (BEFORE/AFTER) side."""
    data = read_comparison(run_dir)
    data[which] = result
    _write_json(run_dir / "comparison.json", data)


@dataclass(frozen=True)
class ApChange:
    """Held-out AP of the base model (``before``) and of the trained one (``after``)."""

    before: float
    after: float

    @property
    def worse(self) -> bool:
        """The trained model scores lower than the one it started from (at the three decimals shown)."""
        return round(self.after, 3) < round(self.before, 3)


def ap_change(comparison: dict[str, Any]) -> ApChange | None:
    """The AP before and after of a ``comparison.json`` (`read_comparison`); None until both are measured."""
    before, after = comparison.get(BEFORE), comparison.get(AFTER)
    values = [side.get("AP") if isinstance(side, dict) else None for side in (before, after)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return ApChange(float(values[0]), float(values[1]))  # type: ignore[arg-type]


def held_out_metrics(loaded: Any, run_dir: Path, record: RunRecord) -> dict[str, float]:
    """Box AP, and mask AP (a run that trains masks) or PQ (a panoptic run), of a `LoadedModel` on the run's
    held-out images (``val.json``), at the run's input size and on its device, through the same core as
    ``detr-studio eval``. For a background thread. A model without a mask head is measured on boxes, and on a
    panoptic run raises ValueError (panoptic quality needs masks)."""
    from ..infer.device import pick_device
    from .measure import evaluation_dataset, measure

    options = record.options
    device = str(options.get("device", "auto"))
    has_masks = loaded.family.has_masks(loaded.config)
    panoptic = bool(record.panoptic_root)
    if panoptic and not has_masks:
        raise ValueError("no mask head, so no panoptic quality")
    masks = has_masks and record.task != BOXES and not panoptic
    dataset = evaluation_dataset(
        run_dir / "val.json",
        record.image_root,
        int(options.get("size", 800)),
        int(options.get("max_size", 1333)),
        masks=masks,
        panoptic=panoptic,
        panoptic_masks=record.panoptic_root or None,
    )
    target = pick_device(None if device in ("", "auto") else device)
    return measure(loaded.model, loaded.family, dataset, target, batch_size=2, masks=masks).flat()
