"""Helpers the Deformable DETR tests share that the product does not need: the reverse of the Hugging Face
conversion (official layout -> transformers 4.x/5.x names, and a ``config.json``), and tiny random models
written to disk in each layout a user may open (ours, the official release, a Hugging Face folder)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.deformable_detr.config import DeformableDetrConfig
from detr_studio.model.deformable_detr.family import DEFORMABLE_DETR_FAMILY
from detr_studio.model.deformable_detr.hf import ATTENTIONS, LAYER_PARTS, MSDA_PARTS, TOP_PREFIXES
from detr_studio.model.hf_common import HF_BACKBONE, HF_BACKBONE_V4, OUR_BACKBONE, QKV
from tests.model_helpers import hf_transformer_config, native_resnet_key

_OUR_LAYER = re.compile(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")

# The five released configurations as test flags (tiny_deformable_config keywords).
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "single-scale": {"num_feature_levels": 1},
    "single-scale-dc5": {"num_feature_levels": 1, "dilation": True},
    "multi-scale": {},
    "box-refine": {"with_box_refine": True},
    "two-stage": {"with_box_refine": True, "two_stage": True},
}


def to_hf_state_dict(
    official_sd: Mapping[str, Tensor], *, backbone: str = "timm", legacy_names: bool = False
) -> dict[str, Tensor]:
    """An official-layout state dict -> transformers names (5.x, or 4.x with ``legacy_names``).

    ``backbone``: "timm" (torchvision names, as the hub files) or "native" (transformers' ResNet). Every
    key is written, tied duplicates included (both generations load such a file). Fresh tensor copies.
    """
    out: dict[str, Tensor] = {}
    for key, value in official_sd.items():
        for hf_key, part in _hf_keys(key, value, backbone):
            out[_legacy(hf_key) if legacy_names else hf_key] = part.clone()
    return out


def _hf_keys(key: str, value: Tensor, backbone: str) -> list[tuple[str, Tensor]]:
    if key.startswith(("class_embed.", "bbox_embed.")):
        return [(key, value)]
    if key.startswith(OUR_BACKBONE):
        body = key[len(OUR_BACKBONE) :]
        return [(HF_BACKBONE + (body if backbone == "timm" else native_resnet_key(body)), value)]
    for hf_prefix, ours in TOP_PREFIXES:
        if key.startswith(ours):
            return [("model." + hf_prefix + key[len(ours) :], value)]
    match = _OUR_LAYER.fullmatch(key)
    if match is None:
        if key.endswith(("in_proj_weight", "in_proj_bias")):
            stem, _, param = key.rpartition(".in_proj_")
            hf_stem = "model." + stem.removeprefix("transformer.")
            return [(f"{hf_stem}.{proj}.{param}", part) for proj, part in zip(QKV, value.chunk(3, dim=0))]
        raise ValueError(f"{key} has no Hugging Face name")
    side, index, module, param = match.groups()
    stem = f"model.{side}.layers.{index}."
    for hf_module, our_module in LAYER_PARTS[side].items():
        if module == our_module:
            return [(f"{stem}{hf_module}.{param}", value)]
    attention, _, part = module.rpartition(".")
    if part in MSDA_PARTS and attention in ("self_attn", "cross_attn"):
        return [(f"{stem}{ATTENTIONS[side]}.{part}.{param}", value)]
    raise ValueError(f"{key} has no Hugging Face name")


def _legacy(key: str) -> str:
    """A 5.x key -> its transformers 4.x name."""
    key = key.replace(HF_BACKBONE, HF_BACKBONE_V4, 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".self_attn.o_proj.", ".self_attn.out_proj.")
        key = re.sub(r"(layers\.\d+)\.mlp\.fc([12])\.", r"\1.fc\2.", key)
    return key


def to_hf_config(
    config: DeformableDetrConfig, class_names: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """A transformers ``config.json`` dict for ``config`` with a timm backbone (as the hub files)."""
    return {
        "model_type": "deformable_detr",
        "architectures": ["DeformableDetrForObjectDetection"],
        **hf_transformer_config(config, class_names),
        "backbone": config.backbone,
        "use_timm_backbone": True,
        "two_stage_num_proposals": config.num_queries,
        "num_feature_levels": config.num_feature_levels,
        "encoder_n_points": config.enc_n_points,
        "decoder_n_points": config.dec_n_points,
        "with_box_refine": config.with_box_refine,
        "two_stage": config.two_stage,
    }


# --------------------------------------------------------------------------------------------- files


def random_model(config: DeformableDetrConfig, seed: int = 0) -> torch.nn.Module:
    """A Deformable DETR of ``config`` with random weights, class heads included (not the flat prior)."""
    torch.manual_seed(seed)
    model = DEFORMABLE_DETR_FAMILY.build(config).eval()
    with torch.no_grad():
        for head in model.class_embed:
            head.bias.normal_(0.0, 1.0)
    return model


def write_ours(model: torch.nn.Module, config: DeformableDetrConfig, path: Path, **kwargs: Any) -> Path:
    """Our format: safetensors + sidecar v2 (family "deformable_detr")."""
    return save_checkpoint(DEFORMABLE_DETR_FAMILY.deployable_state_dict(model), path, config, **kwargs)


def write_official(
    model: torch.nn.Module,
    path: Path,
    args: argparse.Namespace | None = None,
    with_training_state: bool = True,
) -> Path:
    """The official release layout: ``{"model", "optimizer", "lr_scheduler", "epoch", "args"}``."""
    content: dict[str, Any] = {"model": model.state_dict()}
    if with_training_state:
        optimizer = torch.optim.AdamW(model.parameters())
        content["optimizer"] = optimizer.state_dict()
        content["lr_scheduler"] = torch.optim.lr_scheduler.StepLR(optimizer, 40).state_dict()
        content["epoch"] = 49
    if args is not None:
        content["args"] = args
    torch.save(content, path)
    return path


def write_hf_folder(
    model: torch.nn.Module,
    config: DeformableDetrConfig,
    folder: Path,
    *,
    legacy_names: bool = False,
    class_names: Mapping[int, str] | None = None,
) -> Path:
    """A Hugging Face folder: ``model.safetensors`` (5.x names, or 4.x) and ``config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = to_hf_state_dict(model.state_dict(), legacy_names=legacy_names)
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(to_hf_config(config, class_names)), encoding="utf-8")
    return folder
