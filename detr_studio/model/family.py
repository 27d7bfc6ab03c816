"""The model-family seam: what every family of detectors (DETR, Deformable DETR, ...) provides.

Everything that differs between families is reached through one `ModelFamily` object, never by comparing
family names above ``model/``. A family lives in its own sub-package (``model/detr/``,
``model/deformable_detr/``), exposes one instance (``DETR_FAMILY``) and is listed in ``registry.FAMILIES``;
``registry.family_of(name)`` finds it by name, ``registry.recognise`` / ``recognise_huggingface`` find the family
a state dict belongs to, and ``loading.load_model(source)`` hands it out with the model. Abstract members must
be written by every family; the others have defaults that suit a family without a mask head.

Identity and configuration
- ``name`` (recorded in sidecars, ONNX metadata, zoo entries and training checkpoints), ``title`` (for people),
  ``config_type``: a frozen `ModelConfig` dataclass whose fields are declared with ``config_fields.checked``, so
  every value is type- and range-checked wherever a config is made; its ``family_name`` is ``name``.
  ``hf_model_types``: the Hugging Face ``model_type`` values the family reads.
- ``scoring`` (constants in ``model/kinds.py``, which needs no torch): `SOFTMAX` (class logits [B, Q, C+1], no-object last) or `SIGMOID` (independent per-class logits
  [B, Q, C], no no-object column).
- ``config_from_record(data, origin)``: a config this program wrote; ``inference_config`` (auxiliary outputs and
  dropout off); ``training_config(config, num_classes=, aux_loss=, masks=, dropout=)``; ``zoo_config(entry)``;
  ``detector_config`` / ``deployable_config``; ``has_masks(config)``.

Networks and weights
- *``build(config, train_backbone=)``: the network, random weights, nothing downloaded. Its forward takes a
  `NestedTensor` (or a list of [3, H, W] images, or a [B, 3, H, W] batch) and returns ``{"pred_logits",
  "pred_boxes"}`` (boxes normalised cxcywh), plus ``"aux_outputs"`` (a list of such dicts, one per earlier
  decoder layer) when the config asks for them, and whatever else the family adds (``"enc_outputs"``...).
- ``detector(model)``: the part that predicts boxes (frozen by a mask-only stage); ``deployable_state_dict``:
  what a saved checkpoint holds; ``set_query_groups``; ``untrained_branch`` / ``with_branch``: base weights a
  run does not train but its saved models keep.
- *``recognise(state_dict, hints)``: the family's own key layout (official release files, the official
  training script's files with their ``args`` as ``Hints``, our checkpoints, which use the official names);
  ``from_huggingface(state_dict, hf_config, hints)``: the Hugging Face layouts (transformers 4.x and 5.x). Both return
  `Recognised` (the config inferred from shapes and hints, the state dict in the family's layout) or
  `NotRecognised` (one line naming what did not fit, so a file of no family gets a useful message);
  ``from_huggingface`` raises ValueError when the layout is the family's but cannot be converted.
- *``load_for_finetuning(model, state_dict, origin)``: load what fits (another class count re-initialises the
  class heads), return the names left fresh; CheckpointError for anything else.

Outputs
- *``class_probs(logits)``: [B, Q, C] each query's probability of every real class.
- *``score_queries(logits)`` -> `QueryScores`: the rows a prediction reports (DETR: every query with its best
  real class; a sigmoid family: the top (query, class) pairs, label = index mod C). ``postprocess(outputs,
  sizes)`` turns them into `BoxResults` in pixels (COCO evaluation); ``infer`` turns them into ``Detections``.
- ``instance_masks``, ``panoptic_postprocessor`` (a mask head: DETR only).

Training
- *``param_groups(model)`` -> `ParamGroup` (backbone or not, learning-rate multiplier such as Deformable DETR's
  0.1 for ``sampling_offsets`` and ``reference_points``); the trainer gives each its ``lr`` / ``lr_backbone``.
- The criterion is family-specific too; it lives with the trainer (``train/family_training.py``, keyed by
  ``family.name``) because ``model/`` holds no losses.

Attention, export, memory
- ``attention_kind`` (`ATTENTION_MAPS`, `SAMPLING_POINTS` or "") and ``capture_attention(model)``: an
  `AttentionCapture` that records one forward and returns one `ImageAttention` per image (DETR: maps and an
  encoder probe; Deformable DETR: sampling points and their weights).
- *``onnx_graph(model, panoptic=, half=)``: the module exported to ONNX, taking (images [B, 3, H, W] float32,
  mask [B, H, W] bool) and returning the tensors named by ``onnx_outputs(panoptic)``; ``onnx_panoptic_parts``.
- *``estimate_peak_bytes(config, batch, height, width, mask_rows=, attention=)``: the memory one forward adds to
  the weights, so that a predictor can split work that would not fit; ``chunked(model, mask_rows)``.

(* marks the abstract members.)
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .config_fields import ModelConfig
from .postprocess import BoxResults, QueryScores, box_results


@dataclass(frozen=True)
class Hints:
    """What a file says beside its weights, for what shapes cannot tell (DC5 has no parameters of its own)."""

    file_name: str = ""
    training_args: Mapping[str, Any] | None = None  # the official training script's argparse namespace


@dataclass(frozen=True)
class Recognised:
    """A state dict that belongs to the family: its config and the weights in the family's key layout."""

    config: ModelConfig
    state_dict: dict[str, Tensor]


