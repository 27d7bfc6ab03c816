"""Run by the multi-process test under torchrun: one training step, then each rank saves its weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from detr_studio.train.config import TrainConfig
from detr_studio.train.events import Step
from detr_studio.train.trainer import _Run


def main(config_path: str) -> None:
    cfg = TrainConfig.load(config_path)
    steps: list[float] = []
    run = _Run(cfg, lambda e: steps.append(e.loss) if isinstance(e, Step) else None, None)
    run.setup()
    run.run()
    out = Path(cfg.out_dir)
    torch.save(run.bare_model.state_dict(), out / f"rank{run.rank}.pt")
    if run.rank == 0:
        (out / "losses.json").write_text(json.dumps(steps))
    run.close()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
