"""Recognising a DETR state dict in the official key layout (ours uses the same names) and its config.

Shapes tell nearly everything (`shape_fields`): classes, width, queries, layers, feed-forward width, backbone,
position encoding, pre-norm, mask branch. What they cannot tell comes from hints: dilation (DC5 has no weights
of its own) from the file name or the official training script's arguments, and the head count of a
detection model (8 unless the arguments say otherwise). A state dict is recognised only when it fits the
network that config builds, key for key and shape for shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..backbone import BODY_PREFIX, RESNET_SHAPES, resnet_of
from ..config_fields import ConfigError
from ..family import Hints, NotRecognised, Recognised, Recognition
from ..state_dicts import count_indices, expected_shapes, mismatch_report
from .build import build_detr
from .config import DetrConfig

SEGMENTATION_PREFIX = "detr."


class NotDetr(ValueError):
    """The weights are not a DETR network; the message says what is missing or odd."""


def shape_fields(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Every config field the weights pin down (``nheads`` only for a segmentation model, whose mask head
    is as wide as the width plus the head count). Raises NotDetr when the DETR keys are not there."""
    masks = any(k.startswith(SEGMENTATION_PREFIX) for k in sd)
    det = {k.removeprefix(SEGMENTATION_PREFIX): v for k, v in sd.items()}
    for needed in ("class_embed.weight", "query_embed.weight"):
        if needed not in det or det[needed].ndim != 2:
            raise NotDetr(f"no {needed} (DETR's {'classifier' if 'class' in needed else 'queries'})")
    num_queries, hidden_dim = det["query_embed.weight"].shape  # [Q, C]
    found: dict[str, Any] = {
        "num_classes": int(det["class_embed.weight"].shape[0]) - 1,  # [C+1, hidden]
        "hidden_dim": int(hidden_dim),
        "num_queries": int(num_queries),
        "enc_layers": count_indices(det, "transformer.encoder.layers."),
        "dec_layers": count_indices(det, "transformer.decoder.layers."),
        "backbone": _resnet(det),
        "position_embedding": "learned" if "backbone.1.row_embed.weight" in det else "sine",
        "pre_norm": "transformer.encoder.norm.weight" in det,
        "masks": masks,
    }
    for side in ("encoder", "decoder"):
        linear1 = det.get(f"transformer.{side}.layers.0.linear1.weight")  # [F, C]
        if linear1 is not None:
            found["dim_feedforward"] = int(linear1.shape[0])
            break
    stem = det.get(BODY_PREFIX + "conv1.weight")  # [width, 3, 7, 7]
    if stem is not None and RESNET_SHAPES[found["backbone"]][0] == "basic":
        found["backbone_width"] = int(stem.shape[0])
    lay1 = sd.get("mask_head.lay1.weight")  # [C+heads, C+heads, 3, 3]
    if lay1 is not None:
        found["nheads"] = int(lay1.shape[1]) - found["hidden_dim"]
    return found


def _resnet(det: Mapping[str, Tensor]) -> str:
    try:
        return resnet_of(det)
    except ValueError as exc:
        raise NotDetr(str(exc)) from None


def hint_fields(hints: Hints) -> dict[str, Any]:
    """Config fields that a file's name or the official training arguments give."""
    values: dict[str, Any] = {"dilation": "dc5" in hints.file_name.lower()}
    args = hints.training_args
    if args:
        for name, kind in (("dilation", bool), ("nheads", int), ("dropout", float), ("aux_loss", bool)):
            value = args.get(name)
            if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
                values[name] = value
    return values


def fit_problems(sd: Mapping[str, Tensor], config: DetrConfig) -> str:
    """'' when ``sd`` loads into ``build_detr(config)`` with strict=True, else what does not fit."""
    return mismatch_report(expected_shapes(lambda: build_detr(config)), sd)


def recognise_official(sd: Mapping[str, Tensor], hints: Hints) -> Recognition:
    """A DETR (or DETR panoptic) state dict in the official key layout, and its config."""
    try:
        fields = {**shape_fields(sd), **hint_fields(hints)}
        fields.setdefault("nheads", 8)
        config = DetrConfig.from_dict(fields)
    except (NotDetr, ConfigError) as exc:
        return NotRecognised(f"not a DETR state dict: {exc}")
    problems = fit_problems(sd, config)
    if problems:
        return NotRecognised(f"not a DETR state dict that fits its own shapes: {problems}")
    return Recognised(config, dict(sd))
