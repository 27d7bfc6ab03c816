"""What the Hugging Face ``transformers`` layouts of every family share.

- The backbone: how a ``config.json`` names it (transformers 4.x: ``backbone`` + ``use_timm_backbone``; 5.x:
  ``backbone_config``), and its weights' keys (timm's ResNet uses torchvision's names; transformers' native
  ``ResNet`` its own), under ``model.backbone.model.`` (5.x) or ``model.backbone.conv_encoder.model.`` (4.x).
- Reading ``config.json`` values with the checks of the fields they become (`ConfigReader`), and the settings
  no family here can build (another activation, unequal encoder and decoder widths, other than 3 channels).
- Renaming a state dict key by key (`rename_state_dict`), packing separate q/k/v projections into
  ``nn.MultiheadAttention``'s ``in_proj`` (rows q, k, v).

Works on plain state dicts and the parsed ``config.json``; ``transformers`` is never imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .backbone import RESNET_SHAPES
from .config_fields import ConfigError, Flag, Rule, check_value
from .state_dicts import listing

HF_BACKBONE = "model.backbone.model."
HF_BACKBONE_V4 = "model.backbone.conv_encoder.model."
OUR_BACKBONE = "backbone.0.body."
QKV = ("q_proj", "k_proj", "v_proj")

_BN = r"(weight|bias|running_mean|running_var)"
TORCHVISION_RESNET_KEY = re.compile(
    rf"conv1\.weight|bn1\.{_BN}|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}|downsample\.0\.weight|downsample\.1\.{_BN})"
)
_NATIVE_STEM = re.compile(r"embedder\.embedder\.(convolution|normalization)\.(.+)")
_NATIVE_SHORTCUT = re.compile(
    r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.(convolution|normalization)\.(.+)"
)
_NATIVE_CONV = re.compile(
    r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.(convolution|normalization)\.(.+)"
)

KeyTarget = tuple[str, int | None]  # (our key, q/k/v slot of a packed in_proj, or None)
HF_LAYER = re.compile(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
# (side, attention module, its projection) -> (our module, q/k/v slot or None), or None: no place
AttentionTarget = Callable[[str, str, str], "KeyTarget | None"]


# --------------------------------------------------------------------------------------------- weights


def torchvision_resnet_key(key: str) -> str | None:
    """A backbone key (after the backbone prefix) in timm's naming (= torchvision's) or transformers' native
    ResNet naming -> torchvision's; None when it is neither."""
    if TORCHVISION_RESNET_KEY.fullmatch(key):
        return key
    if match := _NATIVE_STEM.fullmatch(key):
        part, param = match.groups()
        name = f"{'conv1' if part == 'convolution' else 'bn1'}.{param}"
    elif match := _NATIVE_SHORTCUT.fullmatch(key):
        stage, block, part, param = match.groups()
        name = f"layer{int(stage) + 1}.{block}.downsample.{0 if part == 'convolution' else 1}.{param}"
    elif match := _NATIVE_CONV.fullmatch(key):
        stage, block, conv, part, param = match.groups()
        name = f"layer{int(stage) + 1}.{block}.{'conv' if part == 'convolution' else 'bn'}{int(conv) + 1}.{param}"
    else:
        return None
    return name if TORCHVISION_RESNET_KEY.fullmatch(name) else None


def backbone_key(key: str) -> KeyTarget | None:
    """A 5.x backbone key -> our key; None for keys outside the backbone or with no place in a ResNet."""
    if not key.startswith(HF_BACKBONE):
        return None
    body = torchvision_resnet_key(key[len(HF_BACKBONE) :])
    return None if body is None else (OUR_BACKBONE + body, None)


def layer_key(
    key: str, parts: Mapping[str, Mapping[str, str]], attention: AttentionTarget
) -> KeyTarget | None:
    """A 5.x transformer-layer key (``model.encoder.layers.3.mlp.fc1.weight``) -> our key: whole modules renamed
    by ``parts[side]``, attention projections by the family's ``attention``; None for other keys."""
    match = HF_LAYER.fullmatch(key)
    if match is None:
        return None
    side, index, module, param = match.groups()
    stem = f"transformer.{side}.layers.{index}."
    if module in parts[side]:
        return f"{stem}{parts[side][module]}.{param}", None
    owner, _, projection = module.rpartition(".")
    target = attention(side, owner, projection)
    if target is None:
        return None
    name, slot = target
    return (f"{stem}{name}.{param}" if slot is None else f"{stem}{name}.in_proj_{param}"), slot


