"""The window's one way to load a model: what the user chose (`ModelChoice`), what the window knows of the
loaded model (`ModelInfo`), and the three loads it needs — a predictor for the canvas, a network for the
Export dock and the Training dock's before/after evaluation, and the input size a checkpoint records.

Every model the window loads goes through this module, so that changing how checkpoints are loaded is a
change here only. Nothing is imported from torch until a load is asked for (on a background thread).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_studio.data.images import ImageReadError


@dataclass(frozen=True)
class ModelChoice:
    """What to load: a checkpoint file/folder or a zoo name, where to run it, and the input size."""

    source: str
    device: str | None = None  # None or "auto": the GPU when there is one
    precision: str = "fp32"
    size: int = 800
    max_size: int | None = 1333

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


@dataclass(frozen=True)
class LoadedNetwork:
    """A checkpoint built as a network (in eval mode, no auxiliary outputs) with what the exporter needs."""

    model: Any  # torch.nn.Module
    config: Any  # the model's config record
    class_names: dict[int, str]
    source: str  # the file it came from


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
    info = ModelInfo(
        name=choice.name,
        description=predictor.description,
        class_names=dict(predictor.class_names),
        supports_masks=predictor.supports_masks,
        num_heads=config.nheads,
        num_queries=config.num_queries,
        has_attention=not choice.is_onnx,  # ONNX files cannot give attention maps
    )
    return predictor, info


def load_network(source: str, *, dropout: float | None = None) -> LoadedNetwork:
    """The checkpoint file or zoo name ``source`` as a network. Runs on a background thread."""
    from detr_studio.model.checkpoint import build_from_checkpoint, load_checkpoint
    from detr_studio.model.sources import default_class_names, resolve

    ckpt = load_checkpoint(resolve(source))
    changes: dict[str, Any] = {"aux_loss": False}
    if dropout is not None:
        changes["dropout"] = dropout
    model = build_from_checkpoint(ckpt, **changes)
    names = ckpt.class_names or default_class_names(ckpt.config)
    return LoadedNetwork(model, ckpt.config, dict(names), str(ckpt.path or source))


def recorded_input_size(weights: Path, default: tuple[int, int]) -> tuple[int, int]:
    """(size, max size) the checkpoint's sidecar records it was evaluated at (``val_size``, ``max_size`` or
    the largest training scale), else ``default``. Imports torch: call it off the Qt thread."""
    from detr_studio.model.checkpoint import provenance_input_size

    try:
        provenance = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8")).get("provenance")
    except (OSError, ValueError, AttributeError):
        provenance = None  # the load itself reports a broken sidecar with its file name
    size, max_size = provenance_input_size(provenance, default=default)
    return int(size), int(max_size)
