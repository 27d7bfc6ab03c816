"""A memory budget for each forward: estimate its peak before running it, and split work that would not fit.

The family estimates what a forward adds to the weights (``ModelFamily.estimate_peak_bytes``: backbone
activations, transformer layers, recorded attention, mask-head rows). The budget is a share of the memory free
on the device when the prediction starts (``default_budget``), or what the caller sets. Past it, `plan_forward`
first runs the mask head a few rows at a time (the same masks), then fewer images per forward, and says so in
``ForwardPlan.note``; a single image that still does not fit runs alone, with a warning, instead of taking the
machine down in one large allocation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..model.config_fields import ModelConfig
from ..model.family import ModelFamily

BUDGET_SHARE = 0.6  # of the memory available when a prediction starts
MIN_BUDGET = 256 << 20


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a new allocation on ``device`` (RAM the OS calls available, or free GPU memory)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_budget(device: torch.device) -> int | None:
    """``BUDGET_SHARE`` of what is available now (at least ``MIN_BUDGET``); None when it cannot be told."""
    free = available_bytes(device)
    return None if free is None else max(MIN_BUDGET, int(free * BUDGET_SHARE))


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class ForwardPlan:
    """How one ``predict`` call runs: ``batches`` (image indices per forward), ``mask_rows`` (mask-head rows at
    a time; 0 for all), the estimate of the largest forward, the budget, and a note when anything changed."""

    batches: tuple[tuple[int, ...], ...]
    mask_rows: int
    estimate: int
    budget: int | None
    note: str = ""


def plan_forward(
    family: ModelFamily,
    config: ModelConfig,
    sizes: Sequence[tuple[int, int]],
    budget: int | None,
    *,
    panoptic: bool = False,
    attention: bool = False,
) -> ForwardPlan:
    """The plan for images of input ``sizes`` (h, w): one forward when it fits ``budget`` (None: no limit)."""
    count = len(sizes)
    queries = config.num_queries

    def estimate(batch: int, rows: int) -> int:
        h = max(s[0] for s in sizes)
        w = max(s[1] for s in sizes)
        return family.estimate_peak_bytes(config, batch, h, w, mask_rows=rows, attention=attention).total

    whole_rows = count * queries if panoptic else 0
    first = estimate(count, whole_rows)
    everything = (tuple(range(count)),)
    if budget is None or first <= budget:
        return ForwardPlan(everything, 0, first, budget)
    batch = count
    while True:
        rows = batch * queries if panoptic else 0
        while panoptic and rows > 1 and estimate(batch, rows) > budget:
            rows = max(1, rows // 2)
        cost = estimate(batch, rows)
        if cost <= budget or batch == 1:
            break
        batch = max(1, batch // 2)
    batches = tuple(tuple(range(i, min(i + batch, count))) for i in range(0, count, batch))
    changes = []
    if batch < count:
        changes.append(f"{batch} image{'s' if batch > 1 else ''} at a time")
    if panoptic and rows < batch * queries:
        changes.append(f"the mask head {rows} queries at a time")
    note = (
        f"a forward of {count} image(s) needs about {format_bytes(first)}, above the memory budget of "
        f"{format_bytes(budget)}: running " + (" and ".join(changes) or "as it is")
    )
    if cost > budget:
        note += f"; even so it needs about {format_bytes(cost)} and may not fit (use a smaller input size)"
    return ForwardPlan(batches, rows if panoptic and rows < batch * queries else 0, cost, budget, note)
