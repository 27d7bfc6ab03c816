"""Folding frozen batch norm into convolutions changes speed, not answers."""

from __future__ import annotations

import copy

import torch

from detr_studio.infer.predictor import Predictor
from detr_studio.model.backbone import FrozenBatchNorm2d
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.fuse import FoldedConv2d, fold_frozen_batchnorm


def with_random_statistics(model):
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0, 0.2)
    return model.eval()


def test_folded_network_gives_the_same_outputs():
    model = with_random_statistics(build_detr(tiny_config(masks=True)))
    folded = copy.deepcopy(model)
    assert fold_frozen_batchnorm(folded) == 1 + 8 * 2 + 3  # stem, two convs per basic block, 3 downsamples
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, FoldedConv2d) for m in folded.modules()) == 20
    x = [torch.randn(3, 96, 128), torch.randn(3, 80, 112)]
    with torch.no_grad():
        a, b = model(x), folded(x)
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert (a[key] - b[key]).abs().max() < 1e-4
    assert fold_frozen_batchnorm(folded) == 0  # nothing left to fold


def test_the_predictor_folds_a_copy_and_leaves_the_model_untouched():
    model = with_random_statistics(build_detr(tiny_config()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = Predictor(model, tiny_config(), device="cpu", size=64, max_size=96)
    assert any(isinstance(m, FoldedConv2d) for m in predictor.model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    exact = Predictor(model, tiny_config(), device="cpu", size=64, max_size=96, fold_batchnorm=False)
    img = torch.rand(3, 70, 90)
    from torchvision.transforms.functional import to_pil_image

    a = predictor.predict([to_pil_image(img)])[0]
    b = exact.predict([to_pil_image(img)])[0]
    assert abs(a.probs - b.probs).max() < 1e-4
