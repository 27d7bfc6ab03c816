"""A run's resumable state: where it is (``Position``), its random generators, and reading ``last.pth`` back.

``last.pth`` holds everything needed to resume (model, optimiser, scheduler, position in the epoch, random
state, the weight average) and, beside it, what makes it readable as a model checkpoint of its own (family,
config, class names). It is read with ``weights_only=True`` through the checkpoint reader, so a hostile file
is refused in one line and torch's advice to turn that protection off is never shown.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..model.checkpoint import torch_load_weights
from ..model.state_dicts import CheckpointError

LAST = "last.pth"
_REQUIRED = ("model", "optimizer", "lr_scheduler", "position", "rng")


@dataclass
class Position:
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    global_step: int = 0
    best_metric: float = -math.inf


def rng_state() -> dict[str, Any]:
    version, internal, _ = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_version": version,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(int(x) for x in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeError(Exception):
    """A file a run cannot resume from; the message names it."""


def read_training_state(path: Path) -> dict[str, Any]:
    """The state saved in ``path`` (a run folder or its ``last.pth``); ResumeError naming the file otherwise."""
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise ResumeError(f"{path}: no such checkpoint to resume from")
    try:
        state = torch_load_weights(path)
    except CheckpointError as exc:
        raise ResumeError(f"cannot resume: {exc}") from None
    missing = [k for k in _REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise ResumeError(
            f"{path}: not a DETR Studio training checkpoint (no {', '.join(missing)}); "
            "start a new run from it with --weights instead"
        )
    names = {f.name for f in fields(Position)}
    position = state["position"]
    if not isinstance(position, dict) or set(position) - names:
        raise ResumeError(f"{path}: its position record is not one this version writes")
    return state
