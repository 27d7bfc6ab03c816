"""Typed, range-checked fields for model configurations, and the error that names the file and the field.

Every model family describes its architecture as a frozen dataclass deriving from `ModelConfig`. Each field is
declared with `checked(default, rule)`, where the rule says what the field may hold (`Integer(1, 64)`,
`Number(0.0, 1.0)`, `Flag()`, `Choice("sine", "learned")`). The checks run when the config is created, whatever
created it: a sidecar, a Hugging Face ``config.json``, a training record, an ONNX file's metadata or code. So
``nheads: 0``, ``enc_layers: "3"`` or ``null``, ``d_model: "abc"`` and ``num_queries: 1e9`` are all refused with
one line naming the field, and `ModelConfig.from_dict(data, origin)` puts the file in front of it:

    model.json: config.nheads must be an integer from 1 to 64, got 0

Rules that concern several fields (a width divisible by the head count) go in the family's ``check`` method,
which raises `ConfigError` the same way. A Deformable DETR config reuses all of this by declaring its own fields.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

Self = TypeVar("Self", bound="ModelConfig")


class ConfigError(ValueError):
    """A model configuration value that is missing, of the wrong type or out of range.

    ``str()`` is one line: ``<origin>: <where> <problem>`` (``origin`` only when the config came from a file).
    """

    def __init__(self, where: str, problem: str, origin: str | os.PathLike[str] | None = None):
        self.where = where
        self.problem = problem
        self.origin = str(origin) if origin is not None else ""
        text = f"{where} {problem}" if where else problem
        super().__init__(f"{self.origin}: {text}" if self.origin else text)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Integer:
    """A whole number (not a bool, not a float such as 1e9) from ``low`` to ``high``; ``step`` > 1 asks for a
    multiple of it."""

    low: int
    high: int
    step: int = 1

    def check(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer from {self.low} to {self.high}, got {_describe(value)}"
        if not self.low <= value <= self.high:
            return f"must be an integer from {self.low} to {self.high}, got {value}"
        if self.step > 1 and value % self.step:
            return f"must be a multiple of {self.step}, got {value}"
        return ""


@dataclass(frozen=True)
class Number:
    """A finite number (an integer is accepted) with ``low <= value < high`` (``high`` included when
    ``closed``)."""

    low: float
    high: float
    closed: bool = False

    def check(self, value: Any) -> str:
        bracket = "]" if self.closed else ")"
        wanted = f"a number in [{self.low}, {self.high}{bracket}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {wanted}, got {_describe(value)}"
        if not math.isfinite(value):
            return f"must be {wanted}, got {value}"
        inside = self.low <= value <= self.high if self.closed else self.low <= value < self.high
        return "" if inside else f"must be {wanted}, got {value}"


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false`` (not 0/1, not a string)."""

    def check(self, value: Any) -> str:
        return "" if isinstance(value, bool) else f"must be true or false, got {_describe(value)}"


@dataclass(frozen=True)
class Choice:
    """One of a few strings."""

    values: tuple[str, ...]

    def __init__(self, *values: str):
        object.__setattr__(self, "values", tuple(values))

    def check(self, value: Any) -> str:
        if isinstance(value, str) and value in self.values:
            return ""
        return f"must be one of {', '.join(repr(v) for v in self.values)}, got {_describe(value)}"


Rule = Integer | Number | Flag | Choice


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field with ``default`` whose value must pass ``rule`` (see `ModelConfig`)."""
    return field(default=default, metadata={"rule": rule})


def check_value(rule: Rule, value: Any, where: str) -> None:
    """Raise `ConfigError` naming ``where`` when ``value`` does not pass ``rule``."""
    problem = rule.check(value)
    if problem:
        raise ConfigError(where, problem)


@dataclass(frozen=True)
class ModelConfig:
    """Base of every family's architecture record: a frozen dataclass of checked fields.

    Subclasses declare their fields with `checked` and may add ``check`` for rules across fields. Every family's
    config has ``num_classes`` (the reference meaning: the largest category id + 1) and ``num_queries``.
    """

    family_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                check_value(rule, getattr(self, f.name), f.name)
        self.check()

    def check(self) -> None:
        """Rules across fields; raise `ConfigError` (``where`` names the fields). Nothing by default."""

    @property
    def has_masks(self) -> bool:
        """Whether the network has a mask head (segmentation); families without one keep False."""
        return False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(
        cls: type[Self], data: Any, origin: str | os.PathLike[str] | None = None, prefix: str = ""
    ) -> Self:
        """Build from a parsed JSON object. Unknown keys are refused (so typos do not pass silently); missing
        keys take their defaults; a bad value raises `ConfigError` naming ``origin`` and ``prefix + field``."""
        try:
            if not isinstance(data, dict):
                raise ConfigError("", f"must be a JSON object of fields, got {_describe(data)}")
            unknown = sorted(set(data) - set(cls.field_names()))
            if unknown:
                raise ConfigError("", f"has unknown fields: {', '.join(map(str, unknown))}")
            return cls(**data)
        except ConfigError as exc:
            if origin is None and not prefix:
                raise
            where = prefix + exc.where if exc.where else prefix.rstrip(".") or "the config"
            raise ConfigError(where, exc.problem, origin) from None

    def replace(self: Self, **changes: Any) -> Self:
        """A copy with ``changes``, checked like a new config."""
        return type(self).from_dict({**self.to_dict(), **changes})


# The small network of tests, demos and smoke runs, in the fields every family's config has.
TINY_FIELDS: dict[str, Any] = {
    "num_classes": 5,
    "backbone": "resnet18",
    "hidden_dim": 32,
    "nheads": 4,
    "enc_layers": 2,
    "dec_layers": 2,
    "dim_feedforward": 64,
    "dropout": 0.0,
    "num_queries": 10,
    "aux_loss": True,
}


def rule_of(config_type: type[ModelConfig], name: str) -> Rule:
    """The rule of field ``name`` of ``config_type`` (for checking a foreign config's value of that field)."""
    for f in fields(config_type):
        if f.name == name and "rule" in f.metadata:
            return f.metadata["rule"]
    raise KeyError(f"{config_type.__name__} has no checked field {name!r}")
