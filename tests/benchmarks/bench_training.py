"""Training on the CPU: a small DETR trained from scratch on the synthetic shapes (AP against wall-clock
minutes), the speed of our training step against Hugging Face ``transformers``' DETR with the same
configuration, and the batched Hungarian matcher against a per-image loop.

Three parts, quickest first:

- matcher: batch 8, 100 queries, 20 objects per image, 91 classes; ``HungarianMatcher`` (one cost
  computation for the batch) against ``match_per_image_loop`` (one per image).
- training step: forward + set criterion with Hungarian matching + backward + gradient clipping + AdamW
  step, ours against ``DetrForObjectDetection(pixel_values, pixel_mask, labels=...)`` built with the
  same ResNet depth (transformers' native ResNet, no timm), width, layers, heads, queries and auxiliary
  losses, on the same batch.
- from scratch: ``detr-studio demo`` data, then ``train.fit`` with ``RECIPE`` (no pretrained weights
  exist offline), evaluated on the val split every few epochs; prints the (minutes, epoch, AP, AP50)
  curve as a Markdown table and checks that AP50 reaches ``AP50_GOAL`` within ``BUDGET_MIN`` minutes.

``--quick`` shrinks everything: the training run lasts about ``QUICK_BUDGET_MIN`` minutes and its
AP is not checked.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detr_studio.commands.train import ARCHITECTURES, SHAPE_FLAGS
from detr_studio.data import synthetic
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig
from detr_studio.model.detr.family import DETR_FAMILY
from detr_studio.model.nested import NestedTensor
from detr_studio.train.config import TrainConfig
from detr_studio.train.criterion import build_criterion, total_loss
from detr_studio.train.evaluate import evaluate_coco, flatten_metrics
from detr_studio.train.events import Evaluated, Event, Failed, Finished, Started, from_json
from detr_studio.train.matcher import HungarianMatcher
from detr_studio.train.optim import build_optimizer
from detr_studio.train.setup import build_datasets
from tests.model_helpers import match_per_image_loop

from .common import Report, Timing, set_threads, time_interleaved

MATCHER_TARGET = 1.0  # batched matcher time / per-image loop time
STEP_TARGET = 1.0  # our training step time / Hugging Face's (i.e. at least as many images/s)
AP50_GOAL = 0.8
BUDGET_MIN = 30.0
QUICK_BUDGET_MIN = 3.0
NUM_CLASSES = 6  # the synthetic shapes: category ids 1..5, so the largest id + 1


# ------------------------------------------------------------------------------------ the recipe


@dataclass(frozen=True)
class Recipe:
    """A from-scratch training run on ``detr-studio demo`` data, in the terms of the command line."""

    arch: str  # a preset of ``detr-studio train --arch``
    model: DetrConfig  # that preset with the recipe's changes (``--num-queries``, ``SHAPE_FLAGS``)
    train_images: int  # demo --train
    val_images: int  # demo --val
    image_size: int  # demo --size: the longer side of the generated images
    scales: tuple[int, ...]  # --scales: training shorter sides; the largest is also --max-size / --val-size
    query_groups: int  # --query-groups (Group DETR; 1 is the reference recipe)
    epochs: int
    lr: float
    lr_backbone: float
    batch_size: int
    lr_drop: int
    eval_every: int
    ema_decay: float  # --ema: evaluate and save an average of the weights (0: the live weights)
    augment: bool  # flips and multi-scale (random crops stay off: the images are already small)
    workers: int = 0

    @property
    def num_queries(self) -> int:
        return self.model.num_queries

    @property
    def scale(self) -> int:
        return max(self.scales)

    def demo_command(self, out: str = "shapes") -> str:
        return f"detr-studio demo {out} --train {self.train_images} --val {self.val_images} --size {self.image_size}"

    def shape_flags(self) -> str:
        """``--enc-layers``/``--dec-layers``/``--nheads`` where the recipe's model differs from its preset."""
        preset = ARCHITECTURES[self.arch]
        flags = [
            f" --{name.replace('_', '-')} {getattr(self.model, name)}"
            for name in SHAPE_FLAGS
            if getattr(self.model, name) != getattr(preset, name)
        ]
        return "".join(flags)

    def train_command(self, data: str = "shapes", out: str = "runs/shapes") -> str:
        parts = [
            f"detr-studio train --data {data}/annotations/instances_train.json --images {data}/train",
            f"--val-data {data}/annotations/instances_val.json --val-images {data}/val",
            f"--arch {self.arch}{self.shape_flags()} --num-queries {self.num_queries} "
            f"--query-groups {self.query_groups}",
            f"--scales {','.join(map(str, self.scales))} --max-size {self.scale} --val-size {self.scale}",
            f"--epochs {self.epochs} --lr {self.lr:g} --lr-backbone {self.lr_backbone:g}",
            f"--batch {self.batch_size} --lr-drop {self.lr_drop} --eval-every {self.eval_every}"
            + (f" --ema {self.ema_decay:g}" if self.ema_decay else ""),
            f"--workers {self.workers} --device cpu --out {out}",
        ]
        parts.append("--no-crop" if self.augment else "--no-augment")
        return " ".join(parts)

    def train_config(self, root: Path, out_dir: Path) -> TrainConfig:
        layout = synthetic.SyntheticLayout(root)
        model = {
            k: v for k, v in self.model.to_dict().items() if k not in ("num_classes", "aux_loss", "masks")
        }
        return TrainConfig(
            train_annotations=str(layout.instances_json("train")),
            train_images=str(layout.images_dir("train")),
            val_annotations=str(layout.instances_json("val")),
            val_images=str(layout.images_dir("val")),
            model=model,
            num_queries=self.num_queries,
            epochs=self.epochs,
            lr=self.lr,
            lr_backbone=self.lr_backbone,
            batch_size=self.batch_size,
            lr_drop=self.lr_drop,
            eval_every=self.eval_every,
            ema_decay=self.ema_decay,
            augment=self.augment,
            crop=False,
            query_groups=self.query_groups,
            scales=list(self.scales),
            max_size=self.scale,
            val_size=self.scale,
            num_workers=self.workers,
            device="cpu",
            out_dir=str(out_dir),
        )


