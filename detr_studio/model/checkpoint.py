"""Reading and writing DETR weights.

Read:
- the official release files (``{"model": state_dict}``, ``.pth``) and files written by the official
  training script (extra keys, and an ``argparse.Namespace`` under ``"args"`` that is allowed by name,
  never by unpickling arbitrary objects);
- Hugging Face ``facebook/detr-*`` weights (``.safetensors`` or ``.bin``, with a ``config.json`` beside);
- our own format: ``<name>.safetensors`` + ``<name>.json`` sidecar (config, class names, provenance).

Write: our own format, and the official ``{"model": state_dict}`` layout.

Every ``torch.load`` uses ``weights_only=True``. A bad file raises ``CheckpointError`` naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .config import DetrConfig

FORMAT_NAME = "detr-studio"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


@dataclass
class Checkpoint:
    """Weights in the official key layout plus what we know about them."""

    state_dict: dict[str, Tensor]
    config: DetrConfig
    source: str  # "official" | "official-training" | "huggingface" | "detr-studio"
    path: Path | None = None
    class_names: dict[int, str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # optimizer, lr_scheduler, epoch … when present


REFERENCE_INPUT_SIZE = (800, 1333)  # shorter side, cap on the longer side: the reference's evaluation sizes


def provenance_input_size(
    provenance: Any, default: tuple[int, int] = REFERENCE_INPUT_SIZE
) -> tuple[int, int]:
    """(shorter side, longer-side cap) a checkpoint of ours was evaluated at, read from its provenance
    (``val_size``, else the largest training scale; ``max_size``); ``default`` for what it does not say."""
    size, max_size = default
    if isinstance(provenance, dict):
        scales = provenance.get("scales")
        if isinstance(scales, list) and scales and all(isinstance(s, int) for s in scales):
            size = max(scales)
        if isinstance(provenance.get("val_size"), int):
            size = provenance["val_size"]
        if isinstance(provenance.get("max_size"), int):
            max_size = provenance["max_size"]
    return size, max_size


# --------------------------------------------------------------------------------------------- reading


def _torch_load(path: Path) -> Any:
    """``torch.load`` with weights only; ``argparse.Namespace`` (official training files) allowed by name."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _strip_prefix(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def infer_config(sd: dict[str, Tensor], **hints: Any) -> DetrConfig:
    """Work out the architecture from state-dict shapes. ``hints`` override what shapes cannot say
    (``dilation``, ``nheads``, ``aux_loss``)."""
    masks = any(k.startswith("detr.") for k in sd)
    det = {k[5:]: v for k, v in sd.items() if k.startswith("detr.")} if masks else sd
    try:
        num_classes = det["class_embed.weight"].shape[0] - 1
        hidden_dim = det["class_embed.weight"].shape[1]
        num_queries = det["query_embed.weight"].shape[0]
        dim_feedforward = det["transformer.encoder.layers.0.linear1.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"not a DETR state dict: key {exc.args[0]!r} is missing") from None
    enc_layers = _count_layers(det, "transformer.encoder.layers.")
    dec_layers = _count_layers(det, "transformer.decoder.layers.")
    layer3_blocks = _count_layers(det, "backbone.0.body.layer3.")
    has_bottleneck = "backbone.0.body.layer1.0.conv3.weight" in det
    if has_bottleneck:
        backbone = {6: "resnet50", 23: "resnet101"}.get(layer3_blocks)
    else:
        backbone = {2: "resnet18", 6: "resnet34"}.get(layer3_blocks)
    if backbone is None:
        raise CheckpointError(f"backbone with {layer3_blocks} blocks in layer3 is not a supported ResNet")
    values: dict[str, Any] = {
        "num_classes": num_classes,
        "backbone": backbone,
        "position_embedding": "learned" if "backbone.1.row_embed.weight" in det else "sine",
        "hidden_dim": hidden_dim,
        "enc_layers": enc_layers,
        "dec_layers": dec_layers,
        "dim_feedforward": dim_feedforward,
        "pre_norm": "transformer.encoder.norm.weight" in det,
        "num_queries": num_queries,
        "masks": masks,
        "nheads": 8,
    }
    if not has_bottleneck and "backbone.0.body.conv1.weight" in det:
        values["backbone_width"] = det["backbone.0.body.conv1.weight"].shape[0]
    if masks and "mask_head.lay1.weight" in sd:
        values["nheads"] = sd["mask_head.lay1.weight"].shape[0] - hidden_dim
    values.update(hints)
    return DetrConfig.from_dict(values)


def _count_layers(sd: dict[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _config_from_training_args(args: argparse.Namespace, sd: dict[str, Tensor]) -> DetrConfig:
    """The official training script stores its argparse namespace; take the architecture from it."""
    base = infer_config(sd)
    ns = vars(args)
    hints = {
        "dilation": bool(ns.get("dilation", False)),
        "nheads": int(ns.get("nheads", base.nheads)),
        "dropout": float(ns.get("dropout", base.dropout)),
        "aux_loss": bool(ns.get("aux_loss", base.aux_loss)),
    }
    return base.replace(**hints)


def _dilation_hint(path: Path) -> bool:
    return "dc5" in path.name.lower()


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read any supported checkpoint file into the official key layout."""
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
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], dict):
        sd = obj["model"]
        extra = {k: v for k, v in obj.items() if k != "model"}
        args = extra.get("args")
        if isinstance(args, argparse.Namespace):
            config = _config_from_training_args(args, sd)
            source = "official-training"
        elif isinstance(extra.get("model_config"), dict):
            try:
                config = DetrConfig.from_dict(extra["model_config"])
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{path}: bad model config ({exc})") from None
            names = {int(k): str(v) for k, v in (extra.get("class_names") or {}).items()} or None
            return Checkpoint(sd, config, FORMAT_NAME, path, names, extra=extra)
        else:
            config = infer_config(sd, dilation=_dilation_hint(path)) if _looks_official(sd) else None
            source = "official"
        if config is None:
            return _load_plain_dict(path, sd, extra)
        return Checkpoint(sd, config, source, path, extra=extra)
    return _load_plain_dict(path, obj, {})


def _looks_official(sd: dict[str, Any]) -> bool:
    return "class_embed.weight" in sd or "detr.class_embed.weight" in sd


def _load_plain_dict(path: Path, sd: dict[str, Any], extra: dict[str, Any]) -> Checkpoint:
    if not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: not a state dict (some entries are not tensors)")
    if _looks_official(sd):
        return Checkpoint(sd, infer_config(sd, dilation=_dilation_hint(path)), "official", path, extra=extra)
    from . import hf

    if hf.is_hf_state_dict(sd):
        return _from_hf(path, sd)
    raise CheckpointError(f"{path}: not a DETR checkpoint (no class_embed weights found)")


def _from_hf(path: Path, sd: dict[str, Tensor]) -> Checkpoint:
    from . import hf

    config_file = path.with_name("config.json")
    hf_config = _read_json(config_file) if config_file.exists() else None
    try:
        official, config = hf.convert_hf_state_dict(sd, hf_config)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot convert Hugging Face weights: {exc}") from None
    names = None
    if hf_config and isinstance(hf_config.get("id2label"), dict):
        names = {int(k): str(v) for k, v in hf_config["id2label"].items()}
    return Checkpoint(official, config, "huggingface", path, class_names=names)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def sidecar_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def _load_safetensors(path: Path) -> Checkpoint:
    try:
        sd = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    sidecar = sidecar_path(path)
    if sidecar.exists() and sidecar.name != "config.json":
        meta = _read_json(sidecar)
        if meta.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{sidecar}: not a {FORMAT_NAME} sidecar (format={meta.get('format')!r})")
        try:
            config = DetrConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{sidecar}: bad model config ({exc})") from None
        names = {int(k): str(v) for k, v in (meta.get("class_names") or {}).items()} or None
        return Checkpoint(sd, config, FORMAT_NAME, path, names, dict(meta.get("provenance") or {}))
    return _load_plain_dict(path, sd, {})


# --------------------------------------------------------------------------------------------- fitting


def _mismatch_report(own: dict[str, Tensor], sd: dict[str, Tensor], ignore: set[str]) -> str:
    """Empty when ``sd`` fits ``own`` (keys in ``ignore`` may be absent from ``sd``), else a readable list."""
    missing = [k for k in own if k not in sd and k not in ignore]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for title, items in (
        ("shape mismatches", shapes),
        ("missing keys", missing),
        ("unexpected keys", unexpected),
    ):
        if items:
            shown = "; ".join(items[:8]) + (f"; … {len(items) - 8} more" if len(items) > 8 else "")
            parts.append(f"{len(items)} {title}: {shown}")
    return " | ".join(parts)


def check_fits(model: nn.Module, sd: dict[str, Tensor], origin: str = "checkpoint") -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped keys when ``sd`` does not fit."""
    report = _mismatch_report(model.state_dict(), sd, set())
    if report:
        raise CheckpointError(f"{origin} does not fit the model: {report}")


def load_into(model: nn.Module, ckpt: Checkpoint) -> None:
    """Load strictly, with a readable error instead of PyTorch's when anything differs."""
    check_fits(model, ckpt.state_dict, str(ckpt.path or "checkpoint"))
    model.load_state_dict(ckpt.state_dict, strict=True)


def build_from_checkpoint(ckpt: Checkpoint, **config_changes: Any) -> nn.Module:
    from .detr import build_detr

    config = ckpt.config.replace(**config_changes) if config_changes else ckpt.config
    model = build_detr(config)
    load_into(model, ckpt)
    return model


def detector_of(model: nn.Module) -> nn.Module:
    """The plain DETR inside a model (itself, or ``model.detr`` for a segmentation wrapper)."""
    return getattr(model, "detr", model)


def reset_class_head(model: nn.Module, num_classes: int) -> None:
    """Replace the classifier for a new class list (``num_classes`` = max id + 1); queries, boxes and
    the rest of the network keep their trained weights. The standard DETR fine-tuning recipe."""
    detr = detector_of(model)
    old = detr.class_embed
    detr.class_embed = nn.Linear(old.in_features, num_classes + 1).to(old.weight.device, old.weight.dtype)


def load_for_finetuning(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """Load every weight of ``ckpt`` into ``model``, which may have another class count, a mask branch
    the checkpoint lacks, or no mask branch where the checkpoint has one. The class head is skipped when
    its size differs; a missing mask branch keeps its fresh initialisation; a mask branch the model lacks is
    left out (training boxes from a segmentation checkpoint). Anything else that does not fit is an error.

    Returns the names of the model's tensors left at their initial values.
    """
    own = model.state_dict()
    sd = dict(ckpt.state_dict)
    model_wraps = any(k.startswith("detr.") for k in own)
    ckpt_wraps = any(k.startswith("detr.") for k in sd)
    if model_wraps and not ckpt_wraps:
        sd = {f"detr.{k}": v for k, v in sd.items()}
    elif ckpt_wraps and not model_wraps:
        sd = {k.removeprefix("detr."): v for k, v in sd.items() if k.startswith("detr.")}
    fresh = {
        k
        for k in own
        if k.endswith(("class_embed.weight", "class_embed.bias")) and k in sd and own[k].shape != sd[k].shape
    }
    fresh |= {k for k in own if k.startswith(("bbox_attention.", "mask_head.")) and k not in sd}
    sd = {k: v for k, v in sd.items() if k not in fresh}
    report = _mismatch_report(own, sd, fresh)
    if report:
        raise CheckpointError(f"{ckpt.path or 'checkpoint'} cannot initialise this model: {report}")
    model.load_state_dict(sd, strict=False)
    return sorted(fresh)


# --------------------------------------------------------------------------------------------- writing


def atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    model: nn.Module | dict[str, Tensor],
    path: str | os.PathLike[str],
    config: DetrConfig,
    class_names: dict[int, str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``<path>.safetensors`` and its ``.json`` sidecar atomically; returns the weights path.

    A backbone trained with ordinary batch norm is written with frozen batch norm: its running statistics
    and affine parameters are exactly the frozen layer's buffers, so outputs in eval mode are unchanged.
    """
    weights = Path(path)
    if weights.suffix != ".safetensors":
        weights = weights.with_suffix(".safetensors")
    sd = _deployable(model if isinstance(model, dict) else model.state_dict())
    config = config.replace(backbone_norm="frozen")
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": config.to_dict(),
        "class_names": {str(k): v for k, v in (class_names or {}).items()},
        "provenance": provenance or {},
    }
    atomic_write(weights, lambda p: save_file(sd, str(p), metadata={"format": FORMAT_NAME}))
    atomic_write(sidecar_path(weights), lambda p: p.write_text(json.dumps(meta, indent=2), encoding="utf-8"))
    return weights


def _deployable(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU copies of the tensors, without batch norm's ``num_batches_tracked`` counters."""
    return {
        k: v.detach().to("cpu").contiguous() for k, v in sd.items() if not k.endswith("num_batches_tracked")
    }


def save_official(model_or_sd: nn.Module | dict[str, Tensor], path: str | os.PathLike[str]) -> Path:
    """Write the official ``{"model": state_dict}`` layout that the reference code and hub load."""
    sd = _deployable(model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else model_or_sd)
    out = Path(path)
    atomic_write(out, lambda p: torch.save({"model": sd}, p))
    return out
