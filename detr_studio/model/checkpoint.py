"""Reading and writing model weights, for every family.

Read (``load_checkpoint``):
- our own format: ``<name>.safetensors`` + ``<name>.json`` sidecar. Format 2 records the family, the config,
  the class names, the input size and the training provenance; format 1 (before families) is DETR;
- training checkpoints we write (``last.pth``: ``model`` plus ``family``, ``model_config``, ``class_names``);
- the official release files (``{"model": state_dict}``, ``.pth``) and files of the official training scripts
  (extra keys, and an ``argparse.Namespace`` under ``"args"`` that is allowed by name, never by unpickling
  arbitrary objects), recognised by the family whose key layout they have;
- Hugging Face weights (``.safetensors`` or ``.bin``, with a ``config.json`` beside), likewise.

Write (``save_checkpoint``): our own format, atomically (``common.files.atomic_write``).

Every ``torch.load`` uses ``weights_only=True``. A bad file raises ``CheckpointError`` naming it and the problem.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from ..common.files import FileProblem, atomic_write, read_json
from .classes import parse_class_names
from .config_fields import ConfigError, ModelConfig
from .family import Hints, ModelFamily, NotRecognised
from .registry import DEFAULT_FAMILY, UnknownFamilyError, family_of, recognise, recognise_huggingface
from .state_dicts import CheckpointError

FORMAT_NAME = "detr-studio"
FORMAT_VERSION = 2  # 2: the sidecar names the family and the input size; 1: DETR, sizes in the provenance


class InputSize(NamedTuple):
    """The preprocessing a model expects: the shorter side, and the cap on the longer side (None: no cap)."""

    size: int
    max_size: int | None


REFERENCE_INPUT_SIZE = InputSize(800, 1333)  # the reference's evaluation sizes


@dataclass
class Checkpoint:
    """Weights in their family's key layout plus what we know about them."""

    state_dict: dict[str, Tensor]
    family: ModelFamily
    config: ModelConfig
    source: str  # "official" | "official-training" | "huggingface" | "detr-studio"
    path: Path | None = None
    class_names: dict[int, str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    input_size: InputSize | None = None  # recorded by format-2 sidecars; else see ``trained_input_size``

    def trained_input_size(self, default: InputSize = REFERENCE_INPUT_SIZE) -> InputSize:
        """The input size the weights were trained and evaluated at: recorded, else from the provenance."""
        return self.input_size or provenance_input_size(self.provenance, default)


def provenance_input_size(
    provenance: Any, default: tuple[int, int | None] = REFERENCE_INPUT_SIZE
) -> InputSize:
    """(shorter side, longer-side cap) a checkpoint of ours was evaluated at, read from its provenance
    (``val_size``, else the largest training scale; ``max_size``); ``default`` for what it does not say."""
    size, max_size = default
    if isinstance(provenance, dict):
        scales = provenance.get("scales")
        if isinstance(scales, list) and scales and all(_is_size(s) for s in scales):
            size = max(scales)
        if _is_size(provenance.get("val_size")):
            size = provenance["val_size"]
        if _is_size(provenance.get("max_size")):
            max_size = provenance["max_size"]
    return InputSize(size, max_size)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 16 <= value <= 16384


# --------------------------------------------------------------------------------------------- reading


def torch_load_weights(path: Path) -> Any:
    """``torch.load`` with weights only; ``argparse.Namespace`` (official training files) allowed by name.
    Refusals say so in our words (never torch's advice to turn the protection off)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols; a refusal is said below
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", str(exc))
        if blocked:
            name = blocked.group(1) or blocked.group(2)
            raise CheckpointError(
                f"{path}: refused to load: the file holds a Python object ({name}) that is not plain weights, "
                "and loading it could run code"
            ) from None
        raise CheckpointError(
            f"{path}: refused to load: not a weights-only PyTorch checkpoint (a corrupt file, or a plain "
            "pickle that could run code)"
        ) from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read any supported checkpoint file (or the first one in a folder) into its family's key layout."""
    path = Path(path)
    if path.is_dir():
        candidates = (
            sorted(path.glob("*.safetensors")) + sorted(path.glob("*.pth")) + sorted(path.glob("*.bin"))
        )
        if not candidates:
            raise CheckpointError(f"{path}: folder holds no .safetensors, .pth or .bin checkpoint")
        path = candidates[0]
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path}: an ONNX model, not PyTorch weights; run it with the ONNX Runtime backend"
        )
    try:
        if path.suffix == ".safetensors":
            return _load_safetensors(path)
        return _load_torch_file(path)
    except ConfigError as exc:  # names its file when it came from one (a sidecar, a config.json)
        raise CheckpointError(str(exc) if exc.origin else f"{path}: {exc}") from None
    except UnknownFamilyError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _load_torch_file(path: Path) -> Checkpoint:
    obj = torch_load_weights(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    if not ("model" in obj and isinstance(obj["model"], dict)):
        return _from_state_dict(path, obj, Hints(file_name=path.name), "official")
    sd, extra = obj["model"], {k: v for k, v in obj.items() if k != "model"}
    if "model_config" in extra:  # a training checkpoint of ours
        _check_tensors(path, sd)
        family = family_of(extra.get("family", DEFAULT_FAMILY))
        config = family.config_from_record(extra["model_config"], str(path), "model_config.")
        names = _names(extra.get("class_names"), path, "class_names")
        return Checkpoint(sd, family, config, FORMAT_NAME, path, names)
    args = extra.get("args")
    if isinstance(args, argparse.Namespace):
        return _from_state_dict(path, sd, Hints(path.name, vars(args)), "official-training")
    return _from_state_dict(path, sd, Hints(file_name=path.name), "official")


def _check_tensors(path: Path, sd: dict[str, Any]) -> None:
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{path}: not a state dict (some entries are not tensors)")


def _names(raw: Any, origin: Path, where: str) -> dict[int, str] | None:
    try:
        return parse_class_names(raw, where)
    except ValueError as exc:
        raise CheckpointError(f"{origin}: {exc}") from None


def _from_state_dict(path: Path, sd: dict[str, Any], hints: Hints, source: str) -> Checkpoint:
    """Weights with nothing beside them but their names: the family whose layout they have."""
    _check_tensors(path, sd)
    found = recognise(sd, hints)
    if not isinstance(found, NotRecognised):
        family, verdict = found
        return Checkpoint(verdict.state_dict, family, verdict.config, source, path)
    official_reasons = found.reason
    config_file = path.with_name("config.json")
    hf_config = _read_config_json(config_file) if config_file.exists() else None
    try:
        hf = recognise_huggingface(sd, hf_config, hints)
    except ConfigError as exc:
        raise CheckpointError(f"{config_file}: {exc}") from None
    if isinstance(hf, NotRecognised):
        raise CheckpointError(
            f"{path}: not a checkpoint of any model family DETR Studio knows ({official_reasons}; "
            f"as Hugging Face weights: {hf.reason})"
        )
    family, verdict = hf
    names = _names(hf_config.get("id2label"), config_file, "id2label") if hf_config else None
    return Checkpoint(verdict.state_dict, family, verdict.config, "huggingface", path, names)


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        return read_json(path, "Hugging Face model config")
    except FileProblem as exc:
        raise CheckpointError(str(exc)) from None


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def _load_safetensors(path: Path) -> Checkpoint:
    try:
        sd = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    sidecar = sidecar_path(path)
    if not sidecar.exists() or sidecar.name == "config.json":
        return _from_state_dict(path, sd, Hints(file_name=path.name), "official")
    try:
        meta = read_json(sidecar, "model sidecar")
    except FileProblem as exc:
        raise CheckpointError(str(exc)) from None
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{sidecar}: not a {FORMAT_NAME} sidecar (format={meta.get('format')!r})")
    version = meta.get("version", 1)
    if version not in (1, 2):
        raise CheckpointError(
            f"{sidecar}: sidecar format {version!r}; this version of DETR Studio reads formats 1 and 2"
        )
    family = family_of(meta.get("family", DEFAULT_FAMILY) if version >= 2 else DEFAULT_FAMILY)
    config = family.config_from_record(meta.get("config"), str(sidecar), "config.")
    names = _names(meta.get("class_names"), sidecar, "class_names")
    provenance = meta.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise CheckpointError(f"{sidecar}: provenance must be an object")
    size = _recorded_size(meta.get("input_size"), sidecar) if version >= 2 else None
    return Checkpoint(sd, family, config, FORMAT_NAME, path, names, provenance, size)


def _recorded_size(raw: Any, sidecar: Path) -> InputSize | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not _is_size(raw.get("size")):
        raise CheckpointError(
            f"{sidecar}: input_size must be {{'size': 16..16384, 'max_size': ...}}, got {raw!r}"
        )
    cap = raw.get("max_size")
    if cap is not None and not _is_size(cap):
        raise CheckpointError(f"{sidecar}: input_size.max_size must be 16..16384 or null, got {cap!r}")
    return InputSize(raw["size"], cap)


# --------------------------------------------------------------------------------------------- writing


def save_checkpoint(
    model: nn.Module | dict[str, Tensor],
    path: str | os.PathLike[str],
    config: ModelConfig,
    class_names: dict[int, str] | None = None,
    provenance: dict[str, Any] | None = None,
    input_size: InputSize | None = None,
) -> Path:
    """Write ``<path>.safetensors`` and its ``.json`` sidecar (format 2) atomically; returns the weights path.
    The family is the config's. Raises ``common.files.FileWriteError`` (an OSError) naming the file when the
    disk is full or read-only; the previous files stay as they were.

    A backbone trained with ordinary batch norm is written with frozen batch norm (``deployable_config``): its
    running statistics and affine parameters are exactly the frozen layer's buffers, so outputs in eval mode
    are unchanged.
    """
    family = family_of(config.family_name)
    weights = Path(path)
    if weights.suffix != ".safetensors":
        weights = weights.with_suffix(".safetensors")
    sd = deployable(model if isinstance(model, dict) else model.state_dict())
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "family": family.name,
        "config": family.deployable_config(config).to_dict(),
        "class_names": {str(k): v for k, v in (class_names or {}).items()},
        "provenance": provenance or {},
    }
    if input_size is not None:
        size, max_size = input_size
        meta["input_size"] = {"size": size, "max_size": max_size}
    # serialised in memory, so that the file is created by atomic_write with the user's umask (safetensors
    # writing a file itself makes it 0600)
    atomic_write(weights, save(sd, metadata={"format": FORMAT_NAME}))
    atomic_write(sidecar_path(weights), json.dumps(meta, indent=2).encode("utf-8"))
    return weights


def deployable(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU copies of the tensors, without batch norm's ``num_batches_tracked`` counters. Tensors that share
    memory (a head shared by every decoder layer, listed once per layer) become copies of their own, which
    safetensors needs."""
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        tensor = v.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[k] = tensor.clone() if storage in seen else tensor
        seen.add(storage)
    return out
