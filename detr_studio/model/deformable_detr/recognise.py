"""Recognising a Deformable DETR state dict in the official key layout (ours uses the same names) and its
config, and the head copies that layout lists.

Shapes and key presence tell nearly everything (`shape_fields`): the number of levels from
``transformer.level_embed`` [L, C]; box refinement from ``transformer.decoder.bbox_embed.*``; two-stage from
``transformer.enc_output.*``; points per head from ``attention_weights`` [H·L·P, C] given the head count.
What they cannot tell comes from hints (`hint_fields`): DC5 (no parameters of its own) from the file name or
the official training script's ``args``, the head count (8 unless the arguments say otherwise), the number of
two-stage proposals, dropout and the auxiliary loss. Arguments that contradict the weights are named. A state
dict is recognised only when it fits the network that config builds, key for key and shape for shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..backbone import BODY_PREFIX, RESNET_SHAPES, resnet_of
from ..config_fields import ConfigError
from ..family import Hints, NotRecognised, Recognised, Recognition
from ..state_dicts import count_indices, expected_shapes, mismatch_report
from .config import DeformableDetrConfig
from .detector import build_deformable_detr

LEVEL_EMBED = "transformer.level_embed"
_HEADS = ("class_embed", "bbox_embed")
# where the first class head is: its own name, or the decoder's copy (two-stage files that leave the tied
# copies out keep only the decoder's)
_CLASS_HEADS = ("class_embed.0.weight", "transformer.decoder.class_embed.0.weight")
_ENC_ROWS = "transformer.encoder.layers.0.self_attn.attention_weights.weight"  # [H·L·P, C]
_DEC_ROWS = "transformer.decoder.layers.0.cross_attn.attention_weights.weight"
# The official argparse names of settings the weights cannot show, and of those they show (checked).
_ARG_HINTS = {"dilation": bool, "nheads": int, "dropout": float, "aux_loss": bool}
_ARG_CHECKS = ("num_feature_levels", "with_box_refine", "two_stage", "enc_n_points", "dec_n_points")


class NotDeformable(ValueError):
    """The weights are not a Deformable DETR network; the message says what is missing or odd."""


def shape_fields(sd: Mapping[str, Tensor], nheads: int = 8) -> dict[str, Any]:
    """Every config field the weights pin down, for ``nheads`` heads. Raises NotDeformable naming the key that
    is missing or the shape that does not add up."""
    head = next((k for k in _CLASS_HEADS if k in sd), _CLASS_HEADS[0])
    for needed, what in (
        (LEVEL_EMBED, "level embeddings"),
        (head, "class head"),
        ("transformer.encoder.layers.0.linear1.weight", "encoder"),
        (_ENC_ROWS, "encoder attention"),
        (_DEC_ROWS, "decoder attention"),
    ):
        if needed not in sd or sd[needed].ndim != 2:
            raise NotDeformable(f"no {needed} (Deformable DETR's {what})")
    levels, hidden = sd[LEVEL_EMBED].shape  # [L, C]
    enc_rows, dec_rows = sd[_ENC_ROWS].shape[0], sd[_DEC_ROWS].shape[0]
    if enc_rows % (nheads * levels) or dec_rows % (nheads * levels):
        raise NotDeformable(
            f"attention_weights rows {enc_rows} / {dec_rows} do not divide into {nheads} heads × {levels} levels"
        )
    try:
        backbone = resnet_of(sd)
    except ValueError as exc:
        raise NotDeformable(str(exc)) from None
    found: dict[str, Any] = {
        "num_classes": int(sd[head].shape[0]),  # [classes, C]: no "no object" row
        "backbone": backbone,
        "hidden_dim": int(hidden),
        "nheads": nheads,
        "enc_layers": count_indices(sd, "transformer.encoder.layers."),
        "dec_layers": count_indices(sd, "transformer.decoder.layers."),
        "dim_feedforward": int(sd["transformer.encoder.layers.0.linear1.weight"].shape[0]),  # [F, C]
        "num_feature_levels": int(levels),
        "enc_n_points": enc_rows // (nheads * levels),
        "dec_n_points": dec_rows // (nheads * levels),
        "with_box_refine": "transformer.decoder.bbox_embed.0.layers.0.weight" in sd,
        "two_stage": "transformer.enc_output.weight" in sd,
    }
    if "query_embed.weight" in sd:
        found["num_queries"] = int(sd["query_embed.weight"].shape[0])  # [Q, 2C]
    stem = sd.get(BODY_PREFIX + "conv1.weight")  # [width, 3, 7, 7]
    if stem is not None and RESNET_SHAPES[backbone][0] == "basic":
        found["backbone_width"] = int(stem.shape[0])
    return found


def hint_fields(hints: Hints) -> dict[str, Any]:
    """Config fields that a file's name or the official training arguments give (DC5 from a name with
    "dc5"; the two-stage proposal count from ``num_queries``)."""
    values: dict[str, Any] = {"dilation": "dc5" in hints.file_name.lower()}
    args = hints.training_args or {}
    for name, kind in _ARG_HINTS.items():
        value = args.get(name)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            values[name] = value
    if args.get("two_stage") is True and isinstance(args.get("num_queries"), int):
        values["num_queries"] = args["num_queries"]
    return values


def contradictions(config: DeformableDetrConfig, hints: Hints) -> list[str]:
    """What the training arguments say that the weights deny (``with_box_refine=True`` on weights without
    refinement ...)."""
    args = hints.training_args or {}
    return [
        f"its args say {name}={args[name]!r} but its weights are {getattr(config, name)!r}"
        for name in _ARG_CHECKS
        if args.get(name) is not None and args[name] != getattr(config, name)
    ]


def fill_shared_heads(sd: Mapping[str, Tensor], config: DeformableDetrConfig) -> dict[str, Tensor]:
    """The state dict with every head copy the official layout lists: ``class_embed.i`` / ``bbox_embed.i``
    for each prediction, plus the decoder's copies (refinement, two-stage). A missing copy is taken from
    the tensor it is tied to: the decoder's copy, else head 0 (the heads shared without refinement)."""
    out = dict(sd)
    predictions = config.dec_layers + (1 if config.two_stage else 0)
    for head in _HEADS:
        pattern = re.compile(rf"(?:transformer\.decoder\.)?{head}\.\d+\.(.+)")
        suffixes = sorted({m.group(1) for k in sd if (m := pattern.fullmatch(k))})
        in_decoder = (head == "bbox_embed" and config.with_box_refine) or (
            head == "class_embed" and config.two_stage
        )
        for i in range(predictions):
            for suffix in suffixes:
                top, inner = f"{head}.{i}.{suffix}", f"transformer.decoder.{head}.{i}.{suffix}"
                if top not in out:
                    source = out.get(inner, out.get(f"{head}.0.{suffix}"))
                    if source is not None:
                        out[top] = source
                if in_decoder and inner not in out and top in out:
                    out[inner] = out[top]
    return out


