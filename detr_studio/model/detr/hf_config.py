"""A Hugging Face ``transformers`` DETR ``config.json`` -> our `DetrConfig`, every value checked.

Keys left out take transformers' defaults. Each value we read gets the type and range check of the field it
becomes (``d_model`` that of ``hidden_dim``, ``encoder_layers`` that of ``enc_layers`` ...), so
``"d_model": "abc"`` is refused as ``d_model must be an integer from 1 to 4096, got 'abc'`` before anything
uses it. Settings we cannot build (another backbone, activation, unequal encoder and decoder widths) are
listed together. Works on the parsed dict; ``transformers`` is never imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..config_fields import ConfigError, Flag, Integer, Rule, check_value, rule_of
from .config import DetrConfig
from .recognise import RESNET_SHAPES

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
_TEXT_KEYS = ("activation_function", "position_embedding_type")


def explicit_num_labels(hf_config: Mapping[str, Any]) -> int | None:
    """The class count a config states (``num_labels`` or the size of ``id2label``), or None."""
    if hf_config.get("num_labels") is not None:
        check_value(_RULES["num_labels"], hf_config["num_labels"], "num_labels")
        return int(hf_config["num_labels"])
    id2label = hf_config.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        return len(id2label)
    return None


def config_from_hf(hf_config: Mapping[str, Any]) -> DetrConfig:
    """Our ``DetrConfig`` for a transformers DETR ``config.json`` (as a dict).

    Raises ConfigError naming the key whose value is of the wrong type or out of range, and ValueError listing
    every setting we cannot build. Dropout settings other than ``dropout`` only matter for training and are
    not carried over.
    """
    if not isinstance(hf_config, Mapping):
        raise ConfigError("", f"must be a JSON object, got a {type(hf_config).__name__}")
    model_type = hf_config.get("model_type", "detr")
    if model_type != "detr":
        raise ValueError(f"Hugging Face config is for model_type {model_type!r}, not 'detr'")

    def get(key: str) -> Any:
        value = hf_config.get(key)
        value = HF_DEFAULTS[key] if value is None else value
        if key in _TEXT_KEYS:
            return _text(value, key)
        check_value(_RULES[key], value, key)
        return value

    problems = []
    if get("activation_function") != "relu":
        problems.append(f"activation_function {get('activation_function')!r} (only 'relu')")
    if get("encoder_attention_heads") != get("decoder_attention_heads"):
        problems.append(
            f"encoder_attention_heads {get('encoder_attention_heads')} != "
            f"decoder_attention_heads {get('decoder_attention_heads')}"
        )
    if get("encoder_ffn_dim") != get("decoder_ffn_dim"):
        problems.append(
            f"encoder_ffn_dim {get('encoder_ffn_dim')} != decoder_ffn_dim {get('decoder_ffn_dim')}"
        )
    if get("num_channels") != 3:
        problems.append(f"num_channels {get('num_channels')} (only 3-channel images)")
    position = {"v2": "sine", "v3": "learned"}.get(
        get("position_embedding_type"), get("position_embedding_type")
    )
    if position not in ("sine", "learned"):
        problems.append(f"position_embedding_type {position!r} (only 'sine' or 'learned')")
    if get("d_model") % get("encoder_attention_heads"):
        problems.append(
            f"d_model {get('d_model')} is not divisible by {get('encoder_attention_heads')} heads"
        )
    try:
        backbone, dilation = _backbone_from_hf(hf_config, get("dilation"))
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
        hidden_dim=get("d_model"),
        nheads=get("encoder_attention_heads"),
        enc_layers=get("encoder_layers"),
        dec_layers=get("decoder_layers"),
        dim_feedforward=get("encoder_ffn_dim"),
        dropout=float(get("dropout")),
        pre_norm=False,
        num_queries=get("num_queries"),
        aux_loss=get("auxiliary_loss"),
        masks=isinstance(architectures, list) and "DetrForSegmentation" in architectures,
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"must be a string, got {value!r}")
    return value


def _backbone_from_hf(hf_config: Mapping[str, Any], dilation: bool) -> tuple[str, bool]:
    """-> (our backbone name, dilation), from the 4.x or the 5.x way of naming the backbone."""
    sub = hf_config.get("backbone_config")
    if sub is None:
        name = _text(hf_config.get("backbone") or "resnet50", "backbone")
        timm = hf_config.get("use_timm_backbone", True)
        check_value(Flag(), timm, "use_timm_backbone")
        if timm:
            return _timm_resnet(name), dilation
        # A native backbone named by its Hub id; transformers ignores `dilation` for native backbones.
        return _hub_resnet(name), False
    if not isinstance(sub, Mapping):
        raise ValueError(f"backbone_config must be an object, got {type(sub).__name__}")
    kind = sub.get("model_type")
    if kind == "timm_backbone":
        stride = sub.get("output_stride")
        if stride not in (None, 16, 32):
            raise ValueError(f"timm backbone output_stride {stride!r} (only 32, or 16 for DC5)")
        name = _text(sub.get("backbone") or "resnet50", "backbone_config.backbone")
        return _timm_resnet(name), dilation or stride == 16
    if kind == "resnet":
        return _native_resnet(sub), False
    raise ValueError(f"backbone model_type {kind!r} (only ResNet-18/34/50/101)")


def _timm_resnet(name: str) -> str:
    """timm names: 'resnet50', 'timm/resnet50.a1_in1k', 'tv_resnet101' are all plain torchvision ResNets."""
    base = name.removeprefix("timm/").split(".")[0].removeprefix("tv_")
    if base not in RESNET_SHAPES:
        raise ValueError(f"timm backbone {name!r} (only plain resnet18/34/50/101)")
    return base


def _hub_resnet(name: str) -> str:
    match = re.search(r"resnet-?(18|34|50|101)$", name)
    if match is None:
        raise ValueError(f"backbone {name!r} (only ResNet-18/34/50/101, e.g. 'microsoft/resnet-50')")
    return f"resnet{match.group(1)}"


def _native_resnet(sub: Mapping[str, Any]) -> str:
    layer_type = sub.get("layer_type", "bottleneck")
    depths, widths = sub.get("depths", (3, 4, 6, 3)), sub.get("hidden_sizes", (256, 512, 1024, 2048))
    if not isinstance(depths, (list, tuple)) or not isinstance(widths, (list, tuple)):
        raise ValueError("native ResNet backbone: depths and hidden_sizes must be lists")
    if sub.get("embedding_size", 64) != 64 or sub.get("hidden_act", "relu") != "relu":
        raise ValueError("native ResNet backbone with a non-standard stem or activation")
    if sub.get("downsample_in_bottleneck", False) or sub.get("downsample_in_first_stage", False):
        raise ValueError("native ResNet backbone with strides placed differently from torchvision's ResNet")
    for name, shape in RESNET_SHAPES.items():
        if shape == (layer_type, tuple(depths), tuple(widths)):
            return name
    raise ValueError(f"native ResNet backbone {layer_type} depths {list(depths)} widths {list(widths)}")
