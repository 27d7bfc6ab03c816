"""Where Deformable DETR looks, for display: the sampling points of one detection's query in the last
decoder layer, and of one probed pixel in the last encoder layer, with their attention weights.

Nothing is stored per sampling point. ``SamplingRecorder`` keeps, during one forward, only the last
layers' attention queries and reference points ([B, Q, C] for the decoder, [B, S, C] for the encoder);
the points of one query or pixel are computed from them on request.

Coordinates are normalised to the padded network input ((0, 0) top left, (1, 1) bottom right), as the
model's boxes; ``SamplingPoints.scaled`` turns them into pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .detector import DeformableDETR
from .ms_deform_attn import MSDeformAttn
from .sampling import level_locations


@dataclass(frozen=True)
class SamplingPoints:
    """The deformable attention of one query: H heads, L levels, P points."""

    reference: Tensor  # [2] (x, y), or [4] (cx, cy, w, h) for a box reference
    locations: Tensor  # [H, L, P, 2] (x, y)
    weights: Tensor  # [H, L, P]; each head's weights sum to 1 over L·P

    def scaled(self, width: float, height: float) -> SamplingPoints:
        """The same points with x multiplied by ``width`` and y by ``height`` (e.g. the input's pixels)."""
        size = torch.tensor([width, height], dtype=self.locations.dtype)
        ref = self.reference * (size.repeat(2) if self.reference.numel() == 4 else size)
        return SamplingPoints(ref, self.locations * size, self.weights)


class SamplingRecorder:
    """``with SamplingRecorder(model) as rec: model(batch)``, then ``rec.decoder_points(i, query)`` or
    ``rec.encoder_points(i, x, y)``. The recorded queries stay until the recorder is discarded."""

    def __init__(self, model: DeformableDETR):
        self.model = model
        self._encoder_layer = model.transformer.encoder.layers[-1]
        self._decoder_layer = model.transformer.decoder.layers[-1]
        self._shapes: list[tuple[int, int]] = []

    def __enter__(self) -> SamplingRecorder:
        for layer in (self._encoder_layer, self._decoder_layer):
            layer.keep_query = True
        self._hook = self.model.transformer.register_forward_pre_hook(self._remember_shapes)
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in (self._encoder_layer, self._decoder_layer):
            layer.keep_query = False
        self._hook.remove()

    def _remember_shapes(self, module: torch.nn.Module, args: tuple) -> None:
        self._shapes = [(int(src.shape[2]), int(src.shape[3])) for src in args[0]]

    def decoder_points(self, image: int, query: int) -> SamplingPoints:
        """The last decoder layer's cross-attention of ``query`` in batch image ``image``."""
        recorded = self._decoder_layer.last_query
        if recorded is None:
            raise RuntimeError("no forward has been recorded yet")
        q, refs = recorded  # [B, Q, C], [B, Q, L, 2|4]
        return self._points(self._decoder_layer.cross_attn, q[image, query], refs[image, query])

    def encoder_points(self, image: int, x: float, y: float) -> SamplingPoints:
        """The last encoder layer's attention of the finest-level position under (x, y), normalised to
        the padded input."""
        recorded = self._encoder_layer.last_query
        if recorded is None:
            raise RuntimeError("no forward has been recorded yet")
        q, refs = recorded  # [B, S, C], [B, S, L, 2]
        h, w = self._shapes[0]
        row = min(max(int(y * h), 0), h - 1)
        col = min(max(int(x * w), 0), w - 1)
        index = row * w + col
        return self._points(self._encoder_layer.self_attn, q[image, index], refs[image, index])

    def _points(self, attn: MSDeformAttn, query: Tensor, refs: Tensor) -> SamplingPoints:
        """query [C]; refs [L, 2|4] -> the points of that one query."""
        with torch.no_grad():
            offsets, weights = attn.offsets_and_weights(
                query[None, None]
            )  # [1, 1, H, L, P, 2], [1, 1, H, L, P]
            locations = torch.stack(
                [
                    level_locations(refs[None, None], offsets, level, h, w)[0, 0]
                    for level, (h, w) in enumerate(self._shapes)
                ],
                dim=1,
            )  # [H, L, P, 2]
        return SamplingPoints(refs[0].float(), locations.float(), weights[0, 0].float())
