"""Hugging Face transformers Deformable DETR -> our network, checked against transformers itself.

Small random ``DeformableDetrForObjectDetection`` models (pure-PyTorch attention, a timm ResNet-50 as
in the ``SenseTime/deformable-detr*`` hub files, no pretrained download) for each released
configuration; their weights are converted into our layout and both networks run on the same padded
batch of two images of different sizes. Three key layouts are read: transformers 5.x names as the live
model has them, 5.x files as ``save_pretrained`` writes them (tied heads left out), and the 4.x names,
built here from the documented renames.
"""

from __future__ import annotations

import re

import pytest
import torch
import transformers
from safetensors.torch import load_file

from detr_studio.model.config_fields import ConfigError
from detr_studio.model.deformable_detr.detector import build_deformable_detr
from detr_studio.model.deformable_detr.hf import (
    config_from_hf,
    convert_hf_state_dict,
    is_hf_deformable_state_dict,
)
from detr_studio.model.family import Hints
from detr_studio.model.nested import NestedTensor
from tests.deformable_helpers import to_hf_state_dict

TOLERANCE = 1e-4
CONFIGS = {
    "single-scale": {"num_feature_levels": 1},
    "single-scale-dc5": {"num_feature_levels": 1, "dilation": True},
    "multi-scale": {},
    "box-refine": {"with_box_refine": True},
    "two-stage": {"with_box_refine": True, "two_stage": True},
}


def v4_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5.x keys -> 4.x keys, from the documented renames (conversion_mapping.py, "deformable_detr"):
    backbone.conv_encoder -> backbone, self_attn.out_proj -> self_attn.o_proj, layers.N.fc1 -> layers.N.mlp.fc1."""
    out = {}
    for key, value in sd.items():
        key = key.replace("model.backbone.model.", "model.backbone.conv_encoder.model.")
        key = key.replace("self_attn.o_proj", "self_attn.out_proj")
        key = re.sub(r"layers\.(\d+)\.mlp\.fc([12])", r"layers.\1.fc\2", key)
        out[key] = value
    return out


def _randomise(model: torch.nn.Module) -> None:
    """Random values everywhere: transformers zeroes the offset and attention-weight layers and most
    biases, and with those a weight mapped to the wrong place would not change the outputs."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5)
            else:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)


def _hf_model(**flags) -> tuple[torch.nn.Module, dict]:
    config = transformers.DeformableDetrConfig(
        use_timm_backbone=True,
        backbone="resnet50",
        use_pretrained_backbone=False,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=12,
        two_stage_num_proposals=12,
        num_labels=7,
        encoder_n_points=3,
        decoder_n_points=2,
        disable_custom_kernels=True,
        **flags,
    )
    torch.manual_seed(0)
    model = transformers.DeformableDetrForObjectDetection(config).eval()
    _randomise(model)
    config_json = config.to_dict()
    config_json["architectures"] = ["DeformableDetrForObjectDetection"]
    return model, config_json


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two images, 96x128 and 72x100 (padded to 96x128): [2, 3, H, W] and padding mask [2, H, W]."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 96, 128, generator=generator)
    mask = torch.zeros(2, 96, 128, dtype=torch.bool)
    mask[1, 72:, :] = True
    mask[1, :, 100:] = True
    images[1][:, mask[1]] = 0
    return images, mask


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def hf_case(request):
    model, config_json = _hf_model(**CONFIGS[request.param])
    images, mask = _batch()
    with torch.no_grad():
        out = model(pixel_values=images, pixel_mask=(~mask).long())
    return request.param, model, config_json, (images, mask), out


def _ours(sd: dict, config_json: dict | None):
    official, config = convert_hf_state_dict(sd, config_json)
    model = build_deformable_detr(config).eval()
    model.load_state_dict(official, strict=True)
    return model, config


def _assert_same(model, batch, reference) -> None:
    images, mask = batch
    with torch.no_grad():
        out = model(NestedTensor(images, mask))
    assert (out["pred_logits"] - reference.logits).abs().max().item() <= TOLERANCE
    assert (out["pred_boxes"] - reference.pred_boxes).abs().max().item() <= TOLERANCE


