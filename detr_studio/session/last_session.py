"""What a start of the window brings back from the one before: the last project (the first of the recent
projects) and the last model, which the settings keep as JSON text.

Qt-free: the window reads and writes its settings and hands the text here. A model is brought back only when
it can be loaded without a download (its file is still there, or the zoo model is downloaded): nothing is
fetched at start-up.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from detr_studio.model import zoo

from .model_loading import ModelChoice


def model_choice_text(choice: ModelChoice) -> str:
    """``choice`` as the JSON text the settings keep."""
    return json.dumps(dataclasses.asdict(choice))


def model_choice_from_text(text: object) -> ModelChoice | None:
    """The `ModelChoice` kept as ``text`` (None when there is none, or it cannot be read)."""
    try:
        data = json.loads(str(text)) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("source"), str) or not data["source"]:
        return None
    known = {f.name for f in dataclasses.fields(ModelChoice)}
    try:
        return ModelChoice(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def unavailable_reason(choice: ModelChoice) -> str | None:
    """Why ``choice`` cannot be loaded at start-up (its file is gone, or the zoo model is not downloaded);
    None when it can."""
    if Path(choice.source).exists():
        return None
    try:
        entry = zoo.get_entry(choice.source)
    except ValueError:
        return f"{choice.source}: no such file"
    if zoo.cached_path(entry) is None:
        return f"{entry.name} is not downloaded (Model > Choose Model downloads it)"
    return None
