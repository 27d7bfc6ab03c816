"""Hugging Face transformers DETR weights -> our (reference) layout, checked against transformers itself.

transformers is a test-only dependency: these tests build small random ``DetrForObjectDetection`` /
``DetrForSegmentation`` models offline (native transformers ResNet-50 backbone, so timm is not needed),
convert their weights and compare the outputs of both networks on the same padded batch.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig
from detr_studio.model.detr.hf import convert_hf_state_dict, is_hf_state_dict
from detr_studio.model.detr.hf_config import config_from_hf
from detr_studio.model.nested import NestedTensor
from tests.model_helpers import to_hf_config, to_hf_state_dict

TOLERANCE = 1e-4


def _randomise(model: torch.nn.Module) -> None:
    """Random values for every 1-D tensor (biases, norm weights, batch-norm statistics).

    transformers initialises biases to 0 and norm weights to 1; with those, a bias or norm mapped to
    the wrong place would not change the outputs.
    """
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.dim() != 1 or not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            else:
                tensor.add_(torch.randn_like(tensor) * 0.1)


def _hf_model(*, segmentation: bool, **overrides) -> tuple[torch.nn.Module, dict]:
    """A small random transformers DETR with a real ResNet-50 backbone, and its config.json dict."""
    stages = ["stage1", "stage2", "stage3", "stage4"] if segmentation else ["stage4"]
    resnet = transformers.ResNetConfig(
        depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck", out_features=stages
    )
    settings = {
        "use_timm_backbone": False,
        "use_pretrained_backbone": False,
        "backbone_config": resnet,
        "d_model": 64,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128,
        "num_queries": 10,
        "num_labels": 7,
        "init_std": 0.2,  # transformers' 0.02 makes attention so flat that q/k mix-ups barely show
        **overrides,
    }
    config = transformers.DetrConfig(**settings)
    torch.manual_seed(0)
    cls = transformers.DetrForSegmentation if segmentation else transformers.DetrForObjectDetection
    model = cls(config).eval()
    _randomise(model)
    config_json = config.to_dict()
    config_json["architectures"] = [cls.__name__]  # what save_pretrained writes
    return model, config_json


@pytest.fixture(scope="module")
def hf_detection():
    return _hf_model(segmentation=False)


@pytest.fixture(scope="module")
def hf_segmentation():
    # The mask head needs (d_model + heads) and d_model / 16 divisible by 8 (GroupNorm with 8 groups).
    return _hf_model(segmentation=True, d_model=128, encoder_attention_heads=8, decoder_attention_heads=8,
                     position_embedding_type="learned")  # fmt: skip


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two images padded to 96x128; the second is really 64x96. -> pixels [2,3,H,W], HF pixel_mask [2,H,W]."""
    torch.manual_seed(1)
    pixel_mask = torch.ones(2, 96, 128, dtype=torch.long)  # 1 = real pixel
    pixel_mask[1, 64:, :] = 0
    pixel_mask[1, :, 96:] = 0
    pixels = torch.randn(2, 3, 96, 128) * pixel_mask[:, None]
    return pixels, pixel_mask


@pytest.fixture(scope="module")
def hf_detection_outputs(hf_detection, batch):
    pixels, pixel_mask = batch
    with torch.no_grad():
        return hf_detection[0](pixel_values=pixels, pixel_mask=pixel_mask)


def _ours(hf_model: torch.nn.Module, config_json: dict | None) -> tuple[torch.nn.Module, dict, DetrConfig]:
    sd, config = convert_hf_state_dict(hf_model.state_dict(), config_json)
    model = build_detr(config).eval()
    model.load_state_dict(sd, strict=True)
    return model, sd, config


def _run_ours(model: torch.nn.Module, batch) -> dict:
    pixels, pixel_mask = batch
    with torch.no_grad():
        return model(NestedTensor(pixels, pixel_mask == 0))  # our mask: True = padding


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------------------------------
# Whole-model parity


def test_converted_detection_model_gives_transformers_logits_and_boxes(
    hf_detection, hf_detection_outputs, batch
):
    ours, _, _ = _ours(*hf_detection)
    mine = _run_ours(ours, batch)
    assert mine["pred_logits"].shape == (2, 10, 8)
    assert _max_diff(hf_detection_outputs.logits, mine["pred_logits"]) <= TOLERANCE
    assert _max_diff(hf_detection_outputs.pred_boxes, mine["pred_boxes"]) <= TOLERANCE


