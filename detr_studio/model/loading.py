"""The one way from a weights source to a ready model: ``load_model(source) -> LoadedModel``.

The predictor, the ``export`` and ``eval`` commands, the trainer and the window all call this, so each of them
gets the same family, the same config checks, the same class names and the checkpoint's own input size:

    source ("path/to/best.safetensors", a folder, a zoo name such as "detr-r50", or "demo")
      -> resolve (download a zoo entry on first use) -> read and recognise the checkpoint (its family)
      -> build the family's network for inference and load the weights with strict=True
      -> LoadedModel(family, model, config, class_names, input_size, ...)

Training builds from the same checkpoint with ``build_for_training`` (another class count, a mask branch, a
new head), so that nothing but the pipeline reads weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .checkpoint import REFERENCE_INPUT_SIZE, Checkpoint, InputSize, load_checkpoint
from .classes import default_class_names
from .config_fields import ModelConfig
from .family import ModelFamily
from .registry import identify
from .sources import resolve
from .state_dicts import CheckpointError, load_strictly
from .zoo import ZooDownloadError

Progress = Callable[[int, int | None], None]


@dataclass
class LoadedModel:
    """A network with its weights loaded, in eval mode on the CPU, and everything known about it.

    ``config`` is the checkpoint's; ``model`` was built from ``family.inference_config(config)`` (no auxiliary
    outputs, no dropout). ``class_names`` maps category ids to names (the COCO names for the official class
    counts when the file has none; empty when nothing is known). ``input_size`` is the size the weights were
    trained and evaluated at (the reference's 800 / 1333 when the file does not say).
    """

    family: ModelFamily
    model: nn.Module
    config: ModelConfig
    class_names: dict[int, str]
    input_size: InputSize
    source: str  # what the caller named: a path, a zoo name or "demo"
    checkpoint: Checkpoint

    @property
    def path(self) -> Path | None:
        return self.checkpoint.path

    @property
    def name(self) -> str:
        """A short name for messages and the window: the file name, else the source."""
        return self.checkpoint.path.name if self.checkpoint.path is not None else self.source


def read_source(source: str | os.PathLike[str], progress: Progress | None = None) -> Checkpoint:
    """The checkpoint ``source`` names (a file or folder, a zoo name, or "demo"), read and recognised.

    Every failure is a CheckpointError with one line naming the file (or the zoo name) and the problem: no such
    file, offline, a hostile pickle, a config field out of range, weights of no known family.
    """
    try:
        path = resolve(source, progress=progress)
    except (ValueError, ZooDownloadError) as exc:
        raise CheckpointError(str(exc)) from None
    checkpoint = load_checkpoint(path)
    if checkpoint.class_names is None:
        checkpoint.class_names = default_class_names(checkpoint.config.num_classes)
    return checkpoint


def load_model(
    source: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    default_input_size: InputSize = REFERENCE_INPUT_SIZE,
) -> LoadedModel:
    """Read ``source`` and build its network for inference, weights loaded with ``strict=True``.

    source: a checkpoint file or folder (ours, official, Hugging Face), a model-zoo name (downloaded on first
    use, reporting ``progress(done_bytes, total_bytes)``), or "demo" (the bundled demo model).
    default_input_size: the input size for files that record none (the reference's 800 / 1333).
    Raises CheckpointError (one line naming the file) for anything that cannot be loaded.
    """
    checkpoint = read_source(source, progress)
    return from_checkpoint(checkpoint, str(source), default_input_size)


def from_checkpoint(
    checkpoint: Checkpoint, source: str = "", default_input_size: InputSize = REFERENCE_INPUT_SIZE
) -> LoadedModel:
    """Build the inference network of an already read checkpoint (see ``load_model``)."""
    family = checkpoint.family
    origin = str(checkpoint.path or source or "checkpoint")
    model = family.build(family.inference_config(checkpoint.config))
    try:
        load_strictly(model, checkpoint.state_dict, origin)
    except CheckpointError as exc:
        raise _what_it_holds(checkpoint, origin) or exc from None
    return LoadedModel(
        family=family,
        model=model.eval(),
        config=checkpoint.config,
        class_names=dict(checkpoint.class_names or {}),
        input_size=checkpoint.trained_input_size(default_input_size),
        source=source or origin,
        checkpoint=checkpoint,
    )


def build_for_training(
    checkpoint: Checkpoint, config: ModelConfig, *, train_backbone: bool = True
) -> tuple[nn.Module, list[str]]:
    """The network of ``config`` (``family.training_config`` of the checkpoint's: another class count, a mask
    branch, auxiliary losses) to fine-tune from ``checkpoint``: every weight that fits loaded, the class head
    re-initialised when the class count differs. -> (model, names of the tensors left at their fresh
    initialisation). CheckpointError naming the file when the weights do not fit otherwise."""
    model = checkpoint.family.build(config, train_backbone=train_backbone)
    origin = str(checkpoint.path or "checkpoint")
    try:
        fresh = checkpoint.family.load_for_finetuning(model, checkpoint.state_dict, origin)
    except CheckpointError as exc:
        raise _what_it_holds(checkpoint, origin) or exc from None
    return model, fresh


def _what_it_holds(checkpoint: Checkpoint, origin: str) -> CheckpointError | None:
    """When a file names one family (its sidecar, its training record) but holds another's weights: the error
    that says so. None when the weights are no other family's."""
    actual = identify(checkpoint.state_dict)
    if actual is None or actual is checkpoint.family:
        return None
    return CheckpointError(
        f"{origin}: the file says it is a {checkpoint.family.title} model, but its weights are a "
        f"{actual.title} model's; its sidecar (or training record) does not belong to these weights"
    )
