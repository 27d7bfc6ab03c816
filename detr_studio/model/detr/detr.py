"""The DETR detector: backbone, transformer, class and box heads.

Attribute names are the reference's, so its state dicts load with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..backbone import Joiner
from ..nested import NestedTensor, nested_tensor_from_tensor_list
from .transformer import Transformer

DetrOutput = dict  # {"pred_logits": [B, Q, C+1], "pred_boxes": [B, Q, 4], "aux_outputs"?, "pred_masks"?}


class MLP(nn.Module):
    """A plain multi-layer perceptron with ReLU between layers (the box head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        hidden = [hidden_dim] * (num_layers - 1)
        self.num_layers = num_layers
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim, *hidden], [*hidden, output_dim])
        )

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


def as_nested(samples: NestedTensor | list[Tensor] | Tensor) -> NestedTensor:
    if isinstance(samples, NestedTensor):
        return samples
    return nested_tensor_from_tensor_list(samples)


@dataclass(frozen=True)
class Decoding:
    """Everything one pass through the backbone and the transformer yields, before the heads.

    features: the backbone's levels (one, or layer1..layer4 for a mask head), each a NestedTensor;
    projected [B, D, h, w]: the last level after ``input_proj``; mask [B, h, w]: its padding;
    hs [L, B, Q, D]: every decoder layer's output; memory [B, D, h, w]: the encoder's output.
    """

    features: list[NestedTensor]
    projected: Tensor
    mask: Tensor
    hs: Tensor
    memory: Tensor


class DETR(nn.Module):
    def __init__(
        self, backbone: Joiner, transformer: Transformer, num_classes: int, num_queries: int, aux_loss: bool
    ):
        super().__init__()
        self.num_queries = num_queries
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(backbone.num_channels, hidden_dim, kernel_size=1)
        self.backbone = backbone
        self.aux_loss = aux_loss
        self.query_groups = 1

    def set_query_groups(self, groups: int) -> None:
        """Train with ``groups`` groups of queries (Group DETR): each group is matched to the targets on its
        own, which gives the decoder many more matched queries per image. Only the first group is used
        outside training, so evaluation, export and saved checkpoints see a plain DETR."""
        if groups < 1:
            raise ValueError(f"query groups must be at least 1, got {groups}")
        first = self.query_embed.weight.data[: self.num_queries]
        embed = nn.Embedding(groups * self.num_queries, first.shape[1]).to(first.device)
        embed.weight.data[: self.num_queries] = first
        self.query_embed = embed
        self.query_groups = groups

    def queries(self) -> tuple[Tensor, int]:
        """(query embeddings [G*Q, C], G): every group while training, the first one otherwise."""
        groups = self.query_groups if self.training else 1
        return self.query_embed.weight[: groups * self.num_queries], groups

    @property
    def num_classes(self) -> int:
        return self.class_embed.out_features - 1

    def heads(self, hs: Tensor) -> DetrOutput:
        """Decoder states [L, B, Q, C] -> the output dict (last layer, plus every earlier one as aux)."""
        logits = self.class_embed(hs)  # [L, B, Q, C+1]
        boxes = self.bbox_embed(hs).sigmoid()  # [L, B, Q, 4]
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])
            ]
        return out

    def decode(self, samples: NestedTensor | list[Tensor] | Tensor) -> Decoding:
        """The one DETR decode, shared by ``forward``, the segmentation wrapper and the ONNX panoptic graph."""
        samples = as_nested(samples)
        features, pos = self.backbone(samples)
        src, mask = features[-1].decompose()
        projected = self.input_proj(src)  # [B, D, h, w]
        queries, groups = self.queries()
        hs, memory = self.transformer(projected, mask, queries, pos[-1], groups)
        return Decoding(features, projected, mask, hs, memory)

    def forward(self, samples: NestedTensor | list[Tensor] | Tensor) -> DetrOutput:
        """samples: a NestedTensor, a list of [3, H, W] images, or a [B, 3, H, W] batch.

        -> {"pred_logits": [B, Q, C+1], "pred_boxes": [B, Q, 4] normalised cxcywh, "aux_outputs"?: [...]}.
        """
        return self.heads(self.decode(samples).hs)
