"""Typed training events. The trainer reports progress only through these; over a process boundary
they travel as JSON lines (``to_json`` / ``from_json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_json(self) -> str:
        return json.dumps({"event": self.kind, **asdict(self)}, allow_nan=True)


@dataclass(frozen=True)
class Started(Event):
    kind: ClassVar[str] = "started"
    epochs: int
    start_epoch: int
    steps_per_epoch: int
    train_images: int
    val_images: int
    device: str
    world_size: int
    out_dir: str
    class_names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(
        default_factory=list
    )  # what the run changed or decided, e.g. a resumed run's new rate


@dataclass(frozen=True)
class Step(Event):
    kind: ClassVar[str] = "step"
    epoch: int
    step: int  # 1-based within the epoch
    steps: int  # steps in the epoch
    global_step: int
    loss: float  # weighted total
    losses: dict[str, float]  # unweighted parts (last decoder layer), e.g. loss_ce, loss_bbox, loss_giou
    lr: float
    images_per_s: float
    eta_s: float  # estimated seconds left in the whole run


@dataclass(frozen=True)
class Evaluated(Event):
    kind: ClassVar[str] = "evaluated"
    epoch: int
    metrics: dict[str, float]  # "AP", "AP50", … (COCO's 12 numbers), "PQ" … when panoptic
    per_class_ap: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnd(Event):
    kind: ClassVar[str] = "epoch_end"
    epoch: int
    train_loss: float
    train_losses: dict[str, float]
    metrics: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    epoch: int
    path: str
    best: bool = False


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    epochs_done: int
    best_path: str
    last_path: str
    best_metric: float
    cancelled: bool = False


@dataclass(frozen=True)
class Failed(Event):
    kind: ClassVar[str] = "failed"
    message: str
    last_checkpoint: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Started, Step, Evaluated, EpochEnd, CheckpointSaved, Finished, Failed)
}


def from_json(line: str) -> Event:
    """Parse one JSON line back into its event; ValueError for anything else."""
    try:
        data: dict[str, Any] = json.loads(line)
        cls = EVENT_TYPES[data.pop("event")]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a training event: {line[:200]!r}") from exc
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
