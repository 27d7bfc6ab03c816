"""``Predictor``: one loaded model of any family, images in, ``Detections`` out.

Batches images with padding masks, runs on the chosen device and precision, and turns raw outputs into
Detections with the family's post-processing. Before each forward it estimates the memory the forward needs
and, past the budget, runs it in pieces that fit (``memory.py``). Panoptic results run the mask head only for
the queries post-processing keeps, which gives the reference's answer at a fraction of its cost.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable

import torch
from torch import nn

from ..data.preprocess import batch as make_batch
from ..model.checkpoint import REFERENCE_INPUT_SIZE
from ..model.classes import default_is_thing_map
from ..model.config_fields import ModelConfig
from ..model.fuse import fold_frozen_batchnorm
from ..model.loading import LoadedModel, load_model
from ..model.registry import family_of
from . import device as devices
from .base import BasePredictor, ImageLike, Prepared
from .box_mask import BoxMask, QueryChooser
from .detections import Detections
from .memory import ForwardPlan, default_budget, plan_forward
from .results import outputs_to_detections


class Predictor(BasePredictor):
    """Runs one model. Thread-compatible (one call at a time); keep one per worker thread.

    precision: "fp32" (default), "bf16" (CPUs with AMX/AVX-512 BF16, recent GPUs) or "fp16" (GPUs).
    channels_last: channels-last memory layout; None (default) turns it on for CPUs, where it makes the
    backbone ~1.4x faster.
    fold_batchnorm: run a copy of the model whose frozen batch norms are folded into the convolutions
    (faster; outputs change by float rounding only). The model passed in is left untouched.
    memory_budget: bytes one forward may use beyond the weights; None takes a share of the memory available
    at each prediction. ``last_plan`` says how the last prediction ran, ``last_plan.note`` why it was split.
    """

    def __init__(
        self,
        model: nn.Module,
        config: ModelConfig,
        class_names: dict[int, str] | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        panoptic_threshold: float = 0.85,
        is_thing_map: dict[int, bool] | None = None,
        size: int = REFERENCE_INPUT_SIZE.size,
        max_size: int | None = REFERENCE_INPUT_SIZE.max_size,
        name: str = "",
        fold_batchnorm: bool = True,
        memory_budget: int | None = None,
    ):
        devices.autocast_dtype(precision)
        self.device = device if isinstance(device, torch.device) else devices.pick_device(device)
        if self.device.type == "cpu" and precision == "fp16":
            raise ValueError("fp16 is for GPUs; use bf16 on the CPU")
        self.family = family_of(config.family_name)
        self.config = config
        self.class_names = class_names or {}
        self.precision = precision
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        self.size = size
        self.max_size = max_size
        self.name = name
        self.memory_budget = memory_budget
        self.last_plan: ForwardPlan | None = None
        if fold_batchnorm:
            model = copy.deepcopy(model)
            fold_frozen_batchnorm(model)
        self.model = model.eval().to(self.device)
        self.note = devices.precision_note(self.device, precision)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.panoptic = None
        if self.family.has_masks(config):
            self.panoptic = self.family.panoptic_postprocessor(
                is_thing_map or default_is_thing_map(config.num_classes), panoptic_threshold
            )

    # ------------------------------------------------------------------------------------ building

    @classmethod
    def from_loaded(
        cls, loaded: LoadedModel, *, size: int | None = None, max_size: int | None = None, **kwargs
    ) -> Predictor:
        """A predictor for a model from the load pipeline, at the checkpoint's input size unless ``size`` /
        ``max_size`` say otherwise."""
        kwargs.setdefault("class_names", loaded.class_names)
        kwargs.setdefault("name", loaded.name)
        return cls(
            loaded.model,
            loaded.config,
            size=size if size is not None else loaded.input_size.size,
            max_size=max_size if max_size is not None else loaded.input_size.max_size,
            **kwargs,
        )

    @classmethod
    def from_weights(
        cls, source: str | os.PathLike, progress: Callable[[int, int | None], None] | None = None, **kwargs
    ) -> Predictor:
        """``source``: a checkpoint file or folder, a model-zoo name (downloaded on first use) or "demo"."""
        return cls.from_loaded(load_model(source, progress=progress), **kwargs)

    @property
    def supports_masks(self) -> bool:
        return self.panoptic is not None

    @property
    def description(self) -> str:
        return f"torch {devices.describe(self.device)} {self.precision}" + (
            " channels-last" if self.channels_last else ""
        )

    # ------------------------------------------------------------------------------------ mask from box

    @torch.inference_mode()
    def mask_from_box(self, image: ImageLike, box_xyxy: tuple[float, float, float, float]) -> BoxMask:
        """The mask of the query whose predicted box best matches ``box_xyxy`` (pixels of ``image``), from the
        model's own mask head run for that query only (`infer.box_mask`). ValueError for a model without a
        mask head; ImageReadError for an unreadable file."""
        if self.panoptic is None:
            raise ValueError(
                f"{self.family.title} model {self.name or ''}: no mask head, so no mask from a box"
            )
        prepared = self._prepare(image)
        samples = make_batch([prepared.tensor]).to(self.device)
        if self.channels_last:
            samples.tensors = samples.tensors.contiguous(memory_format=torch.channels_last)
        chooser = QueryChooser(tuple(float(v) for v in box_xyxy), prepared.original)
        with devices.autocast(self.device, self.precision):
            out = self.model(samples, select=chooser)
        input_hw = torch.tensor([list(prepared.tensor.shape[-2:])])  # [1, 2] (h, w) before padding
        original_hw = torch.tensor([list(prepared.original)])  # [1, 2]
        logits = out["pred_masks"].float()[None]  # [1, 1, h/4, w/4]: the chosen query only
        (mask,) = self.family.instance_masks({"pred_masks": logits}, original_hw, input_hw)  # [1, 1, H, W]
        scores = self.family.score_queries(out["pred_logits"].float().cpu())
        rows = (scores.query_index[0] == chooser.query).nonzero()[:, 0]
        best = rows[torch.argmax(scores.scores[0, rows])]
        assert chooser.box is not None
        return BoxMask(
            mask=mask[0, 0].cpu().numpy().astype(bool),
            query_id=chooser.query,
            label=int(scores.labels[0, best]),
            score=float(scores.scores[0, best]),
            box=tuple(float(v) for v in chooser.box.cpu().tolist()),  # type: ignore[arg-type]
            iou=chooser.iou,
        )

    # ------------------------------------------------------------------------------------ running

    def _check_request(self, attention: bool, panoptic: bool) -> None:
        if panoptic and self.panoptic is None:
            raise ValueError("panoptic results need a model with a mask head (a panoptic checkpoint)")
        if attention and not self.family.attention_kind:
            raise ValueError(f"{self.family.title} models cannot show attention")

    def _budget(self) -> int | None:
        return self.memory_budget if self.memory_budget is not None else default_budget(self.device)

    def _run(self, prepared: list[Prepared], *, attention: bool, panoptic: bool) -> list[Detections]:
        sizes = [(int(p.tensor.shape[1]), int(p.tensor.shape[2])) for p in prepared]
        plan = plan_forward(
            self.family, self.config, sizes, self._budget(), panoptic=panoptic, attention=attention
        )
        self.last_plan = plan
        results: list[Detections] = []
        for rows in plan.batches:
            results.extend(self._forward([prepared[i] for i in rows], attention, panoptic, plan.mask_rows))
        return results

    @torch.inference_mode()
    def _forward(
        self, prepared: list[Prepared], attention: bool, panoptic: bool, mask_rows: int
    ) -> list[Detections]:
        samples = make_batch([p.tensor for p in prepared]).to(self.device)
        if self.channels_last:
            samples.tensors = samples.tensors.contiguous(memory_format=torch.channels_last)
        capture = self.family.capture_attention(self.model) if attention else None
        with capture or contextlib.nullcontext(), devices.autocast(self.device, self.precision):
            if panoptic:
                with self.family.chunked(self.model, mask_rows):
                    out = self.model(samples, select=self.panoptic.select)
            else:
                out = self.family.detector(self.model)(samples)
        panoptic_results = None
        if panoptic:
            out["pred_masks"] = out["pred_masks"].float()
            processed = [tuple(p.tensor.shape[-2:]) for p in prepared]
            panoptic_results = self.panoptic.from_selected(out, processed, [p.original for p in prepared])
        maps = None
        if capture is not None:
            maps = capture.collect(
                samples.mask, [tuple(p.tensor.shape[-2:]) for p in prepared], [p.original for p in prepared]
            )
        return outputs_to_detections(
            self.family,
            out["pred_logits"],
            out["pred_boxes"],
            [p.original for p in prepared],
            [p.source for p in prepared],
            panoptic=panoptic_results,
            attention=maps,
        )
