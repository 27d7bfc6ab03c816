"""Deformable DETR R50 (multi-scale, the official defaults) on the CPU, side by side in one run:

- our fp32 forward against Hugging Face ``transformers``' ``DeformableDetrForObjectDetection`` with the
  same configuration and weights (its pure-PyTorch attention, a timm ResNet-50 as in the hub files);
- the growth of peak memory during one forward, ours against Hugging Face's: each measured in a fresh
  child process (the model built and warmed up, the kernel's peak-RSS mark reset through
  ``/proc/self/clear_refs``, one forward, ``VmHWM`` minus the RSS before it), with glibc told to return
  every freed block over 128 KiB to the system so that RSS follows live memory;
- ONNX Runtime fp32 (the family's ONNX graph with the frozen batch norms folded into their convolutions,
  exported at a small size by the exporter ``detr-studio export`` uses, and run at the full size: dynamic
  shapes; the session options of ``OnnxPredictor``) against our fp32 forward as ``Predictor`` runs it (batch
  norms folded, channels-last), which is the target row, and against the network as built (informative);
- our bf16 autocast forward (informative: where the CPU has AMX / AVX-512 BF16, the advantage that ONNX
  Runtime's CPU kernels do not have).

Batch 1, input 800x1066 (the COCO "cats" picture after the reference resize), random weights, eval,
inference mode. ``--quick`` halves the input and times one repeat: a smoke run, not a measurement.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from detr_studio.infer import device as devices
from detr_studio.infer.onnx_graphs import run_exporter
from detr_studio.model.deformable_detr.detector import build_deformable_detr
from detr_studio.model.deformable_detr.family import DEFORMABLE_DETR_FAMILY
from detr_studio.model.deformable_detr.hf import convert_hf_state_dict
from detr_studio.model.fuse import fold_frozen_batchnorm
from detr_studio.model.nested import NestedTensor

from .common import THREADS, Report, set_threads

FULL = (800, 1066)
QUICK = (400, 533)
FORWARD_TARGET = 0.8  # ours / HF, fp32 time
MEMORY_TARGET = 0.7  # ours / HF, peak-memory growth of one forward
ORT_TARGET = 0.6  # ORT fp32 / ours fp32 time
EXPORT_SIZE = (320, 427)
CHILD_FLAG = "--memory-child"


def cpu_description() -> tuple[str, str]:
    """(lscpu's model name, which bf16 instructions its flags list)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (lscpu failed)", "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return fields.get("Model name", "unknown").strip(), ", ".join(bf16) or "none (no native bf16)"


def hf_model() -> nn.Module:
    import transformers

    config = transformers.DeformableDetrConfig(
        use_timm_backbone=True,
        backbone="resnet50",
        use_pretrained_backbone=False,
        disable_custom_kernels=True,
        num_labels=91,
    )
    torch.manual_seed(0)
    return transformers.DeformableDetrForObjectDetection(config).eval()


def ours_from(hf: nn.Module) -> nn.Module:
    sd, config = convert_hf_state_dict(hf.state_dict(), hf.config.to_dict())
    model = build_deformable_detr(config).eval()
    model.load_state_dict(sd, strict=True)
    return model


def _inputs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))  # [B, 3, H, W]
    return x, torch.zeros(1, h, w, dtype=torch.bool)


def _forward(which: str, model: nn.Module, x: torch.Tensor, mask: torch.Tensor):
    if which == "hf":
        return model(pixel_values=x, pixel_mask=(~mask).long())
    return model(NestedTensor(x, mask))


# ------------------------------------------------------------------------------------ memory, per process


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(which: str, weights: str, h: int, w: int) -> int:
    """Peak-RSS growth in bytes of one forward of ``which`` ("ours" | "hf"), measured in this process."""
    torch.set_num_threads(THREADS)
    from safetensors.torch import load_file

    hf = hf_model()
    hf.load_state_dict(load_file(weights), strict=True)
    model = hf if which == "hf" else ours_from(hf)
    if which != "hf":
        del hf
    x, mask = _inputs(h, w)
    with torch.inference_mode():
        _forward(which, model, x, mask)  # warm-up: one-time allocations do not count
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
        before = _status("VmRSS")
        _forward(which, model, x, mask)
        return _status("VmHWM") - before


def _measure_memory(which: str, weights: Path, h: int, w: int) -> int | None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}
    cmd = [
        sys.executable,
        "-m",
        "tests.benchmarks.bench_deformable",
        CHILD_FLAG,
        which,
        str(weights),
        str(h),
        str(w),
    ]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        print(done.stderr[-2000:])
        return None
    return int(json.loads(done.stdout.strip().splitlines()[-1])["growth"])


# ------------------------------------------------------------------------------------ the benchmark


