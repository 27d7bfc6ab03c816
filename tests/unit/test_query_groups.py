"""Group DETR training: query groups decode independently, are matched on their own, and leave a plain DETR."""

from __future__ import annotations

import torch

from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.detr.family import DETR_FAMILY
from detr_studio.model.nested import NestedTensor
from detr_studio.train.criterion import GroupedCriterion, build_criterion, group_outputs

GROUPS = 3


def _images() -> NestedTensor:
    torch.manual_seed(3)
    mask = torch.zeros(2, 64, 80, dtype=torch.bool)
    mask[1, :, 60:] = True  # the second image is padded
    return NestedTensor(torch.randn(2, 3, 64, 80), mask)


def _grouped_model():
    torch.manual_seed(0)
    model = build_detr(tiny_config(num_queries=4))
    model.set_query_groups(GROUPS)
    return model


def test_each_group_decodes_as_if_it_were_alone() -> None:
    model = _grouped_model().train()  # dropout is 0 in the tiny config, so train mode is deterministic
    for module in model.backbone.modules():
        module.eval()
    with torch.no_grad():
        grouped = model(_images())
        assert grouped["pred_logits"].shape == (2, GROUPS * 4, 6)
        for g in range(GROUPS):
            alone = build_detr(tiny_config(num_queries=4))
            sd = model.state_dict()
            sd["query_embed.weight"] = sd["query_embed.weight"][g * 4 : (g + 1) * 4]
            alone.load_state_dict(sd)
            alone.eval()
            expected = alone(_images())
            got = group_outputs(grouped, g, GROUPS)
            torch.testing.assert_close(got["pred_logits"], expected["pred_logits"], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got["pred_boxes"], expected["pred_boxes"], atol=1e-5, rtol=1e-5)
            for aux_got, aux_expected in zip(got["aux_outputs"], expected["aux_outputs"]):
                torch.testing.assert_close(
                    aux_got["pred_boxes"], aux_expected["pred_boxes"], atol=1e-5, rtol=1e-5
                )


def test_only_the_first_group_is_used_outside_training_and_saved() -> None:
    model = _grouped_model().eval()
    with torch.no_grad():
        out = model(_images())
    assert out["pred_logits"].shape == (2, 4, 6)
    plain = build_detr(tiny_config(num_queries=4)).eval()
    plain.load_state_dict(DETR_FAMILY.deployable_state_dict(model))
    with torch.no_grad():
        torch.testing.assert_close(plain(_images())["pred_boxes"], out["pred_boxes"])


def test_grouped_loss_is_the_mean_of_each_groups_own_matching() -> None:
    criterion, _ = build_criterion(5, aux_layers=1, masks=False)
    grouped = GroupedCriterion(criterion, GROUPS)
    torch.manual_seed(1)
    outputs = {
        "pred_logits": torch.randn(2, GROUPS * 4, 6),
        "pred_boxes": torch.rand(2, GROUPS * 4, 4) * 0.5 + 0.25,
        "aux_outputs": [
            {
                "pred_logits": torch.randn(2, GROUPS * 4, 6),
                "pred_boxes": torch.rand(2, GROUPS * 4, 4) * 0.5 + 0.25,
            }
        ],
    }
    targets = [
        {"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]])},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    got = grouped(outputs, targets)
    per_group = [criterion(group_outputs(outputs, g, GROUPS), targets) for g in range(GROUPS)]
    for key in ("loss_ce", "loss_bbox", "loss_giou", "loss_bbox_0"):
        expected = sum(p[key] for p in per_group) / GROUPS
        torch.testing.assert_close(got[key], expected)
    # a group's own matching differs from matching all queries at once
    assert not torch.allclose(per_group[0]["loss_bbox"], per_group[1]["loss_bbox"])
