"""``fit``: the training loop, headless, for a model of any family. The window, the command line and
``torchrun`` all call it.

It reports progress only through the typed events of ``events.py``, checks a cancel flag every step,
and never lets one bad step destroy the run: a non-finite loss, a full disk or an unwritable folder stops
with a ``Failed`` event and the last good checkpoint stays on disk. Set-up (datasets, model) is in
``setup.py``, the optimiser in ``optim.py``, the resumable state in ``run_state.py``, the family's loss in
``family_training.py``.

Files in ``out_dir``, all written atomically and with the user's umask: ``last.pth`` (everything needed to
resume; also readable as a model checkpoint), ``best.safetensors`` + ``best.json`` (the best model so far,
for prediction), ``events.jsonl`` (the run's history) and ``config.json`` (the options the run really uses).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from ..common.files import FileWriteError, atomic_write
from ..data.dataset import collate_fn
from ..data.images import ImageReadError
from ..infer.device import pick_device
from ..model.checkpoint import InputSize, save_checkpoint
from . import distributed
from .config import TrainConfig
from .criterion import total_loss
from .ema import WeightAverage
from .evaluate import evaluate_coco, flatten_metrics
from .events import CheckpointSaved, EpochEnd, Evaluated, Event, Failed, Finished, Started, Step
from .family_training import criterion_for
from .matcher import NonFinitePredictionError
from .optim import apply_schedule, build_optimizer, build_scheduler, param_groups
from .run_state import LAST, Position, ResumeError, read_training_state, rng_state, set_rng_state
from .setup import TrainingError, build_datasets, build_model, load_base

EventSink = Callable[[Event], None]
CancelFlag = threading.Event | Callable[[], bool] | None


def _cancelled(flag: CancelFlag) -> bool:
    if flag is None:
        return False
    if isinstance(flag, threading.Event):
        return flag.is_set()
    return bool(flag())


# ---------------------------------------------------------------------------------------- set-up


def init_distributed() -> tuple[int, int, int]:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set); -> (rank, world, local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return rank, world, local


# ---------------------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, cfg: TrainConfig, on_event: EventSink, cancel: CancelFlag):
        cfg.validate()
        self.cfg = cfg
        self.cancel = cancel
        self.rank, self.world, self.local_rank = init_distributed()
        self.main = self.rank == 0
        self._sink = on_event
        self.out_dir = Path(cfg.out_dir)
        if cfg.device in ("auto", "", None) and torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = pick_device(cfg.device)
        self.amp_dtype = None
        if self.device.type == "cuda" and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._log = None

    # -------------------------------------------------------------------------------- helpers

    def emit(self, event: Event) -> None:
        if not self.main:
            return
        if self._log is not None:
            self._log.write(event.to_json() + "\n")
            self._log.flush()
        self._sink(event)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    @property
    def bare_model(self) -> nn.Module:
        return (
            self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model
        )

    @property
    def eval_model(self) -> nn.Module:
        """What the run evaluates and saves: the weight average when the run keeps one."""
        return self.average.model if self.average is not None else self.bare_model

    # -------------------------------------------------------------------------------- set-up

    def setup(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed + self.rank)
        random.seed(cfg.seed + self.rank)
        self.train_set, self.val_set = build_datasets(cfg)
        num_classes = self.train_set.num_classes
        if self.val_set is not None:
            num_classes = max(num_classes, self.val_set.num_classes)
        built = build_model(cfg, num_classes, load_base(cfg))
        model, self.family, self.model_config, self.branch = (
            built.model,
            built.family,
            built.config,
            built.branch,
        )
        if cfg.query_groups > 1:
            self.family.set_query_groups(model, cfg.query_groups)
        self.class_names = (
            {int(c["id"]): str(c["name"]) for c in self.train_set.categories} or built.class_names or {}
        )
        model.to(self.device)
        self.average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.criterion, self.weight_dict = criterion_for(self.family, self.model_config, cfg)
        self.criterion.to(self.device)
        self.optimizer = build_optimizer(model, self.family, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.position = Position()
        self.notes: list[str] = []
        if self.world > 1:
            ids = [self.local_rank] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        if cfg.resume:
            self._resume(Path(cfg.resume))
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True, seed=cfg.seed
        )
        self.steps_per_epoch = max(1, len(self.sampler) // cfg.batch_size)
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out_dir / "config.json", cfg.to_json().encode("utf-8"))
            self._log = open(self.out_dir / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def _resume(self, path: Path) -> None:
        try:
            state = read_training_state(path)
        except ResumeError as exc:
            raise TrainingError(str(exc)) from None
        try:
            self.bare_model.load_state_dict(state["model"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["lr_scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise TrainingError(
                f"{path}: does not fit this run's model ({str(exc).splitlines()[0]})"
            ) from None
        rates = [g["lr"] for g in param_groups(self.bare_model, self.family, self.cfg)]
        self.notes += apply_schedule(self.optimizer, self.scheduler, rates, self.cfg)
        if self.average is not None:
            if "ema" in state:
                self.average.load_state_dict(state["ema"])
            else:  # the run being resumed kept no average: start one from its weights
                self.average = WeightAverage(self.bare_model, self.cfg.ema_decay)
        self.position = Position(**state["position"])
        set_rng_state(state["rng"])

    # -------------------------------------------------------------------------------- saving

    def save_last(self) -> Path:
        """The full training state; written atomically so a crash or a full disk keeps the previous one."""
        path = self.out_dir / LAST
        if not self.main:
            return path
        state = {
            "model": {k: v.detach().cpu() for k, v in self.bare_model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "epoch": self.position.epoch,
            "position": vars(self.position).copy(),
            "rng": rng_state(),
            **({"ema": self.average.state_dict()} if self.average is not None else {}),
            "family": self.family.name,
            "model_config": self.model_config.to_dict(),
            "class_names": {str(k): v for k, v in self.class_names.items()},
        }
        atomic_write(path, lambda p: torch.save(state, p))
        return path

    def save_model(self, name: str, metrics: dict[str, float]) -> Path:
        cfg = self.cfg
        provenance = {
            "base_weights": cfg.base_weights,
            "epoch": self.position.epoch,
            "metrics": metrics,
            "train_annotations": cfg.train_annotations,
            # the input sizes it was trained and evaluated at, so that predictions use the same
            "scales": cfg.scales,
            "max_size": cfg.max_size,
            "val_size": cfg.val_size,
        }
        size = cfg.val_size or (max(cfg.scales) if cfg.scales else 800)
        weights = self.family.deployable_state_dict(self.eval_model)
        weights, config = self.family.with_branch(weights, self.model_config, self.branch)
        if self.branch:
            parts = ", ".join(sorted({key.split(".")[0] for key in self.branch}))
            provenance["not_trained"] = f"{parts}: carried over unchanged from the base model"
        return save_checkpoint(
            weights, self.out_dir / name, config, self.class_names, provenance, InputSize(size, cfg.max_size)
        )

    # -------------------------------------------------------------------------------- loop

    def run(self) -> Event:
        cfg = self.cfg
        self.emit(
            Started(
                epochs=cfg.epochs,
                start_epoch=self.position.epoch,
                steps_per_epoch=self.steps_per_epoch,
                train_images=len(self.train_set),
                val_images=len(self.val_set) if self.val_set is not None else 0,
                device=str(self.device),
                world_size=self.world,
                out_dir=str(self.out_dir),
                class_names={str(k): v for k, v in self.class_names.items()},
                notes=list(self.notes),
            )
        )
        self._t0 = time.perf_counter()
        self._steps_at_start = self.position.global_step
        best_path = self.out_dir / "best.safetensors"
        last_path = self.out_dir / LAST
        while self.position.epoch < cfg.epochs:
            outcome = self.train_epoch()
            if outcome is not None:
                return outcome
            metrics = self.evaluate()
            self.position.epoch += 1
            self.position.batch = 0
            lr_before = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            if self.average is not None and self.optimizer.param_groups[0]["lr"] != lr_before:
                self.average.restart(self.bare_model)
            # the mask stage keeps the detector frozen, so its box AP cannot tell epochs apart
            key = "segm_AP" if self.cfg.stage == "masks" and "segm_AP" in metrics else "AP"
            score = metrics.get("PQ", metrics.get(key, -self._epoch_loss))
            is_best = score > self.position.best_metric
            if is_best:
                self.position.best_metric = score
                if self.main:
                    best_path = self.save_model("best", metrics)
            self.save_last()
            self.emit(CheckpointSaved(epoch=self.position.epoch, path=str(last_path), best=False))
            if is_best:
                self.emit(CheckpointSaved(epoch=self.position.epoch, path=str(best_path), best=True))
            self.emit(
                EpochEnd(
                    epoch=self.position.epoch,
                    train_loss=self._epoch_loss,
                    train_losses=self._epoch_parts,
                    metrics=metrics,
                    seconds=time.perf_counter() - self._epoch_t0,
                )
            )
            if self._stop_requested():
                break
        if self.main and not best_path.exists():
            best_path = self.save_model("best", {})
        return Finished(
            epochs_done=self.position.epoch,
            best_path=str(best_path),
            last_path=str(last_path),
            best_metric=self.position.best_metric,
            cancelled=_cancelled(self.cancel) and self.position.epoch < cfg.epochs,
        )

    def _stop_early(self) -> Finished:
        """Cancelled (or at ``max_steps``) mid-epoch: save where we are so that ``resume`` continues here."""
        last = self.save_last()
        self.emit(CheckpointSaved(epoch=self.position.epoch, path=str(last), best=False))
        best = self.out_dir / "best.safetensors"
        if self.main and not best.exists():
            best = self.save_model("best", {})
        return Finished(
            epochs_done=self.position.epoch,
            best_path=str(best),
            last_path=str(last),
            best_metric=self.position.best_metric,
            cancelled=_cancelled(self.cancel),
        )

    def _stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if _cancelled(self.cancel) else 0.0])
        if self.world > 1:
            dist.all_reduce(flag)
        at_limit = self.cfg.max_steps is not None and self.position.global_step >= self.cfg.max_steps
        return bool(flag.item() > 0) or at_limit

    def _batches(self) -> list[list[int]]:
        self.sampler.set_epoch(self.position.epoch)
        self.train_set.set_epoch(self.position.epoch)
        indices = list(self.sampler)
        bs = self.cfg.batch_size
        full = [indices[i : i + bs] for i in range(0, len(indices) - bs + 1, bs)]
        return full or [indices]  # fewer images than a batch: one smaller batch, not an epoch of nothing

    def train_epoch(self) -> Event | None:
        """One epoch (or the rest of it after a resume). Returns a final event when the run must stop."""
        cfg = self.cfg
        self.model.train()
        self.criterion.train()
        batches = self._batches()
        start = self.position.batch
        loader = DataLoader(
            self.train_set,
            batch_sampler=batches[start:],
            collate_fn=collate_fn,
            num_workers=cfg.num_workers,
            persistent_workers=False,
        )
        self._epoch_t0 = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        total_sum = 0.0
        rate = 0.0
        self.optimizer.zero_grad(set_to_none=True)
        step_t0 = time.perf_counter()
        for offset, (samples, targets) in enumerate(loader):
            index = start + offset
            samples = samples.to(self.device)
            targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
            with self.autocast():
                outputs = self.model(samples)
            outputs = _float_outputs(outputs)
            try:
                loss_dict = self.criterion(outputs, targets)
                loss = total_loss(loss_dict, self.weight_dict)
            except NonFinitePredictionError:
                loss_dict, loss = {}, torch.tensor(float("nan"), device=self.device)
            if not self._all_finite(loss):
                last = self.out_dir / LAST
                return Failed(
                    message=(
                        f"the loss became {loss.item()} at epoch {self.position.epoch + 1}, step {index + 1}: "
                        "training stopped. Try a lower learning rate, or check the annotations for broken boxes."
                    ),
                    last_checkpoint=str(last) if last.exists() else "",
                )
            self.scaler.scale(loss / cfg.accumulate).backward()
            at_boundary = (index + 1) % cfg.accumulate == 0 or index + 1 == len(batches)
            if at_boundary:
                if cfg.clip_max_norm > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_max_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.position.global_step += 1
                if self.average is not None:
                    self.average.update(self.bare_model)
            self.position.batch = index + 1
            parts = _reduced_parts(loss_dict, self.weight_dict)
            reduced_total = sum(parts[k] * self.weight_dict[k] for k in parts if k in self.weight_dict)
            count += 1
            total_sum += reduced_total
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            now = time.perf_counter()
            images = cfg.batch_size * self.world
            inst = images / max(now - step_t0, 1e-9)
            rate = inst if rate == 0.0 else 0.8 * rate + 0.2 * inst
            step_t0 = now
            self.emit(
                Step(
                    epoch=self.position.epoch + 1,
                    step=index + 1,
                    steps=len(batches),
                    global_step=self.position.global_step,
                    loss=reduced_total,
                    losses={k: v for k, v in parts.items() if not k[-1].isdigit()},
                    lr=self.optimizer.param_groups[0]["lr"],
                    images_per_s=rate,
                    eta_s=self._eta(index + 1, len(batches)),
                )
            )
            if at_boundary and self._stop_requested():
                return self._stop_early()
        self._epoch_loss = total_sum / max(count, 1)
        self._epoch_parts = {k: v / max(count, 1) for k, v in sums.items() if not k[-1].isdigit()}
        return None

    def _all_finite(self, loss: Tensor) -> bool:
        flag = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.device)
        if self.world > 1:
            dist.all_reduce(flag)
        return flag.item() == 0

    def _eta(self, batch: int, batches: int) -> float:
        elapsed = time.perf_counter() - self._t0
        done = (self.position.epoch - 0) * batches + batch
        done_here = max(done - self._steps_at_start, 1)
        remaining = self.cfg.epochs * batches - done
        return max(0.0, elapsed / done_here * remaining)

    def evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        due = (
            self.position.epoch + 1
        ) % self.cfg.eval_every == 0 or self.position.epoch + 1 == self.cfg.epochs
        if self.val_set is None or not due:
            return metrics
        if self.main:
            if self.cfg.panoptic and self.cfg.masks:
                from .panoptic_quality import evaluate_panoptic

                pq = evaluate_panoptic(self.eval_model, self.val_set, self.device, autocast=self.autocast)
                metrics = pq.flat()
                per_class = pq.per_class_pq()
            else:
                result = evaluate_coco(
                    self.eval_model,
                    self.family,
                    self.val_set,
                    self.device,
                    self.cfg.batch_size,
                    self.cfg.masks,
                    self.autocast,
                )
                metrics = flatten_metrics(result)
                per_class = result["bbox"].per_class
            self.emit(Evaluated(epoch=self.position.epoch + 1, metrics=metrics, per_class_ap=per_class))
        self.model.train()
        if self.world > 1:
            metrics = _broadcast(metrics)
        return metrics

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _float_outputs(outputs: dict) -> dict:
    out = {k: (v.float() if isinstance(v, Tensor) else v) for k, v in outputs.items()}
    if "aux_outputs" in outputs:
        out["aux_outputs"] = [{k: v.float() for k, v in aux.items()} for aux in outputs["aux_outputs"]]
    return out


def _reduced_parts(loss_dict: dict[str, Tensor], weight_dict: dict[str, float]) -> dict[str, float]:
    """Loss parts averaged over processes, as plain floats for events."""
    keys = sorted(loss_dict)
    values = torch.stack([loss_dict[k].detach().float().reshape(()) for k in keys])
    values = distributed.all_reduce_mean(values)
    return dict(zip(keys, values.tolist()))


def _broadcast(metrics: dict[str, float]) -> dict[str, float]:
    box = [metrics]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _one_line(exc: BaseException) -> str:
    """The message of ``exc``; for one re-raised from a DataLoader worker (its text is "Caught X in
    DataLoader worker process N." and the worker's traceback), the original message only."""
    text = str(exc)
    if not text.startswith("Caught ") or "\n" not in text:
        return text
    last = text.strip().splitlines()[-1]
    _, found, message = last.partition(f"{type(exc).__name__}: ")
    return message if found else last


def fit(config: TrainConfig, on_event: EventSink | None = None, cancel: CancelFlag = None) -> Event:
    """Train as ``config`` says. Returns the final event (``Finished`` or ``Failed``), which is also emitted.

    Set-up problems (bad data, bad weights) come back as ``Failed`` too, with a clear message.
    """
    sink = on_event or (lambda event: None)
    run = None
    last = Path(config.out_dir) / LAST
    try:
        run = _Run(config, sink, cancel)
        run.setup()
        final = run.run()
    except FileWriteError as exc:  # a full disk or a read-only folder: the previous files are intact
        final = Failed(
            message=f"could not save the run: {exc}", last_checkpoint=str(last) if last.exists() else ""
        )
    except (TrainingError, ValueError, OSError, ImageReadError) as exc:
        final = Failed(message=_one_line(exc))
    except torch.cuda.OutOfMemoryError:
        final = Failed(
            message="the GPU ran out of memory: lower the batch size or the image scales",
            last_checkpoint=str(last) if last.exists() else "",
        )
    if run is None or run.main:
        if run is not None and run._log is not None:
            run._log.write(final.to_json() + "\n")
        sink(final)
    if run is not None:
        run.close()
    return final
