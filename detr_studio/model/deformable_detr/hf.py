"""Hugging Face ``transformers`` Deformable DETR weights <-> the official (fundamentalvision) layout.

Works on plain state dicts and the parsed ``config.json``; ``transformers`` is never imported. Both
generations of key names are read:

- transformers 4.x (the layout of the ``SenseTime/deformable-detr*`` hub files): ``model.backbone.
  conv_encoder.model.*``, ``self_attn.out_proj``, ``layers.N.fc1``;
- transformers 5.x: ``model.backbone.model.*``, ``self_attn.o_proj``, ``layers.N.mlp.fc1``; files it saves
  leave out tied duplicates (``class_embed.1…``, and with refinement the top-level ``bbox_embed.*``).

The official renames (``convert_deformable_detr_to_pytorch.py``): ``norm1`` is ``self_attn_layer_norm`` in
the encoder but ``encoder_attn_layer_norm`` in the decoder; ``norm2`` is ``final_layer_norm`` in the
encoder but ``self_attn_layer_norm`` in the decoder; ``cross_attn`` is ``encoder_attn``; the decoder's
packed ``in_proj`` is split into q/k/v. The backbone is timm's ResNet (torchvision names) or the native
transformers ResNet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..hf import _backbone_from_hf, _native_resnet_key, _torchvision_resnet_key
from .config import DeformableDetrConfig
from .keys import fill_shared_heads, infer_config

_QKV = ("q_proj", "k_proj", "v_proj")
_TOP = [  # HF prefix (after "model.") -> official prefix
    ("level_embed", "transformer.level_embed"),
    ("input_proj.", "input_proj."),
    ("query_position_embeddings.", "query_embed."),
    ("reference_points.", "transformer.reference_points."),
    ("enc_output.", "transformer.enc_output."),
    ("enc_output_norm.", "transformer.enc_output_norm."),
    ("pos_trans.", "transformer.pos_trans."),
    ("pos_trans_norm.", "transformer.pos_trans_norm."),
    ("decoder.bbox_embed.", "transformer.decoder.bbox_embed."),
    ("decoder.class_embed.", "transformer.decoder.class_embed."),
]
_LAYER_PARTS = {  # 5.x module names inside a layer -> official
    "encoder": {
        "self_attn_layer_norm": "norm1",
        "final_layer_norm": "norm2",
        "mlp.fc1": "linear1",
        "mlp.fc2": "linear2",
    },
    "decoder": {
        "self_attn.o_proj": "self_attn.out_proj",
        "self_attn_layer_norm": "norm2",
        "encoder_attn_layer_norm": "norm1",
        "final_layer_norm": "norm3",
        "mlp.fc1": "linear1",
        "mlp.fc2": "linear2",
    },
}
_MSDA = ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
_ATTENTION = {"encoder": "self_attn", "decoder": "encoder_attn"}  # HF name of the deformable attention
_HF_LAYER = re.compile(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OUR_LAYER = re.compile(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_BACKBONE_V5 = "model.backbone.model."
_BACKBONE_V4 = "model.backbone.conv_encoder.model."
_OUR_BACKBONE = "backbone.0.body."

_HF_DEFAULTS: dict[str, Any] = {
    "d_model": 256,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 1024,
    "decoder_ffn_dim": 1024,
    "num_queries": 300,
    "two_stage_num_proposals": 300,
    "dropout": 0.1,
    "activation_function": "relu",
    "position_embedding_type": "sine",
    "auxiliary_loss": False,
    "num_channels": 3,
    "num_feature_levels": 4,
    "encoder_n_points": 4,
    "decoder_n_points": 4,
    "with_box_refine": False,
    "two_stage": False,
}


def is_hf_deformable_state_dict(sd: Mapping[str, Any]) -> bool:
    """True for a ``DeformableDetrForObjectDetection`` state dict (either generation of names)."""
    return "model.level_embed" in sd


def config_from_hf(hf_config: Mapping[str, Any]) -> DeformableDetrConfig:
    """Our config for a transformers ``config.json`` (as a dict); ValueError listing what we cannot build."""
    model_type = hf_config.get("model_type", "deformable_detr")
    if model_type != "deformable_detr":
        raise ValueError(f"Hugging Face config is for model_type {model_type!r}, not 'deformable_detr'")

    def get(key: str) -> Any:
        value = hf_config.get(key)
        return _HF_DEFAULTS[key] if value is None else value

    problems = []
    for a, b in (
        ("encoder_attention_heads", "decoder_attention_heads"),
        ("encoder_ffn_dim", "decoder_ffn_dim"),
    ):
        if get(a) != get(b):
            problems.append(f"{a} {get(a)} != {b} {get(b)}")
    if get("activation_function") != "relu":
        problems.append(f"activation_function {get('activation_function')!r} (only 'relu')")
    if get("position_embedding_type") != "sine":
        problems.append(f"position_embedding_type {get('position_embedding_type')!r} (only 'sine')")
    if get("num_channels") != 3:
        problems.append(f"num_channels {get('num_channels')} (only 3-channel images)")
    try:
        backbone, dilation = _backbone_from_hf(hf_config)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("Hugging Face Deformable DETR config cannot be represented: " + "; ".join(problems))
    labels = hf_config.get("num_labels")
    if labels is None and isinstance(hf_config.get("id2label"), Mapping):
        labels = len(hf_config["id2label"])
    try:
        return DeformableDetrConfig(
            num_classes=int(labels) if labels is not None else 91,
            backbone=backbone,
            dilation=dilation,
            hidden_dim=get("d_model"),
            nheads=get("encoder_attention_heads"),
            enc_layers=get("encoder_layers"),
            dec_layers=get("decoder_layers"),
            dim_feedforward=get("encoder_ffn_dim"),
            dropout=float(get("dropout")),
            num_feature_levels=get("num_feature_levels"),
            enc_n_points=get("encoder_n_points"),
            dec_n_points=get("decoder_n_points"),
            num_queries=get("two_stage_num_proposals") if get("two_stage") else get("num_queries"),
            with_box_refine=bool(get("with_box_refine")),
            two_stage=bool(get("two_stage")),
            aux_loss=bool(get("auxiliary_loss")),
        )
    except ValueError as exc:
        raise ValueError(f"Hugging Face Deformable DETR config cannot be represented: {exc}") from None


def _modernise(key: str) -> str:
    """A transformers 4.x key -> its 5.x name (5.x keys pass through unchanged)."""
    key = key.replace(_BACKBONE_V4, _BACKBONE_V5, 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".self_attn.out_proj.", ".self_attn.o_proj.")
        key = re.sub(r"(layers\.\d+)\.fc([12])\.", r"\1.mlp.fc\2.", key)
    return key


def _official_key(key: str) -> tuple[str, int | None] | None:
    """A 5.x key -> (official key, q/k/v slot of a packed in_proj or None); None when it has no place."""
    if key.startswith(("class_embed.", "bbox_embed.")):
        return key, None
    if key.startswith(_BACKBONE_V5):
        body = _torchvision_resnet_key(key[len(_BACKBONE_V5) :])
        return None if body is None else (_OUR_BACKBONE + body, None)
    for hf_prefix, ours in _TOP:
        if key.startswith("model." + hf_prefix):
            return ours + key[len("model." + hf_prefix) :], None
    match = _HF_LAYER.fullmatch(key)
    if match is None:
        return None
    side, index, module, param = match.groups()
    stem = f"transformer.{side}.layers.{index}."
    if module in _LAYER_PARTS[side]:
        return f"{stem}{_LAYER_PARTS[side][module]}.{param}", None
    attention, _, part = module.rpartition(".")
    if attention == _ATTENTION[side] and part in _MSDA:
        return f"{stem}{'self_attn' if side == 'encoder' else 'cross_attn'}.{part}.{param}", None
    if side == "decoder" and attention == "self_attn" and part in _QKV:
        return f"{stem}self_attn.in_proj_{param}", _QKV.index(part)
    return None


def convert_hf_state_dict(
    hf_sd: Mapping[str, Tensor], hf_config: Mapping[str, Any] | None = None, **hints: Any
) -> tuple[dict[str, Tensor], DeformableDetrConfig]:
    """Rename a transformers Deformable DETR state dict into the official layout and derive its config.

    The config comes from ``hf_config`` where given (checked against the shapes), else from the shapes
    and ``hints`` (see ``keys.infer_config``; 8 heads and no DC5 unless told). Tied heads a 5.x file leaves out are filled from the tensors they are tied to.
    Raises ValueError naming keys that have no place in the model.
    """
    ours: dict[str, Tensor] = {}
    packed: dict[str, dict[int, Tensor]] = {}
    unmapped = []
    for key, value in hf_sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        target = _official_key(_modernise(key))
        if target is None:
            unmapped.append(key)
            continue
        name, slot = target
        if slot is None:
            if name in ours:
                raise ValueError(f"two Hugging Face keys map to {name} (mixed 4.x and 5.x names?)")
            ours[name] = value
        else:
            packed.setdefault(name, {})[slot] = value
    if unmapped:
        shown = ", ".join(unmapped[:10]) + (f", … ({len(unmapped) - 10} more)" if len(unmapped) > 10 else "")
        raise ValueError(f"{len(unmapped)} Hugging Face keys have no place in Deformable DETR: {shown}")
    for name, pieces in packed.items():
        missing = [_QKV[i] for i in range(3) if i not in pieces]
        if missing:
            raise ValueError(f"{name}: missing the {', '.join(missing)} part(s)")
        ours[name] = torch.cat([pieces[0], pieces[1], pieces[2]], dim=0)  # [3C, C] or [3C]
    if hf_config is None:
        config = infer_config(fill_shared_heads(ours, None), **hints)
    else:
        config = config_from_hf(hf_config)
        inferred = infer_config(
            fill_shared_heads(ours, config), nheads=config.nheads, num_queries=config.num_queries
        )
        disagree = [
            f"{f}: config {getattr(config, f)!r}, weights {getattr(inferred, f)!r}"
            for f in ("num_classes", "hidden_dim", "enc_layers", "dec_layers", "dim_feedforward", "num_feature_levels",
                      "enc_n_points", "dec_n_points", "with_box_refine", "two_stage", "backbone", "backbone_width",
                      "num_queries")
            if getattr(config, f) != getattr(inferred, f)
        ]  # fmt: skip
        if disagree:
            raise ValueError("config.json does not match the weights (" + "; ".join(disagree) + ")")
    return fill_shared_heads(ours, config), config


def to_hf_state_dict(
    official_sd: Mapping[str, Tensor], *, backbone: str = "timm", legacy_names: bool = False
) -> dict[str, Tensor]:
    """The reverse: an official-layout state dict -> transformers names (5.x, or 4.x with ``legacy_names``).

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
    if key.startswith(_OUR_BACKBONE):
        body = key[len(_OUR_BACKBONE) :]
        return [(_BACKBONE_V5 + (body if backbone == "timm" else _native_resnet_key(body)), value)]
    for hf_prefix, ours in _TOP:
        if key.startswith(ours):
            return [("model." + hf_prefix + key[len(ours) :], value)]
    match = _OUR_LAYER.fullmatch(key)
    if match is None:
        if key.endswith(("in_proj_weight", "in_proj_bias")):
            stem, _, param = key.rpartition(".in_proj_")
            hf_stem = "model." + stem.removeprefix("transformer.")
            return [(f"{hf_stem}.{proj}.{param}", part) for proj, part in zip(_QKV, value.chunk(3, dim=0))]
        raise ValueError(f"{key} has no Hugging Face name")
    side, index, module, param = match.groups()
    stem = f"model.{side}.layers.{index}."
    for hf_module, our_module in _LAYER_PARTS[side].items():
        if module == our_module:
            return [(f"{stem}{hf_module}.{param}", value)]
    attention, _, part = module.rpartition(".")
    if part in _MSDA and attention in ("self_attn", "cross_attn"):
        return [(f"{stem}{_ATTENTION[side]}.{part}.{param}", value)]
    raise ValueError(f"{key} has no Hugging Face name")


def _legacy(key: str) -> str:
    """A 5.x key -> its transformers 4.x name."""
    key = key.replace(_BACKBONE_V5, _BACKBONE_V4, 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".self_attn.o_proj.", ".self_attn.out_proj.")
        key = re.sub(r"(layers\.\d+)\.mlp\.fc([12])\.", r"\1.fc\2.", key)
    return key
