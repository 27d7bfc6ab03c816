"""Deformable DETR checkpoint files: the official release (``{"model", "optimizer", "lr_scheduler",
"epoch", "args"}``; only ``model`` is used, ``args`` gives what weights cannot say), and weights ready to
write as safetensors (the shared heads stored as copies, as the official layout lists them).

Reading the file itself (weights only, ``argparse.Namespace`` allowed by name) is the shared loader's.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from .config import DeformableDetrConfig
from .keys import family_of_state_dict, infer_config, not_deformable_message

# official argparse names -> ours, for the settings the weights cannot show
_ARG_HINTS = {"dilation": "dilation", "nheads": "nheads", "dropout": "dropout", "aux_loss": "aux_loss"}


def dilation_from_name(path: Path | None) -> bool:
    """DC5 cannot be seen in the weights; the released files say it in their name."""
    return path is not None and "dc5" in path.name.lower()


def hints_from_args(args: argparse.Namespace | None, path: Path | None = None) -> dict[str, Any]:
    """Config hints from the official training script's namespace (and the file name for DC5)."""
    hints: dict[str, Any] = {"dilation": dilation_from_name(path)}
    if args is None:
        return hints
    values = vars(args)
    for theirs, ours in _ARG_HINTS.items():
        if theirs in values:
            hints[ours] = type(getattr(DeformableDetrConfig(), ours))(values[theirs])
    if values.get("two_stage") and "num_queries" in values:
        hints["num_queries"] = int(values["num_queries"])
    return hints


def config_from_official(
    sd: Mapping[str, Tensor], args: argparse.Namespace | None = None, path: Path | None = None
) -> DeformableDetrConfig:
    """The configuration of an official state dict (``checkpoint["model"]``); ValueError naming the file
    when it is DETR's or neither family's."""
    origin = str(path) if path is not None else "checkpoint"
    if family_of_state_dict(sd) != "deformable_detr":
        raise ValueError(not_deformable_message(sd, origin))
    try:
        config = infer_config(sd, **hints_from_args(args, path))
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from None
    if args is not None:
        for name in ("num_feature_levels", "with_box_refine", "two_stage", "enc_n_points", "dec_n_points"):
            stated = vars(args).get(name)
            if stated is not None and stated != getattr(config, name):
                raise ValueError(
                    f"{origin}: its args say {name}={stated!r} but its weights are {getattr(config, name)!r}"
                )
    return config


def distinct_tensors(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU copies that share no memory (safetensors refuses shared tensors, and the official layout lists
    every head copy), without batch-norm counters."""
    return {k: v.detach().to("cpu").clone() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
