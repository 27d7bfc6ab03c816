"""Helpers the tests share that the product does not need: writing the official layout, the reverse of the
Hugging Face conversion (ours -> transformers names and config.json, for parity tests against transformers),
resetting a class head by hand, and a per-image reference matcher."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from detr_studio.model.backbone import RESNET_SHAPES
from detr_studio.model.detr.config import DetrConfig
from detr_studio.model.detr.hf import ATTENTIONS, LAYER_PARTS, MASK_PREFIXES, PREFIXES
from detr_studio.model.detr.recognise import SEGMENTATION_PREFIX
from detr_studio.model.hf_common import (
    HF_BACKBONE,
    HF_BACKBONE_V4,
    OUR_BACKBONE,
    QKV,
    TORCHVISION_RESNET_KEY,
)
from detr_studio.model.state_dicts import listing
from detr_studio.train.matcher import (
    MatchIndices,
    Targets,
    _empty_indices,
    _explain,
    _prediction_tensors,
    _problem_flags,
    _solve,
    check_targets,
    matching_cost,
)

_OUR_LAYER = re.compile(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OUR_PACKED = re.compile(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(\w+)\.in_proj_(weight|bias)")
_TV_STEM = re.compile(r"(conv1|bn1)\.(.+)")
_TV_SHORTCUT = re.compile(r"layer(\d)\.(\d+)\.downsample\.([01])\.(.+)")
_TV_CONV = re.compile(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)")


def save_official(model_or_sd: nn.Module | dict[str, Tensor], path: str | Path) -> Path:
    """Write the official ``{"model": state_dict}`` layout that the reference code and hub load."""
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else model_or_sd
    sd = {k: v.detach().cpu().contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    out = Path(path)
    torch.save({"model": sd}, out)
    return out


def reset_class_head(model: nn.Module, num_classes: int) -> None:
    """Replace the classifier for a new class list (``num_classes`` = max id + 1), keeping the rest."""
    detr = getattr(model, "detr", model)
    old = detr.class_embed
    detr.class_embed = nn.Linear(old.in_features, num_classes + 1).to(old.weight.device, old.weight.dtype)


def to_hf_state_dict(
    official_sd: Mapping[str, Tensor], *, backbone: str = "native", legacy_names: bool = False
) -> dict[str, Tensor]:
    """The reverse of ``convert_hf_state_dict``, for detection and segmentation models.

    ``backbone``: "native" (transformers' ``ResNet`` names, for ``use_timm_backbone=False``) or "timm".
    ``legacy_names``: write transformers 4.x names (which 5.x also reads) instead of 5.x names.
    Every tensor is a fresh copy, so the result can be saved with safetensors.
    """
    if backbone not in ("native", "timm"):
        raise ValueError(f"backbone naming must be 'native' or 'timm', got {backbone!r}")
    out: dict[str, Tensor] = {}
    unmapped = []
    for key, value in official_sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        nested = key.startswith(SEGMENTATION_PREFIX)
        body = key.removeprefix(SEGMENTATION_PREFIX)
        pieces = _to_hf_key(body, backbone)
        if pieces is None:
            unmapped.append(key)
            continue
        parts = value.chunk(3, dim=0) if len(pieces) == 3 else (value,)
        for hf_key, part in zip(pieces, parts):
            if legacy_names:
                hf_key = _legacy(hf_key)
            out[(SEGMENTATION_PREFIX if nested else "") + hf_key] = part.clone()
    if unmapped:
        raise ValueError(f"{len(unmapped)} keys have no Hugging Face name: {listing(unmapped)}")
    return out


def _to_hf_key(key: str, backbone: str) -> list[str] | None:
    """Our key -> its 5.x Hugging Face key, or the three q/k/v keys for a packed in_proj entry."""
    for hf_prefix, our_prefix in PREFIXES + MASK_PREFIXES:
        if key.startswith(our_prefix):
            return [hf_prefix + key[len(our_prefix) :]]
    if key.startswith(OUR_BACKBONE):
        body = key[len(OUR_BACKBONE) :]
        if not TORCHVISION_RESNET_KEY.fullmatch(body):
            return None
        return [HF_BACKBONE + (body if backbone == "timm" else native_resnet_key(body))]
    if match := _OUR_PACKED.fullmatch(key):
        side, index, module, param = match.groups()
        for hf_attention, our_attention in ATTENTIONS[side].items():
            if module == our_attention:
                return [f"model.{side}.layers.{index}.{hf_attention}.{proj}.{param}" for proj in QKV]
        return None
    if match := _OUR_LAYER.fullmatch(key):
        side, index, module, param = match.groups()
        for hf_module, our_module in LAYER_PARTS[side].items():
            if module == our_module:
                return [f"model.{side}.layers.{index}.{hf_module}.{param}"]
    return None


def native_resnet_key(key: str) -> str:
    """A torchvision ResNet key -> transformers' native ResNet name."""
    if match := _TV_STEM.fullmatch(key):
        part, param = match.groups()
        return f"embedder.embedder.{'convolution' if part == 'conv1' else 'normalization'}.{param}"
    if match := _TV_SHORTCUT.fullmatch(key):
        layer, block, part, param = match.groups()
        kind = "convolution" if part == "0" else "normalization"
        return f"encoder.stages.{int(layer) - 1}.layers.{block}.shortcut.{kind}.{param}"
    match = _TV_CONV.fullmatch(key)
    if match is None:
        raise ValueError(f"{key} is not a torchvision ResNet key")
    layer, block, part, index, param = match.groups()
    kind = "convolution" if part == "conv" else "normalization"
    return f"encoder.stages.{int(layer) - 1}.layers.{block}.layer.{int(index) - 1}.{kind}.{param}"


def _legacy(key: str) -> str:
    """A 5.x key -> its transformers 4.x name."""
    key = key.replace(HF_BACKBONE, HF_BACKBONE_V4, 1)
    key = key.replace("model.position_embedding.", "model.backbone.position_embedding.", 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".o_proj.", ".out_proj.")
        key = re.sub(r"(layers\.\d+)\.mlp\.fc([12])\.", r"\1.fc\2.", key)
    for current, legacy in MASK_PREFIXES:
        if key.startswith(current):
            return legacy + key[len(current) :]
    return key


def hf_transformer_config(config: Any, class_names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The ``config.json`` entries every family writes alike: classes, widths, layers, heads, queries, dropout,
    the auxiliary loss and the dilation (``config``: any family's config)."""
    names = dict(class_names or {})
    return {
        "id2label": {str(i): names.get(i, f"LABEL_{i}") for i in range(config.num_classes)},
        "d_model": config.hidden_dim,
        "encoder_layers": config.enc_layers,
        "decoder_layers": config.dec_layers,
        "encoder_attention_heads": config.nheads,
        "decoder_attention_heads": config.nheads,
        "encoder_ffn_dim": config.dim_feedforward,
        "decoder_ffn_dim": config.dim_feedforward,
        "num_queries": config.num_queries,
        "dropout": config.dropout,
        "auxiliary_loss": config.aux_loss,
        "dilation": config.dilation,
        "use_pretrained_backbone": False,
    }


def to_hf_config(
    config: DetrConfig, *, backbone: str = "native", class_names: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """A transformers ``config.json`` dict for ``config``, matching ``to_hf_state_dict(..., backbone=...)``.

    transformers' native ResNet has no dilation, so a DC5 model needs ``backbone="timm"``.
    """
    if config.pre_norm:
        raise ValueError("transformers' DETR has no pre-norm variant")
    if backbone not in ("native", "timm"):
        raise ValueError(f"backbone naming must be 'native' or 'timm', got {backbone!r}")
    out: dict[str, Any] = {
        "model_type": "detr",
        "architectures": ["DetrForSegmentation" if config.masks else "DetrForObjectDetection"],
        **hf_transformer_config(config, class_names),
        "activation_function": "relu",
        "position_embedding_type": config.position_embedding,
    }
    if backbone == "timm":
        out.update(backbone=config.backbone, use_timm_backbone=True)
        return out
    if config.dilation:
        raise ValueError("transformers' native ResNet has no dilation (DC5); use backbone='timm'")
    layer_type, depths, widths = RESNET_SHAPES[config.backbone]
    stages = ["stage1", "stage2", "stage3", "stage4"] if config.masks else ["stage4"]
    out.update(
        use_timm_backbone=False,
        backbone_config={
            "model_type": "resnet",
            "layer_type": layer_type,
            "depths": list(depths),
            "hidden_sizes": list(widths),
            "embedding_size": 64,
            "out_features": stages,
        },
    )
    return out


@torch.no_grad()
def match_per_image_loop(
    outputs: Mapping[str, Any],
    targets: Targets,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> MatchIndices:
    """The same matching as ``HungarianMatcher``, computing each image's cost separately.

    A plain reference for the matcher tests and the benchmark: one cost computation (with ``box_ops``' GIoU) and one
    device-to-host copy per image instead of one for the batch. Error messages name image 0.
    """
    logits, boxes = _prediction_tensors(outputs)  # [B, Q, C+1], [B, Q, 4]
    check_targets(targets, logits.shape[0])
    indices = []
    for i, target in enumerate(targets):
        if len(target["labels"]) == 0:
            indices.append(_empty_indices())
            continue
        labels = target["labels"].to(logits.device)
        tgt_boxes = target["boxes"].to(logits.device)
        if bool(_problem_flags(logits[i], boxes[i], labels, tgt_boxes).any()):
            raise _explain(logits[i], boxes[i], labels, tgt_boxes, [len(labels)])
        cost = (
            matching_cost(logits[i], boxes[i], labels, tgt_boxes, cost_class, cost_bbox, cost_giou)
            .cpu()
            .numpy()
        )
        if not np.isfinite(cost).all():
            raise _explain(logits[i], boxes[i], labels, tgt_boxes, [len(labels)])
        indices.append(_solve(cost))
    return indices