SMALL = ARCHITECTURES["small"]  # ``detr-studio train --arch small``
RUN_DIR = Path("bench-out/from-scratch")

# The demo model's architecture (the ``demo`` preset: a quarter-width ResNet-18 at stride 8 with trainable batch
# norm, 3+3 transformer layers of width 128, no dropout) with 12 queries (the images hold at most 6 shapes),
# Group DETR at 8 query groups, batch 8, and a schedule fitted to the 30-minute budget: ~31 s an epoch on 2
# cores, the learning-rate drop after epoch 47. (A weight average, ``ema_decay=0.997``, and 2+4 layers with 4
# heads were no better at the end of the budget: README.)
RECIPE = Recipe(
    arch="demo",
    model=ARCHITECTURES["demo"].replace(num_queries=12),
    train_images=600,
    val_images=100,
    image_size=128,
    scales=(96, 112, 128),
    query_groups=8,
    epochs=54,
    lr=2e-4,
    lr_backbone=2e-4,
    batch_size=8,
    lr_drop=47,
    eval_every=2,
    ema_decay=0.0,
    augment=True,
)
QUICK_RECIPE = replace(RECIPE, train_images=100, val_images=20, eval_every=1)


# ------------------------------------------------------------------------------------ (c) matcher


def random_outputs(
    batch: int, queries: int, num_classes: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """Raw-looking predictions: {"pred_logits": [B, Q, C+1], "pred_boxes": [B, Q, 4] cxcywh in (0, 1)}."""
    logits = torch.randn(batch, queries, num_classes + 1, generator=generator)
    centres = torch.rand(batch, queries, 2, generator=generator) * 0.8 + 0.1
    sizes = torch.rand(batch, queries, 2, generator=generator) * 0.3 + 0.02
    return {"pred_logits": logits, "pred_boxes": torch.cat([centres, sizes], -1)}


def random_targets(
    batch: int, objects: int, num_classes: int, generator: torch.Generator
) -> list[dict[str, Tensor]]:
    """B target dicts {"labels": [n] in 1..num_classes-1, "boxes": [n, 4] cxcywh inside the image}."""
    targets = []
    for _ in range(batch):
        centres = torch.rand(objects, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(objects, 2, generator=generator) * 0.3 + 0.05
        labels = torch.randint(1, num_classes, (objects,), generator=generator)
        targets.append({"labels": labels, "boxes": torch.cat([centres, sizes], -1)})
    return targets


def per_call(timing: Timing, calls: int) -> Timing:
    """A timing of ``calls`` calls per sample, as seconds per call."""
    return Timing(tuple(t / calls for t in timing.samples), tuple(t / calls for t in timing.cpu_samples))


def bench_matcher(report: Report) -> None:
    batch, queries, objects, num_classes = 8, 100, 20, 91
    calls = 5 if report.quick else 20  # matchings per timed sample
    gen = torch.Generator().manual_seed(0)
    outputs = random_outputs(batch, queries, num_classes, gen)
    targets = random_targets(batch, objects, num_classes, gen)
    matcher = HungarianMatcher()
    batched, loop = matcher(outputs, targets), match_per_image_loop(outputs, targets)
    same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batched, loop))

    def repeat(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                fn()

        return run

    times = time_interleaved(
        {
            "batched": repeat(lambda: matcher(outputs, targets)),
            "loop": repeat(lambda: match_per_image_loop(outputs, targets)),
        },
        report.warmup,
        max(report.repeats, 5),
    )
    report.add_timing(
        "HungarianMatcher per batch",
        per_call(times["batched"], calls),
        peer="per-image loop",
        peer_timing=per_call(times["loop"], calls),
        target=MATCHER_TARGET,
        note=f"B={batch}, Q={queries}, {objects} objects/image, {num_classes} classes",
    )
    report.note(
        f"matcher: batched and per-image assignments {'agree' if same else 'DIFFER'} on the timed input"
    )


# ------------------------------------------------------------------------------------ (b) training step


def hf_detr(config: DetrConfig, num_classes: int, match_trainable: bool) -> tuple[nn.Module, str]:
    """transformers' DetrForObjectDetection with ``config``'s shape, a native ResNet of the same depth,
    auxiliary losses, the reference loss weights, and no download.

    transformers freezes the native ResNet's parameters by name ("stage.1" ...), which never matches its
    own names ("stages.1" ...), so its whole backbone stays frozen. With ``match_trainable`` the stages
    we train (torchvision's layer2..4 = transformers' stages 1..3) are unfrozen, as in the reference.
    """
    import transformers

    depths = {
        "resnet18": [2, 2, 2, 2],
        "resnet34": [3, 4, 6, 3],
        "resnet50": [3, 4, 6, 3],
        "resnet101": [3, 4, 23, 3],
    }
    basic = config.backbone in ("resnet18", "resnet34")
    backbone = transformers.ResNetConfig(
        layer_type="basic" if basic else "bottleneck",
        depths=depths[config.backbone],
        hidden_sizes=[64, 128, 256, 512] if basic else [256, 512, 1024, 2048],
        embedding_size=64,
        out_features=["stage4"],
    )
    hf_config = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=config.hidden_dim,
        encoder_layers=config.enc_layers,
        decoder_layers=config.dec_layers,
        encoder_attention_heads=config.nheads,
        decoder_attention_heads=config.nheads,
        encoder_ffn_dim=config.dim_feedforward,
        decoder_ffn_dim=config.dim_feedforward,
        num_queries=config.num_queries,
        num_labels=num_classes,
        dropout=config.dropout,
        auxiliary_loss=True,
    )
    model = transformers.DetrForObjectDetection(hf_config).train()
    if match_trainable:
        for name, parameter in model.model.backbone.named_parameters():
            if any(f"stages.{s}." in name for s in (1, 2, 3)):
                parameter.requires_grad_(True)
    attn = getattr(model.config, "_attn_implementation", None) or "default"
    return model, f"transformers {transformers.__version__}, attention '{attn}'"


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bench_train_step(report: Report) -> None:
    config = SMALL.replace(num_classes=NUM_CLASSES)
    batch, size, objects = 2, 320, 5
    steps = 1 if report.quick else 3  # training steps per timed sample
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, size, size, generator=gen)  # [B, 3, H, W]
    targets = random_targets(batch, objects, NUM_CLASSES, gen)

    ours = build_detr(config).train()
    criterion, weights = build_criterion(NUM_CLASSES, aux_layers=config.dec_layers - 1, masks=False)
    criterion.train()
    cfg = TrainConfig(train_annotations="", train_images="")  # the reference optimiser settings
    ours_opt = build_optimizer(ours, DETR_FAMILY, cfg)  # as ``detr-studio train`` builds it
    samples = NestedTensor(images, torch.zeros(batch, size, size, dtype=torch.bool))

    def ours_step() -> None:
        for _ in range(steps):
            loss = total_loss(criterion(ours(samples), targets), weights)
            ours_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(ours.parameters(), cfg.clip_max_norm)
            ours_opt.step()

    def hf_stepper(model: nn.Module) -> Callable[[], None]:
        head = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
        body = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": head, "lr": cfg.lr}]
        if body:
            groups.append({"params": body, "lr": cfg.lr_backbone})
        # fused, as transformers' Trainer builds it by default (optim="adamw_torch_fused")
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        pixel_mask = torch.ones(batch, size, size, dtype=torch.long)  # transformers: 1 = real pixel
        labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]

        def step() -> None:
            for _ in range(steps):
                loss = model(pixel_values=images, pixel_mask=pixel_mask, labels=labels).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_max_norm)
                opt.step()

        return step

    try:
        hf, hf_note = hf_detr(config, NUM_CLASSES, match_trainable=True)
    except ImportError:
        report.add("training step", None, "s", note="transformers not installed: no peer")
        return
    candidates = {"ours": ours_step, "HF": hf_stepper(hf)}
    hf_as_built = None
    if not report.quick:
        hf_as_built, _ = hf_detr(config, NUM_CLASSES, match_trainable=False)
        candidates["HF as built"] = hf_stepper(hf_as_built)
    report.note(
        f"training step: 'small' preset ({config.backbone}, d_model {config.hidden_dim}, {config.enc_layers}+"
        f"{config.dec_layers} layers, {config.nheads} heads, ffn {config.dim_feedforward}, {config.num_queries} "
        f"queries, aux loss), batch {batch} at {size}x{size}, {objects} objects/image, fp32, AdamW + clip "
        f"{cfg.clip_max_norm} (both fused, as detr-studio train and transformers' Trainer build it); "
        f"{steps} step(s) per sample. Peer: {hf_note}; trainable parameters ours "
        f"{trainable(ours) / 1e6:.2f} M, HF {trainable(hf) / 1e6:.2f} M (its backbone stages 1-3 unfrozen to match)"
    )
    times = {name: per_call(t, steps) for name, t in report.time(candidates).items()}
    ours_s, hf_s = times["ours"].median, times["HF"].median
    report.add_timing(
        "training step",
        times["ours"],
        peer="HF (same layers trained)",
        peer_timing=times["HF"],
        target=STEP_TARGET,
        note=f"{batch / ours_s:.2f} vs {batch / hf_s:.2f} images/s",
    )
    if hf_as_built is not None:
        report.add_timing(
            "training step",
            times["ours"],
            peer="HF as built",
            peer_timing=times["HF as built"],
            note=f"informative: its backbone trains nothing ({trainable(hf_as_built) / 1e6:.2f} M trainable)",
        )


