"""The window's one way to load a model: what the user chose (`ModelChoice`), what the window knows of the
loaded model (`ModelInfo`), and the three loads it needs — a predictor for the canvas, a network for the
Export dock and the Training dock's before/after evaluation, and the input size a checkpoint records.

Every model the window loads goes through this module, so that changing how checkpoints are loaded is a
change here only. Nothing is imported from torch until a load is asked for (on a background thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_studio.data.images import ImageReadError


@dataclass(frozen=True)
class ModelChoice:
    """What to load: a checkpoint file/folder or a zoo name, where to run it, and the input size (None: the
    size the checkpoint records it was trained and evaluated at, which is what the model is good at)."""

    source: str
    device: str | None = None  # None or "auto": the GPU when there is one
    precision: str = "fp32"
    size: int | None = None
    max_size: int | None = None

    @property
    def name(self) -> str:
        path = Path(self.source)
        return path.name if path.exists() else self.source

    @property
    def is_onnx(self) -> bool:
        """An exported ``.onnx`` file, run by ONNX Runtime with the input size stored in the file."""
        return Path(self.source).suffix.lower() == ".onnx"


@dataclass(frozen=True)
class ModelInfo:
    """What the window needs to know about the loaded model."""

    name: str
    description: str  # device and precision, for the status bar
    class_names: dict[int, str]
    supports_masks: bool
    num_heads: int
    num_queries: int
    has_attention: bool = True
    family: str = "detr"  # the model family's name ("detr", "deformable_detr")
    scoring: str = "softmax"  # "softmax" (a no-object class) or "sigmoid" (independent class scores)
    attention_kind: str = "maps"  # "maps", "sampling_points" or "" (see model.family)
    input_size: tuple[int, int | None] = (800, 1333)  # the size the model runs at


def describe_error(exc: BaseException) -> str:
    """A load or prediction failure in one line."""
    if isinstance(exc, (ImageReadError, ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def load_predictor(choice: ModelChoice) -> tuple[Any, ModelInfo]:
    """(a `Predictor` or `OnnxPredictor`, its `ModelInfo`) for ``choice``. Runs on a background thread."""
    device = choice.device if choice.device not in (None, "", "auto") else None
    if choice.is_onnx:
        from detr_studio.infer.onnx_backend import OnnxPredictor

        providers = {None: "auto", "cpu": "cpu", "cuda": "cuda"}.get(device, "auto")
        predictor: Any = OnnxPredictor.from_weights(choice.source, providers=providers, name=choice.name)
    else:
        from detr_studio.infer.predictor import Predictor

        predictor = Predictor.from_weights(
            choice.source,
            device=device,
            precision=choice.precision,
            size=choice.size,
            max_size=choice.max_size,
            name=choice.name,
        )
    config = predictor.config
    family = predictor.family
    info = ModelInfo(
        name=choice.name,
        description=predictor.description,
        class_names=dict(predictor.class_names),
        supports_masks=predictor.supports_masks,
        num_heads=config.nheads,
        num_queries=config.num_queries,
        has_attention=not choice.is_onnx and bool(family.attention_kind),  # ONNX files give no attention
        family=family.name,
        scoring=family.scoring,
        attention_kind=family.attention_kind if not choice.is_onnx else "",
        input_size=(int(predictor.size), predictor.max_size),
    )
    return predictor, info


def load_network(source: str) -> Any:
    """The checkpoint file, folder or zoo name ``source`` as a `LoadedModel` (network in eval mode without
    auxiliary outputs or dropout, its family, config, class names and recorded input size), through the one
    load pipeline. Runs on a background thread."""
    from detr_studio.model.loading import load_model

    return load_model(source)