def fit_problems(sd: Mapping[str, Tensor], config: DeformableDetrConfig) -> str:
    """'' when ``sd`` loads into ``build_deformable_detr(config)`` with strict=True, else what does not fit."""
    return mismatch_report(expected_shapes(lambda: build_deformable_detr(config)), sd)


def config_for(sd: Mapping[str, Tensor], hints: Hints) -> DeformableDetrConfig:
    """The config of official-layout weights with ``hints``; NotDeformable or ConfigError when there is none."""
    hinted = hint_fields(hints)
    fields = {**shape_fields(sd, hinted.get("nheads", 8)), **hinted}
    config = DeformableDetrConfig.from_dict(fields)
    contradicted = contradictions(config, hints)
    if contradicted:
        raise NotDeformable("; ".join(contradicted))
    return config


def recognise_official(sd: Mapping[str, Tensor], hints: Hints) -> Recognition:
    """A Deformable DETR state dict in the official key layout (head copies may be left out), and its config."""
    try:
        config = config_for(sd, hints)
    except (NotDeformable, ConfigError) as exc:
        return NotRecognised(f"not a Deformable DETR state dict: {exc}")
    full = fill_shared_heads(sd, config)
    problems = fit_problems(full, config)
    if problems:
        return NotRecognised(f"not a Deformable DETR state dict that fits its own shapes: {problems}")
    return Recognised(config, full)