def test_parity_check_notices_swapped_query_and_key_projections(hf_detection, hf_detection_outputs, batch):
    """The comparison above has the power to catch a q/k/v order mistake."""
    ours, sd, config = _ours(*hf_detection)
    key = "transformer.encoder.layers.0.self_attn.in_proj_weight"
    d = config.hidden_dim
    swapped = {**sd, key: torch.cat([sd[key][d : 2 * d], sd[key][:d], sd[key][2 * d :]])}
    ours.load_state_dict(swapped, strict=True)
    mine = _run_ours(ours, batch)
    assert _max_diff(hf_detection_outputs.logits, mine["pred_logits"]) > 100 * TOLERANCE


def test_converted_segmentation_model_gives_transformers_masks(hf_segmentation, batch):
    hf_model, config_json = hf_segmentation
    ours, _, config = _ours(hf_model, config_json)
    assert config.masks and config.position_embedding == "learned"
    pixels, pixel_mask = batch
    with torch.no_grad():
        theirs = hf_model(pixel_values=pixels, pixel_mask=pixel_mask)
    mine = _run_ours(ours, batch)
    assert mine["pred_masks"].shape == (2, 10, 24, 32)  # stride 4
    assert _max_diff(theirs.logits, mine["pred_logits"]) <= TOLERANCE
    assert _max_diff(theirs.pred_boxes, mine["pred_boxes"]) <= TOLERANCE
    assert _max_diff(theirs.pred_masks, mine["pred_masks"]) <= TOLERANCE


# ----------------------------------------------------------------------------------------------------
# Key mapping


@pytest.mark.parametrize("which", ["hf_detection", "hf_segmentation"])
def test_every_hf_key_has_exactly_one_place_in_our_model(which, request):
    hf_model, config_json = request.getfixturevalue(which)
    hf_sd = hf_model.state_dict()
    sd, config = convert_hf_state_dict(hf_sd, config_json)
    with torch.device("meta"):
        expected = build_detr(config).state_dict()
    assert set(sd) == set(expected)
    assert all(sd[k].shape == expected[k].shape for k in sd)
    # Each attention: q/k/v weights and biases (6 keys) become in_proj_weight + in_proj_bias (2 keys).
    attentions = config.enc_layers + 2 * config.dec_layers
    assert len(sd) == len(hf_sd) - 4 * attentions


def test_qkv_projections_are_packed_in_q_k_v_order(hf_detection):
    hf_model, config_json = hf_detection
    hf_sd = hf_model.state_dict()
    sd, config = convert_hf_state_dict(hf_sd, config_json)
    d = config.hidden_dim
    for ours, theirs in [
        ("transformer.encoder.layers.1.self_attn", "model.encoder.layers.1.self_attn"),
        ("transformer.decoder.layers.0.self_attn", "model.decoder.layers.0.self_attn"),
        ("transformer.decoder.layers.1.multihead_attn", "model.decoder.layers.1.encoder_attn"),
    ]:
        for param in ("weight", "bias"):
            packed = sd[f"{ours}.in_proj_{param}"]
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                assert torch.equal(packed[i * d : (i + 1) * d], hf_sd[f"{theirs}.{proj}.{param}"])


def test_backbone_batch_norm_statistics_land_on_torchvision_names(hf_detection):
    hf_model, config_json = hf_detection
    hf_sd = hf_model.state_dict()
    sd, _ = convert_hf_state_dict(hf_sd, config_json)
    theirs = "model.backbone.model.encoder.stages.2.layers.0."
    ours = "backbone.0.body.layer3.0."
    assert torch.equal(sd[ours + "bn2.running_var"], hf_sd[theirs + "layer.1.normalization.running_var"])
    assert torch.equal(
        sd[ours + "downsample.1.running_mean"], hf_sd[theirs + "shortcut.normalization.running_mean"]
    )
    assert torch.equal(
        sd["backbone.0.body.bn1.weight"], hf_sd["model.backbone.model.embedder.embedder.normalization.weight"]
    )


@pytest.mark.parametrize("which", ["hf_detection", "hf_segmentation"])
def test_to_hf_state_dict_gives_back_the_transformers_weights(which, request):
    hf_model, config_json = request.getfixturevalue(which)
    hf_sd = hf_model.state_dict()
    back = to_hf_state_dict(convert_hf_state_dict(hf_sd, config_json)[0])
    assert set(back) == set(hf_sd)
    assert all(torch.equal(back[k], hf_sd[k]) for k in hf_sd)


