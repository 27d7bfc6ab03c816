"""Hugging Face ``transformers`` DETR weights <-> the reference (facebookresearch/detr) layout.

Works on plain state dicts and on the parsed ``config.json`` dict; ``transformers`` is never imported.
Both generations of Hugging Face key names are read:

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

import torch
from torch import Tensor

from .config import DetrConfig
from .detr import build_detr

SEGMENTATION_PREFIX = "detr."

# Hugging Face 5.x prefix <-> our prefix, for everything outside the transformer layers and the backbone.
_PREFIXES: list[tuple[str, str]] = [
    ("model.input_projection.", "input_proj."),
    ("model.query_position_embeddings.", "query_embed."),
    ("model.decoder.layernorm.", "transformer.decoder.norm."),
    ("model.position_embedding.row_embeddings.", "backbone.1.row_embed."),
    ("model.position_embedding.column_embeddings.", "backbone.1.col_embed."),
    ("class_labels_classifier.", "class_embed."),
    ("bbox_predictor.", "bbox_embed."),
]
# The mask branch. Our names are also the transformers 4.x names.
_MASK_PREFIXES: list[tuple[str, str]] = [
    ("bbox_attention.q_proj.", "bbox_attention.q_linear."),
    ("bbox_attention.k_proj.", "bbox_attention.k_linear."),
    ("mask_head.conv1.conv.", "mask_head.lay1."),
    ("mask_head.conv1.norm.", "mask_head.gn1."),
    ("mask_head.conv2.conv.", "mask_head.lay2."),
    ("mask_head.conv2.norm.", "mask_head.gn2."),
    ("mask_head.output_conv.", "mask_head.out_lay."),
]
for _stage in range(3):
    _MASK_PREFIXES += [
        (f"mask_head.fpn_stages.{_stage}.fpn_adapter.", f"mask_head.adapter{_stage + 1}."),
        (f"mask_head.fpn_stages.{_stage}.refine.conv.", f"mask_head.lay{_stage + 3}."),
        (f"mask_head.fpn_stages.{_stage}.refine.norm.", f"mask_head.gn{_stage + 3}."),
    ]

# Transformer layer sub-modules (5.x names) -> ours. The q/k/v projections are handled apart.
_LAYER_PARTS: dict[str, dict[str, str]] = {
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
_ATTENTIONS: dict[str, dict[str, str]] = {
    "encoder": {"self_attn": "self_attn"},
    "decoder": {"self_attn": "self_attn", "encoder_attn": "multihead_attn"},
}
_QKV = ("q_proj", "k_proj", "v_proj")

_HF_LAYER = re.compile(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OUR_LAYER = re.compile(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OUR_PACKED = re.compile(r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(\w+)\.in_proj_(weight|bias)")

_HF_BACKBONE = "model.backbone.model."
_HF_BACKBONE_V4 = "model.backbone.conv_encoder.model."
_OUR_BACKBONE = "backbone.0.body."
_BN = r"(weight|bias|running_mean|running_var)"
_TORCHVISION_RESNET_KEY = re.compile(
    rf"conv1\.weight|bn1\.{_BN}|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}|downsample\.0\.weight|downsample\.1\.{_BN})"
)
_NATIVE_STEM = re.compile(r"embedder\.embedder\.(convolution|normalization)\.(.+)")
_NATIVE_SHORTCUT = re.compile(
    r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.(convolution|normalization)\.(.+)"
)
_NATIVE_CONV = re.compile(
    r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.(convolution|normalization)\.(.+)"
)
_TV_STEM = re.compile(r"(conv1|bn1)\.(.+)")
_TV_SHORTCUT = re.compile(r"layer(\d)\.(\d+)\.downsample\.([01])\.(.+)")
_TV_CONV = re.compile(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)")

# (block type, blocks per stage, stage output widths) of each ResNet we can build.
_RESNET_SHAPES: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048)),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (256, 512, 1024, 2048)),
}

# transformers' own defaults for keys a config.json may leave out.
_HF_DEFAULTS: dict[str, Any] = {
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


# ----------------------------------------------------------------------------------------------------
# Recognising and reading a config


def is_hf_state_dict(sd: Mapping[str, Any]) -> bool:
    """True for a ``DetrForObjectDetection`` / ``DetrForSegmentation`` state dict from transformers."""
    return any(k.endswith("query_position_embeddings.weight") or "class_labels_classifier." in k for k in sd)


def config_from_hf(hf_config: Mapping[str, Any]) -> DetrConfig:
    """Our ``DetrConfig`` for a transformers DETR ``config.json`` (as a dict).

    Keys left out take transformers' defaults. Raises ValueError listing every setting we cannot build
    (another backbone, another activation, different encoder/decoder widths, ...). Dropout settings
    other than ``dropout`` only matter for training and are not carried over.
    """
    if not isinstance(hf_config, Mapping):
        raise ValueError(f"Hugging Face config must be a JSON object, got {type(hf_config).__name__}")
    model_type = hf_config.get("model_type", "detr")
    if model_type != "detr":
        raise ValueError(f"Hugging Face config is for model_type {model_type!r}, not 'detr'")

    def get(key: str) -> Any:
        value = hf_config.get(key)
        return _HF_DEFAULTS[key] if value is None else value

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
    if get("position_embedding_type") not in ("sine", "learned"):
        problems.append(
            f"position_embedding_type {get('position_embedding_type')!r} (only 'sine' or 'learned')"
        )
    if get("d_model") % get("encoder_attention_heads"):
        problems.append(
            f"d_model {get('d_model')} is not divisible by {get('encoder_attention_heads')} heads"
        )
    try:
        backbone, dilation = _backbone_from_hf(hf_config)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("Hugging Face DETR config cannot be represented: " + "; ".join(problems))

    num_labels = _explicit_num_labels(hf_config)
    return DetrConfig(
        num_classes=2 if num_labels is None else num_labels,  # transformers' default is 2 labels
        backbone=backbone,
        dilation=dilation,
        position_embedding=get("position_embedding_type"),
        hidden_dim=get("d_model"),
        nheads=get("encoder_attention_heads"),
        enc_layers=get("encoder_layers"),
        dec_layers=get("decoder_layers"),
        dim_feedforward=get("encoder_ffn_dim"),
        dropout=float(get("dropout")),
        pre_norm=False,
        num_queries=get("num_queries"),
        aux_loss=bool(get("auxiliary_loss")),
        masks="DetrForSegmentation" in (hf_config.get("architectures") or []),
    )


def _explicit_num_labels(hf_config: Mapping[str, Any]) -> int | None:
    if hf_config.get("num_labels") is not None:
        return int(hf_config["num_labels"])
    id2label = hf_config.get("id2label")
    if isinstance(id2label, Mapping) and id2label:
        return len(id2label)
    return None


def _backbone_from_hf(hf_config: Mapping[str, Any]) -> tuple[str, bool]:
    """-> (our backbone name, dilation), from the 4.x or the 5.x way of naming the backbone."""
    dilation = bool(hf_config.get("dilation") or False)
    sub = hf_config.get("backbone_config")
    if sub is None:
        name = hf_config.get("backbone") or "resnet50"
        if hf_config.get("use_timm_backbone", True):
            return _timm_resnet(name), dilation
        # A native backbone named by its Hub id; transformers ignores `dilation` for native backbones.
        return _hub_resnet(name), False
    if not isinstance(sub, Mapping):
        raise ValueError(f"backbone_config must be an object, got {type(sub).__name__}")
    kind = sub.get("model_type")
    if kind == "timm_backbone":
        stride = sub.get("output_stride")
        if stride not in (None, 16, 32):
            raise ValueError(f"timm backbone output_stride {stride} (only 32, or 16 for DC5)")
        return _timm_resnet(sub.get("backbone") or "resnet50"), dilation or stride == 16
    if kind == "resnet":
        return _native_resnet(sub), False
    raise ValueError(f"backbone model_type {kind!r} (only ResNet-18/34/50/101)")


def _timm_resnet(name: str) -> str:
    """timm names: 'resnet50', 'timm/resnet50.a1_in1k', 'tv_resnet101' are all plain torchvision ResNets."""
    base = name.removeprefix("timm/").split(".")[0].removeprefix("tv_")
    if base not in _RESNET_SHAPES:
        raise ValueError(f"timm backbone {name!r} (only plain resnet18/34/50/101)")
    return base


def _hub_resnet(name: str) -> str:
    match = re.search(r"resnet-?(18|34|50|101)$", name)
    if match is None:
        raise ValueError(f"backbone {name!r} (only ResNet-18/34/50/101, e.g. 'microsoft/resnet-50')")
    return f"resnet{match.group(1)}"


def _native_resnet(sub: Mapping[str, Any]) -> str:
    layer_type = sub.get("layer_type", "bottleneck")
    depths = tuple(sub.get("depths", (3, 4, 6, 3)))
    widths = tuple(sub.get("hidden_sizes", (256, 512, 1024, 2048)))
    if sub.get("embedding_size", 64) != 64 or sub.get("hidden_act", "relu") != "relu":
        raise ValueError("native ResNet backbone with a non-standard stem or activation")
    if sub.get("downsample_in_bottleneck", False) or sub.get("downsample_in_first_stage", False):
        raise ValueError("native ResNet backbone with strides placed differently from torchvision's ResNet")
    for name, shape in _RESNET_SHAPES.items():
        if shape == (layer_type, depths, widths):
            return name
    raise ValueError(f"native ResNet backbone {layer_type} depths {list(depths)} widths {list(widths)}")


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
    ours: dict[str, Tensor] = {}
    packed: dict[str, dict[int, Tensor]] = {}  # our in_proj key -> {0: q, 1: k, 2: v}
    unmapped: list[str] = []
    for key, value in hf_sd.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{key} is a {type(value).__name__}, not a tensor")
        if _is_dropped(key):
            continue
        target = _from_hf_key(key)
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
                raise ValueError(f"two Hugging Face keys give the {_QKV[slot]} part of {our_key}")
            pieces[slot] = value
    if unmapped:
        raise ValueError(f"{len(unmapped)} Hugging Face keys have no place in DETR: {_listing(unmapped)}")
    for our_key, pieces in packed.items():
        missing = [_QKV[i] for i in range(3) if i not in pieces]
        if missing:
            raise ValueError(f"{our_key}: missing the {', '.join(missing)} part(s)")
        ours[our_key] = torch.cat([pieces[0], pieces[1], pieces[2]], dim=0)  # [3C, C] or [3C]

    inferred = _infer_from_shapes(ours)
    config = _config_for(inferred, hf_config)
    _check_fits(ours, config)
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
    key = key.replace(_HF_BACKBONE_V4, _HF_BACKBONE, 1)
    key = key.replace("model.backbone.position_embedding.", "model.position_embedding.", 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".out_proj.", ".o_proj.")
        key = re.sub(r"(layers\.\d+)\.fc([12])\.", r"\1.mlp.fc\2.", key)
    for current, legacy in _MASK_PREFIXES:
        if key.startswith(legacy):
            return current + key[len(legacy) :]
    return key


def _from_hf_key(key: str) -> tuple[str, int | None] | None:
    """-> (our key, q/k/v slot or None), or None when the key has no place in our model."""
    if key.startswith(SEGMENTATION_PREFIX):
        inner = _detection_key(_modernise(key[len(SEGMENTATION_PREFIX) :]))
        return None if inner is None else (SEGMENTATION_PREFIX + inner[0], inner[1])
    key = _modernise(key)
    for current, our in _MASK_PREFIXES:
        if key.startswith(current):
            return our + key[len(current) :], None
    return _detection_key(key)


def _detection_key(key: str) -> tuple[str, int | None] | None:
    for hf_prefix, our_prefix in _PREFIXES:
        if key.startswith(hf_prefix):
            return our_prefix + key[len(hf_prefix) :], None
    if key.startswith(_HF_BACKBONE):
        body = _torchvision_resnet_key(key[len(_HF_BACKBONE) :])
        return None if body is None else (_OUR_BACKBONE + body, None)
    match = _HF_LAYER.fullmatch(key)
    if match is None:
        return None
    side, index, module, param = match.groups()
    stem = f"transformer.{side}.layers.{index}."
    if module in _LAYER_PARTS[side]:
        return f"{stem}{_LAYER_PARTS[side][module]}.{param}", None
    attention, _, proj = module.rpartition(".")
    if attention in _ATTENTIONS[side] and proj in _QKV:
        return f"{stem}{_ATTENTIONS[side][attention]}.in_proj_{param}", _QKV.index(proj)
    return None


def _torchvision_resnet_key(key: str) -> str | None:
    """A backbone key in timm's naming (= torchvision's) or transformers' native ResNet naming -> torchvision's."""
    if _TORCHVISION_RESNET_KEY.fullmatch(key):
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
    return name if _TORCHVISION_RESNET_KEY.fullmatch(name) else None


def _infer_from_shapes(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Every config field that the converted weights pin down. ``nheads`` only for a segmentation model."""
    masks = any(k.startswith("mask_head.") for k in sd)
    det = {k.removeprefix(SEGMENTATION_PREFIX): v for k, v in sd.items()}
    for needed in ("class_embed.weight", "query_embed.weight"):
        if needed not in det:
            raise ValueError(
                f"the weights have no {needed} (is this a DETR detection or segmentation model?)"
            )
    num_queries, hidden_dim = det["query_embed.weight"].shape  # [Q, C]
    found: dict[str, Any] = {
        "num_classes": det["class_embed.weight"].shape[0] - 1,  # [C+1, hidden]
        "hidden_dim": hidden_dim,
        "num_queries": num_queries,
        "enc_layers": _count_indices(det, "transformer.encoder.layers."),
        "dec_layers": _count_indices(det, "transformer.decoder.layers."),
        "backbone": _infer_resnet(det),
        "position_embedding": "learned" if "backbone.1.row_embed.weight" in det else "sine",
        "masks": masks,
    }
    for side in ("encoder", "decoder"):
        linear1 = det.get(f"transformer.{side}.layers.0.linear1.weight")  # [F, C]
        if linear1 is not None:
            found["dim_feedforward"] = linear1.shape[0]
            break
    if "mask_head.lay1.weight" in sd:
        found["nheads"] = sd["mask_head.lay1.weight"].shape[1] - hidden_dim  # [C+heads, C+heads, 3, 3]
    return found