# ------------------------------------------------------------------------------------ (a) from scratch


@dataclass
class CurvePoint:
    minutes: float  # wall-clock since training started (set-up and data generation excluded)
    cpu_minutes: float  # the training process's CPU time over the same span, all threads
    epoch: float  # epochs done (a fraction for the evaluation at the end of the budget)
    ap: float
    ap50: float


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc); 0 where that cannot be read."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class _Recorder:
    """The training events the benchmark needs, with their wall-clock and CPU times."""

    budget_s: float
    pid: int = 0
    started: float | None = None
    started_cpu: float = 0.0
    curve: list[CurvePoint] = field(default_factory=list)
    final: Event | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.started, self.started_cpu = time.perf_counter(), _cpu_seconds(self.pid)
        elif isinstance(event, Evaluated):
            self.add(event.epoch, event.metrics)
        elif isinstance(event, (Finished, Failed)):
            self.final = event

    def add(self, epoch: float, metrics: dict[str, float], cpu_s: float | None = None) -> None:
        if self.started is None:
            return
        minutes = (time.perf_counter() - self.started) / 60
        cpu = _cpu_seconds(self.pid) if cpu_s is None else cpu_s
        point = CurvePoint(minutes, (cpu - self.started_cpu) / 60, epoch, metrics["AP"], metrics["AP50"])
        self.curve.append(point)
        print(
            f"  epoch {epoch:6.2f}  {minutes:6.1f} min ({point.cpu_minutes:.1f} CPU-min)  AP {point.ap:.3f}  "
            f"AP50 {point.ap50:.3f}",
            flush=True,
        )

    def over_budget(self) -> bool:
        return self.started is not None and time.perf_counter() - self.started > self.budget_s


