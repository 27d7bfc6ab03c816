"""Deformable DETR as a model family: the one object through which every layer above ``model/`` reaches it.

Sigmoid scoring (independent per-class probabilities, no "no object" column; the top 100 (query, class)
pairs), the official and Hugging Face key layouts, the official three parameter groups (the sampling offsets
and reference points at a tenth of the learning rate), sampling points for display, a plain ONNX graph and a
memory estimate from the shapes. The focal-loss criterion lives with the trainer (``train/family_training.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
from ..kinds import SAMPLING_POINTS, SIGMOID
from ..postprocess import QueryScores
from ..state_dicts import CheckpointError, mismatch_report, shapes_of
from .attention import SamplingCapture
from .config import FAMILY, PRESETS, DeformableDetrConfig
from .detector import DeformableDETR, build_deformable_detr
from .hf import convert_hf_state_dict, is_hf_deformable_state_dict
from .postprocess import sigmoid_scores
from .recognise import recognise_official
from .sampling import QUERY_CHUNK

LINEAR_PROJECTIONS = ("reference_points", "sampling_offsets")  # trained at LINEAR_PROJECTION_SCALE × lr
LINEAR_PROJECTION_SCALE = 0.1
_FLOAT = 4  # bytes


class DeformableDetrFamily(ModelFamily):
    name = FAMILY
    title = "Deformable DETR"
    scoring = SIGMOID
    config_type = DeformableDetrConfig
    hf_model_types = ("deformable_detr",)
    attention_kind = SAMPLING_POINTS

    def zoo_config(self, entry: Any) -> DeformableDetrConfig:
        """The released configuration the entry names (``variant``: a key of ``config.PRESETS``)."""
        preset = PRESETS.get(entry.variant)
        if preset is None:
            raise ValueError(
                f"zoo entry {entry.name!r}: unknown Deformable DETR configuration {entry.variant!r} "
                f"(known: {', '.join(PRESETS)})"
            )
        if (preset.backbone, preset.dilation) != (entry.backbone, entry.dilation):
            raise ValueError(f"zoo entry {entry.name!r}: its backbone does not match {entry.variant!r}")
        return preset.replace(num_classes=entry.num_classes)

    def inference_config(self, config: ModelConfig) -> ModelConfig:
        return config.replace(aux_loss=False, dropout=0.0)

    def build(self, config: ModelConfig, *, train_backbone: bool = True) -> nn.Module:
        return build_deformable_detr(_config(config), train_backbone=train_backbone)

    def deployable_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """Every head copy as a tensor of its own (the shared heads are one module; safetensors refuses shared
        memory, and the official layout lists each copy)."""
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    # ------------------------------------------------------------------------------------------ weights

    def recognise(self, state_dict: Mapping[str, Tensor], hints: Hints) -> Recognition:
        return recognise_official(state_dict, hints)

    def from_huggingface(
        self,
        state_dict: Mapping[str, Tensor],
        hf_config: Mapping[str, Any] | None,
        hints: Hints | None = None,
    ) -> Recognition:
        """A transformers ``DeformableDetrForObjectDetection`` state dict (4.x or 5.x names), converted; without
        a config.json, DC5 comes from the file name in ``hints``. Raises ValueError (ConfigError for a bad
        config value) when it is one but cannot be converted."""
        if not is_hf_deformable_state_dict(state_dict):
            return NotRecognised("not a Hugging Face Deformable DETR state dict (no model.level_embed)")
        sd, config = convert_hf_state_dict(state_dict, hf_config, hints)
        return Recognised(config, sd)

    def load_for_finetuning(
        self, model: nn.Module, state_dict: Mapping[str, Tensor], origin: str
    ) -> list[str]:
        """Load every weight into ``model``, which may have another class count: then every class head (one per
        decoder layer, and the two-stage encoder's) starts afresh with the focal prior bias and the rest,
        queries included, is loaded. Anything else that does not fit is a CheckpointError naming ``origin``."""
        own = model.state_dict()
        fresh = {
            k
            for k in own
            if _is_class_head(k) and k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
        }
        sd = {k: v for k, v in state_dict.items() if k not in fresh}
        report = mismatch_report(shapes_of(own), sd, fresh)
        if report:
            raise CheckpointError(f"{origin} cannot initialise this model: {report}")
        model.load_state_dict(sd, strict=False)
        if fresh:
            _deformable(model).reset_class_heads()
        return sorted(fresh)

    # ------------------------------------------------------------------------------------------ outputs

    def class_probs(self, logits: Tensor) -> Tensor:
        return logits.sigmoid()

    def score_queries(self, logits: Tensor) -> QueryScores:
        return sigmoid_scores(logits)

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The official groups, by parameter name: the backbone (``backbone.0``); the sampling offsets and the
        reference-point head at a tenth of the learning rate; everything else."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        backbone = [p for n, p in named if "backbone.0" in n]
        linear = [p for n, p in named if "backbone.0" not in n and any(k in n for k in LINEAR_PROJECTIONS)]
        rest = [p for n, p in named if "backbone.0" not in n and not any(k in n for k in LINEAR_PROJECTIONS)]
        return [
            ParamGroup(rest, backbone=False, name="transformer and heads"),
            ParamGroup(backbone, backbone=True, name="backbone"),
            ParamGroup(
                linear,
                backbone=False,
                lr_scale=LINEAR_PROJECTION_SCALE,
                name="sampling offsets and references",
            ),
        ]

    def capture_attention(self, model: nn.Module) -> AttentionCapture:
        return SamplingCapture(_deformable(model))

    # ------------------------------------------------------------------------------------------ export

    def onnx_graph(self, model: nn.Module, *, panoptic: bool = False, half: bool = False) -> nn.Module:
        if panoptic:
            raise ValueError(f"{self.title} models have no mask head, so no panoptic graph")
        return ExportGraph(model, self.onnx_outputs(), half)

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

        backbone: the input, the stem, the widest stage's activations and the levels it keeps; encoder: one
        layer at a time over all S flattened positions (its input, position encoding, query, values, offsets
        and weights, output and feed-forward) plus one chunk's bilinear samples (``QUERY_CHUNK`` queries);
        the decoder; two-stage proposals; recorded sampling queries.
        """
        cfg = _config(config)
        small = cfg.backbone in ("resnet18", "resnet34")
        widths = [cfg.backbone_width * m for m in (1, 2, 4, 8)] if small else [256, 512, 1024, 2048]
        last = 16 if cfg.dilation else 32
        strides = [4, 8, 16, last]
        stage_cells = [math.ceil(height / s) * math.ceil(width / s) for s in strides]
        stages = [3 * c * n for c, n in zip(widths, stage_cells)]
        kept = sum(c * n for c, n in zip(widths[1:], stage_cells[1:])) if cfg.num_feature_levels > 1 else 0
        stem = 2 * (cfg.backbone_width if small else 64) * math.ceil(height / 2) * math.ceil(width / 2)
        backbone = 3 * height * width + stem + max(stages) + kept
        level_cells = _level_cells(cfg, height, width)
        cells = sum(level_cells)
        d, f, q = cfg.hidden_dim, cfg.dim_feedforward, cfg.num_queries
        levels = cfg.num_feature_levels
        samples = cfg.nheads * levels * cfg.enc_n_points
        encoder = (
            cells * (10 * d + f + 4 * samples + 4 * levels)
            + 2 * min(cells, QUERY_CHUNK) * d * cfg.enc_n_points
        )
        decoder = q * (8 * d + f + 4 * cfg.nheads * levels * cfg.dec_n_points) + 2 * q * d * cfg.dec_n_points
        transformer = encoder + decoder
        if cfg.two_stage:
            transformer += cells * (2 * d + cfg.num_classes + 12)
        if attention:
            transformer += cells * (d + 2 * levels)  # the last encoder layer's queries and references kept
        parts = {"backbone": batch * backbone * _FLOAT, "transformer": batch * transformer * _FLOAT}
        return MemoryEstimate(sum(parts.values()), parts)


def _level_cells(cfg: DeformableDetrConfig, height: int, width: int) -> list[int]:
    """h·w of every level's feature map for a [height, width] input (the extra levels halve, rounding up)."""
    last = 16 if cfg.dilation else 32
    strides = [8, 16, last] if cfg.num_feature_levels > 1 else [last]
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in strides]
    while len(sizes) < cfg.num_feature_levels:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return [h * w for h, w in sizes]


def _is_class_head(key: str) -> bool:
    return key.removeprefix("transformer.decoder.").startswith("class_embed.")


def _config(config: ModelConfig) -> DeformableDetrConfig:
    if not isinstance(config, DeformableDetrConfig):
        raise ConfigError(
            "", f"a Deformable DETR model needs a Deformable DETR config, not a {type(config).__name__}"
        )
    return config


def _deformable(model: nn.Module) -> DeformableDETR:
    if not isinstance(model, DeformableDETR):
        raise TypeError(f"expected a Deformable DETR network, got a {type(model).__name__}")
    return model


DEFORMABLE_DETR_FAMILY = DeformableDetrFamily()
