"""``detr-studio train``: fine-tune or train DETR on COCO data; the same line runs under ``torchrun``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..common.files import FileProblem, read_json
from ..model.detr.config import DetrConfig, tiny_config
from ..train.config import TrainConfig
from ..train.events import EpochEnd, Evaluated, Event, Failed, Finished, Started, Step
from . import CommandError

ARCHITECTURES = {
    "detr-r50": DetrConfig(),
    "detr-r101": DetrConfig(backbone="resnet101"),
    "tiny": tiny_config(),
    "small": tiny_config(
        hidden_dim=128, nheads=8, dim_feedforward=512, enc_layers=3, dec_layers=3, num_queries=30
    ),
    # From scratch on small images: a quarter-width ResNet-18 at stride 8 (a 16x16 feature map for 128-pixel
    # images: small shapes need it) with trainable batch norm.
    "demo": tiny_config(
        hidden_dim=128,
        nheads=8,
        dim_feedforward=512,
        enc_layers=3,
        dec_layers=3,
        num_queries=20,
        backbone_width=16,
        backbone_stride=8,
        backbone_norm="batch",
    ),
}


SHAPE_FLAGS = ("enc_layers", "dec_layers", "nheads")  # from-scratch changes to the --arch preset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune or train DETR on a COCO dataset",
        description="Train DETR with the reference recipe. Runs unchanged under `torchrun --nproc_per_node=N`.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", help="COCO instances (or panoptic, with --panoptic) JSON for training")
    data.add_argument("--images", help="folder of the training images")
    data.add_argument("--val-data", help="COCO JSON for validation (default: hold out --val-split)")
    data.add_argument("--val-images", help="folder of the validation images (default: --images)")
    data.add_argument("--val-split", type=float, default=None, help="fraction of training images held out")
    data.add_argument("--panoptic", action="store_true", help="the JSON files are COCO panoptic")
    data.add_argument("--panoptic-masks", help="folder of the panoptic PNGs (default: beside the JSON)")
    data.add_argument("--classes", help="comma-separated category names to train on (default: all)")
    data.add_argument("--image-ids", help="comma-separated image ids to train on (default: all)")
    model = p.add_argument_group("model")
    model.add_argument("--weights", help="start from this checkpoint or zoo name (default: from scratch)")
    model.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), default="detr-r50", help="architecture from scratch"
    )
    model.add_argument("--masks", action="store_true", help="train the mask head too (segmentation)")
    model.add_argument(
        "--stage",
        choices=("full", "masks"),
        default=None,
        help="'masks': second panoptic stage, mask head only on frozen detection weights",
    )
    model.add_argument(
        "--enc-layers", type=int, help="encoder layers of a model from scratch (default: --arch's)"
    )
    model.add_argument(
        "--dec-layers", type=int, help="decoder layers of a model from scratch (default: --arch's)"
    )
    model.add_argument(
        "--nheads", type=int, help="attention heads of a model from scratch (default: --arch's)"
    )
    model.add_argument("--num-queries", type=int)
    model.add_argument("--dropout", type=float)
    model.add_argument(
        "--query-groups",
        type=int,
        help="Group DETR: train this many groups of queries, each matched on its own (faster convergence); "
        "only the first group is saved, so the model stays a plain DETR (default 1)",
    )
    model.add_argument("--no-aux-loss", action="store_true", help="turn off the auxiliary decoding losses")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--lr", type=float)
    opt.add_argument("--lr-backbone", type=float, help="backbone learning rate; 0 freezes the backbone")
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--lr-drop", type=int, help="epochs between learning-rate drops (×0.1)")
    opt.add_argument("--clip", type=float, dest="clip_max_norm", help="gradient clipping max norm")
    opt.add_argument(
        "--eos-coef",
        type=float,
        help="weight of the no-object class in the classification loss (default 0.1; raise it when there are "
        "few queries per object, to suppress duplicate boxes)",
    )
    opt.add_argument(
        "--ema",
        type=float,
        dest="ema_decay",
        help="keep an exponential moving average of the weights with this decay per step (e.g. 0.997), and "
        "evaluate and save it instead of the live weights (default: none)",
    )
    opt.add_argument("--batch", type=int, dest="batch_size", help="images per process and step")
    opt.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    opt.add_argument("--scales", help="comma-separated training shorter sides (default 480..800)")
    opt.add_argument("--max-size", type=int)
    opt.add_argument("--val-size", type=int)
    opt.add_argument("--no-augment", action="store_true", help="no flips, crops or multi-scale")
    opt.add_argument("--no-crop", action="store_true", help="flips and multi-scale, without random crops")
    run = p.add_argument_group("run")
    run.add_argument("--config", help="a TrainConfig JSON file; flags given here override it")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--no-amp", action="store_true", help="full precision on GPUs")
    run.add_argument("--seed", type=int)
    run.add_argument("--workers", type=int, dest="num_workers", help="data-loading processes")
    run.add_argument("--out", dest="out_dir", help="output folder (checkpoints, events, config)")
    run.add_argument("--resume", help="a run folder or its last.pth to continue")
    run.add_argument("--eval-every", type=int)
    run.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    run.add_argument("--events", choices=("jsonl",), help="print training events as JSON lines on stdout")
    p.set_defaults(run=run_command)


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"expected comma-separated integers, got {text!r}") from None


def _recorded_config(resume: str) -> dict[str, Any]:
    """The options a run being resumed was started with (its folder's ``config.json``), or {}."""
    folder = Path(resume) if Path(resume).is_dir() else Path(resume).parent
    recorded = folder / "config.json"
    if not recorded.is_file():
        return {}
    try:
        values = read_json(recorded, "training config")
    except FileProblem as exc:
        raise CommandError(str(exc)) from None
    values.pop("resume", None)
    values.pop("out_dir", None)  # a resumed run goes on in the folder it resumes from, wherever that is now
    return values


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's options: a --config file, else (for --resume) the resumed run's own, then the flags given.

    A resumed run therefore keeps its data, model and schedule unless a flag changes them; a changed
    learning rate, lr drop or weight decay is applied from the resumed point on and said so at the start.
    """
    values: dict[str, Any] = {}
    if args.config:
        try:
            values = read_json(args.config, "training config")
        except FileProblem as exc:
            raise CommandError(str(exc)) from None
    elif args.resume:
        values = _recorded_config(args.resume)
    direct = {
        "train_annotations": args.data,
        "train_images": args.images,
        "val_annotations": args.val_data,
        "val_images": args.val_images,
        "val_split": args.val_split,
        "panoptic_masks": args.panoptic_masks,
        "base_weights": args.weights,
        "stage": args.stage,
        "num_queries": args.num_queries,
        "dropout": args.dropout,
        "query_groups": args.query_groups,
        "eos_coef": args.eos_coef,
        "ema_decay": args.ema_decay,
        "max_size": args.max_size,
        "val_size": args.val_size,
        "device": args.device,
        "seed": args.seed,
        "out_dir": args.out_dir,
        "resume": args.resume,
        "eval_every": args.eval_every,
        "max_steps": args.max_steps,
    }
    for name in ("epochs", "lr", "lr_backbone", "weight_decay", "lr_drop", "clip_max_norm", "batch_size",
                 "accumulate", "num_workers"):  # fmt: skip
        direct[name] = getattr(args, name)
    values.update({k: v for k, v in direct.items() if v is not None})
    if values.get("resume") and "out_dir" not in values:  # a resumed run goes on writing in its own folder
        resume = Path(values["resume"])
        values["out_dir"] = str(resume if resume.is_dir() else resume.parent)
    for flag, name in (("panoptic", "panoptic"), ("masks", "masks")):
        if getattr(args, flag):
            values[name] = True
    if args.no_aux_loss:
        values["aux_loss"] = False
    if args.no_augment:
        values["augment"] = False
    if args.no_crop:
        values["crop"] = False
    if args.no_amp:
        values["amp"] = False
    if args.scales:
        values["scales"] = _csv_ints(args.scales)
    if args.image_ids:
        values["image_ids"] = _csv_ints(args.image_ids)
    if args.classes:
        values["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not args.weights and "model" not in values:
        values["model"] = {k: v for k, v in ARCHITECTURES[args.arch].to_dict().items()
                           if k not in ("num_classes", "aux_loss", "masks")}  # fmt: skip
    shape = {name: getattr(args, name) for name in SHAPE_FLAGS if getattr(args, name) is not None}
    if shape:
        if args.weights or values.get("base_weights"):
            raise CommandError(
                "--enc-layers/--dec-layers/--nheads shape a model from scratch; a checkpoint fixes its own"
            )
        if min(shape.values()) < 1:
            raise CommandError("--enc-layers, --dec-layers and --nheads must be at least 1")
        model = {**values.get("model", {}), **shape}
        hidden = model.get("hidden_dim", DetrConfig().hidden_dim)
        if hidden % model.get("nheads", DetrConfig().nheads):
            raise CommandError(f"--nheads must divide the model width ({hidden})")
        values["model"] = model
    if values.get("num_queries") is not None and values.get("model"):  # the model record says what trains
        values["model"] = {**values["model"], "num_queries": values["num_queries"]}
    if not values.get("train_annotations") or not values.get("train_images"):
        raise CommandError("--data and --images are required (or a --config that names them)")
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{args.config}: {exc}" if args.config else str(exc)) from None


class _ProgressPrinter:
    """Human progress on stderr: a bar per epoch and a line per evaluation."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            tqdm.write(
                f"training on {event.train_images} images ({event.val_images} for validation), device "
                f"{event.device}, {event.world_size} process(es), epochs {event.start_epoch + 1}..{event.epochs}",
                file=sys.stderr,
            )
            for note in event.notes:
                tqdm.write(f"note: {note}", file=sys.stderr)
        elif isinstance(event, Step):
            if self.bar is None or self.bar.desc != f"epoch {event.epoch}":
                self._close()
                self.bar = tqdm(
                    total=event.steps, initial=event.step - 1, desc=f"epoch {event.epoch}", unit="step"
                )
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_s:.1f}")
        elif isinstance(event, Evaluated):
            self._close()
            shown = ", ".join(
                f"{k} {v:.3f}" for k, v in event.metrics.items() if k in ("AP", "AP50", "PQ", "segm_AP")
            )
            tqdm.write(f"epoch {event.epoch}: {shown}", file=sys.stderr)
        elif isinstance(event, (EpochEnd, Finished, Failed)):
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_command(args: argparse.Namespace) -> int:
    from ..train.trainer import fit

    config = config_from_args(args)
    if args.events == "jsonl":

        def sink(event: Event) -> None:
            sys.stdout.write(event.to_json() + "\n")
            sys.stdout.flush()

    else:
        sink = _ProgressPrinter()
    stop = threading.Event()  # SIGINT / SIGTERM: finish the current step, save, and stop

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])
    previous = {s: signal.signal(s, request_stop) for s in signals}
    try:
        final = fit(config, sink, cancel=stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if isinstance(final, Failed):
        if args.events != "jsonl":
            print(f"training failed: {final.message}", file=sys.stderr)
        return 1
    if args.events != "jsonl" and isinstance(final, Finished):
        note = " (cancelled)" if final.cancelled else ""
        print(f"done{note}: best model {final.best_path}; resume from {final.last_path}", file=sys.stderr)
    return 0
