"""What an exported ONNX file carries beside its graph: ``OnnxMetadata``, stored as ``metadata_props``.

Everything a runtime needs to reproduce our results: the model family and its config, class names,
preprocessing (input size, mean and std), the task, the precision, the source checkpoint and, for panoptic
files, the layout that lets the graph be split for the kept queries. Files written before families were
recorded hold DETR.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..model.classes import parse_class_names
from ..model.config_fields import ConfigError, ModelConfig
from ..model.family import ModelFamily
from ..model.registry import DEFAULT_FAMILY, UnknownFamilyError, family_of

INPUT_NAMES = ("images", "mask")
DETECTION_OUTPUTS = ("pred_logits", "pred_boxes")
MASK_OUTPUT = "pred_masks"
META_PREFIX = "detr_studio."
PRECISIONS = ("fp32", "fp16", "int8")
PANOPTIC_LAYOUT = "kept-queries-v1"  # panoptic files whose graph splits at the mask head (``onnx_panoptic``)


@dataclass(frozen=True)
class OnnxMetadata:
    """What a runtime needs beside the graph, stored as ``metadata_props`` of the ONNX file."""

    config: ModelConfig
    class_names: dict[int, str]
    task: str  # "detection" | "panoptic"
    precision: str  # "fp32" | "fp16" | "int8"
    size: int = 800
    max_size: int | None = 1333
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""
    version: str = __version__
    exporter: str = ""
    sample_shape: tuple[int, ...] = ()  # [B, 3, H, W] the graph was traced with
    quantization: str = ""  # int8 files: JSON describing what was quantised and how (see ``quantize``)
    mask_head: str = ""  # panoptic files: PANOPTIC_LAYOUT when the graph can be split for kept queries

    @property
    def family(self) -> ModelFamily:
        return family_of(self.config.family_name)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def splits_for_kept_queries(self) -> bool:
        return self.task == "panoptic" and self.mask_head == PANOPTIC_LAYOUT

    def to_props(self) -> dict[str, str]:
        preprocess = {
            "size": self.size,
            "max_size": self.max_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "padding": "zeros at the bottom and right; mask True on padding",
        }
        values = {
            "version": self.version,
            "task": self.task,
            "precision": self.precision,
            "family": self.config.family_name,
            "num_classes": str(self.config.num_classes),
            "class_names": json.dumps({str(k): v for k, v in sorted(self.class_names.items())}),
            "preprocess": json.dumps(preprocess),
            "config": json.dumps(self.config.to_dict()),
            "source": self.source,
            "exporter": self.exporter,
            "sample_shape": json.dumps(list(self.sample_shape)),
        }
        if self.quantization:
            values["quantization"] = self.quantization
        if self.mask_head:
            values["mask_head"] = self.mask_head
        return {META_PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], origin: str | os.PathLike) -> OnnxMetadata:
        """Read back ``to_props``; a missing or malformed entry raises ValueError naming ``origin``."""
        ours = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        required = ("task", "config", "preprocess", "class_names")
        missing = [META_PREFIX + k for k in required if k not in ours]
        if missing:
            raise ValueError(
                f"{origin}: the ONNX model lacks DETR Studio metadata ({', '.join(missing)}); "
                "export it with `detr-studio export`"
            )
        try:
            family = family_of(ours.get("family", DEFAULT_FAMILY))
            config = family.config_from_record(
                json.loads(ours["config"]), str(origin), META_PREFIX + "config."
            )
            names = parse_class_names(json.loads(ours["class_names"]), META_PREFIX + "class_names") or {}
            pre = json.loads(ours["preprocess"])
            size, max_size = int(pre["size"]), None if pre.get("max_size") is None else int(pre["max_size"])
            mean, std = tuple(float(v) for v in pre["mean"]), tuple(float(v) for v in pre["std"])
            sample = tuple(int(v) for v in json.loads(ours.get("sample_shape", "[]")))
        except (ConfigError, UnknownFamilyError) as exc:
            raise ValueError(str(exc) if str(exc).startswith(str(origin)) else f"{origin}: {exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{origin}: malformed DETR Studio metadata in the ONNX model ({exc})") from None
        if ours["task"] not in ("detection", "panoptic"):
            raise ValueError(f"{origin}: unknown task {ours['task']!r} in the ONNX metadata")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"{origin}: the ONNX metadata needs 3 mean and 3 std values")
        precision = ours.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ValueError(f"{origin}: unknown precision {precision!r} in the ONNX metadata")
        return cls(
            config=config,
            class_names=names,
            task=ours["task"],
            precision=precision,
            size=size,
            max_size=max_size,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            source=ours.get("source", ""),
            version=ours.get("version", ""),
            exporter=ours.get("exporter", ""),
            sample_shape=sample,
            quantization=ours.get("quantization", ""),
            mask_head=ours.get("mask_head", ""),
        )


def read_metadata(path: str | os.PathLike) -> OnnxMetadata:
    """The DETR Studio metadata of an ONNX file (reads the file header with ``onnx``, no session)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others for a damaged file
        raise ValueError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    return OnnxMetadata.from_props({p.key: p.value for p in proto.metadata_props}, path)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
