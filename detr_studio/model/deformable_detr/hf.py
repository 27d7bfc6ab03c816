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

from torch import Tensor

from ..config_fields import Flag, Integer, Rule, rule_of
from ..family import Hints
from ..hf_common import (
    HF_BACKBONE,
    HF_BACKBONE_V4,
    QKV,
    ConfigReader,
    KeyTarget,
    backbone_from_hf,
    backbone_key,
    explicit_num_labels,
    layer_key,
    rename_state_dict,
)
from .config import DeformableDetrConfig
from .recognise import NotDeformable, config_for, fill_shared_heads, fit_problems

TOP_PREFIXES = [  # HF prefix (after "model.") -> official prefix
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
LAYER_PARTS = {  # 5.x module names inside a layer -> official
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
MSDA_PARTS = ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
ATTENTIONS = {"encoder": "self_attn", "decoder": "encoder_attn"}  # HF name of the deformable attention

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
    "dilation": False,
}
_FIELD_OF = {  # Hugging Face key -> the field whose rule it must pass
    "d_model": "hidden_dim",
    "encoder_layers": "enc_layers",
    "decoder_layers": "dec_layers",
    "encoder_attention_heads": "nheads",
    "decoder_attention_heads": "nheads",
    "encoder_ffn_dim": "dim_feedforward",
    "decoder_ffn_dim": "dim_feedforward",
    "num_queries": "num_queries",
    "two_stage_num_proposals": "num_queries",
    "dropout": "dropout",
    "auxiliary_loss": "aux_loss",
    "num_feature_levels": "num_feature_levels",
    "encoder_n_points": "enc_n_points",
    "decoder_n_points": "dec_n_points",
    "with_box_refine": "with_box_refine",
    "two_stage": "two_stage",
    "num_labels": "num_classes",
}
_RULES: dict[str, Rule] = {
    **{key: rule_of(DeformableDetrConfig, name) for key, name in _FIELD_OF.items()},
    "dilation": Flag(),
    "num_channels": Integer(1, 64),
}


def is_hf_deformable_state_dict(sd: Mapping[str, Any]) -> bool:
    """True for a ``DeformableDetrForObjectDetection`` state dict (either generation of names)."""
    return "model.level_embed" in sd


def config_from_hf(hf_config: Mapping[str, Any]) -> DeformableDetrConfig:
    """Our config for a transformers ``config.json`` (as a dict). ConfigError names a key whose value is of the
    wrong type or out of range; ValueError lists every setting we cannot build."""
    reader = ConfigReader(hf_config, "deformable_detr", _HF_DEFAULTS, _RULES)
    get = reader.get
    problems = reader.common_problems()
    if get("position_embedding_type") != "sine":
        problems.append(f"position_embedding_type {get('position_embedding_type')!r} (only 'sine')")
    try:
        backbone, dilation = backbone_from_hf(hf_config, get("dilation"))
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("Hugging Face Deformable DETR config cannot be represented: " + "; ".join(problems))
    labels = explicit_num_labels(hf_config, _RULES["num_labels"])
    return DeformableDetrConfig(
        num_classes=2 if labels is None else labels,  # transformers' default is 2 labels
        backbone=backbone,
        dilation=dilation,
        **reader.transformer_fields(),
        num_feature_levels=get("num_feature_levels"),
        enc_n_points=get("encoder_n_points"),
        dec_n_points=get("decoder_n_points"),
        num_queries=get("two_stage_num_proposals") if get("two_stage") else get("num_queries"),
        with_box_refine=get("with_box_refine"),
        two_stage=get("two_stage"),
    )


def _modernise(key: str) -> str:
    """A transformers 4.x key -> its 5.x name (5.x keys pass through unchanged)."""
    key = key.replace(HF_BACKBONE_V4, HF_BACKBONE, 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".self_attn.out_proj.", ".self_attn.o_proj.")
        key = re.sub(r"(layers\.\d+)\.fc([12])\.", r"\1.mlp.fc\2.", key)
    return key


def _official_key(key: str) -> KeyTarget | None:
    """A 4.x or 5.x key -> (official key, q/k/v slot of a packed in_proj or None); None when it has no place."""
    key = _modernise(key)
    if key.startswith(("class_embed.", "bbox_embed.")):
        return key, None
    if key.startswith(HF_BACKBONE):
        return backbone_key(key)
    for hf_prefix, ours in TOP_PREFIXES:
        if key.startswith("model." + hf_prefix):
            return ours + key[len("model." + hf_prefix) :], None
    return layer_key(key, LAYER_PARTS, _attention)


def _attention(side: str, attention: str, projection: str) -> KeyTarget | None:
    """The deformable attention's four linears keep their names; the decoder's self-attention q/k/v go into
    its packed ``in_proj``."""
    if attention == ATTENTIONS[side] and projection in MSDA_PARTS:
        return f"{'self_attn' if side == 'encoder' else 'cross_attn'}.{projection}", None
    if side == "decoder" and attention == "self_attn" and projection in QKV:
        return "self_attn", QKV.index(projection)
    return None


def convert_hf_state_dict(
    hf_sd: Mapping[str, Tensor], hf_config: Mapping[str, Any] | None = None, hints: Hints | None = None
) -> tuple[dict[str, Tensor], DeformableDetrConfig]:
    """Rename a transformers Deformable DETR state dict into the official layout and derive its config.

    The config comes from ``hf_config`` where given (it must agree with the shapes), else from the shapes and
    ``hints`` (8 heads; DC5 from a file name with "dc5"). Tied heads a 5.x file leaves out are filled from the
    tensors they are tied to. Raises ValueError naming keys that have no place in the model (ConfigError for
    a bad config value).
    """
    ours = rename_state_dict(hf_sd, _official_key, "Deformable DETR")
    try:
        if hf_config is None:
            config = config_for(ours, hints or Hints())
        else:
            config = _checked_against_weights(config_from_hf(hf_config), hf_config, ours)
    except NotDeformable as exc:
        raise ValueError(f"the weights are not a Deformable DETR model: {exc}") from None
    full = fill_shared_heads(ours, config)
    problems = fit_problems(full, config)
    if problems:
        raise ValueError(f"converted weights do not fit the model: {problems}")
    return full, config


def _checked_against_weights(
    config: DeformableDetrConfig, hf_config: Mapping[str, Any], ours: Mapping[str, Tensor]
) -> DeformableDetrConfig:
    """``config`` (from config.json) with the class count of the weights when the file states none; ValueError
    naming every field in which it and the weights disagree."""
    inferred = config_for(ours, Hints(training_args={"nheads": config.nheads}))
    if explicit_num_labels(hf_config, _RULES["num_labels"]) is None:
        config = config.replace(num_classes=inferred.num_classes)
    if config.two_stage:  # the proposal count is not in the weights
        inferred = inferred.replace(num_queries=config.num_queries)
    disagree = [
        f"{name}: config {getattr(config, name)!r}, weights {getattr(inferred, name)!r}"
        for name in _SHAPE_FIELDS
        if getattr(config, name) != getattr(inferred, name)
    ]
    if disagree:
        raise ValueError("config.json does not match the weights (" + "; ".join(disagree) + ")")
    return config


_SHAPE_FIELDS = (
    "num_classes", "hidden_dim", "enc_layers", "dec_layers", "dim_feedforward", "num_feature_levels",
    "enc_n_points", "dec_n_points", "with_box_refine", "two_stage", "backbone", "backbone_width", "num_queries",
)  # fmt: skip
