"""The same training code under ``torchrun`` with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detr_studio.model.detr.config import tiny_config
from detr_studio.train.config import TrainConfig
from detr_studio.train.events import Step
from detr_studio.train.trainer import fit

TINY = {k: v for k, v in tiny_config().to_dict().items() if k not in ("num_classes", "aux_loss", "masks")}


def make_config(two_images, out: Path, batch_size: int) -> TrainConfig:
    ann, images = two_images
    return TrainConfig(
        train_annotations=str(ann), train_images=str(images), model=dict(TINY), epochs=1, max_steps=1,
        batch_size=batch_size, augment=False, scales=[128], max_size=128, num_workers=0, out_dir=str(out), seed=3,
    )  # fmt: skip


@pytest.mark.slow
def test_two_processes_agree_with_one(two_images, tmp_path):
    ddp = make_config(two_images, tmp_path / "ddp", batch_size=1)
    (tmp_path / "ddp").mkdir()
    config_file = tmp_path / "ddp" / "train.json"
    config_file.write_text(ddp.to_json())
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
         str(config_file)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    (ddp_loss,) = json.loads((tmp_path / "ddp" / "losses.json").read_text())

    steps = []
    single = make_config(two_images, tmp_path / "single", batch_size=2)
    fit(single, lambda e: steps.append(e) if isinstance(e, Step) else None)
    (step,) = steps
    assert ddp_loss == pytest.approx(step.loss, rel=1e-5)
    # Averaged gradients make the two-process step the same step as the one-process one.
    after = torch.load(tmp_path / "single" / "last.pth", weights_only=True)["model"]
    worst = max((after[k].float() - rank0[k].float()).abs().max().item() for k in rank0)
    assert worst < 1e-5
