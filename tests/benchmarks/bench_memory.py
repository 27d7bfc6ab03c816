"""Memory of predictions as the window makes them (attention and panoptic results kept for every image).

Each figure comes from a fresh process (``python -m tests.benchmarks.bench_memory --child ...``), so that its
peak resident memory (Linux ``VmHWM``, reset just before the measured work) belongs to that work alone:

- the demo model at its own input size (128 px; the window used 800 px before the load pipeline), one
  640x480 prediction: the peak above the memory before it (target <= 2 GB), and the growth of resident memory
  over 100 predictions whose results are all kept, as the window's prediction store keeps them (target
  <= 200 MB);
- the demo model at 800 px, the size the window used to force on it, for comparison (informative);
- DETR R50 with random weights at 800x1066, one prediction with attention (informative).

Targets are absolute, so each row's "peer" is its target and the ratio must be at most 1. ``--quick`` keeps
every figure but makes 20 predictions instead of 100 for the growth (the figure printed is still per 100).
Linux only (``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .common import Report

MB = 1 << 20
PEAK_TARGET_MB = 2048
GROWTH_TARGET_MB = 200
ROOT = Path(__file__).resolve().parents[2]


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (VmRSS: resident now; VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size


def child(model: str, size: int | None, predictions: int) -> dict:
    """Run in the fresh process: load, predict once (measured peak), predict more (measured growth)."""
    import numpy as np
    import torch
    from PIL import Image

    from detr_studio.infer.predictor import Predictor
    from detr_studio.model.detr.build import build_detr
    from detr_studio.model.detr.config import DetrConfig

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if model == "demo":
        predictor = Predictor.from_weights("demo", device="cpu", size=size, max_size=size)
        picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
        panoptic = predictor.supports_masks
    else:  # DETR R50, random weights, an 800x1066 input
        config = DetrConfig()
        predictor = Predictor(build_detr(config).eval(), config, device="cpu", size=800, max_size=1333)
        picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 1066, 3), dtype=np.uint8))
        panoptic = False
    kept = []
    before = _status("VmRSS")
    _reset_peak()
    kept.append(predictor.predict([picture], attention=True, panoptic=panoptic)[0])
    peak = _status("VmHWM") - before
    after_first = _status("VmRSS")
    for i in range(predictions - 1):
        image = picture.rotate(90 * (i % 4), expand=False)
        kept.append(predictor.predict([image], attention=True, panoptic=panoptic)[0])
    growth = (_status("VmRSS") - after_first) * (100 / max(predictions - 1, 1)) if predictions > 1 else 0
    return {
        "input": f"{predictor.resized_size(picture.width, picture.height)}",
        "peak": peak,
        "growth_per_100": growth,
        "kept_attention_bytes": sum(d.attention.nbytes for d in kept if d.attention is not None),
    }


def _measure(model: str, size: int | None, predictions: int) -> dict:
    argv = [
        sys.executable,
        "-m",
        "tests.benchmarks.bench_memory",
        "--child",
        model,
        "--predictions",
        str(predictions),
    ]
    if size is not None:
        argv += ["--size", str(size)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(report: Report) -> None:
    if not Path("/proc/self/clear_refs").exists():
        report.note("memory benchmark skipped: it reads Linux's /proc/self/status")
        return
    count = 20 if report.quick else 100
    demo = _measure("demo", None, count)
    report.note(
        f"demo model at its own input size {demo['input']} (h, w) for a 640x480 picture, attention and panoptic "
        f"results kept for all {count} predictions ({demo['kept_attention_bytes'] / MB:.1f} MB of attention kept)"
    )
    report.add(
        "demo model: peak of one prediction",
        demo["peak"] / MB,
        "MB",
        peer="target",
        peer_value=PEAK_TARGET_MB,
        target=1.0,
    )
    report.add(
        "demo model: growth over 100 predictions",
        demo["growth_per_100"] / MB,
        "MB",
        peer="target",
        peer_value=GROWTH_TARGET_MB,
        target=1.0,
        note="" if count == 100 else f"measured over {count}, scaled to 100",
    )
    old_size = _measure("demo", 800, 1)
    report.add("demo model at 800 px (the window's old size): peak", old_size["peak"] / MB, "MB",
               note=f"input {old_size['input']}")  # fmt: skip
    r50 = _measure("r50", None, 1)
    report.add("DETR R50 800x1066, attention: peak of one prediction", r50["peak"] / MB, "MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one measurement of bench_memory, in its own process")
    parser.add_argument("--child", choices=("demo", "r50"), required=True)
    parser.add_argument("--size", type=int)
    parser.add_argument("--predictions", type=int, default=100)
    args = parser.parse_args(argv)
    print(json.dumps(child(args.child, args.size, args.predictions)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
