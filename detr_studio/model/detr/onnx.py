"""DETR's graphs for ONNX: the whole network, and the two parts of a panoptic file.

A panoptic file joins two graphs (``infer/onnx_export.py``): `PanopticFeatures`, the network up to the mask
head, which also outputs what the mask head needs, and `MaskHeadRows`, the mask head over a dynamic number of
(image, query) rows, so that a runtime can run it for the kept queries only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..nested import NestedTensor


class PanopticFeatures(nn.Module):
    """First part of a panoptic file: (images [B, 3, H, W], mask [B, H, W]) -> pred_logits [B, Q, C+1],
    pred_boxes [B, Q, 4] and the mask head's inputs: mask_attention [B, Q, heads, h, w], mask_projected
    [B, D, h, w] and the layer3 / layer2 / layer1 features mask_fpn1..3 (strides 16, 8, 4).

    The same decode as ``DETRsegm.forward`` (``DETR.decode``), stopped before the mask head.
    """

    def __init__(self, model: nn.Module, half: bool = False):
        super().__init__()
        self.model = model
        self.half = half

    def forward(self, images: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        if self.half:
            images = images.half()
        detr = self.model.detr
        decoding = detr.decode(NestedTensor(images, mask))
        out = detr.heads(decoding.hs)
        attention = self.model.bbox_attention(decoding.hs[-1], decoding.memory, mask=decoding.mask)
        features = decoding.features
        values = (out["pred_logits"], out["pred_boxes"], attention, decoding.projected)
        fpns = (features[2].tensors, features[1].tensors, features[0].tensors)
        return tuple(v.float() for v in (*values, *fpns))


class MaskHeadRows(nn.Module):
    """Second part of a panoptic file: the mask head for N (image, query) rows.

    (mask_projected [B, D, h, w], mask_rows [N, heads, h, w], mask_row_image [N] int64 (the image of
    each row), mask_fpn1..3 [B, Ci, Hi, Wi]) -> mask_rows_out [N, H/4, W/4] mask logits.

    ``MaskHeadSmallConv.forward`` with one change of order: its first convolution sees the projected
    features (the same for every query of an image) beside each query's attention maps, and being linear
    it is split in two, the projected features' share computed once per image and the attention maps'
    share per row. The sum differs from the one-piece convolution by float rounding only, and the whole
    file runs this same graph for every query, so the kept rows stay bit-identical to it.
    """

    def __init__(self, model: nn.Module, half: bool = False):
        super().__init__()
        self.mask_head = model.mask_head
        self.half = half

    def forward(
        self, projected: Tensor, rows: Tensor, row_image: Tensor, fpn1: Tensor, fpn2: Tensor, fpn3: Tensor
    ) -> Tensor:
        if self.half:
            projected, rows, fpn1, fpn2, fpn3 = (t.half() for t in (projected, rows, fpn1, fpn2, fpn3))
        head = self.mask_head
        d = projected.shape[1]
        weight = head.lay1.weight  # [C, D + heads, 3, 3]
        shared = F.conv2d(projected, weight[:, :d], head.lay1.bias, padding=1)  # [B, C, h, w]
        x = shared[row_image] + F.conv2d(rows, weight[:, d:], None, padding=1)  # [N, C, h, w]
        return head.refine(F.relu(head.gn1(x)), (fpn1, fpn2, fpn3), row_image)[:, 0].float()  # [N, H/4, W/4]