def curve_table(curve: list[CurvePoint]) -> str:
    lines = ["| minutes | CPU-minutes | epoch | AP | AP50 |", "|---:|---:|---:|---:|---:|"]
    lines += [
        f"| {p.minutes:.1f} | {p.cpu_minutes:.1f} | {p.epoch:g} | {p.ap:.3f} | {p.ap50:.3f} |" for p in curve
    ]
    return "\n".join(lines)


def _command(line: str) -> list[str]:
    """A ``detr-studio ...`` line as this interpreter runs it."""
    return [sys.executable, "-m", "detr_studio", *shlex.split(line)[1:]]


def train_until_budget(recipe: Recipe, data: Path, out_dir: Path, recorder: _Recorder) -> None:
    """Run the recipe's ``detr-studio train --events jsonl`` line; SIGTERM it (it saves and stops after the
    current step) once the budget is spent."""
    line = recipe.train_command(str(data), str(out_dir)) + " --events jsonl"
    with subprocess.Popen(_command(line), stdout=subprocess.PIPE, text=True, bufsize=1) as child:
        recorder.pid = child.pid
        assert child.stdout is not None
        for text in child.stdout:
            try:
                recorder(from_json(text))
            except ValueError:
                continue
            if recorder.over_budget() and child.poll() is None:
                child.send_signal(signal.SIGTERM)
    if child.returncode != 0 or isinstance(recorder.final, Failed):
        message = recorder.final.message if isinstance(recorder.final, Failed) else f"exit {child.returncode}"
        raise RuntimeError(f"from-scratch training failed: {message}")


