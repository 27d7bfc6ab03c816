"""``Predictor``: one loaded model, images in, ``Detections`` out.

Batches images with padding masks, runs on the chosen device and precision, and turns raw outputs
into Detections with the reference's post-processing. Panoptic results run the mask head only for the
queries post-processing keeps, which gives the reference's answer at a fraction of its cost.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..data.preprocess import batch as make_batch
from ..model.checkpoint import (
    Checkpoint,
    build_from_checkpoint,
    detector_of,
    load_checkpoint,
    provenance_input_size,
)
from ..model.config import DetrConfig
from ..model.fuse import fold_frozen_batchnorm
from ..model.postprocess import PostProcessPanoptic, default_is_thing_map
from ..model.sources import default_class_names, resolve
from . import device as devices
from .base import BasePredictor, Prepared
from .detections import AttentionMaps, Detections
from .results import outputs_to_detections


class Predictor(BasePredictor):
    """Runs one DETR model. Thread-compatible (one call at a time); keep one per worker thread.

    precision: "fp32" (default), "bf16" (CPUs with AMX/AVX-512 BF16, recent GPUs) or "fp16" (GPUs).
    channels_last: channels-last memory layout; None (default) turns it on for CPUs, where it makes the
    backbone ~1.4x faster.
    fold_batchnorm: run a copy of the model whose frozen batch norms are folded into the convolutions
    (faster; outputs change by float rounding only). The model passed in is left untouched.
    """

    def __init__(
        self,
        model: nn.Module,
        config: DetrConfig,
        class_names: dict[int, str] | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        panoptic_threshold: float = 0.85,
        is_thing_map: dict[int, bool] | None = None,
        size: int = 800,
        max_size: int | None = 1333,
        name: str = "",
        fold_batchnorm: bool = True,
    ):
        devices.autocast_dtype(precision)
        self.device = device if isinstance(device, torch.device) else devices.pick_device(device)
        if self.device.type == "cpu" and precision == "fp16":
            raise ValueError("fp16 is for GPUs; use bf16 on the CPU")
        self.config = config
        self.class_names = class_names or {}
        self.precision = precision
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        self.size = size
        self.max_size = max_size
        self.name = name
        if fold_batchnorm:
            model = copy.deepcopy(model)
            fold_frozen_batchnorm(model)
        self.model = model.eval().to(self.device)
        self.note = devices.precision_note(self.device, precision)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.panoptic = PostProcessPanoptic.for_model(
            is_thing_map or default_is_thing_map(config.num_classes), panoptic_threshold
        )
        self._detector = detector_of(self.model)

    # ------------------------------------------------------------------------------------ building

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, **kwargs) -> Predictor:
        model = build_from_checkpoint(ckpt, aux_loss=False, dropout=0.0)
        kwargs.setdefault("class_names", ckpt.class_names)
        size, max_size = provenance_input_size(ckpt.provenance)  # the sizes it was trained and evaluated at
        kwargs.setdefault("size", size)
        kwargs.setdefault("max_size", max_size)
        kwargs.setdefault("name", str(ckpt.path.name) if ckpt.path else "")
        return cls(model, ckpt.config, **kwargs)

    @classmethod
    def from_weights(
        cls, source: str | os.PathLike, progress: Callable[[int, int], None] | None = None, **kwargs
    ) -> Predictor:
        """``source``: a checkpoint file or folder, or a model-zoo name (downloaded on first use)."""
        ckpt = load_checkpoint(resolve(source, progress=progress))
        if ckpt.class_names is None:
            ckpt.class_names = default_class_names(ckpt.config)
        return cls.from_checkpoint(ckpt, **kwargs)

    @property
    def supports_masks(self) -> bool:
        return self.config.masks

    @property
    def description(self) -> str:
        return f"torch {devices.describe(self.device)} {self.precision}" + (
            " channels-last" if self.channels_last else ""
        )

    # ------------------------------------------------------------------------------------ running

    def _check_request(self, attention: bool, panoptic: bool) -> None:
        if panoptic and not self.config.masks:
            raise ValueError("panoptic results need a model with a mask head (a panoptic checkpoint)")

    @torch.inference_mode()
    def _run(self, prepared: list[Prepared], *, attention: bool, panoptic: bool) -> list[Detections]:
        samples = make_batch([p.tensor for p in prepared]).to(self.device)
        if self.channels_last:
            samples.tensors = samples.tensors.contiguous(memory_format=torch.channels_last)
        recorder = _AttentionRecorder(self._detector) if attention else None
        with devices.autocast(self.device, self.precision):
            if panoptic:
                out = self.model(samples, select=self.panoptic.select)
            elif self.config.masks:
                out = self.model.detr(samples)
            else:
                out = self.model(samples)
        panoptic_results = None
        if panoptic:
            out["pred_masks"] = out["pred_masks"].float()
            processed = [tuple(p.tensor.shape[-2:]) for p in prepared]
            panoptic_results = self.panoptic.from_selected(out, processed, [p.original for p in prepared])
        attn = recorder.collect(samples.mask, prepared) if recorder else None
        return outputs_to_detections(
            out["pred_logits"],
            out["pred_boxes"],
            [p.original for p in prepared],
            [p.source for p in prepared],
            panoptic=panoptic_results,
            attention=attn,
        )


class _AttentionRecorder:
    """Turns on attention recording in the last encoder and decoder layers for one forward pass,
    and notes the feature-map size."""

    def __init__(self, detr: nn.Module):
        self.enc = detr.transformer.encoder.layers[-1]
        self.dec = detr.transformer.decoder.layers[-1]
        self.enc.record_attention = True
        self.dec.record_attention = True
        self.feature_hw: tuple[int, int] | None = None
        self.stride = detr.backbone[0].stride
        self._hook = detr.input_proj.register_forward_hook(self._on_features)

    def _on_features(self, _module, _inputs, output: Tensor) -> None:
        self.feature_hw = (int(output.shape[-2]), int(output.shape[-1]))

    def collect(self, pad_mask: Tensor, prepared: list[Prepared]) -> list[AttentionMaps]:
        self._hook.remove()
        self.enc.record_attention = False
        self.dec.record_attention = False
        enc, dec = self.enc.last_attention, self.dec.last_attention  # [B, nh, HW, HW], [B, nh, Q, HW]
        self.enc.last_attention = self.dec.last_attention = None
        if enc is None or dec is None or self.feature_hw is None:
            raise RuntimeError("attention was not recorded; is this a DETR model?")
        h, w = self.feature_hw
        feature_pad = torch.nn.functional.interpolate(pad_mask[None].float(), size=(h, w))[
            0
        ].bool()  # [B, h, w]
        maps = []
        for i, item in enumerate(prepared):
            valid = ~feature_pad[i]
            vh, vw = int(valid[:, 0].sum()), int(valid[0].sum())
            nh = dec.shape[1]
            d = dec[i].float().view(nh, -1, h, w)[:, :, :vh, :vw]
            e = enc[i].float().view(nh, h, w, h, w)[:, :vh, :vw, :vh, :vw]
            in_h, in_w = item.tensor.shape[-2:]
            scale = (item.original[0] / in_h, item.original[1] / in_w)
            maps.append(
                AttentionMaps(
                    decoder=d.to(torch.float16).cpu().numpy(),
                    encoder=e.to(torch.float16).cpu().numpy(),
                    stride=self.stride,
                    scale=scale,
                )
            )
        return maps
