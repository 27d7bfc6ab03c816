"""End-to-end training: overfitting, resume, failure handling, cancel and fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch

from detr_studio.model.checkpoint import load_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.train.config import TrainConfig
from detr_studio.train.events import CheckpointSaved, Evaluated, Failed, Finished, Started, Step, from_json
from detr_studio.train.trainer import fit
from tests.model_helpers import save_official

TINY = {k: v for k, v in tiny_config().to_dict().items() if k not in ("num_classes", "aux_loss", "masks")}


def config(two_images, out, **changes) -> TrainConfig:
    ann, images = two_images
    values = dict(
        train_annotations=str(ann), train_images=str(images), val_annotations=str(ann), val_images=str(images),
        model=dict(TINY), epochs=2, lr=1e-3, lr_backbone=1e-4, batch_size=2, augment=False, scales=[128],
        max_size=128, num_workers=0, out_dir=str(out), lr_drop=1000, seed=7,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def collect(cfg, cancel=None):
    events = []
    final = fit(cfg, events.append, cancel)
    return final, events


@pytest.mark.slow
def test_a_tiny_model_overfits_two_images_to_ap50_of_one(two_images, tmp_path):
    cfg = config(two_images, tmp_path / "run", epochs=90, eval_every=30)
    final, events = collect(cfg)
    assert isinstance(final, Finished), final
    evaluations = [e for e in events if isinstance(e, Evaluated)]
    assert [e.epoch for e in evaluations] == [30, 60, 90]
    assert evaluations[-1].metrics["AP50"] == 1.0
    assert set(evaluations[-1].per_class_ap) == {"disc", "box"}
    best = load_checkpoint(final.best_path)
    assert best.class_names == {1: "disc", 2: "box"}
    assert best.provenance["metrics"]["AP50"] == 1.0


def step_losses(events) -> list[float]:
    return [e.loss for e in events if isinstance(e, Step)]


def test_resume_after_a_stop_gives_the_same_losses(two_images, tmp_path):
    whole, events = collect(config(two_images, tmp_path / "whole", epochs=3, batch_size=1))
    assert isinstance(whole, Finished) and not whole.cancelled
    expected = step_losses(events)
    assert len(expected) == 6

    seen = []

    def cancel_after_three() -> bool:
        return len(seen) >= 3

    cfg = config(two_images, tmp_path / "split", epochs=3, batch_size=1)
    first = fit(cfg, lambda e: seen.append(e) if isinstance(e, Step) else None, cancel_after_three)
    assert isinstance(first, Finished) and first.cancelled
    state = torch.load(tmp_path / "split" / "last.pth", weights_only=True)
    assert state["position"]["epoch"] == 1 and state["position"]["batch"] == 1

    resumed, later = collect(config(two_images, tmp_path / "split", epochs=3, batch_size=1,
                                    resume=str(tmp_path / "split")))  # fmt: skip
    assert isinstance(resumed, Finished) and not resumed.cancelled
    started = next(e for e in later if isinstance(e, Started))
    assert started.start_epoch == 1
    got = [e.loss for e in seen] + step_losses(later)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_a_non_finite_loss_stops_with_failed_and_keeps_the_last_checkpoint(two_images, tmp_path, monkeypatch):
    from detr_studio.train import trainer

    real = trainer.total_loss
    calls = {"n": 0}

    def poisoned(loss_dict, weight_dict):
        calls["n"] += 1
        value = real(loss_dict, weight_dict)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(trainer, "total_loss", poisoned)
    final, events = collect(
        config(two_images, tmp_path / "nan", epochs=4, batch_size=1, val_annotations=None)
    )
    assert isinstance(final, Failed)
    assert "the loss became nan at epoch 2, step 1" in final.message
    assert final.last_checkpoint.endswith("last.pth")
    state = torch.load(final.last_checkpoint, weights_only=True)
    assert state["position"]["epoch"] == 1
    assert any(isinstance(e, CheckpointSaved) for e in events)
    assert events[-1] == final


def test_events_file_holds_the_whole_history(two_images, tmp_path):
    final, events = collect(config(two_images, tmp_path / "log", epochs=1))
    lines = (tmp_path / "log" / "events.jsonl").read_text().splitlines()
    parsed = [from_json(line) for line in lines]
    assert parsed == events
    assert isinstance(parsed[0], Started) and parsed[-1] == final
    assert json.loads((tmp_path / "log" / "config.json").read_text())["epochs"] == 1


def test_bad_data_fails_with_a_clear_message(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [}')
    final = fit(
        TrainConfig(train_annotations=str(broken), train_images=str(tmp_path), out_dir=str(tmp_path / "o"))
    )
    assert isinstance(final, Failed)
    assert "broken.json" in final.message


def test_finetuning_resets_the_head_and_keeps_the_queries(two_images, tmp_path):
    base_config = tiny_config(num_classes=91)
    base = build_detr(base_config)
    weights = save_official(base, tmp_path / "base.pth")
    cfg = config(two_images, tmp_path / "ft", epochs=1, base_weights=str(weights), max_steps=1,
                 val_annotations=None, lr=1e-12, lr_backbone=0.0)  # fmt: skip
    final, _ = collect(cfg)
    assert isinstance(final, Finished)
    tuned = load_checkpoint(final.best_path)
    assert tuned.config.num_classes == 3
    assert tuned.state_dict["class_embed.weight"].shape == (4, 32)
    assert torch.allclose(tuned.state_dict["query_embed.weight"], base.query_embed.weight, atol=1e-6)
    # lr_backbone 0 freezes the backbone.
    key = "backbone.0.body.layer4.0.conv1.weight"
    assert torch.equal(tuned.state_dict[key], base.state_dict()[key])


@pytest.mark.slow
def test_finetuning_boxes_from_a_segmentation_model_keeps_its_mask_head(two_images, tmp_path):
    base = build_detr(tiny_config(masks=True, num_classes=91))
    weights = save_official(base, tmp_path / "segm.pth")
    cfg = config(two_images, tmp_path / "ft", epochs=1, base_weights=str(weights), max_steps=1,
                 val_annotations=None)  # fmt: skip
    final, _ = collect(cfg)
    assert isinstance(final, Finished)
    tuned = load_checkpoint(final.best_path)
    assert tuned.config.masks and tuned.config.num_classes == 3
    assert (
        "mask_head" in tuned.provenance["not_trained"] and "carried over" in tuned.provenance["not_trained"]
    )
    mask_keys = [k for k in tuned.state_dict if k.startswith(("bbox_attention.", "mask_head."))]
    assert mask_keys and all(torch.equal(tuned.state_dict[k], base.state_dict()[k]) for k in mask_keys)
    key = "detr.query_embed.weight"  # the detector did train
    assert not torch.equal(tuned.state_dict[key], base.state_dict()[key])
    assert tuned.state_dict["detr.class_embed.weight"].shape[0] == 4


def test_a_weight_average_leaves_the_losses_alone_is_what_is_saved_and_survives_a_resume(
    two_images, tmp_path
):
    _, plain = collect(config(two_images, tmp_path / "plain", epochs=3, batch_size=1))
    whole, events = collect(config(two_images, tmp_path / "whole", epochs=3, batch_size=1, ema_decay=0.9,
                                   eval_every=3))  # fmt: skip
    assert step_losses(events) == pytest.approx(step_losses(plain), rel=1e-6)  # training itself is unchanged
    state = torch.load(tmp_path / "whole" / "last.pth", weights_only=True)
    assert state["ema"]["updates"] == 6
    live, averaged = state["model"], state["ema"]["weights"]
    saved = load_checkpoint(whole.best_path).state_dict
    name = "class_embed.weight"
    assert not torch.equal(live[name], averaged[name])
    assert torch.equal(saved[name], averaged[name])  # the model saved is the average

    seen = []
    cfg = config(two_images, tmp_path / "split", epochs=3, batch_size=1, ema_decay=0.9)
    fit(cfg, lambda e: seen.append(e) if isinstance(e, Step) else None, lambda: len(seen) >= 3)
    collect(config(two_images, tmp_path / "split", epochs=3, batch_size=1, ema_decay=0.9,
                   resume=str(tmp_path / "split")))  # fmt: skip
    resumed = torch.load(tmp_path / "split" / "last.pth", weights_only=True)["ema"]
    assert resumed["updates"] == 6
    for key, value in averaged.items():
        assert torch.allclose(resumed["weights"][key], value, atol=1e-6), key


def test_the_weight_average_starts_again_at_a_learning_rate_drop(two_images, tmp_path):
    collect(
        config(two_images, tmp_path / "run", epochs=3, batch_size=1, lr_drop=2, ema_decay=0.9, eval_every=3)
    )
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert state["ema"]["updates"] == 2  # the two steps of the third epoch, after the drop
