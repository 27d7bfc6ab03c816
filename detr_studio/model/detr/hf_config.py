"""A Hugging Face ``transformers`` DETR ``config.json`` -> our `DetrConfig`, every value checked.

Keys left out take transformers' defaults. Each value we read gets the type and range check of the field it
becomes (``d_model`` that of ``hidden_dim``, ``encoder_layers`` that of ``enc_layers`` ...), so
``"d_model": "abc"`` is refused as ``d_model must be an integer from 1 to 4096, got 'abc'`` before anything
uses it. Settings we cannot build (another backbone, activation, unequal encoder and decoder widths) are
listed together. Works on the parsed dict; ``transformers`` is never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import hf_common
from ..config_fields import Flag, Integer, Rule, rule_of
from ..hf_common import ConfigReader, backbone_from_hf
from .config import DetrConfig

# transformers' own defaults for keys a config.json may leave out.
HF_DEFAULTS: dict[str, Any] = {
    "d_model": 256,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "num_queries": 100,
    "dropout": 0.1,
    "activation_function": "relu",
    "position_embedding_type": "sine",
    "auxiliary_loss": False,
    "num_channels": 3,
    "dilation": False,
}

# Each Hugging Face key we read -> the rule its value must pass (that of the field it becomes).
_RULES: dict[str, Rule] = {
    "d_model": rule_of(DetrConfig, "hidden_dim"),
    "encoder_layers": rule_of(DetrConfig, "enc_layers"),
    "decoder_layers": rule_of(DetrConfig, "dec_layers"),
    "encoder_attention_heads": rule_of(DetrConfig, "nheads"),
    "decoder_attention_heads": rule_of(DetrConfig, "nheads"),
    "encoder_ffn_dim": rule_of(DetrConfig, "dim_feedforward"),
    "decoder_ffn_dim": rule_of(DetrConfig, "dim_feedforward"),
    "num_queries": rule_of(DetrConfig, "num_queries"),
    "dropout": rule_of(DetrConfig, "dropout"),
    "auxiliary_loss": rule_of(DetrConfig, "aux_loss"),
    "dilation": Flag(),
    "num_labels": rule_of(DetrConfig, "num_classes"),
    "num_channels": Integer(1, 64),
}


def explicit_num_labels(hf_config: Mapping[str, Any]) -> int | None:
    """The class count a config states (``num_labels`` or the size of ``id2label``), or None."""
    return hf_common.explicit_num_labels(hf_config, _RULES["num_labels"])


def config_from_hf(hf_config: Mapping[str, Any]) -> DetrConfig:
    """Our ``DetrConfig`` for a transformers DETR ``config.json`` (as a dict).

    Raises ConfigError naming the key whose value is of the wrong type or out of range, and ValueError listing
    every setting we cannot build. Dropout settings other than ``dropout`` only matter for training and are
    not carried over.
    """
    reader = ConfigReader(hf_config, "detr", HF_DEFAULTS, _RULES)
    get = reader.get
    problems = reader.common_problems()
    position = {"v2": "sine", "v3": "learned"}.get(
        get("position_embedding_type"), get("position_embedding_type")
    )
    if position not in ("sine", "learned"):
        problems.append(f"position_embedding_type {position!r} (only 'sine' or 'learned')")
    try:
        backbone, dilation = backbone_from_hf(hf_config, get("dilation"))
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("Hugging Face DETR config cannot be represented: " + "; ".join(problems))

    num_labels = explicit_num_labels(hf_config)
    architectures = hf_config.get("architectures") or []
    return DetrConfig(
        num_classes=2 if num_labels is None else num_labels,  # transformers' default is 2 labels
        backbone=backbone,
        dilation=dilation,
        position_embedding=position,
        **reader.transformer_fields(),
        pre_norm=False,
        num_queries=get("num_queries"),
        masks=isinstance(architectures, list) and "DetrForSegmentation" in architectures,
    )
