"""Backbone options for training small models from scratch: narrower ResNet-18/34, stride 16 without
dilation, and trainable batch norm that is saved as the reference's frozen batch norm."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detr_studio.model.backbone import Backbone, FrozenBatchNorm2d
from detr_studio.model.checkpoint import load_checkpoint, save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig, tiny_config
from detr_studio.model.detr.recognise import recognise_official
from detr_studio.model.family import Hints
from detr_studio.model.nested import NestedTensor


def _images(n: int = 2, size: int = 64) -> NestedTensor:
    torch.manual_seed(1)
    return NestedTensor(torch.randn(n, 3, size, size), torch.zeros(n, size, size, dtype=torch.bool))


def test_standard_width_keeps_torchvision_parameter_names() -> None:
    ours = set(Backbone("resnet18", True, False, False).body.state_dict())
    reference = {
        k
        for k in torchvision.models.resnet18().state_dict()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    assert ours == reference


def test_width_scales_every_stage() -> None:
    backbone = Backbone("resnet34", True, True, False, width=16)
    assert backbone.layer_channels == [16, 32, 64, 128]
    assert backbone.num_channels == 128
    features = backbone(_images())
    assert [f.tensors.shape[1] for f in features.values()] == [16, 32, 64, 128]


def test_small_resnet_with_dilation_flag_has_stride_16() -> None:
    backbone = Backbone("resnet18", True, False, True, width=16)
    assert backbone.stride == 16
    (feature,) = backbone(_images(size=64)).values()
    assert feature.tensors.shape[-2:] == (4, 4)
    assert feature.mask.shape[-2:] == (4, 4)


def test_small_resnet_at_stride_8_keeps_its_weights_and_doubles_the_feature_map() -> None:
    backbone = Backbone("resnet18", True, True, False, width=16, stride=8)
    assert backbone.stride == 8
    features = list(backbone(_images(size=64)).values())
    assert [f.tensors.shape[-1] for f in features] == [16, 8, 8, 8]  # layer1 at 4, the rest at 8
    assert features[-1].mask.shape[-2:] == (8, 8)
    plain = Backbone("resnet18", True, True, False, width=16)
    assert {k: v.shape for k, v in backbone.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    model = build_detr(tiny_config(backbone_width=16, backbone_stride=8, masks=True))
    out = model(torch.rand(1, 3, 64, 64))
    assert out["pred_masks"].shape[-2:] == (
        16,
        16,
    )  # the mask head's FPN takes the equal-size maps in its stride
    with pytest.raises(ValueError, match="backbone_stride"):
        DetrConfig(backbone="resnet50", backbone_stride=8)
    with pytest.raises(ValueError, match="backbone_stride"):
        tiny_config(backbone_stride=4)


def test_width_is_refused_for_bottleneck_resnets() -> None:
    with pytest.raises(ValueError, match="backbone_width"):
        DetrConfig(backbone="resnet50", backbone_width=32)
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny_config(backbone_width=12)
    with pytest.raises(ValueError, match="backbone_norm"):
        tiny_config(backbone_norm="group")


def test_batch_norm_backbone_trains_every_stage_and_frozen_one_keeps_the_stem_fixed() -> None:
    scratch = build_detr(tiny_config(backbone_width=16, backbone_norm="batch"))
    body = scratch.backbone[0].body
    assert isinstance(body.bn1, torch.nn.BatchNorm2d)
    assert all(p.requires_grad for p in body.parameters())
    frozen = build_detr(tiny_config(backbone_width=16)).backbone[0].body
    assert isinstance(frozen.bn1, FrozenBatchNorm2d)
    assert not frozen.conv1.weight.requires_grad and frozen.layer2[0].conv1.weight.requires_grad


def test_batch_norm_model_is_saved_as_frozen_with_identical_outputs(tmp_path) -> None:
    config = tiny_config(backbone_width=16, backbone_norm="batch", dilation=True)
    torch.manual_seed(0)
    model = build_detr(config)
    model.train()
    for _ in range(3):  # move the running statistics away from their initial values
        model(_images(4))
    model.eval()
    with torch.no_grad():
        expected = model(_images())
    path = save_checkpoint(model, tmp_path / "scratch", config, {1: "a"})
    loaded = load_checkpoint(path)
    assert loaded.config.backbone_norm == "frozen"
    assert loaded.config.backbone_width == 16 and loaded.config.dilation
    assert not any(k.endswith("num_batches_tracked") for k in loaded.state_dict)
    deployed = build_detr(loaded.config)
    deployed.load_state_dict(loaded.state_dict)
    deployed.eval()
    with torch.no_grad():
        got = deployed(_images())
    torch.testing.assert_close(got["pred_logits"], expected["pred_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["pred_boxes"], expected["pred_boxes"], atol=1e-5, rtol=1e-5)


def test_width_is_read_back_from_a_bare_state_dict() -> None:
    model = build_detr(tiny_config(backbone_width=24))
    assert recognise_official(model.state_dict(), Hints()).config.backbone_width == 24
