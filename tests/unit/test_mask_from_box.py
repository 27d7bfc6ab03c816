"""Mask from box: the mask of the query whose predicted box best matches a drawn box, from the model's own
mask head run for that query only; and the annotation edit it becomes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from detr_studio.data.coco import CocoDocument
from detr_studio.data.coco.mask_geometry import decode, mask_stats
from detr_studio.infer.predictor import Predictor
from detr_studio.model.box_ops import box_cxcywh_to_xyxy, box_iou
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.nested import nested_tensor_from_tensor_list
from detr_studio.session.mask_from_box import box_mask_edit

from .test_predictor import random_image


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(5)
    config = tiny_config(masks=True, num_classes=5)
    return Predictor(build_detr(config), config, device="cpu", size=96, max_size=160)


@pytest.mark.parametrize(
    "drawn", [(10.0, 20.0, 80.0, 90.0), (100.0, 5.0, 149.0, 60.0), (0.0, 0.0, 150.0, 100.0)]
)
def test_the_mask_is_the_mask_heads_output_for_the_best_matching_query(predictor, drawn):
    image = random_image(150, 100, 4)
    result = predictor.mask_from_box(image, drawn)
    # The slow way: every query's box and mask, then the best IoU by hand.
    tensor = predictor._prepare(image).tensor
    with torch.no_grad():
        out = predictor.model(nested_tensor_from_tensor_list([tensor]))
    boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0]) * torch.tensor([150.0, 100.0, 150.0, 100.0])
    iou = box_iou(boxes, torch.tensor([drawn]))[0][:, 0]
    query = int(torch.argmax(iou))
    every = predictor.family.instance_masks(
        out, torch.tensor([[100, 150]]), torch.tensor([list(tensor.shape[-2:])])
    )
    expected = every[0][query, 0].numpy().astype(bool)  # [H, W]
    assert result.query_id == query and result.iou == pytest.approx(float(iou[query]), abs=1e-6)
    assert result.mask.shape == (100, 150)
    np.testing.assert_array_equal(result.mask, expected)
    probs = out["pred_logits"][0, query].softmax(-1)[:-1]
    assert (result.label, result.score) == (int(probs.argmax()), pytest.approx(float(probs.max()), abs=1e-5))
    np.testing.assert_allclose(result.box, boxes[query].numpy(), atol=1e-3)


def test_the_mask_head_runs_for_the_chosen_query_only(predictor):
    calls = []
    head = predictor.model.mask_head
    hook = head.register_forward_hook(lambda module, args, output: calls.append(output.shape[0]))
    try:
        predictor.mask_from_box(random_image(120, 90, 1), (5.0, 5.0, 60.0, 60.0))
    finally:
        hook.remove()
    assert calls == [1]


def test_a_model_without_a_mask_head_says_so():
    config = tiny_config()
    boxes_only = Predictor(build_detr(config), config, device="cpu", size=96, max_size=160)
    with pytest.raises(ValueError, match="no mask head"):
        boxes_only.mask_from_box(random_image(60, 40, 2), (1.0, 1.0, 20.0, 20.0))


def test_the_result_becomes_a_new_annotation_or_the_mask_of_one(predictor):
    image = random_image(150, 100, 4)
    result = predictor.mask_from_box(image, (0.0, 0.0, 150.0, 100.0))
    if not result.mask.any():  # a random head may give nothing: give the test a mask to store
        result = replace(result, mask=np.pad(np.ones((40, 50), dtype=bool), ((10, 50), (20, 80))))
    doc = CocoDocument.new(["a"], [{"id": 1, "file_name": "x.jpg", "width": 150, "height": 100}])
    edit, new_id = box_mask_edit(doc, 1, result, category_id=1, model="tiny")
    doc.apply(edit)
    ann = doc.annotation(new_id)
    np.testing.assert_array_equal(decode(ann.segmentation, 100, 150), result.mask)
    assert list(ann.bbox) == mask_stats(ann.segmentation, 100, 150)[0] and ann.model == "tiny"
    doc.add(1, 1, [1, 1, 5, 5])
    other = doc.annotations[-1].id
    doc.apply(box_mask_edit(doc, 1, result, annotation_id=other)[0])
    assert doc.annotation(other).area == int(result.mask.sum())