def test_v5_state_dict_gives_the_same_logits_and_boxes(hf_case):
    name, model, config_json, batch, reference = hf_case
    ours, config = _ours(model.state_dict(), config_json)
    assert config.dilation == CONFIGS[name].get("dilation", False)
    assert config.num_queries == 12 and config.enc_n_points == 3 and config.dec_n_points == 2
    _assert_same(ours, batch, reference)


def test_v4_key_layout_gives_the_same_logits_and_boxes(hf_case):
    _, model, config_json, batch, reference = hf_case
    sd = v4_names(model.state_dict())
    assert "model.backbone.conv_encoder.model.conv1.weight" in sd
    assert is_hf_deformable_state_dict(sd)
    ours, _ = _ours(sd, config_json)
    _assert_same(ours, batch, reference)


def test_save_pretrained_file_without_tied_heads_converts(hf_case, tmp_path):
    """transformers 5.x writes each tied head once; the missing copies are filled from what they are tied to."""
    _name, model, config_json, batch, reference = hf_case
    model.save_pretrained(tmp_path)
    sd = load_file(str(tmp_path / "model.safetensors"))
    assert len(sd) < len(model.state_dict())
    ours, _ = _ours(sd, config_json)
    _assert_same(ours, batch, reference)


def test_conversion_without_config_reads_the_shapes(hf_case):
    """Without config.json: layers, levels, points (given the head count), refinement and two-stage come
    from the weights; DC5 and the two-stage proposal count cannot."""
    name, model, _config_json, batch, reference = hf_case
    two_stage = CONFIGS[name].get("two_stage", False)
    args = {"nheads": 4, "two_stage": two_stage, "num_queries": 12}
    official, config = convert_hf_state_dict(model.state_dict(), hints=Hints(training_args=args))
    assert (config.enc_n_points, config.dec_n_points, config.num_queries) == (3, 2, 12)
    assert config.with_box_refine == CONFIGS[name].get("with_box_refine", False)
    assert config.two_stage == CONFIGS[name].get("two_stage", False)
    assert config.num_feature_levels == CONFIGS[name].get("num_feature_levels", 4)
    ours = build_deformable_detr(config.replace(dilation=CONFIGS[name].get("dilation", False))).eval()
    ours.load_state_dict(official, strict=True)
    _assert_same(ours, batch, reference)


def test_round_trip_to_hf_names_loads_into_transformers(hf_case):
    model, config_json = hf_case[1], hf_case[2]
    official, _config = convert_hf_state_dict(model.state_dict(), config_json)
    for legacy in (False, True):
        back = to_hf_state_dict(official, legacy_names=legacy)
        if legacy:
            assert "model.decoder.layers.0.fc1.weight" in back
        again, _ = convert_hf_state_dict(back, config_json)
        assert set(again) == set(official)
        assert all(torch.equal(again[k], official[k]) for k in official)
    missing, unexpected = model.load_state_dict(to_hf_state_dict(official), strict=False)
    assert not missing and not unexpected


def test_config_json_is_read_and_checked():
    _, config_json = _hf_model(with_box_refine=True)
    config = config_from_hf(config_json)
    assert (config.hidden_dim, config.nheads, config.num_classes, config.with_box_refine) == (64, 4, 7, True)
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf({**config_json, "model_type": "detr"})
    with pytest.raises(ValueError, match="activation_function"):
        config_from_hf({**config_json, "activation_function": "gelu"})
    with pytest.raises(ConfigError, match="encoder_n_points must be an integer from 1 to 64, got 0"):
        config_from_hf({**config_json, "encoder_n_points": 0})
    with pytest.raises(ConfigError, match="d_model must be an integer from 32 to 4096, got 'abc'"):
        config_from_hf({**config_json, "d_model": "abc"})
    with pytest.raises(ConfigError, match="two_stage needs with_box_refine"):
        config_from_hf({**config_json, "two_stage": True, "with_box_refine": False})


def test_keys_of_another_model_are_named():
    model, config_json = _hf_model()
    sd = dict(model.state_dict())
    sd["model.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="model.extra_head.weight"):
        convert_hf_state_dict(sd, config_json)
    with pytest.raises(ValueError, match="does not match the weights"):
        convert_hf_state_dict(model.state_dict(), {**config_json, "num_labels": 91, "id2label": None})