def run(report: Report) -> None:
    set_threads()
    h, w = QUICK if report.quick else FULL
    model_name, bf16 = cpu_description()
    report.note(f"CPU (lscpu): {model_name}; bf16 instructions: {bf16}; {torch.get_num_threads()} threads")
    try:
        import transformers
    except ImportError:
        report.add("deformable forward fp32", None, "s", note="transformers is not installed: no peer")
        return
    hf = hf_model()
    ours = ours_from(hf)
    x, mask = _inputs(h, w)
    report.note(
        f"Deformable DETR R50 multi-scale (official defaults, 300 queries, 91 classes), random weights, batch 1, "
        f"input {h}x{w}; peer: transformers {transformers.__version__} DeformableDetrForObjectDetection, "
        "pure-PyTorch attention, timm ResNet-50, carrying our weights"
    )
    candidates = {
        "ours fp32": lambda: _forward("ours", ours, x, mask),
        "HF fp32": lambda: _forward("hf", hf, x, mask),
    }
    with torch.inference_mode():
        times = report.time(candidates)
        a, b = _forward("ours", ours, x, mask), _forward("hf", hf, x, mask)
    report.add_timing(
        "deformable forward fp32",
        times["ours fp32"],
        peer="HF fp32",
        peer_timing=times["HF fp32"],
        target=FORWARD_TARGET,
    )
    diff = (a["pred_logits"] - b.logits).abs().max().item()
    box = (a["pred_boxes"] - b.pred_boxes).abs().max().item()
    report.note(f"same weights, ours vs HF: max |logit diff| {diff:.2e}, max |box diff| {box:.2e}")

    with tempfile.TemporaryDirectory() as tmp:
        from safetensors.torch import save_file

        weights = Path(tmp) / "hf.safetensors"
        save_file({k: v.clone() for k, v in hf.state_dict().items()}, str(weights))
        grown = {which: _measure_memory(which, weights, h, w) for which in ("ours", "hf")}
        if None in grown.values():
            report.add("deformable forward peak-memory growth", None, "MB", note="a child process failed")
        else:
            report.add(
                "deformable forward peak-memory growth",
                grown["ours"] / 2**20,
                "MB",
                peer="HF",
                peer_value=grown["hf"] / 2**20,
                target=MEMORY_TARGET,
                note="VmHWM - VmRSS over one forward, fresh process each",
            )
        _onnx(report, ours, x, mask, Path(tmp))


def _predictor_path(ours: nn.Module) -> nn.Module:
    """The network as ``Predictor`` runs it on a CPU: batch norms folded, channels-last."""
    folded = copy.deepcopy(ours)
    fold_frozen_batchnorm(folded)
    return folded.to(memory_format=torch.channels_last)


def _onnx(report: Report, ours: nn.Module, x: torch.Tensor, mask: torch.Tensor, folder: Path) -> None:
    """ORT fp32 on the full-size input, from a graph exported at ``EXPORT_SIZE``; our bf16 beside."""
    import onnxruntime as ort

    from detr_studio.infer.onnx_backend import session_options

    path = folder / "deformable.onnx"
    fast = _predictor_path(ours)
    graph = DEFORMABLE_DETR_FAMILY.onnx_graph(copy.deepcopy(fast).to(memory_format=torch.contiguous_format))
    outputs = list(DEFORMABLE_DETR_FAMILY.onnx_outputs())
    used = run_exporter(graph.eval(), outputs, torch.device("cpu"), path, 17, EXPORT_SIZE, "auto", [])
    session = ort.InferenceSession(str(path), session_options(THREADS), providers=["CPUExecutionProvider"])
    feed = {"images": x.numpy(), "mask": mask.numpy()}
    x_last = x.contiguous(memory_format=torch.channels_last)

    def ours_bf16() -> dict:
        with devices.autocast(torch.device("cpu"), "bf16"):
            return fast(NestedTensor(x_last, mask))

    candidates = {
        "ours fp32 (predictor)": lambda: fast(NestedTensor(x_last, mask)),
        "ours fp32 (as built)": lambda: _forward("ours", ours, x, mask),
        "ORT fp32": lambda: session.run(None, feed),
        "ours bf16": ours_bf16,
    }
    with torch.inference_mode():
        times = report.time(candidates)
        ref = fast(NestedTensor(x_last, mask))
        low = ours_bf16()
    logits = torch.from_numpy(session.run(None, feed)[0])
    shape = (
        f"exported at {EXPORT_SIZE[0]}x{EXPORT_SIZE[1]} ({used}, opset 17), run at {x.shape[2]}x{x.shape[3]}"
    )
    report.add_timing(
        "deformable ORT fp32", times["ORT fp32"], peer="ours fp32 (predictor)",
        peer_timing=times["ours fp32 (predictor)"], target=ORT_TARGET, note=shape,
    )  # fmt: skip
    report.add_timing(
        "deformable ORT fp32 vs the network as built", times["ORT fp32"], peer="ours fp32 (as built)",
        peer_timing=times["ours fp32 (as built)"], note="no folding, no channels-last",
    )  # fmt: skip
    report.add_timing(
        "deformable bf16 autocast", times["ours bf16"], peer="ours fp32 (predictor)",
        peer_timing=times["ours fp32 (predictor)"], note="informative; sampling stays fp32",
    )  # fmt: skip
    report.note(
        f"ORT vs ours at {x.shape[2]}x{x.shape[3]}: max |logit diff| {(logits - ref['pred_logits']).abs().max():.2e}; "
        f"bf16 vs fp32: max |sigmoid diff| {(low['pred_logits'].float().sigmoid() - ref['pred_logits'].sigmoid()).abs().max():.2e}"
    )


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == CHILD_FLAG:
    growth = memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    print(json.dumps({"growth": growth}))