def _count_indices(sd: Mapping[str, Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})


def _infer_resnet(sd: Mapping[str, Tensor]) -> str:
    prefix = _OUR_BACKBONE
    depths = tuple(_count_indices(sd, f"{prefix}layer{i}.") for i in range(1, 5))
    block = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in sd else "basic"
    for name, (kind, blocks, _) in _RESNET_SHAPES.items():
        if (kind, blocks) == (block, depths):
            return name
    raise ValueError(
        f"backbone weights are a {block} ResNet with blocks {list(depths)}, not ResNet-18/34/50/101"
    )


def _config_for(inferred: dict[str, Any], hf_config: Mapping[str, Any] | None) -> DetrConfig:
    if hf_config is None:
        return DetrConfig(
            nheads=inferred.get("nheads", 8), **{k: v for k, v in inferred.items() if k != "nheads"}
        )
    config = config_from_hf(hf_config)
    if _explicit_num_labels(hf_config) is None:
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


def _check_fits(sd: Mapping[str, Tensor], config: DetrConfig) -> None:
    """Raise unless ``sd`` loads into ``build_detr(config)`` with strict=True (checked on the meta device)."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_detr(config).state_dict().items()}
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise ValueError(f"no model can be built for {config}: {exc}") from None
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {expected[k]}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_listing(missing)}")
    if extra:
        problems.append(f"unexpected {len(extra)}: {_listing(extra)}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {_listing(wrong)}")
    if problems:
        raise ValueError("converted weights do not fit the model: " + "; ".join(problems))


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


# ----------------------------------------------------------------------------------------------------
# Ours -> Hugging Face


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
        raise ValueError(f"{len(unmapped)} keys have no Hugging Face name: {_listing(unmapped)}")
    return out


def _to_hf_key(key: str, backbone: str) -> list[str] | None:
    """Our key -> its 5.x Hugging Face key, or the three q/k/v keys for a packed in_proj entry."""
    for hf_prefix, our_prefix in _PREFIXES + _MASK_PREFIXES:
        if key.startswith(our_prefix):
            return [hf_prefix + key[len(our_prefix) :]]
    if key.startswith(_OUR_BACKBONE):
        body = key[len(_OUR_BACKBONE) :]
        if not _TORCHVISION_RESNET_KEY.fullmatch(body):
            return None
        return [_HF_BACKBONE + (body if backbone == "timm" else _native_resnet_key(body))]
    if match := _OUR_PACKED.fullmatch(key):
        side, index, module, param = match.groups()
        for hf_attention, our_attention in _ATTENTIONS[side].items():
            if module == our_attention:
                return [f"model.{side}.layers.{index}.{hf_attention}.{proj}.{param}" for proj in _QKV]
        return None
    if match := _OUR_LAYER.fullmatch(key):
        side, index, module, param = match.groups()
        for hf_module, our_module in _LAYER_PARTS[side].items():
            if module == our_module:
                return [f"model.{side}.layers.{index}.{hf_module}.{param}"]
    return None


def _native_resnet_key(key: str) -> str:
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
    key = key.replace(_HF_BACKBONE, _HF_BACKBONE_V4, 1)
    key = key.replace("model.position_embedding.", "model.backbone.position_embedding.", 1)
    if key.startswith(("model.encoder.layers.", "model.decoder.layers.")):
        key = key.replace(".o_proj.", ".out_proj.")
        key = re.sub(r"(layers\.\d+)\.mlp\.fc([12])\.", r"\1.fc\2.", key)
    for current, legacy in _MASK_PREFIXES:
        if key.startswith(current):
            return legacy + key[len(current) :]
    return key


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
    names = dict(class_names or {})
    out: dict[str, Any] = {
        "model_type": "detr",
        "architectures": ["DetrForSegmentation" if config.masks else "DetrForObjectDetection"],
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
        "activation_function": "relu",
        "position_embedding_type": config.position_embedding,
        "auxiliary_loss": config.aux_loss,
        "dilation": config.dilation,
        "use_pretrained_backbone": False,
    }
    if backbone == "timm":
        out.update(backbone=config.backbone, use_timm_backbone=True)
        return out
    if config.dilation:
        raise ValueError("transformers' native ResNet has no dilation (DC5); use backbone='timm'")
    layer_type, depths, widths = _RESNET_SHAPES[config.backbone]
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
