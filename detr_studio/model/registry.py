"""The model families DETR Studio knows, found by name or by the weights they recognise.

A new family is one line in ``FAMILIES`` (its sub-package provides a `ModelFamily` object). Files we write
name their family; files that do not (the official releases, Hugging Face weights, our format-1 sidecars) are
matched against each family in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from .config_fields import ConfigError
from .deformable_detr.family import DEFORMABLE_DETR_FAMILY
from .detr.family import DETR_FAMILY
from .family import Hints, ModelFamily, NotRecognised, Recognised, Recognition
from .state_dicts import listing

FAMILIES: tuple[ModelFamily, ...] = (DETR_FAMILY, DEFORMABLE_DETR_FAMILY)
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
    """The family whose own key layout ``state_dict`` has, with its config; else why each family refused, and
    the keys the state dict has."""
    found = _first(FAMILIES, lambda family: family.recognise(state_dict, hints))
    if isinstance(found, NotRecognised):
        return NotRecognised(f"{found.reason}; its keys: {listing(list(state_dict)) or 'none'}")
    return found


def recognise_huggingface(
    state_dict: Mapping[str, Tensor], hf_config: Mapping[str, Any] | None, hints: Hints | None = None
) -> tuple[ModelFamily, Recognised] | NotRecognised:
    """The family whose Hugging Face layout ``state_dict`` has, converted. A ``config.json`` naming its
    ``model_type`` picks the family directly (and when the weights are another family's, the answer says so);
    without one, every family is tried. A family whose conversion fails (keys with no place in it, shapes that
    disagree) gives its reason and lets the next one try. ``hints`` (the file name) stand in for what a missing
    config.json would say (DC5). A bad value in the ``config.json`` itself raises ConfigError."""
    model_type = hf_config.get("model_type") if isinstance(hf_config, Mapping) else None
    if model_type is None:
        return _first(FAMILIES, lambda family: _converted(family, state_dict, None, hints))
    named = tuple(f for f in FAMILIES if model_type in f.hf_model_types)
    if not named:
        return NotRecognised(f"config.json is for model_type {model_type!r}, which no family here reads")
    found = _first(named, lambda family: _converted(family, state_dict, hf_config, hints))
    if isinstance(found, NotRecognised):
        others = tuple(f for f in FAMILIES if f not in named)
        actual = _first(others, lambda family: _converted(family, state_dict, None, hints))
        if not isinstance(actual, NotRecognised):
            return NotRecognised(
                f"config.json says model_type {model_type!r} ({named[0].title}), but the weights are a "
                f"{actual[0].title} model's"
            )
    return found


def _converted(
    family: ModelFamily,
    state_dict: Mapping[str, Tensor],
    hf_config: Mapping[str, Any] | None,
    hints: Hints | None,
) -> Recognition:
    try:
        return family.from_huggingface(state_dict, hf_config, hints)
    except ConfigError:
        raise
    except (KeyError, ValueError) as exc:
        return NotRecognised(f"cannot convert these Hugging Face weights: {exc}")


def identify(state_dict: Mapping[str, Tensor]) -> ModelFamily | None:
    """The family whose own key layout ``state_dict`` has (for saying what a file holds when it does not fit
    the family it names), or None."""
    found = _first(FAMILIES, lambda family: family.recognise(state_dict, Hints()))
    return None if isinstance(found, NotRecognised) else found[0]


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