def evaluate_last(cfg: TrainConfig, recorder: _Recorder) -> None:
    """Evaluate the model where the budget stopped it (``last.pth``; its weight average when the run keeps
    one), unless the last epoch was evaluated."""
    cpu_s = recorder.started_cpu + (recorder.curve[-1].cpu_minutes * 60 if recorder.curve else 0.0)
    state = torch.load(Path(cfg.out_dir) / "last.pth", map_location="cpu", weights_only=True)
    position = state["position"]
    steps = max(1, len(build_datasets(cfg)[0]) // cfg.batch_size)
    epoch = round(position["epoch"] + position["batch"] / steps, 2)
    if recorder.curve and recorder.curve[-1].epoch >= epoch:
        return
    model = build_detr(DetrConfig.from_dict(state["model_config"]))
    if cfg.query_groups > 1:
        model.set_query_groups(cfg.query_groups)
    weights = state["ema"]["weights"] if "ema" in state else state["model"]  # what the run evaluates
    model.load_state_dict(weights)
    _, val_set = build_datasets(cfg)
    metrics = flatten_metrics(evaluate_coco(model, DETR_FAMILY, val_set, torch.device("cpu"), cfg.batch_size))
    recorder.add(epoch, metrics, cpu_s=cpu_s)


def bench_from_scratch(report: Report) -> None:
    """The recipe's own ``detr-studio demo`` and ``detr-studio train`` lines, run as commands. The run folder
    is kept in ``RUN_DIR`` (its ``best.safetensors`` is the demo model when the run is the full one)."""
    recipe = QUICK_RECIPE if report.quick else RECIPE
    budget_min = QUICK_BUDGET_MIN if report.quick else BUDGET_MIN
    report.note(f"from scratch: {recipe.demo_command()}")
    report.note(f"from scratch: {recipe.train_command()}")
    run_dir = RUN_DIR / ("quick" if report.quick else "full")
    shutil.rmtree(run_dir, ignore_errors=True)
    root, out_dir = run_dir / "shapes", run_dir / "run"
    start = time.perf_counter()
    subprocess.run(_command(recipe.demo_command(str(root))), check=True, stderr=subprocess.DEVNULL)
    report.add("demo data generation", time.perf_counter() - start, "s",
               note=f"{recipe.train_images} + {recipe.val_images} images")  # fmt: skip
    recorder = _Recorder(budget_s=budget_min * 60)
    train_until_budget(recipe, root, out_dir, recorder)
    cfg = recipe.train_config(root, out_dir)
    evaluate_last(cfg, recorder)
    weights = out_dir / "best.safetensors"
    size_mb = weights.stat().st_size / 1e6 if weights.exists() else None
    curve = recorder.curve
    table = curve_table(curve)
    print(table, flush=True)
    report.note(
        f"from-scratch curve (val split, {recipe.val_images} images; minutes of wall-clock training including "
        "the evaluations; CPU-minutes of the training process, all threads):\n" + table
    )
    model = build_detr(recipe.model.replace(num_classes=NUM_CLASSES))
    params = sum(p.numel() for p in model.parameters())
    report.add("model parameters", params / 1e6, "M", note=f"{recipe.arch}, {recipe.num_queries} queries")
    report.add("best.safetensors size", size_mb, "MB", note="fp32 weights + buffers")
    last = curve[-1]
    where = f"epoch {last.epoch:g}, {last.minutes:.1f} min"
    report.add("AP (val) at the end", last.ap, "", note=where)
    report.add("AP50 (val) at the end", last.ap50, "", note=where)
    reached = next((p for p in curve if p.ap50 >= AP50_GOAL), None)
    best = max(p.ap50 for p in curve)
    report.add(
        f"minutes to AP50 >= {AP50_GOAL:g}",
        reached.minutes if reached is not None else math.inf,
        "min",
        peer="budget",
        peer_value=budget_min,
        target=None if report.quick else 1.0,
        note=(f"epoch {reached.epoch:g}" if reached is not None else f"not reached; best AP50 {best:.3f}")
        + ("; quick run, not checked" if report.quick else ""),
    )


# ------------------------------------------------------------------------------------ entry point


def run(report: Report) -> None:
    set_threads()
    bench_matcher(report)
    bench_train_step(report)
    bench_from_scratch(report)
