"""``OnnxPredictor``: the ONNX Runtime backend, with the same interface and results as ``Predictor``.

It runs a file written by ``export_onnx`` (inputs ``images`` [B, 3, H, W] and ``mask`` [B, H, W], the
preprocessing and class names in its metadata; fp32, fp16 or int8) on TensorRT, CUDA or the CPU, and
turns the outputs into the same ``Detections`` as the PyTorch backend, panoptic results included.
Attention maps cannot be had from ONNX.

Panoptic files in the two-part layout (``onnx_export.split_panoptic``) run as two sessions: the network
up to the mask head, then the mask head for the queries that post-processing keeps only, which gives
the PNG and segments of the whole file run with the reference's post-processing, byte for byte, at a
fraction of the cost. Older panoptic files run whole.

CPU sessions use all graph optimisations, one intra-op thread per physical core and spin-waiting (the
fastest settings in ``tests/benchmarks/bench_onnx.py``); ``spinning=False`` stops idle threads from
spinning, for machines whose cores are busy with other work.

When a GPU provider was asked for and ONNX Runtime quietly fell back to the CPU, ``provider_note``
says why: onnxruntime without CUDA, no GPU or driver, or missing CUDA / cuDNN libraries.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..data.preprocess import batch as make_batch
from ..model.classes import default_is_thing_map
from .base import BasePredictor, Prepared
from .detections import Detections
from .onnx_metadata import DETECTION_OUTPUTS, INPUT_NAMES, MASK_OUTPUT, OnnxMetadata
from .onnx_panoptic import FEATURE_OUTPUTS, split_panoptic
from .results import outputs_to_detections

if TYPE_CHECKING:
    import onnx

PROVIDER_CHOICES = ("auto", "tensorrt", "cuda", "cpu")
CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


class OnnxModelError(ValueError):
    """An ONNX file that cannot serve as a DETR model; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------- providers


def provider_order(choice: str | Sequence[str]) -> list[str]:
    """The providers to ask ONNX Runtime for, best first.

    "auto": CUDA when this onnxruntime has it, then CPU (TensorRT builds an engine per input shape, which
    takes minutes for DETR, so it is only used when asked for); "tensorrt": TensorRT, CUDA, CPU;
    "cuda": CUDA, CPU; "cpu": CPU. A sequence of provider names is used as given.
    """
    if not isinstance(choice, str):
        return list(choice)
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"providers must be one of {', '.join(PROVIDER_CHOICES)}, got {choice!r}")
    import onnxruntime as ort

    if choice == "auto":
        return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]
    return {"tensorrt": [TENSORRT, CUDA, CPU], "cuda": [CUDA, CPU], "cpu": [CPU]}[choice]


def _library_name(stem: str) -> str:
    return f"{stem}.dll" if sys.platform == "win32" else f"lib{stem}.so"


