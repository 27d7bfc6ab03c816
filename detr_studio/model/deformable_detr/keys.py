"""Deformable DETR state dicts in the official layout: what configuration they are, the heads they
share, and telling them apart from DETR's and from anything else.

The configuration is read from shapes and key presence (facts of the official layout): the number of
levels from ``transformer.level_embed`` [L, C]; box refinement from ``transformer.decoder.bbox_embed.*``;
two-stage from ``transformer.enc_output.*``; points per head from ``attention_weights`` [H·L·P, C] given
the head count (8 unless told). DC5 cannot be seen in weights and comes from a hint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..hf import _infer_resnet
from .config import DeformableDetrConfig

LEVEL_EMBED = "transformer.level_embed"
HF_LEVEL_EMBED = "model.level_embed"
_HEADS = ("class_embed", "bbox_embed")


def _count(sd: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def infer_config(sd: Mapping[str, Tensor], **hints: Any) -> DeformableDetrConfig:
    """The configuration of an official-layout state dict; ``hints`` (``dilation``, ``nheads``,
    ``num_queries`` for two-stage, ``dropout``, ``aux_loss``) supply what shapes cannot say.
    Raises ValueError naming the key that is missing or the shape that does not add up."""
    try:
        levels, hidden = sd[LEVEL_EMBED].shape  # [L, C]
        num_classes = sd["class_embed.0.weight"].shape[0]  # [classes, C]
        ffn = sd["transformer.encoder.layers.0.linear1.weight"].shape[0]  # [F, C]
        enc_rows = sd["transformer.encoder.layers.0.self_attn.attention_weights.weight"].shape[
            0
        ]  # [H·L·P, C]
        dec_rows = sd["transformer.decoder.layers.0.cross_attn.attention_weights.weight"].shape[0]
    except KeyError as exc:
        raise ValueError(f"not a Deformable DETR state dict: key {exc.args[0]!r} is missing") from None
    heads = int(hints.get("nheads", 8))
    if enc_rows % (heads * levels) or dec_rows % (heads * levels):
        raise ValueError(
            f"attention_weights rows {enc_rows} / {dec_rows} do not divide into {heads} heads × {levels} levels"
        )
    two_stage = "transformer.enc_output.weight" in sd
    values: dict[str, Any] = {
        "num_classes": num_classes,
        "backbone": _infer_resnet(sd),
        "hidden_dim": hidden,
        "nheads": heads,
        "enc_layers": _count(sd, "transformer.encoder.layers."),
        "dec_layers": _count(sd, "transformer.decoder.layers."),
        "dim_feedforward": ffn,
        "num_feature_levels": levels,
        "enc_n_points": enc_rows // (heads * levels),
        "dec_n_points": dec_rows // (heads * levels),
        "with_box_refine": "transformer.decoder.bbox_embed.0.layers.0.weight" in sd,
        "two_stage": two_stage,
    }
    if "query_embed.weight" in sd:
        values["num_queries"] = sd["query_embed.weight"].shape[0]  # [Q, 2C]
    conv1 = sd.get("backbone.0.body.conv1.weight")
    if values["backbone"] in ("resnet18", "resnet34") and conv1 is not None:
        values["backbone_width"] = conv1.shape[0]
    for name in ("dilation", "dropout", "aux_loss"):
        if name in hints:
            values[name] = hints[name]
    if two_stage and "num_queries" in hints:
        values["num_queries"] = int(hints["num_queries"])
    return DeformableDetrConfig.from_dict(values)


def fill_shared_heads(sd: Mapping[str, Tensor], config: DeformableDetrConfig | None) -> dict[str, Tensor]:
    """The state dict with every head copy the official layout lists: ``class_embed.i`` / ``bbox_embed.i``
    for each prediction, plus the decoder's copies (refinement, two-stage). A missing copy is taken from
    the tensor it is tied to: the decoder's copy, else head 0 (the heads shared without refinement)."""
    out = dict(sd)
    two_stage = config.two_stage if config else "transformer.enc_output.weight" in sd
    refine = (
        config.with_box_refine if config else any(k.startswith("transformer.decoder.bbox_embed.") for k in sd)
    )
    layers = config.dec_layers if config else _count(sd, "transformer.decoder.layers.")
    for head in _HEADS:
        pattern = re.compile(rf"(?:transformer\.decoder\.)?{head}\.\d+\.(.+)")
        suffixes = sorted({m.group(1) for k in sd if (m := pattern.fullmatch(k))})
        in_decoder = (head == "bbox_embed" and refine) or (head == "class_embed" and two_stage)
        for i in range(layers + (1 if two_stage else 0)):
            for suffix in suffixes:
                top, inner = f"{head}.{i}.{suffix}", f"transformer.decoder.{head}.{i}.{suffix}"
                if top not in out:
                    source = out.get(inner, out.get(f"{head}.0.{suffix}"))
                    if source is not None:
                        out[top] = source
                if in_decoder and inner not in out and top in out:
                    out[inner] = out[top]
    return out


def family_of_state_dict(sd: Mapping[str, Any]) -> str | None:
    """ "deformable_detr", "detr" (official or Hugging Face layouts of either), or None."""
    if LEVEL_EMBED in sd or HF_LEVEL_EMBED in sd:
        return "deformable_detr"
    detr_markers = ("class_embed.weight", "detr.class_embed.weight", "class_labels_classifier.weight")
    if any(k in sd for k in detr_markers) or any(k.endswith("class_labels_classifier.weight") for k in sd):
        return "detr"
    return None


def not_deformable_message(sd: Mapping[str, Any], origin: str) -> str:
    """Why ``sd`` is not Deformable DETR weights, in one line that names the file."""
    if family_of_state_dict(sd) == "detr":
        return (
            f"{origin}: this is a DETR checkpoint, not Deformable DETR (it has DETR's single class head "
            "and no level embeddings); open it as a DETR model"
        )
    keys = list(sd)
    shown = ", ".join(keys[:6]) + (f", … ({len(keys) - 6} more)" if len(keys) > 6 else "")
    return (
        f"{origin}: neither a DETR nor a Deformable DETR checkpoint: no key fits either family "
        f"(expected transformer.level_embed or class_embed.weight); its keys: {shown or 'none'}"
    )
