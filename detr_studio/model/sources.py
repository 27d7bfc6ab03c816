"""Where weights come from: a path on disk, a model-zoo name, or ``"demo"`` (the bundled demo model)."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from . import zoo

DEMO_SOURCE = "demo"


def demo_weights() -> Path:
    """The bundled demo checkpoint (``resources/demo/model.safetensors`` with its sidecar)."""
    return Path(str(resources.files("detr_studio").joinpath("resources", "demo", "model.safetensors")))


def resolve(
    source: str | os.PathLike[str], progress: Callable[[int, int | None], None] | None = None
) -> Path:
    """A checkpoint path for ``source``: an existing file or folder, ``"demo"``, else a zoo name (downloaded on
    first use, with ``progress(done_bytes, total_bytes)``). Unknown names raise ValueError listing the zoo."""
    path = Path(source)
    if path.exists():
        return path
    if str(source) == DEMO_SOURCE:
        weights = demo_weights()
        if not weights.is_file():
            raise ValueError(f"the demo model is not installed ({weights} is missing)")
        return weights
    names = [entry.name for entry in zoo.list_entries()]
    if str(source) in names:
        return zoo.download(str(source), progress=progress)
    raise ValueError(
        f"{source}: no such file, and not a model-zoo name (zoo: {', '.join(names)}; see `detr-studio zoo list`)"
    )
