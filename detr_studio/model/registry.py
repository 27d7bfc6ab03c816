"""The model families DETR Studio knows, found by name or by the weights they recognise.

A new family is one line in ``FAMILIES`` (its sub-package provides a `ModelFamily` object). Files we write
name their family; files that do not (the official releases, Hugging Face weights, our format-1 sidecars) are
matched against each family in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from .detr.family import DETR_FAMILY
from .family import Hints, ModelFamily, NotRecognised, Recognised, Recognition

FAMILIES: tuple[ModelFamily, ...] = (DETR_FAMILY,)
DEFAULT_FAMILY = DETR_FAMILY.name  # what files from before families were recorded (sidecar format 1) hold


class UnknownFamilyError(ValueError):
    """A family name no family answers to."""


def families() -> tuple[ModelFamily, ...]:
    return FAMILIES


def family_of(name: Any) -> ModelFamily:
    """The family called ``name`` ("detr", "deformable_detr"); UnknownFamilyError listing the known ones."""
    for family in FAMILIES:
        if name == family.name:
            return family
    known = ", ".join(f.name for f in FAMILIES)
    raise UnknownFamilyError(f"unknown model family {name!r} (this version of DETR Studio knows: {known})")


def recognise(
    state_dict: Mapping[str, Tensor], hints: Hints
) -> tuple[ModelFamily, Recognised] | NotRecognised:
    """The family whose own key layout ``state_dict`` has, with its config; else why each family refused."""
    return _first(FAMILIES, lambda family: family.recognise(state_dict, hints))


def recognise_huggingface(
    state_dict: Mapping[str, Tensor], hf_config: Mapping[str, Any] | None
) -> tuple[ModelFamily, Recognised] | NotRecognised:
    """The family whose Hugging Face layout ``state_dict`` has, converted. A ``config.json`` naming its
    ``model_type`` picks the family directly. Raises ValueError when the family's conversion fails."""
    candidates = FAMILIES
    model_type = hf_config.get("model_type") if isinstance(hf_config, Mapping) else None
    if model_type is not None:
        candidates = tuple(f for f in FAMILIES if model_type in f.hf_model_types)
        if not candidates:
            return NotRecognised(f"config.json is for model_type {model_type!r}, which no family here reads")
    return _first(candidates, lambda family: family.from_huggingface(state_dict, hf_config))


def _first(
    candidates: tuple[ModelFamily, ...], ask: Callable[[ModelFamily], Recognition]
) -> tuple[ModelFamily, Recognised] | NotRecognised:
    """The first family ``ask`` recognises the weights for; else every family's reason, in one line."""
    reasons = []
    for family in candidates:
        verdict = ask(family)
        if isinstance(verdict, Recognised):
            return family, verdict
        reasons.append(f"{family.title}: {verdict.reason}")
    return NotRecognised("; ".join(reasons))
