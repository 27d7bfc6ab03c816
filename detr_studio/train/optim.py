"""The optimiser and learning-rate schedule of a run, from the family's parameter groups.

Each family says how its parameters group (``ModelFamily.param_groups``: the backbone or not, and a
learning-rate multiplier, such as Deformable DETR's 0.1 for its sampling offsets); the run's ``lr`` and
``lr_backbone`` give each group its rate. A resumed run takes its optimiser's state from the checkpoint and
then the schedule the command line asks for (``apply_schedule``), saying what changed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..model.family import ModelFamily
from .config import TrainConfig


def param_groups(model: nn.Module, family: ModelFamily, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The family's groups with their learning rates: ``lr`` or ``lr_backbone``, times the group's scale."""
    groups = []
    for group in family.param_groups(model):
        base = cfg.lr_backbone if group.backbone else cfg.lr
        groups.append({"params": group.params, "lr": base * group.lr_scale})
    return groups


def build_optimizer(model: nn.Module, family: ModelFamily, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups``, fused on CPUs and CUDA GPUs: one kernel for all the parameters instead of
    a Python loop over ~200 tensors (PyTorch's default on a CPU). Elsewhere (MPS, ...) the ``foreach`` kernels.
    The training-step benchmark times it (``tests/benchmarks/bench_training.py``)."""
    groups = param_groups(model, family, cfg)
    devices = {p.device.type for group in groups for p in group["params"]}
    fast = {"fused": True} if devices <= {"cpu", "cuda"} else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.StepLR:
    return torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_drop)


def apply_schedule(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.StepLR,
    rates: list[float],
    cfg: TrainConfig,
) -> list[str]:
    """After loading a resumed run's optimiser and scheduler state: use ``rates`` (each group's base rate as
    this run asks), ``cfg.weight_decay`` and ``cfg.lr_drop`` from here on, at the point of the schedule the run
    has reached. Returns one line per setting that differs from the resumed run's, saying it is applied."""
    notes = []
    old_rates = list(scheduler.base_lrs)
    if [round(r, 12) for r in old_rates] != [round(r, 12) for r in rates]:
        notes.append(
            "learning rates changed from the resumed run's "
            + ", ".join(f"{r:g}" for r in old_rates)
            + " to "
            + ", ".join(f"{r:g}" for r in rates)
            + " (applied from here on)"
        )
    if scheduler.step_size != cfg.lr_drop:
        notes.append(
            f"lr drop every {cfg.lr_drop} epochs instead of {scheduler.step_size} (applied from here on)"
        )
    decays = {g["weight_decay"] for g in optimizer.param_groups}
    if decays != {cfg.weight_decay}:
        notes.append(
            f"weight decay {cfg.weight_decay:g} instead of {', '.join(f'{d:g}' for d in sorted(decays))} "
            "(applied from here on)"
        )
    scheduler.step_size = cfg.lr_drop
    scheduler.base_lrs = list(rates)
    factor = scheduler.gamma ** (scheduler.last_epoch // scheduler.step_size)
    for group, rate in zip(optimizer.param_groups, rates):
        group["initial_lr"] = rate
        group["lr"] = rate * factor
        group["weight_decay"] = cfg.weight_decay
    return notes