@dataclass(frozen=True)
class NotRecognised:
    """Why a state dict is not the family's, in one line (the keys or values that did not fit)."""

    reason: str


Recognition = Recognised | NotRecognised


@dataclass(frozen=True)
class ParamGroup:
    """Parameters trained at ``lr_scale`` times the base learning rate of their group (``backbone``)."""

    params: list[nn.Parameter]
    backbone: bool
    lr_scale: float = 1.0
    name: str = ""


class AttentionCapture(ABC):
    """Records the attention of one forward. Use as a context manager around the forward, then ``collect``."""

    def __enter__(self) -> AttentionCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Stop recording (remove hooks); safe to call twice."""

    @abstractmethod
    def collect(
        self,
        pad_mask: Tensor,
        input_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[Any]:
        """One result per image. pad_mask [B, H, W] (True on padding) of the batch that ran; input_sizes:
        each image's (h, w) before padding; original_sizes: (H, W) of each image as read."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What a forward needs beyond the weights, in bytes, and the part that grows with the image area."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)


class ModelFamily(ABC):
    """One family of detectors; see the module docstring for what each member means."""

    name: str
    title: str
    scoring: str
    config_type: type[ModelConfig]
    hf_model_types: tuple[str, ...] = ()  # Hugging Face ``model_type`` values of the family
    attention_kind: str = ""

    # ------------------------------------------------------------------------------------------ configs

    def config_from_record(self, data: Any, origin: str, prefix: str = "config.") -> ModelConfig:
        """A config this program wrote (sidecar, training checkpoint, ONNX metadata); errors name ``origin``."""
        return self.config_type.from_dict(data, origin, prefix)

    def inference_config(self, config: ModelConfig) -> ModelConfig:
        """The config a predictor builds from ``config``: no auxiliary outputs, no dropout."""
        return config

    def has_masks(self, config: ModelConfig) -> bool:
        return config.has_masks

    def zoo_config(self, entry: Any) -> ModelConfig:
        """The config of a model-zoo entry of this family (``zoo.ZooEntry``: backbone, dilation, classes,
        task and the family's ``variant`` name)."""
        raise ValueError(f"{self.title} has no model-zoo entries")

    # ------------------------------------------------------------------------------------------ networks

    @abstractmethod
    def build(self, config: ModelConfig, *, train_backbone: bool = True) -> nn.Module:
        """The network for ``config`` (random weights, nothing downloaded)."""

    def detector(self, model: nn.Module) -> nn.Module:
        """The part of ``model`` that predicts classes and boxes (the whole model unless it wraps one)."""
        return model

    def detector_config(self, config: ModelConfig) -> ModelConfig:
        """The config of ``detector(model)``."""
        return config

    def deployable_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """What a saved checkpoint of ``model`` holds (training-only extras left out)."""
        return model.state_dict()

    def deployable_config(self, config: ModelConfig) -> ModelConfig:
        """The config saved beside those weights (training-only choices replaced by what the weights are)."""
        return config

    # ------------------------------------------------------------------------------------------ weights

    @abstractmethod
    def recognise(self, state_dict: Mapping[str, Tensor], hints: Hints) -> Recognition:
        """Whether ``state_dict`` is this family's, in its own (official) key layout."""

    def from_huggingface(
        self,
        state_dict: Mapping[str, Tensor],
        hf_config: Mapping[str, Any] | None,
        hints: Hints | None = None,
    ) -> Recognition:
        """Whether ``state_dict`` is this family's in a Hugging Face layout; converted when it is. ``hints``:
        what the file's name says, for what a missing ``config.json`` would (DC5)."""
        return NotRecognised(f"{self.title} has no Hugging Face conversion")

    def training_config(
        self, config: ModelConfig, *, num_classes: int, aux_loss: bool, masks: bool, dropout: float | None
    ) -> ModelConfig:
        """The config a training run builds from ``config`` (a base checkpoint's, or a preset's): the run's
        class count, auxiliary losses, mask head and dropout (None keeps the config's)."""
        if masks:
            raise ValueError(f"{self.title} models have no mask head to train")
        changes: dict[str, Any] = {"num_classes": num_classes, "aux_loss": aux_loss}
        if dropout is not None:
            changes["dropout"] = dropout
        return config.replace(**changes)

    def set_query_groups(self, model: nn.Module, groups: int) -> None:
        """Train with ``groups`` groups of queries, each matched on its own (Group DETR)."""
        if groups != 1:
            raise ValueError(f"{self.title} models train with one group of queries")

    def untrained_branch(
        self, base: Mapping[str, Tensor], base_config: ModelConfig, config: ModelConfig
    ) -> dict[str, Tensor]:
        """Weights of the base checkpoint that a run of ``config`` does not train but its saved models keep
        (DETR: the mask branch of a segmentation base fine-tuned on boxes). Empty by default."""
        return {}

    def with_branch(
        self, state_dict: dict[str, Tensor], config: ModelConfig, branch: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], ModelConfig]:
        """A trained state dict and config with ``untrained_branch``'s weights put back, for saving."""
        return state_dict, config

    @abstractmethod
    def load_for_finetuning(
        self, model: nn.Module, state_dict: Mapping[str, Tensor], origin: str
    ) -> list[str]:
        """Load ``state_dict`` into ``model``, which may have another class count; returns the names of the
        tensors left at their fresh initialisation. Raises CheckpointError naming ``origin`` otherwise."""

    # ------------------------------------------------------------------------------------------ outputs

    @abstractmethod
    def class_probs(self, logits: Tensor) -> Tensor:
        """[B, Q, K] class logits -> [B, Q, C] each query's probability of every real class."""

    @abstractmethod
    def score_queries(self, logits: Tensor) -> QueryScores:
        """[B, Q, K] class logits -> the rows a prediction reports."""

    def postprocess(self, outputs: Mapping[str, Tensor], target_sizes: Tensor) -> list[BoxResults]:
        """Every reported row of each image with its box in pixels; no threshold (what COCO evaluation takes).
        outputs: "pred_logits" [B, Q, K], "pred_boxes" [B, Q, 4]; target_sizes [B, 2] (h, w)."""
        scores = self.score_queries(outputs["pred_logits"].float())
        return box_results(scores, outputs["pred_boxes"].float(), target_sizes)

    @abstractmethod
    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The trainable parameters of ``model`` in groups (backbone or not, learning-rate multiplier)."""

    def capture_attention(self, model: nn.Module) -> AttentionCapture:
        raise ValueError(f"{self.title} models cannot show attention")

    # ------------------------------------------------------------------------------------------ export

    @abstractmethod
    def onnx_graph(self, model: nn.Module, *, panoptic: bool = False, half: bool = False) -> nn.Module:
        """(images [B, 3, H, W] float32, mask [B, H, W] bool) -> tuple of ``onnx_outputs(panoptic)``."""

    def onnx_outputs(self, panoptic: bool = False) -> tuple[str, ...]:
        return ("pred_logits", "pred_boxes")

    def onnx_panoptic_parts(self, model: nn.Module, *, half: bool = False) -> tuple[nn.Module, nn.Module]:
        raise ValueError(f"{self.title} models have no mask head, so no panoptic graph")

    def panoptic_postprocessor(self, is_thing_map: Mapping[int, bool], threshold: float) -> Any:
        """The panoptic post-processor (``select(outputs)`` picks the queries that need masks, for the mask
        head's ``forward(samples, select=...)``; ``from_selected`` makes the PNG and segments)."""
        raise ValueError(f"{self.title} models have no mask head, so no panoptic results")

    def instance_masks(
        self, outputs: Mapping[str, Tensor], orig_sizes: Tensor, input_sizes: Tensor
    ) -> list[Tensor]:
        """A binary mask per query of each image, [Q, 1, H0, W0] uint8, from "pred_masks" [B, Q, h, w];
        orig_sizes / input_sizes [B, 2] (h, w) of each image as read and as fed (before padding)."""
        raise ValueError(f"{self.title} models have no mask head, so no instance masks")

    # ------------------------------------------------------------------------------------------ memory

    @abstractmethod
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
        """The memory one inference forward of a [batch, 3, height, width] input adds to the weights;
        ``mask_rows``: (image, query) rows the mask head runs for; ``attention``: attention recorded."""

    @contextlib.contextmanager
    def chunked(self, model: nn.Module, mask_rows: int) -> Iterator[None]:
        """Within the block, work that can be split (mask-head rows) runs ``mask_rows`` at a time."""
        yield

    def __repr__(self) -> str:
        return f"<model family {self.name}>"