def cuda_unavailable_reason() -> str:
    """Why ONNX Runtime cannot use CUDA on this machine, in one line."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return "this onnxruntime has no CUDA support (install onnxruntime-gpu instead of onnxruntime)"
    provider_lib = Path(ort.__file__).parent / "capi" / _library_name("onnxruntime_providers_cuda")
    try:
        ctypes.CDLL(str(provider_lib))
    except OSError as exc:
        detail = str(exc).strip()
        if "libcuda.so" in detail or "nvcuda" in detail:
            return f"no NVIDIA GPU driver found, so no GPU to run on ({detail})"
        if "cudnn" in detail.lower():
            return f"cuDNN libraries are missing ({detail})"
        return f"CUDA libraries are missing or of the wrong version ({detail})"
    count = _cuda_device_count()
    if count == 0:
        return "the NVIDIA driver reports no usable CUDA GPU"
    return "ONNX Runtime could not create the CUDA provider (its log above says more)"


def _cuda_device_count() -> int | None:
    """GPUs the driver reports, or None when the driver cannot be asked."""
    try:
        driver = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
        if driver.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    except (OSError, AttributeError):
        return None


def _provider_options(name: str) -> dict:
    if name != TENSORRT:
        return {}
    from ..model.zoo import cache_dir

    engines = cache_dir().parent / "tensorrt"
    engines.mkdir(parents=True, exist_ok=True)
    return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(engines)}


# ------------------------------------------------------------------------------------------- predictor


def session_options(threads: int | None = None, spinning: bool = True):
    """ONNX Runtime session options as ``OnnxPredictor`` uses them: all graph optimisations,
    ``threads`` intra-op threads (None: one per physical core), idle threads spin-waiting or not."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class OnnxPredictor(BasePredictor):
    """Runs an exported ONNX file of any family; the same calls and results as ``Predictor``.

    providers: "auto" (CUDA, else CPU), "tensorrt", "cuda", "cpu", or a list of ONNX Runtime provider
    names. ``provider`` is the one that actually runs; ``provider_note`` says why a GPU provider that
    was asked for is not used (empty otherwise). size / max_size: None takes them from the file.
    threads / spinning: see ``session_options``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: str | Sequence[str] = "auto",
        *,
        panoptic_threshold: float = 0.85,
        is_thing_map: dict[int, bool] | None = None,
        class_names: dict[int, str] | None = None,
        size: int | None = None,
        max_size: int | None = None,
        threads: int | None = None,
        spinning: bool = True,
        name: str = "",
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path}: no such file")
        wanted = provider_order(providers)
        if CUDA in wanted or TENSORRT in wanted:
            _preload_cuda_libraries()
        proto = self._load()
        self._check_signature(proto.graph)
        try:
            self.meta = OnnxMetadata.from_props({p.key: p.value for p in proto.metadata_props}, self.path)
        except ValueError as exc:
            raise OnnxModelError(str(exc)) from None
        if tuple(self.meta.mean) != IMAGENET_MEAN or tuple(self.meta.std) != IMAGENET_STD:
            raise OnnxModelError(
                f"{self.path}: unsupported normalisation in the metadata (mean/std not ImageNet's)"
            )
        options = session_options(threads, spinning)
        self.mask_session = None  # the mask head alone, for two-part panoptic files
        if self.meta.splits_for_kept_queries:
            try:
                features, head = split_panoptic(proto)
            except ValueError as exc:
                raise OnnxModelError(f"{self.path}: {exc}") from None
            del proto
            self.session = self._open(features.SerializeToString(), options, wanted)
            self.mask_session = self._open(head.SerializeToString(), options, wanted)
        else:
            del proto
            self.session = self._open(str(self.path), options, wanted)
        self.config = self.meta.config
        self.family = self.meta.family
        self.class_names = class_names or self.meta.class_names
        self.precision = self.meta.precision
        self.size = size if size is not None else self.meta.size
        self.max_size = max_size if max_size is not None else self.meta.max_size
        self.name = name or self.path.name
        self.providers = list(self.session.get_providers())
        self.provider = self.providers[0]
        self.provider_note = self._fallback_note(wanted)
        self.panoptic = None
        if self._has_masks:
            self.panoptic = self.family.panoptic_postprocessor(
                is_thing_map or default_is_thing_map(self.config.num_classes), panoptic_threshold
            )

    def _load(self) -> onnx.ModelProto:
        import onnx

        try:
            return onnx.load(str(self.path))
        except Exception as exc:  # DecodeError, OSError and others for a damaged file
            lines = str(exc).strip().splitlines()
            raise OnnxModelError(
                f"{self.path}: not a readable ONNX model ({lines[0] if lines else type(exc).__name__})"
            ) from None

    def _open(self, model: str | bytes, options, wanted: list[str]):
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        chosen = [(p, _provider_options(p)) for p in wanted if p in available] or [(CPU, {})]
        ort.set_default_logger_severity(4)  # a failed GPU provider is explained by provider_note instead
        try:
            return ort.InferenceSession(
                model,
                sess_options=options,
                providers=[p for p, _ in chosen],
                provider_options=[o for _, o in chosen],
            )
        except Exception as exc:  # ORT raises InvalidProtobuf, InvalidGraph, Fail, NoSuchFile ...
            lines = str(exc).strip().splitlines()
            raise OnnxModelError(
                f"{self.path}: not a readable ONNX model ({lines[0] if lines else exc})"
            ) from None
        finally:
            ort.set_default_logger_severity(2)

    def _check_signature(self, graph: onnx.GraphProto) -> None:
        from onnx import TensorProto

        constants = {t.name for t in graph.initializer}
        inputs = {i.name: i for i in graph.input if i.name not in constants}
        outputs = [o.name for o in graph.output]
        expected = (
            "inputs images [B, 3, H, W] float32 and mask [B, H, W] bool; outputs pred_logits and pred_boxes"
        )
        if set(inputs) != set(INPUT_NAMES) or not set(DETECTION_OUTPUTS) <= set(outputs):
            raise OnnxModelError(
                f"{self.path}: not a DETR Studio ONNX model: it has inputs {sorted(inputs)} and outputs {outputs}; "
                f"expected {expected}"
            )
        images, mask = inputs["images"].type.tensor_type, inputs["mask"].type.tensor_type
        if (
            images.elem_type != TensorProto.FLOAT
            or mask.elem_type != TensorProto.BOOL
            or len(images.shape.dim) != 4
        ):
            raise OnnxModelError(f"{self.path}: not a DETR Studio ONNX model: expected {expected}")
        self._has_masks = MASK_OUTPUT in outputs

    def _fallback_note(self, wanted: list[str]) -> str:
        notes = []
        if TENSORRT in wanted and TENSORRT not in self.providers:
            notes.append("TensorRT is not used (onnxruntime without TensorRT, or TensorRT libraries missing)")
        if CUDA in wanted and CUDA not in self.providers:
            notes.append(f"CUDA is not used: {cuda_unavailable_reason()}; running on {self.provider}")
        return "; ".join(notes)

    @classmethod
    def from_weights(cls, source: str | os.PathLike, **kwargs) -> OnnxPredictor:
        """Same entry point as ``Predictor.from_weights``, for an ``.onnx`` file."""
        return cls(source, **kwargs)

    @property
    def supports_masks(self) -> bool:
        return self._has_masks

    @property
    def description(self) -> str:
        short = self.provider.replace("ExecutionProvider", "")
        text = f"onnxruntime {short} {self.precision}"
        return f"{text} ({self.provider_note})" if self.provider_note else text

    # ------------------------------------------------------------------------------------ running

    def _check_request(self, attention: bool, panoptic: bool) -> None:
        if attention:
            raise ValueError(
                f"{self.path.name}: attention maps are not available from an ONNX model; "
                "use the PyTorch backend (the checkpoint) to see attention"
            )
        if panoptic and not self.supports_masks:
            raise ValueError(
                f"{self.path.name}: panoptic results need a model with a mask head "
                "(export a panoptic checkpoint with --panoptic)"
            )

    def _run(self, prepared: list[Prepared], *, attention: bool, panoptic: bool) -> list[Detections]:
        samples = make_batch([p.tensor for p in prepared])
        feed = {"images": samples.tensors.numpy(), "mask": samples.mask.numpy()}
        originals = [p.original for p in prepared]
        processed = [tuple(p.tensor.shape[-2:]) for p in prepared]
        raw_panoptic = None
        if panoptic and self.mask_session is not None:
            logits, boxes, raw_panoptic = self._run_kept_queries(feed, processed, originals)
        elif panoptic:  # an older panoptic file: masks of every query, as the reference computes them
            values = self.session.run([*DETECTION_OUTPUTS, MASK_OUTPUT], feed)
            logits, boxes = torch.from_numpy(values[0]), torch.from_numpy(values[1])
            masks = torch.from_numpy(values[2])  # [B, Q, H/4, W/4]
            raw_panoptic = self.panoptic({"pred_logits": logits, "pred_masks": masks}, processed, originals)
        else:
            values = self.session.run(list(DETECTION_OUTPUTS), feed)
            logits, boxes = torch.from_numpy(values[0]), torch.from_numpy(values[1])
        return outputs_to_detections(
            self.family, logits, boxes, originals, [p.source for p in prepared], raw_panoptic
        )

    def forward_batch(self, images: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw detection outputs of a padded batch: images [B, 3, H, W] float32, mask [B, H, W] bool ->
        (pred_logits [B, Q, K], pred_boxes [B, Q, 4]); for evaluating the file on a dataset."""
        logits, boxes = self.session.run(list(DETECTION_OUTPUTS), {"images": images, "mask": mask})[:2]
        return logits, boxes

    def _run_kept_queries(self, feed: dict[str, np.ndarray], processed: list, originals: list):
        """Both parts of a two-part panoptic file, the mask head only for the queries kept.
        -> (logits [B, Q, C+1], boxes [B, Q, 4], per image {"png_string", "segments_info"})."""
        values = self.session.run([*DETECTION_OUTPUTS, *FEATURE_OUTPUTS], feed)
        logits, boxes = torch.from_numpy(values[0]), torch.from_numpy(values[1])
        attention, projected, fpn1, fpn2, fpn3 = values[2:]  # attention [B, Q, heads, h, w]
        index = self.panoptic.select({"pred_logits": logits}).nonzero()  # [N, 2] (image, query)
        if len(index):
            rows = index.numpy()
            masks = self.mask_session.run(
                None,
                {
                    "mask_projected": projected,
                    "mask_rows": np.ascontiguousarray(attention[rows[:, 0], rows[:, 1]]),  # [N, heads, h, w]
                    "mask_row_image": np.ascontiguousarray(rows[:, 0]),
                    "mask_fpn1": fpn1,
                    "mask_fpn2": fpn2,
                    "mask_fpn3": fpn3,
                },
            )[0]  # [N, H/4, W/4]
        else:
            masks = np.zeros((0, *fpn3.shape[-2:]), dtype=np.float32)
        outputs = {"pred_logits": logits, "pred_masks": torch.from_numpy(masks), "mask_index": index}
        return logits, boxes, self.panoptic.from_selected(outputs, processed, originals)


def _preload_cuda_libraries() -> None:
    """Let ONNX Runtime find the CUDA and cuDNN libraries that pip packages (e.g. torch's) installed."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:  # a missing library is reported by provider_note when the session falls back
        return
