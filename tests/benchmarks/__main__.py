"""Run every benchmark module: ``python -m tests.benchmarks [--only NAME] [--quick] [--out PATH]``.

Modules are the ``tests/benchmarks/bench_*.py`` files that define ``run(report)``, run in name order
(``--only inference`` runs ``bench_inference.py``); a ``bench_*.py`` without ``run`` is skipped. A module
that raises is reported and the others still run. Prints one table at the end and writes the
rows as JSON (default ``bench-out/results.json``). Exit status: 1 if a module failed to run, or, with
``--strict``, if a target was missed; else 0.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from .common import LEGEND, Report, environment, set_threads

PACKAGE_DIR = Path(__file__).resolve().parent
PREFIX = "bench_"


def discover() -> list[str]:
    """Short names (``inference`` for ``bench_inference.py``) of the benchmark modules, sorted."""
    return sorted(
        info.name[len(PREFIX) :]
        for info in pkgutil.iter_modules([str(PACKAGE_DIR)])
        if info.name.startswith(PREFIX)
    )


def load(name: str) -> Callable[[Report], None] | None:
    """The module's ``run(report)``, or None when it defines none (a helper module)."""
    module: ModuleType = importlib.import_module(f"{__package__}.{PREFIX}{name}")
    run = getattr(module, "run", None)
    return run if callable(run) else None


def parse_args(argv: list[str] | None, available: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description="Run the tests/benchmarks/bench_*.py modules and report each speed figure as a ratio to a peer.",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable); one of: {', '.join(available) or 'none found'}",
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: smaller inputs, one repeat")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-out/results.json"), help="where to write JSON"
    )
    args = parser.parse_args(argv)
    for name in args.only or []:
        if name.removeprefix(PREFIX) not in available:
            parser.error(f"no benchmark named {name!r}; available: {', '.join(available) or 'none'}")
    return args


def main(argv: list[str] | None = None) -> int:
    available = discover()
    args = parse_args(argv, available)
    selected = [name.removeprefix(PREFIX) for name in args.only] if args.only else available
    set_threads()
    report = Report(quick=args.quick, warmup=1, repeats=1 if args.quick else 3)
    env = environment()
    print(f"benchmarks: {', '.join(selected)}  ({'quick' if args.quick else 'full'} run)")
    print(f"machine: {env['cpu']}, {env['cpu_capability']}, torch {env['torch']}, {env['threads']} threads")
    for name in selected:
        report.current = name
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        try:
            run = load(name)
            if run is None:
                print(f"{PREFIX}{name}.py defines no run(report): skipped")
                continue
            run(report)
        except Exception as exc:
            traceback.print_exc()
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        print(f"== {name} took {time.perf_counter() - start:.0f} s", flush=True)
    report.current = ""
    print("\n" + report.table())
    print(LEGEND)
    if report.notes:
        print("\nNotes:")
        for line in report.notes:
            print(f"- {line}")
    for line in report.errors:
        print(f"ERROR {line}")
    print(f"\n{report.summary()}")
    report.write_json(args.out)
    print(f"results written to {args.out}")
    missed = any(row.passed is False for row in report.rows)
    return 1 if report.errors or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