@pytest.mark.parametrize("which", ["hf_detection", "hf_segmentation"])
def test_transformers_4x_names_with_timm_backbone_convert_to_the_same_weights(which, request):
    hf_model, config_json = request.getfixturevalue(which)
    sd, _ = convert_hf_state_dict(hf_model.state_dict(), config_json)
    legacy = to_hf_state_dict(sd, backbone="timm", legacy_names=True)
    prefix = "detr." if which == "hf_segmentation" else ""
    for key in (
        "model.backbone.conv_encoder.model.layer2.0.downsample.1.running_var",
        "model.encoder.layers.0.self_attn.out_proj.weight",
        "model.decoder.layers.1.fc2.bias",
    ):
        assert prefix + key in legacy
    if which == "hf_segmentation":
        assert {"mask_head.lay1.weight", "mask_head.adapter3.bias", "bbox_attention.q_linear.weight"} <= set(
            legacy
        )
        assert "detr.model.backbone.position_embedding.row_embeddings.weight" in legacy
    legacy[prefix + "model.backbone.conv_encoder.model.bn1.num_batches_tracked"] = torch.tensor(5)
    again, _ = convert_hf_state_dict(legacy, config_json)
    assert set(again) == set(sd)
    assert all(torch.equal(again[k], sd[k]) for k in sd)


def test_keys_without_a_place_are_listed(hf_detection):
    hf_model, config_json = hf_detection
    hf_sd = dict(hf_model.state_dict())
    hf_sd["model.extra_head.weight"] = torch.zeros(3)
    hf_sd["model.backbone.model.encoder.stages.0.layers.0.attention.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="2 Hugging Face keys") as info:
        convert_hf_state_dict(hf_sd, config_json)
    assert "model.extra_head.weight" in str(info.value)
    assert "stages.0.layers.0.attention.weight" in str(info.value)


def test_missing_value_projection_is_reported(hf_detection):
    hf_model, config_json = hf_detection
    hf_sd = dict(hf_model.state_dict())
    del hf_sd["model.decoder.layers.1.encoder_attn.v_proj.weight"]
    with pytest.raises(
        ValueError, match=r"decoder\.layers\.1\.multihead_attn\.in_proj_weight: missing the v_proj"
    ):
        convert_hf_state_dict(hf_sd, config_json)


def test_missing_head_is_reported(hf_detection):
    hf_model, config_json = hf_detection
    hf_sd = {k: v for k, v in hf_model.state_dict().items() if not k.startswith("class_labels_classifier.")}
    with pytest.raises(ValueError, match=r"no class_embed\.weight"):
        convert_hf_state_dict(hf_sd, config_json)


def test_entry_that_is_not_a_tensor_is_refused(hf_detection):
    hf_model, config_json = hf_detection
    hf_sd = {**hf_model.state_dict(), "model.query_position_embeddings.weight": [[0.0] * 64] * 10}
    with pytest.raises(ValueError, match=r"query_position_embeddings\.weight is a list, not a tensor"):
        convert_hf_state_dict(hf_sd, config_json)


def test_is_hf_state_dict_tells_the_layouts_apart(hf_detection, hf_segmentation):
    for hf_model, config_json in (hf_detection, hf_segmentation):
        hf_sd = hf_model.state_dict()
        assert is_hf_state_dict(hf_sd)
        assert not is_hf_state_dict(convert_hf_state_dict(hf_sd, config_json)[0])


# ----------------------------------------------------------------------------------------------------
# Configs


def test_config_from_transformers_config_json(hf_detection):
    _, config_json = hf_detection
    assert config_from_hf(config_json) == DetrConfig(
        num_classes=7, backbone="resnet50", hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
        dim_feedforward=128, num_queries=10, dropout=0.1, aux_loss=False, masks=False,
    )  # fmt: skip


def test_config_is_read_from_the_shapes_without_config_json(hf_detection, hf_segmentation):
    hf_model, config_json = hf_segmentation
    assert convert_hf_state_dict(hf_model.state_dict())[1] == config_from_hf(config_json)
    # A detection model's head count is not in its shapes: transformers' default (8) is assumed.
    hf_model, config_json = hf_detection
    inferred = convert_hf_state_dict(hf_model.state_dict())[1]
    assert inferred == config_from_hf(config_json).replace(nheads=8)


def test_config_that_contradicts_the_weights_is_refused(hf_detection):
    hf_model, config_json = hf_detection
    wrong = {**config_json, "id2label": {str(i): f"c{i}" for i in range(5)}, "num_queries": 20}
    with pytest.raises(ValueError, match="num_classes: config 5, weights 7") as info:
        convert_hf_state_dict(hf_model.state_dict(), wrong)
    assert "num_queries: config 20, weights 10" in str(info.value)


def test_resnet101_is_recognised_from_config_and_from_shapes():
    config = DetrConfig(
        num_classes=3, backbone="resnet101", hidden_dim=32, nheads=4, enc_layers=1, dec_layers=1
    )
    hf_json = transformers.DetrConfig.from_dict(to_hf_config(config)).to_dict()
    assert hf_json["backbone_config"]["depths"] == [3, 4, 23, 3]
    assert config_from_hf(hf_json) == config
    with torch.device("meta"):  # shapes only
        sd = build_detr(config).state_dict()
    assert convert_hf_state_dict(to_hf_state_dict(sd))[1].backbone == "resnet101"


@pytest.mark.parametrize("backbone", ["native", "timm"])
def test_to_hf_config_describes_the_same_transformers_model(hf_segmentation, backbone):
    hf_model, config_json = hf_segmentation
    sd, config = convert_hf_state_dict(hf_model.state_dict(), config_json)
    rebuilt = transformers.DetrConfig.from_dict(to_hf_config(config, backbone=backbone))
    assert config_from_hf(rebuilt.to_dict()) == config
    if backbone == "native":  # building a timm backbone needs timm
        with torch.device("meta"):
            expected = transformers.DetrForSegmentation(rebuilt).state_dict()
        written = to_hf_state_dict(sd)
        assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in expected.items()}


