"""Segmentation training on the synthetic shapes: the mask head on instances, and the two-stage panoptic
recipe (boxes on the panoptic data first, then the mask head alone on the frozen detector)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from detr_studio.cli import main
from detr_studio.data.synthetic import SyntheticLayout, generate
from detr_studio.model.detr.config import tiny_config
from detr_studio.train import trainer
from detr_studio.train.config import TrainConfig
from detr_studio.train.evaluate import STAT_NAMES
from detr_studio.train.events import Evaluated, Event, Finished, Step
from detr_studio.train.panoptic_quality import METRIC_KEYS

SIZE = 64
TRAINER_SETS = ("num_classes", "aux_loss", "masks")  # chosen by the trainer, not by the model options
MASK_MODEL = {k: v for k, v in tiny_config(masks=True).to_dict().items() if k not in TRAINER_SETS}
MASK_BRANCH = ("bbox_attention.", "mask_head.")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> SyntheticLayout:
    return generate(tmp_path_factory.mktemp("shapes"), num_train=2, num_val=1, size=SIZE, seed=5)


def config(layout: SyntheticLayout, out: Path, panoptic: bool = False, **changes) -> TrainConfig:
    kind = layout.panoptic_json if panoptic else layout.instances_json
    values = dict(
        train_annotations=str(kind("train")), train_images=str(layout.images_dir("train")),
        val_annotations=str(kind("val")), val_images=str(layout.images_dir("val")), panoptic=panoptic,
        model=dict(MASK_MODEL), epochs=1, lr=1e-3, lr_backbone=0.0, batch_size=2, augment=False, scales=[SIZE],
        max_size=SIZE, num_workers=0, device="cpu", out_dir=str(out), lr_drop=1000, seed=11,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def train(cfg: TrainConfig) -> tuple[Event, list[Event]]:
    events: list[Event] = []
    final = trainer.fit(cfg, events.append)
    assert isinstance(final, Finished), final
    return final, events


def evaluations(events: list[Event]) -> list[Evaluated]:
    return [e for e in events if isinstance(e, Evaluated)]


# ---------------------------------------------------------------- instance masks


def test_mask_training_reports_mask_losses_and_mask_ap(shapes, tmp_path):
    _, events = train(config(shapes, tmp_path / "segm", masks=True))
    steps = [e for e in events if isinstance(e, Step)]
    assert steps
    for step in steps:
        assert {"loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice"} <= set(step.losses)
        assert all(torch.isfinite(torch.tensor(v)) for v in step.losses.values())
    (evaluated,) = evaluations(events)
    assert set(evaluated.metrics) == set(STAT_NAMES) | {f"segm_{name}" for name in STAT_NAMES}


# ---------------------------------------------------------------- two-stage panoptic


@pytest.fixture(scope="module")
def box_stage(shapes, tmp_path_factory) -> tuple[Finished, list[Event]]:
    """Stage 1: boxes only, on the panoptic annotations (so that stuff gets boxes too)."""
    return train(config(shapes, tmp_path_factory.mktemp("stage1"), panoptic=True, masks=False))


@pytest.fixture(scope="module")
def mask_stage(shapes, box_stage, tmp_path_factory) -> tuple[Finished, list[Event], dict[str, torch.Tensor]]:
    """Stage 2: the mask head on the frozen stage-1 detector. Also returns the model's state before training."""
    initial: dict[str, torch.Tensor] = {}

    def recording_build_model(cfg, num_classes, base=None):
        built = real_build_model(cfg, num_classes, base)
        initial.update({k: v.detach().clone() for k, v in built.model.state_dict().items()})
        return built

    real_build_model = trainer.build_model
    cfg = config(shapes, tmp_path_factory.mktemp("stage2"), panoptic=True, masks=True, stage="masks",
                 base_weights=box_stage[0].best_path, model={})  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "build_model", recording_build_model)
        final, events = train(cfg)
    return final, events, initial


def test_box_stage_on_panoptic_data_is_evaluated_with_box_ap(box_stage):
    final, events = box_stage
    (evaluated,) = evaluations(events)
    assert set(evaluated.metrics) == set(STAT_NAMES)
    assert {"circle", "sky", "water"} <= set(evaluated.per_class_ap)
    assert Path(final.best_path).exists()


def test_mask_stage_keeps_every_detection_weight_and_trains_the_mask_head(box_stage, mask_stage):
    stage1 = load_file(box_stage[0].best_path)
    stage2 = load_file(mask_stage[0].best_path)
    initial = mask_stage[2]
    detection = sorted(k for k in stage2 if k.startswith("detr."))
    assert sorted(f"detr.{k}" for k in stage1) == detection
    for key in detection:
        assert torch.equal(stage2[key], stage1[key.removeprefix("detr.")]), key
    mask_branch = [k for k in stage2 if k.startswith(MASK_BRANCH)]
    assert mask_branch and len(mask_branch) + len(detection) == len(stage2)
    changed = [k for k in mask_branch if not torch.equal(stage2[k], initial[k])]
    assert changed == mask_branch


def test_mask_stage_reports_panoptic_quality(mask_stage):
    final, events, _ = mask_stage
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and all({"loss_mask", "loss_dice"} <= set(s.losses) for s in steps)
    (evaluated,) = evaluations(events)
    assert set(METRIC_KEYS) <= set(evaluated.metrics)
    assert all(0.0 <= evaluated.metrics[k] <= 1.0 for k in METRIC_KEYS)
    assert final.best_metric == evaluated.metrics["PQ"]


def test_eval_command_reports_pq_sq_rq_of_the_panoptic_model(shapes, mask_stage, tmp_path, capsys):
    report = tmp_path / "pq.json"
    code = main(
        ["eval", "--weights", mask_stage[0].best_path, "--data", str(shapes.panoptic_json("val")),
         "--images", str(shapes.images_dir("val")), "--panoptic", "--size", str(SIZE), "--max-size", str(SIZE),
         "--device", "cpu", "-o", str(report)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "panoptic:"
    assert [line.split(":")[0] for line in lines[1:10]] == list(METRIC_KEYS)
    assert report.exists()


def test_eval_command_refuses_pq_for_a_box_only_model(shapes, box_stage, capsys):
    code = main(
        ["eval", "--weights", box_stage[0].best_path, "--data", str(shapes.panoptic_json("val")),
         "--images", str(shapes.images_dir("val")), "--panoptic", "--device", "cpu"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        f"detr-studio eval: error: {box_stage[0].best_path}: mask AP and PQ need a model with a mask head"
    ]
