"""Hugging Face ``transformers`` DETR weights -> the reference (facebookresearch/detr) layout.

Works on plain state dicts and on the parsed ``config.json`` dict (read by ``hf_config.py``);
``transformers`` is never imported. Both generations of Hugging Face key names are read:

- transformers 4.x: ``model.backbone.conv_encoder.model.*``, ``self_attn.out_proj``, ``layers.N.fc1``,
  ``bbox_attention.q_linear``, ``mask_head.lay1`` ...
- transformers 5.x: ``model.backbone.model.*``, ``self_attn.o_proj``, ``layers.N.mlp.fc1``,
  ``bbox_attention.q_proj``, ``mask_head.conv1.conv`` ...

and both backbone namings: timm's ResNet (the same names as torchvision's) and the native transformers
``ResNet`` (``embedder.embedder.convolution``, ``encoder.stages.S.layers.B.layer.I.convolution`` ...).
Separate q/k/v projections become ``nn.MultiheadAttention``'s packed ``in_proj_weight`` (rows q, k, v).

Hugging Face's ``num_labels`` is our ``num_classes``: both heads have one more output, "no object", last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..hf_common import (
    HF_BACKBONE,
    HF_BACKBONE_V4,
    QKV,
    KeyTarget,
    backbone_key,
    layer_key,
    rename_state_dict,
)
from .config import DetrConfig
from .hf_config import config_from_hf, explicit_num_labels
from .recognise import SEGMENTATION_PREFIX, NotDetr, fit_problems, shape_fields

# Hugging Face 5.x prefix <-> our prefix, for everything outside the transformer layers and the backbone.
PREFIXES: list[tuple[str, str]] = [
    ("model.input_projection.", "input_proj."),
    ("model.query_position_embeddings.", "query_embed."),
    ("model.decoder.layernorm.", "transformer.decoder.norm."),
    ("model.position_embedding.row_embeddings.", "backbone.1.row_embed."),
    ("model.position_embedding.column_embeddings.", "backbone.1.col_embed."),
    ("class_labels_classifier.", "class_embed."),
    ("bbox_predictor.", "bbox_embed."),
]
# The mask branch. Our names are also the transformers 4.x names.
MASK_PREFIXES: list[tuple[str, str]] = [
    ("bbox_attention.q_proj.", "bbox_attention.q_linear."),
    ("bbox_attention.k_proj.", "bbox_attention.k_linear."),
    ("mask_head.conv1.conv.", "mask_head.lay1."),
    ("mask_head.conv1.norm.", "mask_head.gn1."),
    ("mask_head.conv2.conv.", "mask_head.lay2."),
    ("mask_head.conv2.norm.", "mask_head.gn2."),
    ("mask_head.output_conv.", "mask_head.out_lay."),
]
for _stage in range(3):
    MASK_PREFIXES += [
        (f"mask_head.fpn_stages.{_stage}.fpn_adapter.", f"mask_head.adapter{_stage + 1}."),
        (f"mask_head.fpn_stages.{_stage}.refine.conv.", f"mask_head.lay{_stage + 3}."),
        (f"mask_head.fpn_stages.{_stage}.refine.norm.", f"mask_head.gn{_stage + 3}."),
    ]

# Transformer layer sub-modules (5.x names) -> ours. The q/k/v projections are handled apart.
LAYER_PARTS: dict[str, dict[str, str]] = {
    "encoder": {
        "self_attn.o_proj": "self_attn.out_proj",
        "self_attn_layer_norm": "norm1",
        "mlp.fc1": "linear1",
        "mlp.fc2": "linear2",
        "final_layer_norm": "norm2",
    },
    "decoder": {
        "self_attn.o_proj": "self_attn.out_proj",
        "self_attn_layer_norm": "norm1",
        "encoder_attn.o_proj": "multihead_attn.out_proj",
        "encoder_attn_layer_norm": "norm2",
        "mlp.fc1": "linear1",
        "mlp.fc2": "linear2",
        "final_layer_norm": "norm3",
    },
}
ATTENTIONS: dict[str, dict[str, str]] = {
    "encoder": {"self_attn": "self_attn"},
    "decoder": {"self_attn": "self_attn", "encoder_attn": "multihead_attn"},
}


def is_hf_state_dict(sd: Mapping[str, Any]) -> bool:
    """True for a ``DetrForObjectDetection`` / ``DetrForSegmentation`` state dict from transformers."""
    return any(k.endswith("query_position_embeddings.weight") or "class_labels_classifier." in k for k in sd)


# ----------------------------------------------------------------------------------------------------
# Hugging Face -> ours


def convert_hf_state_dict(
    hf_sd: Mapping[str, Tensor], hf_config: Mapping[str, Any] | None = None
) -> tuple[dict[str, Tensor], DetrConfig]:
    """Rename a transformers DETR state dict into the reference layout and derive its ``DetrConfig``.

    The config comes from ``hf_config`` (the ``config.json`` dict) where given; it must agree with the
    weights' shapes. Without it, everything is read from the shapes, except ``nheads`` for a detection
    model, ``dilation``, ``aux_loss`` and ``dropout``, which take transformers' defaults (8, False,
    False, 0.1). The result loads into ``build_detr(config)`` with ``strict=True``; anything that would
    not raises ValueError naming the keys.
    """
    ours = rename_state_dict(hf_sd, _from_hf_key, "DETR", _is_dropped)
    try:
        config = _config_for(ours, hf_config)
    except NotDetr as exc:
        raise ValueError(f"the weights are not a DETR detection or segmentation model: {exc}") from None
    problems = fit_problems(ours, config)
    if problems:
        raise ValueError(f"converted weights do not fit the model: {problems}")
    return ours, config


def _is_dropped(key: str) -> bool:
    """Entries the reference layout does not keep: batch-norm counters and any cached position grid."""
    if key.endswith("num_batches_tracked"):
        return True
    body = key.removeprefix(SEGMENTATION_PREFIX)
    for prefix in ("model.position_embedding.", "model.backbone.position_embedding."):
        if body.startswith(prefix):
            return not body.startswith((prefix + "row_embeddings.", prefix + "column_embeddings."))
    return False


def _modernise(key: str) -> str:
    """A transformers 4.x key -> its 5.x name (5.x keys pass through unchanged)."""
    key = key.replace(HF_BACKBONE_V4, HF_BACKBONE, 1)
    key = key.replace("model.backbone.position_embedding.", "model.position_embedding.", 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".out_proj.", ".o_proj.")
        key = re.sub(r"(layers\.\d+)\.fc([12])\.", r"\1.mlp.fc\2.", key)
    for current, legacy in MASK_PREFIXES:
        if key.startswith(legacy):
            return current + key[len(legacy) :]
    return key


def _from_hf_key(key: str) -> tuple[str, int | None] | None:
    """-> (our key, q/k/v slot or None), or None when the key has no place in our model."""
    if key.startswith(SEGMENTATION_PREFIX):
        inner = _detection_key(_modernise(key[len(SEGMENTATION_PREFIX) :]))
        return None if inner is None else (SEGMENTATION_PREFIX + inner[0], inner[1])
    key = _modernise(key)
    for current, our in MASK_PREFIXES:
        if key.startswith(current):
            return our + key[len(current) :], None
    return _detection_key(key)


def _detection_key(key: str) -> tuple[str, int | None] | None:
    for hf_prefix, our_prefix in PREFIXES:
        if key.startswith(hf_prefix):
            return our_prefix + key[len(hf_prefix) :], None
    if key.startswith(HF_BACKBONE):
        return backbone_key(key)
    return layer_key(key, LAYER_PARTS, _attention)


def _attention(side: str, attention: str, projection: str) -> KeyTarget | None:
    """A q/k/v projection of a self- or cross-attention -> its slot of our packed ``in_proj``."""
    if attention in ATTENTIONS[side] and projection in QKV:
        return ATTENTIONS[side][attention], QKV.index(projection)
    return None


def _config_for(ours: Mapping[str, Tensor], hf_config: Mapping[str, Any] | None) -> DetrConfig:
    """The config of converted weights: from ``hf_config`` where given (it must agree with the shapes), else
    from the shapes with transformers' defaults for what they cannot say."""
    inferred = shape_fields(ours)
    if hf_config is None:
        return DetrConfig.from_dict({"nheads": 8, **inferred})
    config = config_from_hf(hf_config)
    if explicit_num_labels(hf_config) is None:
        config = config.replace(num_classes=inferred["num_classes"])
    if not hf_config.get("architectures"):
        config = config.replace(masks=inferred["masks"])
    disagree = [
        f"{name}: config {getattr(config, name)!r}, weights {value!r}"
        for name, value in inferred.items()
        if getattr(config, name) != value
    ]
    if disagree:
        raise ValueError("config.json does not match the weights (" + "; ".join(disagree) + ")")
    return config
