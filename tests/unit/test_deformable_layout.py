"""The official Deformable DETR state-dict layout, written out here from the published module definitions
(not from our code), for the five released configurations: our state dicts have exactly these keys and
shapes, such a state dict loads with ``strict=True``, and the full-size parameter totals are the published
ones (34 / 40 / 41 M, trainable counts without the frozen stem and layer1)."""

from __future__ import annotations

import pytest
import torch

from detr_studio.model.deformable_detr.config import PRESETS, DeformableDetrConfig, tiny_deformable_config
from detr_studio.model.deformable_detr.detector import build_deformable_detr

# config -> (keys, unique parameters, trainable parameters), from the published layout
PUBLISHED = {
    "single-scale": (549, 34_066_593, 33_844_193),
    "single-scale-dc5": (549, 34_066_593, 33_844_193),
    "multi-scale": (561, 40_069_665, 39_847_265),
    "box-refine": (597, 40_849_660, 40_627_260),
    "two-stage": (630, 41_181_529, 40_959_129),
}


def resnet_keys(blocks: tuple[int, ...], bottleneck: bool, width: int) -> dict[str, tuple[int, ...]]:
    """torchvision ResNet keys (no fc) under backbone.0.body, frozen batch norm (4 buffers, no counter)."""
    out: dict[str, tuple[int, ...]] = {}

    def bn(name: str, c: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            out[f"backbone.0.body.{name}.{part}"] = (c,)

    out["backbone.0.body.conv1.weight"] = (width, 3, 7, 7)
    bn("bn1", width)
    expansion = 4 if bottleneck else 1
    inplanes = width
    for stage, count in enumerate(blocks):
        planes = width * 2**stage
        for b in range(count):
            stem = f"layer{stage + 1}.{b}"
            if bottleneck:
                convs = [(inplanes, planes, 1), (planes, planes, 3), (planes, planes * 4, 1)]
            else:
                convs = [(inplanes, planes, 3), (planes, planes, 3)]
            for i, (cin, cout, k) in enumerate(convs, start=1):
                out[f"backbone.0.body.{stem}.conv{i}.weight"] = (cout, cin, k, k)
                bn(f"{stem}.bn{i}", cout)
            if b == 0 and (stage > 0 or inplanes != planes * expansion):
                out[f"backbone.0.body.{stem}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{stem}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    return out


def msda_keys(prefix: str, c: int, heads: int, levels: int, points: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.sampling_offsets.weight": (heads * levels * points * 2, c),
        f"{prefix}.sampling_offsets.bias": (heads * levels * points * 2,),
        f"{prefix}.attention_weights.weight": (heads * levels * points, c),
        f"{prefix}.attention_weights.bias": (heads * levels * points,),
        f"{prefix}.value_proj.weight": (c, c),
        f"{prefix}.value_proj.bias": (c,),
        f"{prefix}.output_proj.weight": (c, c),
        f"{prefix}.output_proj.bias": (c,),
    }


def head_keys(prefix: str, c: int, classes: int, count: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i in range(count):
        out[f"{prefix}class_embed.{i}.weight"] = (classes, c)
        out[f"{prefix}class_embed.{i}.bias"] = (classes,)
    return out


def box_keys(prefix: str, c: int, count: int) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for i in range(count):
        for j, (rows, cols) in enumerate([(c, c), (c, c), (4, c)]):
            out[f"{prefix}bbox_embed.{i}.layers.{j}.weight"] = (rows, cols)
            out[f"{prefix}bbox_embed.{i}.layers.{j}.bias"] = (rows,)
    return out


def published_layout(cfg: DeformableDetrConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the official DeformableDETR for ``cfg`` and its shape (facts of models/*.py)."""
    c, f, heads, levels = cfg.hidden_dim, cfg.dim_feedforward, cfg.nheads, cfg.num_feature_levels
    out: dict[str, tuple[int, ...]] = {"transformer.level_embed": (levels, c)}
    for n in range(cfg.enc_layers):
        p = f"transformer.encoder.layers.{n}"
        out |= msda_keys(f"{p}.self_attn", c, heads, levels, cfg.enc_n_points)
        for norm in ("norm1", "norm2"):
            out[f"{p}.{norm}.weight"] = out[f"{p}.{norm}.bias"] = (c,)
        out |= {f"{p}.linear1.weight": (f, c), f"{p}.linear1.bias": (f,), f"{p}.linear2.weight": (c, f)}
        out[f"{p}.linear2.bias"] = (c,)
    for n in range(cfg.dec_layers):
        p = f"transformer.decoder.layers.{n}"
        out |= msda_keys(f"{p}.cross_attn", c, heads, levels, cfg.dec_n_points)
        out |= {f"{p}.self_attn.in_proj_weight": (3 * c, c), f"{p}.self_attn.in_proj_bias": (3 * c,)}
        out |= {f"{p}.self_attn.out_proj.weight": (c, c), f"{p}.self_attn.out_proj.bias": (c,)}
        for norm in ("norm1", "norm2", "norm3"):
            out[f"{p}.{norm}.weight"] = out[f"{p}.{norm}.bias"] = (c,)
        out |= {f"{p}.linear1.weight": (f, c), f"{p}.linear1.bias": (f,), f"{p}.linear2.weight": (c, f)}
        out[f"{p}.linear2.bias"] = (c,)
    num_pred = cfg.dec_layers + (1 if cfg.two_stage else 0)
    if cfg.two_stage:
        out |= {"transformer.enc_output.weight": (c, c), "transformer.enc_output.bias": (c,)}
        out |= {"transformer.enc_output_norm.weight": (c,), "transformer.enc_output_norm.bias": (c,)}
        out |= {"transformer.pos_trans.weight": (2 * c, 2 * c), "transformer.pos_trans.bias": (2 * c,)}
        out |= {"transformer.pos_trans_norm.weight": (2 * c,), "transformer.pos_trans_norm.bias": (2 * c,)}
        out |= head_keys("transformer.decoder.", c, cfg.num_classes, num_pred)
    else:
        out |= {"transformer.reference_points.weight": (2, c), "transformer.reference_points.bias": (2,)}
        out["query_embed.weight"] = (cfg.num_queries, 2 * c)
    if cfg.with_box_refine:
        out |= box_keys("transformer.decoder.", c, num_pred)
    out |= head_keys("", c, cfg.num_classes, num_pred) | box_keys("", c, num_pred)
    bottleneck = cfg.backbone in ("resnet50", "resnet101")
    blocks = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}[cfg.backbone]
    width = cfg.backbone_width
    c5 = width * 8 * (4 if bottleneck else 1)
    in_channels = [c5 // 4, c5 // 2, c5] if levels > 1 else [c5]
    for i in range(levels):
        k = 1 if i < len(in_channels) else 3
        cin = in_channels[i] if i < len(in_channels) else (c5 if i == len(in_channels) else c)
        out |= {f"input_proj.{i}.0.weight": (c, cin, k, k), f"input_proj.{i}.0.bias": (c,)}
        out |= {f"input_proj.{i}.1.weight": (c,), f"input_proj.{i}.1.bias": (c,)}
    return out | resnet_keys(blocks, bottleneck, width)


@pytest.mark.parametrize("name", list(PRESETS))
def test_full_size_state_dict_has_the_published_keys_shapes_and_totals(name):
    config = PRESETS[name]
    with torch.device("meta"):
        model = build_deformable_detr(config)
    sd = model.state_dict()
    expected = published_layout(config)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    keys, total, trainable = PUBLISHED[name]
    assert len(sd) == keys
    assert sum(p.numel() for p in model.parameters()) == total  # parameters() counts shared heads once
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable


@pytest.mark.parametrize(
    "flags",
    [{"num_feature_levels": 1}, {}, {"with_box_refine": True}, {"with_box_refine": True, "two_stage": True}],
)
def test_a_state_dict_of_the_published_layout_loads_strictly(flags):
    config = tiny_deformable_config(**flags)
    layout = published_layout(config)
    generator = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=generator) for k, shape in layout.items()}
    model = build_deformable_detr(config)
    model.load_state_dict(sd, strict=True)
    assert set(model.state_dict()) == set(layout)


def test_shared_heads_are_one_module_and_refined_heads_are_the_decoders():
    plain = build_deformable_detr(tiny_deformable_config())
    assert plain.class_embed[0] is plain.class_embed[1] and plain.transformer.decoder.bbox_embed is None
    refine = build_deformable_detr(tiny_deformable_config(with_box_refine=True))
    assert refine.bbox_embed[0] is not refine.bbox_embed[1]
    assert refine.transformer.decoder.bbox_embed is refine.bbox_embed
    assert torch.all(refine.bbox_embed[0].layers[-1].bias[2:] == -2.0)
    assert torch.all(refine.bbox_embed[1].layers[-1].bias == 0.0)
    two = build_deformable_detr(tiny_deformable_config(with_box_refine=True, two_stage=True))
    assert two.transformer.decoder.class_embed is two.class_embed and len(two.class_embed) == 3
    assert all(torch.all(box.layers[-1].bias == 0.0) for box in two.bbox_embed)


def test_parameter_names_match_the_official_learning_rate_groups():
    """The official recipe trains names containing ``sampling_offsets`` or ``reference_points`` at 0.1× the
    learning rate and ``backbone.0`` at the backbone rate; named_parameters lists shared heads once."""
    with torch.device("meta"):
        model = build_deformable_detr(PRESETS["box-refine"])
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert sum("sampling_offsets" in n for n in names) == 24  # 12 attentions × (weight, bias)
    assert [n for n in names if "reference_points" in n] == [
        "transformer.reference_points.weight",
        "transformer.reference_points.bias",
    ]
    assert all(n.startswith("backbone.0.body.layer") for n in names if n.startswith("backbone."))
    assert any(
        n.startswith("transformer.decoder.bbox_embed.") for n in names
    )  # refined heads, registered first
