"""Fitting weights into networks: the one error for checkpoints, the report of what does not fit, strict loading.

Every family checks a state dict against the network its config builds before loading it, and says which keys
are missing, unexpected or of the wrong shape instead of PyTorch's long error. The network can be built on
the meta device for the check, so nothing is allocated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


Shapes = Mapping[str, tuple[int, ...]]


def shapes_of(sd: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def expected_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of the network ``build()`` makes, built on the meta device (no memory)."""
    with torch.device("meta"):
        return shapes_of(build().state_dict())


def listing(items: list[str], limit: int = 8) -> str:
    """``a; b; c; … 5 more``: a readable, bounded list."""
    shown = "; ".join(items[:limit])
    return shown + (f"; … {len(items) - limit} more" if len(items) > limit else "")


def mismatch_report(own: Shapes, sd: Mapping[str, Tensor], ignore: Iterable[str] = ()) -> str:
    """Empty when ``sd`` fits the shapes ``own`` (keys in ``ignore`` may be absent from ``sd``), else one line
    naming the shape mismatches, missing keys and unexpected keys."""
    skip = set(ignore)
    missing = [k for k in own if k not in sd and k not in skip]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k])}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k])
    ]
    parts = []
    for title, items in (
        ("shape mismatches", shapes),
        ("missing keys", missing),
        ("unexpected keys", unexpected),
    ):
        if items:
            parts.append(f"{len(items)} {title}: {listing(items)}")
    return " | ".join(parts)


def load_strictly(model: nn.Module, sd: Mapping[str, Tensor], origin: str) -> None:
    """Load with ``strict=True``, with a readable CheckpointError naming ``origin`` when anything differs."""
    report = mismatch_report(shapes_of(model.state_dict()), sd)
    if report:
        raise CheckpointError(f"{origin} does not fit the model: {report}")
    model.load_state_dict(dict(sd), strict=True)


def count_indices(sd: Iterable[str], prefix: str) -> int:
    """How many numbered children ``prefix<N>.`` the keys name (highest index + 1; 0 when none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0
