"""Our network's state dict is the official DETR layout, key for key and shape for shape.

The expected keys are written from the published layout (reference facts §2), not from our code.
"""

from __future__ import annotations

import pytest
import torch

from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig

RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
BN = ("weight", "bias", "running_mean", "running_var")


def official_backbone(prefix: str, blocks: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}conv1.weight": (64, 3, 7, 7)}
    keys |= {f"{prefix}bn1.{p}": (64,) for p in BN}
    in_ch = 64
    for layer, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        out_ch = width * 4
        for b in range(n):
            block = f"{prefix}layer{layer}.{b}."
            cin = in_ch if b == 0 else out_ch
            keys[block + "conv1.weight"] = (width, cin, 1, 1)
            keys[block + "conv2.weight"] = (width, width, 3, 3)
            keys[block + "conv3.weight"] = (out_ch, width, 1, 1)
            for i, c in ((1, width), (2, width), (3, out_ch)):
                keys |= {f"{block}bn{i}.{p}": (c,) for p in BN}
            if b == 0:
                keys[block + "downsample.0.weight"] = (out_ch, cin, 1, 1)
                keys |= {f"{block}downsample.1.{p}": (out_ch,) for p in BN}
        in_ch = out_ch
    return keys


def official_attention(prefix: str, d: int = 256) -> dict[str, tuple[int, ...]]:
    return {
        prefix + "in_proj_weight": (3 * d, d),
        prefix + "in_proj_bias": (3 * d,),
        prefix + "out_proj.weight": (d, d),
        prefix + "out_proj.bias": (d,),
    }


def official_detr(num_classes: int, backbone: str, prefix: str = "") -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i in range(6):
        e = f"{prefix}transformer.encoder.layers.{i}."
        keys |= official_attention(e + "self_attn.")
        keys |= {e + "linear1.weight": (2048, 256), e + "linear1.bias": (2048,)}
        keys |= {e + "linear2.weight": (256, 2048), e + "linear2.bias": (256,)}
        keys |= {f"{e}norm{n}.{p}": (256,) for n in (1, 2) for p in ("weight", "bias")}
    for i in range(6):
        d = f"{prefix}transformer.decoder.layers.{i}."
        keys |= official_attention(d + "self_attn.") | official_attention(d + "multihead_attn.")
        keys |= {d + "linear1.weight": (2048, 256), d + "linear1.bias": (2048,)}
        keys |= {d + "linear2.weight": (256, 2048), d + "linear2.bias": (256,)}
        keys |= {f"{d}norm{n}.{p}": (256,) for n in (1, 2, 3) for p in ("weight", "bias")}
    keys |= {f"{prefix}transformer.decoder.norm.{p}": (256,) for p in ("weight", "bias")}
    keys |= {
        f"{prefix}class_embed.weight": (num_classes + 1, 256),
        f"{prefix}class_embed.bias": (num_classes + 1,),
    }
    for i, out in enumerate((256, 256, 4)):
        keys |= {
            f"{prefix}bbox_embed.layers.{i}.weight": (out, 256),
            f"{prefix}bbox_embed.layers.{i}.bias": (out,),
        }
    keys[f"{prefix}query_embed.weight"] = (100, 256)
    keys |= {f"{prefix}input_proj.weight": (256, 2048, 1, 1), f"{prefix}input_proj.bias": (256,)}
    keys |= official_backbone(f"{prefix}backbone.0.body.", RESNET_BLOCKS[backbone])
    return keys


def official_panoptic() -> dict[str, tuple[int, ...]]:
    keys = official_detr(250, "resnet50", prefix="detr.")
    for name in ("q_linear", "k_linear"):
        keys |= {f"bbox_attention.{name}.weight": (256, 256), f"bbox_attention.{name}.bias": (256,)}
    convs = {"lay1": (264, 264, 3, 3), "lay2": (128, 264, 3, 3), "lay3": (64, 128, 3, 3), "lay4": (32, 64, 3, 3),
             "lay5": (16, 32, 3, 3), "out_lay": (1, 16, 3, 3), "adapter1": (128, 1024, 1, 1),
             "adapter2": (64, 512, 1, 1), "adapter3": (32, 256, 1, 1)}  # fmt: skip
    for name, shape in convs.items():
        keys |= {f"mask_head.{name}.weight": shape, f"mask_head.{name}.bias": (shape[0],)}
    for i, c in enumerate((264, 128, 64, 32, 16), start=1):
        keys |= {f"mask_head.gn{i}.weight": (c,), f"mask_head.gn{i}.bias": (c,)}
    return keys


CASES = [
    pytest.param(DetrConfig(), official_detr(91, "resnet50"), 458, id="r50"),
    pytest.param(DetrConfig(dilation=True), official_detr(91, "resnet50"), 458, id="r50-dc5"),
    pytest.param(DetrConfig(backbone="resnet101"), official_detr(91, "resnet101"), 713, id="r101"),
    pytest.param(DetrConfig(num_classes=250, masks=True), official_panoptic(), 490, id="r50-panoptic"),
]


@pytest.mark.parametrize(("config", "expected", "count"), CASES)
def test_state_dict_has_exactly_the_official_keys_and_shapes(config, expected, count):
    assert len(expected) == count
    ours = {k: tuple(v.shape) for k, v in build_detr(config).state_dict().items()}
    assert sorted(ours) == sorted(expected)
    assert ours == expected


@pytest.mark.parametrize(("config", "expected", "count"), CASES[:1] + CASES[3:])
def test_an_official_layout_state_dict_loads_strictly(config, expected, count):
    sd = {k: torch.randn(shape) for k, shape in expected.items()}
    model = build_detr(config)
    model.load_state_dict(sd, strict=True)
    got = model.state_dict()
    assert all(
        torch.equal(got[k], sd[k]) for k in ("query_embed.weight", "detr.query_embed.weight") if k in sd
    )


def test_parameter_counts_match_the_published_ones():
    model = build_detr(DetrConfig())
    assert sum(p.numel() for p in model.parameters()) == 41_524_768
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 41_302_368


def test_optional_keys_appear_only_with_their_options():
    pre = build_detr(DetrConfig(pre_norm=True)).state_dict()
    assert "transformer.encoder.norm.weight" in pre and len(pre) == 460
    learned = build_detr(DetrConfig(position_embedding="learned")).state_dict()
    assert learned["backbone.1.row_embed.weight"].shape == (50, 128)
    assert learned["backbone.1.col_embed.weight"].shape == (50, 128)
