"""DETR as a model family: the one object through which every layer above ``model/`` reaches DETR.

Softmax scoring (classes and "no object"), the official and Hugging Face key layouts, the reference's two
parameter groups, attention maps, a mask head (instance masks and panoptic results) and its ONNX graphs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from ..config_fields import ConfigError, ModelConfig
from ..export_graph import ExportGraph
from ..family import (
    AttentionCapture,
    Hints,
    MemoryEstimate,
    ModelFamily,
    NotRecognised,
    ParamGroup,
    Recognised,
    Recognition,
)
from ..kinds import ATTENTION_MAPS, SOFTMAX
from ..postprocess import QueryScores
from ..state_dicts import CheckpointError, mismatch_report, shapes_of
from .attention import DetrAttentionCapture
from .build import build_detr
from .config import DetrConfig
from .hf import convert_hf_state_dict, is_hf_state_dict
from .onnx import MaskHeadRows, PanopticFeatures
from .panoptic import PostProcessPanoptic
from .postprocess import instance_masks, softmax_scores
from .recognise import SEGMENTATION_PREFIX, recognise_official
from .segmentation import DETRsegm

MASK_BRANCH = ("bbox_attention.", "mask_head.")
_FLOAT = 4  # bytes


class DetrFamily(ModelFamily):
    name = "detr"
    title = "DETR"
    scoring = SOFTMAX
    config_type = DetrConfig
    hf_model_types = ("detr",)
    attention_kind = ATTENTION_MAPS

    def zoo_config(self, entry: Any) -> DetrConfig:
        """The official hub models: 100 queries, no auxiliary loss, a mask head for the panoptic ones."""
        return DetrConfig(
            num_classes=entry.num_classes,
            backbone=entry.backbone,
            dilation=entry.dilation,
            masks=entry.task == "panoptic",
        )

    def inference_config(self, config: ModelConfig) -> ModelConfig:
        return config.replace(aux_loss=False, dropout=0.0)

    def build(self, config: ModelConfig, *, train_backbone: bool = True) -> nn.Module:
        return build_detr(_detr_config(config), train_backbone=train_backbone)

    def detector(self, model: nn.Module) -> nn.Module:
        return model.detr if isinstance(model, DETRsegm) else model

    def detector_config(self, config: ModelConfig) -> ModelConfig:
        return config.replace(masks=False)

    def deployable_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The state dict with only the first query group (Group DETR trains more): a plain DETR's layout."""
        sd = model.state_dict()
        detr = self.detector(model)
        if getattr(detr, "query_groups", 1) > 1:
            key = (SEGMENTATION_PREFIX if detr is not model else "") + "query_embed.weight"
            sd[key] = sd[key][: detr.num_queries]
        return sd

    def deployable_config(self, config: ModelConfig) -> ModelConfig:
        """Batch norm trained from scratch is saved frozen: its statistics become the frozen layer's buffers."""
        return config.replace(backbone_norm="frozen")

    # ------------------------------------------------------------------------------------------ weights

    def recognise(self, state_dict: Mapping[str, Tensor], hints: Hints) -> Recognition:
        return recognise_official(state_dict, hints)

    def from_huggingface(
        self,
        state_dict: Mapping[str, Tensor],
        hf_config: Mapping[str, Any] | None,
        hints: Hints | None = None,
    ) -> Recognition:
        """A transformers ``DetrForObjectDetection`` / ``DetrForSegmentation`` state dict, converted (the hub's
        DETR files come with their config.json, so ``hints`` are not needed). Raises ValueError (ConfigError
        for a bad config value) when it is one but cannot be converted."""
        if not is_hf_state_dict(state_dict):
            return NotRecognised("not a Hugging Face DETR state dict (no query_position_embeddings)")
        sd, config = convert_hf_state_dict(state_dict, hf_config)
        return Recognised(config, sd)

    def training_config(
        self, config: ModelConfig, *, num_classes: int, aux_loss: bool, masks: bool, dropout: float | None
    ) -> ModelConfig:
        """As every family, plus the mask head: a run trains one exactly when it asks for masks."""
        with_masks = config.replace(masks=masks)
        return super().training_config(
            with_masks, num_classes=num_classes, aux_loss=aux_loss, masks=False, dropout=dropout
        )

    def set_query_groups(self, model: nn.Module, groups: int) -> None:
        if isinstance(model, DETRsegm) and groups != 1:
            raise ValueError("query groups are for training boxes; train the mask head with one group")
        model.set_query_groups(groups)

    def untrained_branch(
        self, base: Mapping[str, Tensor], base_config: ModelConfig, config: ModelConfig
    ) -> dict[str, Tensor]:
        """The mask branch of a segmentation base when the run trains boxes only: its saved models keep it, so
        that a segmentation model fine-tuned on boxes still draws masks (retrain them with ``--stage masks``)."""
        if config.has_masks or not base_config.has_masks:
            return {}
        return {k: v for k, v in base.items() if k.startswith(MASK_BRANCH)}

    def with_branch(
        self, state_dict: dict[str, Tensor], config: ModelConfig, branch: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], ModelConfig]:
        if not branch:
            return state_dict, config
        wrapped = {SEGMENTATION_PREFIX + k: v for k, v in state_dict.items()}
        return {**wrapped, **branch}, config.replace(masks=True)

    def load_for_finetuning(
        self, model: nn.Module, state_dict: Mapping[str, Tensor], origin: str
    ) -> list[str]:
        """Load every weight into ``model``, which may have another class count, a mask branch the weights
        lack, or no mask branch where they have one. The class head is skipped when its size differs; a
        missing mask branch keeps its fresh initialisation; a mask branch the model lacks is left out
        (training boxes from a segmentation checkpoint). Anything else that does not fit is an error."""
        own = model.state_dict()
        sd = dict(state_dict)
        model_wraps = any(k.startswith(SEGMENTATION_PREFIX) for k in own)
        ckpt_wraps = any(k.startswith(SEGMENTATION_PREFIX) for k in sd)
        if model_wraps and not ckpt_wraps:
            sd = {SEGMENTATION_PREFIX + k: v for k, v in sd.items()}
        elif ckpt_wraps and not model_wraps:
            sd = {
                k.removeprefix(SEGMENTATION_PREFIX): v
                for k, v in sd.items()
                if k.startswith(SEGMENTATION_PREFIX)
            }
        fresh = {
            k
            for k in own
            if k.endswith(("class_embed.weight", "class_embed.bias"))
            and k in sd
            and own[k].shape != sd[k].shape
        }
        fresh |= {k for k in own if k.startswith(MASK_BRANCH) and k not in sd}
        sd = {k: v for k, v in sd.items() if k not in fresh}
        report = mismatch_report(shapes_of(own), sd, fresh)
        if report:
            raise CheckpointError(f"{origin} cannot initialise this model: {report}")
        model.load_state_dict(sd, strict=False)
        return sorted(fresh)

    # ------------------------------------------------------------------------------------------ outputs

    def class_probs(self, logits: Tensor) -> Tensor:
        return logits.softmax(-1)[..., :-1]

    def score_queries(self, logits: Tensor) -> QueryScores:
        return softmax_scores(logits)

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The reference's two groups: the backbone, and everything else."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return [
            ParamGroup(
                [p for n, p in named if "backbone" not in n], backbone=False, name="transformer and heads"
            ),
            ParamGroup([p for n, p in named if "backbone" in n], backbone=True, name="backbone"),
        ]

    def capture_attention(self, model: nn.Module) -> AttentionCapture:
        return DetrAttentionCapture(self.detector(model))

    # ------------------------------------------------------------------------------------------ masks, export

    def panoptic_postprocessor(
        self, is_thing_map: Mapping[int, bool], threshold: float
    ) -> PostProcessPanoptic:
        return PostProcessPanoptic.for_model(is_thing_map, threshold)

    def instance_masks(
        self, outputs: Mapping[str, Tensor], orig_sizes: Tensor, input_sizes: Tensor
    ) -> list[Tensor]:
        return instance_masks(outputs, orig_sizes, input_sizes)

    def onnx_outputs(self, panoptic: bool = False) -> tuple[str, ...]:
        return ("pred_logits", "pred_boxes", "pred_masks") if panoptic else ("pred_logits", "pred_boxes")

    def onnx_graph(self, model: nn.Module, *, panoptic: bool = False, half: bool = False) -> nn.Module:
        network = model if panoptic else self.detector(model)
        return ExportGraph(network, self.onnx_outputs(panoptic), half)

    def onnx_panoptic_parts(self, model: nn.Module, *, half: bool = False) -> tuple[nn.Module, nn.Module]:
        if not isinstance(model, DETRsegm):
            raise ValueError("a panoptic graph needs a DETR model with a mask head (a panoptic checkpoint)")
        return PanopticFeatures(model, half), MaskHeadRows(model, half)

    @contextlib.contextmanager
    def chunked(self, model: nn.Module, mask_rows: int) -> Iterator[None]:
        if not isinstance(model, DETRsegm):
            yield
            return
        before = model.mask_chunk
        model.mask_chunk = mask_rows
        try:
            yield
        finally:
            model.mask_chunk = before

    # ------------------------------------------------------------------------------------------ memory

    def estimate_peak_bytes(
        self,
        config: ModelConfig,
        batch: int,
        height: int,
        width: int,
        *,
        mask_rows: int = 0,
        attention: bool = False,
    ) -> MemoryEstimate:
        """A deliberately generous estimate of one inference forward, from the shapes alone.

        backbone: the input, the stem and the widest stage's activations (every stage when a mask head keeps
        them); transformer: one layer's projections and feed-forward activations at a time, the encoder's
        memory, and the attention scores when recorded; mask head: each row's largest activations at stride 4.
        """
        cfg = _detr_config(config)
        pixels = height * width
        small = cfg.backbone in ("resnet18", "resnet34")
        widths = [cfg.backbone_width * m for m in (1, 2, 4, 8)] if small else [256, 512, 1024, 2048]
        stride = cfg.backbone_stride or (16 if cfg.dilation else 32)
        strides = [4, 8, min(16, stride), stride]
        stages = [3 * c * math.ceil(height / s) * math.ceil(width / s) for c, s in zip(widths, strides)]
        stem = 2 * (cfg.backbone_width if small else 64) * math.ceil(height / 2) * math.ceil(width / 2)
        backbone = 3 * pixels + stem + (sum(stages) if cfg.masks else max(stages))
        cells = math.ceil(height / stride) * math.ceil(width / stride)
        d, f, q, heads = cfg.hidden_dim, cfg.dim_feedforward, cfg.num_queries, cfg.nheads
        transformer = cells * (5 * d + f) + cells * d * 3 + q * (5 * d + f)
        if attention:
            transformer += heads * q * cells * 2 + 2 * cells * d  # decoder maps, encoder queries and keys
        parts = {"backbone": batch * backbone * _FLOAT, "transformer": batch * transformer * _FLOAT}
        if mask_rows:
            per_row = (2 * d // 8 + 2 * d // 16) * math.ceil(height / 4) * math.ceil(width / 4)
            parts["mask head"] = mask_rows * (per_row + pixels) * _FLOAT  # and its upsampled mask
        return MemoryEstimate(sum(parts.values()), parts)


def _detr_config(config: ModelConfig) -> DetrConfig:
    if not isinstance(config, DetrConfig):
        raise ConfigError("", f"a DETR model needs a DETR config, not a {type(config).__name__}")
    return config


DETR_FAMILY = DetrFamily()
