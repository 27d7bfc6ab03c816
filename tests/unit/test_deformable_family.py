"""The Deformable DETR family through the seam: found by name, configs checked, fine-tuning to another class
count (every class head afresh with the focal prior, queries kept), the memory estimate and a predictor that
splits a batch past its budget, and training's clear refusal until the focal criterion exists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.infer.predictor import Predictor
from detr_studio.model.checkpoint import load_checkpoint
from detr_studio.model.config_fields import ConfigError
from detr_studio.model.deformable_detr.config import PRESETS, DeformableDetrConfig, tiny_deformable_config
from detr_studio.model.deformable_detr.family import DEFORMABLE_DETR_FAMILY as FAMILY
from detr_studio.model.loading import build_for_training
from detr_studio.model.registry import family_of
from detr_studio.model.state_dicts import CheckpointError
from detr_studio.train.config import TrainConfig
from detr_studio.train.family_training import criterion_for
from tests.deformable_helpers import random_model, write_ours

PRIOR = -math.log((1 - 0.01) / 0.01)


def test_the_registry_knows_the_family_and_its_config_is_checked():
    assert family_of("deformable_detr") is FAMILY
    assert (
        DeformableDetrConfig.family_name == "deformable_detr" and FAMILY.config_type is DeformableDetrConfig
    )
    with pytest.raises(ConfigError, match="nheads must be an integer from 1 to 64, got 0"):
        DeformableDetrConfig(nheads=0)
    with pytest.raises(ConfigError, match=r"num_queries must be an integer from 1 to 5000, got 1000000000"):
        DeformableDetrConfig.from_dict({"num_queries": 10**9})
    with pytest.raises(
        ConfigError, match="m.json: config.enc_layers must be an integer from 1 to 48, got '3'"
    ):
        DeformableDetrConfig.from_dict({"enc_layers": "3"}, "m.json", "config.")
    with pytest.raises(ConfigError, match="num_feature_levels must be 1 .* got 2"):
        DeformableDetrConfig(num_feature_levels=2)
    with pytest.raises(ConfigError, match="has unknown fields: masks"):
        DeformableDetrConfig.from_dict({"masks": True})
    assert FAMILY.inference_config(PRESETS["two-stage"]) == PRESETS["two-stage"].replace(
        aux_loss=False, dropout=0.0
    )


@pytest.mark.parametrize(
    "flags", [{}, {"with_box_refine": True}, {"with_box_refine": True, "two_stage": True}]
)
def test_fine_tuning_to_another_class_count_renews_every_class_head_and_keeps_the_queries(tmp_path, flags):
    config = tiny_deformable_config(**flags)
    base = random_model(config)
    checkpoint = load_checkpoint(write_ours(base, config, tmp_path / "base.safetensors"))
    run_config = FAMILY.training_config(
        checkpoint.config, num_classes=3, aux_loss=True, masks=False, dropout=None
    )
    model, fresh = build_for_training(checkpoint, run_config)
    heads = config.dec_layers + (1 if config.two_stage else 0)
    assert len(model.class_embed) == heads
    for i, head in enumerate(model.class_embed):
        assert head.out_features == 3
        assert torch.allclose(head.bias, torch.full((3,), PRIOR))
        assert f"class_embed.{i}.weight" in fresh and f"class_embed.{i}.bias" in fresh
    if config.two_stage:
        assert (
            model.transformer.decoder.class_embed is model.class_embed
        )  # the encoder's head is the last one
        assert "transformer.decoder.class_embed.2.weight" in fresh
    else:
        assert torch.equal(model.query_embed.weight, base.query_embed.weight)
    for name, tensor in base.state_dict().items():
        if "class_embed" not in name:
            assert torch.equal(model.state_dict()[name], tensor), name


def test_fine_tuning_with_the_same_classes_loads_everything(tmp_path):
    config = tiny_deformable_config(with_box_refine=True)
    base = random_model(config)
    checkpoint = load_checkpoint(write_ours(base, config, tmp_path / "base.safetensors"))
    model, fresh = build_for_training(checkpoint, config)
    assert fresh == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base.state_dict().items())


def test_fine_tuning_names_weights_that_do_not_fit(tmp_path):
    config = tiny_deformable_config()
    checkpoint = load_checkpoint(write_ours(random_model(config), config, tmp_path / "base.safetensors"))
    with pytest.raises(
        CheckpointError, match="cannot initialise this model: .*shape mismatches: query_embed"
    ):
        build_for_training(checkpoint, config.replace(num_queries=20))


def test_training_says_plainly_that_the_focal_loss_is_not_there_yet():
    config = tiny_deformable_config()
    with pytest.raises(ValueError, match="cannot train Deformable DETR models yet"):
        criterion_for(FAMILY, config, TrainConfig(train_annotations="a.json", train_images="images"))


def test_the_memory_estimate_grows_with_the_image_and_the_batch():
    config = PRESETS["multi-scale"]
    small = FAMILY.estimate_peak_bytes(config, 1, 400, 533).total
    large = FAMILY.estimate_peak_bytes(config, 1, 800, 1066).total
    assert 3 < large / small < 4.5  # about the area (one chunk of samples and the decoder do not grow)
    assert FAMILY.estimate_peak_bytes(config, 2, 800, 1066).total == 2 * large
    assert FAMILY.estimate_peak_bytes(config, 1, 800, 1066, attention=True).total > large


def test_past_its_budget_the_predictor_runs_fewer_images_at_a_time_with_the_same_results():
    torch.manual_seed(0)
    config = tiny_deformable_config()
    model = random_model(config)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 112), torch.rand(3, 96, 96)]
    whole = Predictor(model, config, device="cpu", size=96, max_size=128)
    one = FAMILY.estimate_peak_bytes(config, 1, 96, 128).total
    split = Predictor(model, config, device="cpu", size=96, max_size=128, memory_budget=int(1.5 * one))
    pictures = [Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for img in images]
    whole.predict(pictures)
    assert whole.last_plan.batches == ((0, 1, 2),)
    # each image alone: a padded batch changes the outputs a little (the projections' GroupNorm sees the padding,
    # as in the official model), so the split run is compared with single-image runs
    alone = [whole.predict([picture])[0] for picture in pictures]
    b = split.predict(pictures)
    assert split.last_plan.batches == ((0,), (1,), (2,)) and "1 image at a time" in split.last_plan.note
    for x, y in zip(alone, b):
        assert np.allclose(x.scores, y.scores, atol=1e-5) and np.array_equal(x.labels, y.labels)


def test_bf16_autocast_keeps_the_sampling_in_fp32_and_roughly_agrees():
    config = tiny_deformable_config(with_box_refine=True)
    model = random_model(config)
    picture = Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8))
    exact = Predictor(model, config, device="cpu", size=96, max_size=128).predict([picture])[0]
    fast = Predictor(model, config, device="cpu", precision="bf16", size=96, max_size=128).predict([picture])[
        0
    ]
    assert fast.scores.dtype == np.float32
    assert np.abs(np.sort(exact.scores) - np.sort(fast.scores)).max() < 0.1
