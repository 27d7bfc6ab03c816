"""Shared pieces of the benchmark suite: the report that collects result rows, and the timer.

Every speed claim is a ratio against a peer measured in the same run. The timer runs the candidates in
turn (A, B, A, B, ...), so that a change in the machine's load during the run hits all of them alike,
and reports the median of the timed repeats after untimed warm-up runs.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

THREADS = 2
LEGEND = (
    "ratio: median wall time / the peer's, both measured in this run (the target applies to it); "
    "cpu ratio: the same in process CPU time, which other programs on the machine disturb less; "
    "noise: (slowest - fastest) / median of the repeats, the larger of the two sides"
)


@dataclass(frozen=True)
class Timing:
    """Seconds of the timed repeats of one candidate: wall clock (``perf_counter``, the figure that counts)
    and this process's CPU time (``process_time``, all threads), a cross-check that other programs on the
    machine disturb less."""

    samples: tuple[float, ...]
    cpu_samples: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_samples) if self.cpu_samples else None

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how noisy the repeats were."""
        return (max(self.samples) - min(self.samples)) / self.median if self.median > 0 else 0.0


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]], warmup: int, repeats: int
) -> dict[str, Timing]:
    """Time each callable ``repeats`` times after ``warmup`` untimed calls, in round-robin order."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: Timing(tuple(wall[name]), tuple(cpu[name])) for name in candidates}


@dataclass
class Row:
    """One measured figure. ``ratio`` is value / peer_value; ``target`` is the largest ratio that passes
    (None when the row is informative only)."""

    bench: str
    name: str
    value: float | None
    unit: str
    peer: str = ""
    peer_value: float | None = None
    ratio: float | None = None
    target: float | None = None
    passed: bool | None = None
    note: str = ""
    cpu_ratio: float | None = None  # the same ratio in process CPU time, for timed rows
    spread: float | None = None  # the noisier side's (slowest - fastest) / median, for timed rows


@dataclass
class Report:
    """Collects rows and notes from every benchmark module, then prints a table and writes JSON."""

    quick: bool = False
    warmup: int = 1
    repeats: int = 3
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    current: str = ""

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        peer: str = "",
        peer_value: float | None = None,
        target: float | None = None,
        note: str = "",
    ) -> Row:
        """Record a figure; with ``peer_value`` the ratio value/peer_value is computed and checked against
        ``target`` (the ratio must be at most the target)."""
        return self._record(self._row(name, value, unit, peer, peer_value, target, note))

    def _row(
        self,
        name: str,
        value: float | None,
        unit: str,
        peer: str,
        peer_value: float | None,
        target,
        note: str,
    ) -> Row:
        ratio = None
        if value is not None and peer_value:
            ratio = value / peer_value
        passed = None if target is None or ratio is None else ratio <= target
        return Row(self.current, name, value, unit, peer, peer_value, ratio, target, passed, note)

    def _record(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {_format_row_line(row)}", flush=True)
        return row

    def add_timing(
        self,
        name: str,
        timing: Timing,
        *,
        peer: str = "",
        peer_timing: Timing | None = None,
        target: float | None = None,
        note: str = "",
    ) -> Row:
        """Record a timed figure (median seconds) and, with a peer, the ratio to it, its CPU-time
        cross-check and how noisy the repeats were."""
        peer_value = None if peer_timing is None else peer_timing.median
        row = self._row(name, timing.median, "s", peer, peer_value, target, note)
        row.spread = timing.spread
        if peer_timing is not None:
            row.spread = max(timing.spread, peer_timing.spread)
            if timing.cpu_median is not None and peer_timing.cpu_median:
                row.cpu_ratio = timing.cpu_median / peer_timing.cpu_median
        return self._record(row)

    def time(self, candidates: Mapping[str, Callable[[], object]]) -> dict[str, Timing]:
        """``time_interleaved`` with this run's warm-up and repeat counts."""
        return time_interleaved(candidates, self.warmup, self.repeats)

    def note(self, text: str) -> None:
        """A line of explanation printed under the table (and kept in the JSON)."""
        self.notes.append(f"[{self.current}] {text}" if self.current else text)
        print(f"  note: {text}", flush=True)

    def table(self) -> str:
        headers = (
            "bench",
            "measure",
            "value",
            "peer",
            "peer value",
            "ratio",
            "target",
            "result",
            "cpu ratio",
            "noise",
            "note",
        )
        lines = [
            (
                row.bench,
                row.name,
                _number(row.value, row.unit) or "n/a",
                row.peer,
                _number(row.peer_value, row.unit),
                "" if row.ratio is None else f"{row.ratio:.3f}x",
                "" if row.target is None else f"<= {row.target:g}x",
                {True: "PASS", False: "FAIL", None: ""}[row.passed],
                "" if row.cpu_ratio is None else f"{row.cpu_ratio:.3f}x",
                "" if row.spread is None else f"{row.spread * 100:.0f}%",
                row.note,
            )
            for row in self.rows
        ]
        widths = [
            max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)
        ]
        rule = "  ".join("-" * w for w in widths)
        out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), rule]
        out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
        return "\n".join(line.rstrip() for line in out)

    def summary(self) -> str:
        checked = [row for row in self.rows if row.passed is not None]
        met = sum(1 for row in checked if row.passed)
        text = f"{met} of {len(checked)} targets met"
        if self.errors:
            text += f"; {len(self.errors)} benchmark(s) failed to run"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": environment(),
            "settings": {"quick": self.quick, "warmup": self.warmup, "repeats": self.repeats},
            "rows": [asdict(row) for row in self.rows],
            "notes": self.notes,
            "errors": self.errors,
            "summary": self.summary(),
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "s":
        if value >= 1:
            return f"{value:.3f} s"
        return f"{value * 1000:.1f} ms" if value >= 1e-3 else f"{value * 1e6:.0f} us"
    if unit == "%":
        return f"{value:.1f} %"
    return f"{value:.4g} {unit}".rstrip()


def _format_row_line(row: Row) -> str:
    text = f"{row.name}: {_number(row.value, row.unit) or 'n/a'}"
    if row.peer_value is not None:
        text += f" vs {row.peer} {_number(row.peer_value, row.unit)}"
    if row.ratio is not None:
        text += f" -> {row.ratio:.3f}x"
    if row.target is not None:
        text += f" (target <= {row.target:g}x: {'PASS' if row.passed else 'FAIL'})"
    if row.cpu_ratio is not None:
        text += f", cpu-time ratio {row.cpu_ratio:.3f}x"
    if row.spread is not None:
        text += f", noise {row.spread * 100:.0f}%"
    if row.note:
        text += f"  [{row.note}]"
    return text


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "machine": platform.machine(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AMX tiles or AVX-512 BF16); without them
    oneDNN emulates bf16 and it is slower than fp32."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def set_threads() -> None:
    """Fix the thread count so that runs compare across machines of this project (2 cores)."""
    torch.set_num_threads(THREADS)
