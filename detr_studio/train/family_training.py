"""What training needs of each model family that ``model/`` does not hold: its loss.

``model/`` has no losses (they belong to training, with the matcher), so the family's criterion is found here,
by ``family.name``: DETR's set criterion (softmax cross-entropy with a down-weighted no-object class, L1 and
GIoU box losses, masks); a family without an entry cannot be trained yet and says so. A new family adds one
function to ``_CRITERIA``, taking the run's model config and options and returning the criterion and its loss
weights.

Deformable DETR ("deformable_detr") has no entry yet: its criterion (sigmoid focal loss, alpha 0.25 and gamma 2,
summed over queries and classes over the box count; the focal matching cost; auxiliary losses for every decoder
layer and, two-stage, the encoder's proposals against class-agnostic targets) comes here as one more function.
The model side is ready for it: ``param_groups`` gives the official three groups, ``load_for_finetuning``
renews the class heads with the focal prior, and its forward returns ``aux_outputs`` and ``enc_outputs``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..model.config_fields import ModelConfig
from ..model.family import ModelFamily
from .config import TrainConfig
from .criterion import GroupedCriterion, build_criterion

Criterion = tuple[nn.Module, dict[str, float]]


def _detr_criterion(config: ModelConfig, cfg: TrainConfig) -> Criterion:
    return build_criterion(
        config.num_classes,
        aux_layers=config.dec_layers - 1 if cfg.aux_loss else 0,
        masks=cfg.masks,
        eos_coef=cfg.eos_coef,
    )


_CRITERIA: dict[str, Callable[[ModelConfig, TrainConfig], Criterion]] = {"detr": _detr_criterion}


def criterion_for(family: ModelFamily, config: ModelConfig, cfg: TrainConfig) -> Criterion:
    """(criterion, loss weights) of a run of ``family`` training ``config``; query groups wrap it."""
    build = _CRITERIA.get(family.name)
    if build is None:
        raise ValueError(f"DETR Studio cannot train {family.title} models yet (no loss for them)")
    criterion, weights = build(config, cfg)
    if cfg.query_groups > 1:
        criterion = GroupedCriterion(criterion, cfg.query_groups)
    return criterion, weights