def rename_state_dict(
    hf_sd: Mapping[str, Tensor],
    target_of: Callable[[str], KeyTarget | None],
    model_title: str,
    dropped: Callable[[str], bool] = lambda key: key.endswith("num_batches_tracked"),
) -> dict[str, Tensor]:
    """Every key renamed by ``target_of`` (-> (our key, q/k/v slot or None), or None for a key with no place),
    the q/k/v slots packed into one [3C, C] / [3C] tensor; keys for which ``dropped`` is true are left out.
    Raises ValueError naming the keys with no place, two keys for one place, or a packed part missing."""
    ours: dict[str, Tensor] = {}
    packed: dict[str, dict[int, Tensor]] = {}  # our in_proj key -> {0: q, 1: k, 2: v}
    unmapped: list[str] = []
    for key, value in hf_sd.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{key} is a {type(value).__name__}, not a tensor")
        if dropped(key):
            continue
        target = target_of(key)
        if target is None:
            unmapped.append(key)
            continue
        our_key, slot = target
        if slot is None:
            if our_key in ours:
                raise ValueError(f"two Hugging Face keys map to {our_key} (mixed 4.x and 5.x names?)")
            ours[our_key] = value
        else:
            pieces = packed.setdefault(our_key, {})
            if slot in pieces:
                raise ValueError(f"two Hugging Face keys give the {QKV[slot]} part of {our_key}")
            pieces[slot] = value
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} Hugging Face keys have no place in {model_title}: {listing(unmapped)}"
        )
    for our_key, pieces in packed.items():
        missing = [QKV[i] for i in range(3) if i not in pieces]
        if missing:
            raise ValueError(f"{our_key}: missing the {', '.join(missing)} part(s)")
        ours[our_key] = torch.cat([pieces[0], pieces[1], pieces[2]], dim=0)  # [3C, C] or [3C]
    return ours


# --------------------------------------------------------------------------------------------- config.json


class ConfigReader:
    """Values of a ``config.json`` dict for ``model_type`` (another model_type is a ValueError): a key left out
    (or null) takes ``defaults[key]``; each value read passes ``rules[key]`` (the rule of the field it becomes),
    text keys must be strings. ConfigError names the key otherwise."""

    def __init__(
        self,
        hf_config: Mapping[str, Any],
        model_type: str,
        defaults: Mapping[str, Any],
        rules: Mapping[str, Rule],
        text_keys: tuple[str, ...] = ("activation_function", "position_embedding_type"),
    ):
        if not isinstance(hf_config, Mapping):
            raise ConfigError("", f"must be a JSON object, got a {type(hf_config).__name__}")
        stated = hf_config.get("model_type", model_type)
        if stated != model_type:
            raise ValueError(f"Hugging Face config is for model_type {stated!r}, not {model_type!r}")
        self.hf_config = hf_config
        self.defaults = defaults
        self.rules = rules
        self.text_keys = text_keys

    def get(self, key: str) -> Any:
        value = self.hf_config.get(key)
        value = self.defaults[key] if value is None else value
        if key in self.text_keys:
            return text_value(value, key)
        check_value(self.rules[key], value, key)
        return value

    def transformer_fields(self) -> dict[str, Any]:
        """The config fields every family reads the same way: width, heads, layers, feed-forward width,
        dropout and the auxiliary loss (encoder values; ``common_problems`` checks the decoder's agree)."""
        get = self.get
        return {
            "hidden_dim": get("d_model"),
            "nheads": get("encoder_attention_heads"),
            "enc_layers": get("encoder_layers"),
            "dec_layers": get("decoder_layers"),
            "dim_feedforward": get("encoder_ffn_dim"),
            "dropout": float(get("dropout")),
            "aux_loss": get("auxiliary_loss"),
        }

    def common_problems(self) -> list[str]:
        """Settings that no family here builds: the activation, unequal encoder and decoder head counts or
        feed-forward widths, images of other than 3 channels, a width the heads do not divide."""
        get = self.get
        problems = []
        if get("activation_function") != "relu":
            problems.append(f"activation_function {get('activation_function')!r} (only 'relu')")
        for enc, dec in (
            ("encoder_attention_heads", "decoder_attention_heads"),
            ("encoder_ffn_dim", "decoder_ffn_dim"),
        ):
            if get(enc) != get(dec):
                problems.append(f"{enc} {get(enc)} != {dec} {get(dec)}")
        if get("num_channels") != 3:
            problems.append(f"num_channels {get('num_channels')} (only 3-channel images)")
        if get("d_model") % get("encoder_attention_heads"):
            problems.append(
                f"d_model {get('d_model')} is not divisible by {get('encoder_attention_heads')} heads"
            )
        return problems


def explicit_num_labels(hf_config: Mapping[str, Any], rule: Rule) -> int | None:
    """The class count a config states (``num_labels``, checked by ``rule``, or the size of ``id2label``)."""
    if hf_config.get("num_labels") is not None:
        check_value(rule, hf_config["num_labels"], "num_labels")
        return int(hf_config["num_labels"])
    id2label = hf_config.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        return len(id2label)
    return None


def text_value(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"must be a string, got {value!r}")
    return value


def backbone_from_hf(hf_config: Mapping[str, Any], dilation: bool) -> tuple[str, bool]:
    """-> (our backbone name, dilation), from the 4.x or the 5.x way of naming the backbone. ValueError for a
    backbone we cannot build."""
    sub = hf_config.get("backbone_config")
    if sub is None:
        name = text_value(hf_config.get("backbone") or "resnet50", "backbone")
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
        name = text_value(sub.get("backbone") or "resnet50", "backbone_config.backbone")
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