@pytest.mark.parametrize(
    ("hf_config", "expected"),
    [
        # transformers 4.x, timm backbone, as in facebook/detr-resnet-101-dc5
        (
            {"backbone": "resnet101", "use_timm_backbone": True, "dilation": True,
             "id2label": {str(i): "x" for i in range(91)}},
            DetrConfig(num_classes=91, backbone="resnet101", dilation=True),
        ),
        # a native backbone named by its Hub id
        (
            {"backbone": "microsoft/resnet-50", "use_timm_backbone": False, "num_labels": 4,
             "architectures": ["DetrForSegmentation"]},
            DetrConfig(num_classes=4, masks=True),
        ),
        # transformers' own defaults for anything left out
        ({}, DetrConfig(num_classes=2)),
        ({"backbone": "timm/resnet50.a1_in1k", "auxiliary_loss": True, "position_embedding_type": "learned",
          "num_labels": 250}, DetrConfig(num_classes=250, aux_loss=True, position_embedding="learned")),
    ],
)  # fmt: skip
def test_config_from_hf_reads_both_generations(hf_config, expected):
    assert config_from_hf(hf_config) == expected


def test_config_from_hf_reads_the_5x_timm_backbone_config():
    hf_json = transformers.DetrConfig(backbone="resnet50", dilation=True, num_labels=91).to_dict()
    assert hf_json["backbone_config"]["model_type"] == "timm_backbone"
    assert config_from_hf(hf_json) == DetrConfig(num_classes=91, dilation=True)


@pytest.mark.parametrize(
    ("hf_config", "message"),
    [
        ({"activation_function": "gelu"}, "activation_function 'gelu'"),
        ({"encoder_attention_heads": 8, "decoder_attention_heads": 4}, "decoder_attention_heads 4"),
        ({"encoder_ffn_dim": 1024}, "decoder_ffn_dim 2048"),
        ({"backbone": "resnet50d"}, "timm backbone 'resnet50d'"),
        ({"backbone_config": {"model_type": "swin"}}, "backbone model_type 'swin'"),
        ({"backbone_config": {"model_type": "resnet", "downsample_in_bottleneck": True}}, "strides"),
        ({"backbone_config": {"model_type": "resnet", "depths": [3, 8, 36, 3]}}, r"depths \[3, 8, 36, 3\]"),
        ({"model_type": "conditional_detr"}, "conditional_detr"),
        ({"position_embedding_type": "rotary"}, "position_embedding_type 'rotary'"),
    ],
)
def test_configs_we_cannot_build_are_refused_with_the_reason(hf_config, message):
    with pytest.raises(ValueError, match=message):
        config_from_hf(hf_config)


def test_native_backbone_has_no_dc5_in_to_hf_config():
    with pytest.raises(ValueError, match="dilation"):
        to_hf_config(DetrConfig(dilation=True), backbone="native")
