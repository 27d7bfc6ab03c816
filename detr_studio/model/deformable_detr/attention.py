"""Where Deformable DETR looks, for display: the sampling points of a detection's query in the last decoder
layer, and of a probed pixel in the last encoder layer, with their attention weights.

Nothing is stored per sampling point. One forward under `SamplingCapture` keeps, per image, the last decoder
layer's attention queries and reference points ([Q, C], [Q, L, 2|4]) and the last encoder layer's queries
at the finest level's real (unpadded) cells ([h·w, C], fp16), plus one CPU copy of the two layers' offset and
weight projections. The points of one query or pixel are computed from them when asked (`SamplingAttention`):
the decoder's for the selected detection, the encoder's for the probed pixel.

Coordinates come back in pixels of the original image. A location is a fraction of its level's padded
feature map (``grid_sample`` with ``align_corners=False``), which covers ``size · stride`` input pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..family import AttentionCapture
from ..kinds import SAMPLING_POINTS, ImageAttention
from .detector import DeformableDETR
from .ms_deform_attn import MSDeformAttn
from .sampling import level_locations

Shapes = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SamplingPoints:
    """The deformable attention of one query: H heads, L levels, P points.

    reference [2] (x, y), or [4] (cx, cy, w, h) for a box reference; locations [H, L, P, 2] (x, y); weights
    [H, L, P], each head's summing to 1 over L·P. ``normalised`` results are fractions of each level's padded
    map; `SamplingAttention` returns them in original-image pixels.
    """

    reference: Tensor
    locations: Tensor
    weights: Tensor


def query_points(attn: MSDeformAttn, query: Tensor, refs: Tensor, shapes: Shapes) -> SamplingPoints:
    """query [C] (position encoding included) and its references per level refs [L, 2|4] -> its points,
    normalised. The reference is level 0's."""
    with torch.no_grad():
        offsets, weights = attn.offsets_and_weights(query.float()[None, None])  # [1, 1, H, L, P, 2|.]
        levels = [
            level_locations(refs.float()[None, None], offsets, level, h, w)[0, 0]  # [H, P, 2]
            for level, (h, w) in enumerate(shapes)
        ]
    return SamplingPoints(refs[0].float(), torch.stack(levels, dim=1), weights[0, 0].float())


class SamplingAttention(ImageAttention):
    """One image's recorded deformable attention; points are computed on request.

    ``shapes``: (h, w) of each level's padded map; ``extents``: (width, height) in input pixels each covers;
    ``scale``: original pixels per input pixel (y, x); ``input_size``: (h, w) of the image as fed, unpadded.
    """

    kind = SAMPLING_POINTS

    def __init__(
        self,
        layers: tuple[MSDeformAttn, MSDeformAttn],
        decoder: tuple[Tensor, Tensor],
        encoder: Tensor | None,
        ratios: Tensor,
        shapes: Shapes,
        extents: tuple[tuple[float, float], ...],
        input_size: tuple[int, int],
        scale: tuple[float, float],
    ):
        self._decoder_attn, self._encoder_attn = layers
        self._queries, self._refs = decoder  # [Q, C], [Q, L, 2|4]
        self._encoder = encoder  # [vh·vw, C] fp16, finest level, real cells row-major; None: not recorded
        self._ratios = ratios  # [L, 2] (w, h) valid fractions of each level
        self.shapes = shapes
        self.extents = extents
        self.input_size = input_size
        self.scale = scale

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return round(self.input_size[0] * self.scale[0]), round(self.input_size[1] * self.scale[1])

    @property
    def num_heads(self) -> int:
        return self._decoder_attn.n_heads

    @property
    def num_points(self) -> int:
        return self._decoder_attn.n_points

    @property
    def has_encoder(self) -> bool:
        return self._encoder is not None

    @property
    def nbytes(self) -> int:
        tensors = [self._queries, self._refs, *([self._encoder] if self._encoder is not None else [])]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def valid_cells(self) -> tuple[int, int]:
        """(rows, cols) of the finest level's real cells."""
        h, w = self.shapes[0]
        return round(float(self._ratios[0, 1]) * h), round(float(self._ratios[0, 0]) * w)

    def decoder_points(self, query: int) -> SamplingPoints:
        """Where decoder query ``query`` (a detection's ``query_ids`` entry) samples, in original pixels."""
        return self._in_pixels(
            query_points(self._decoder_attn, self._queries[query], self._refs[query], self.shapes)
        )

    def encoder_cell(self, x: float, y: float) -> tuple[int, int]:
        """The finest level's cell (row, col) under original-image pixel (x, y), inside the real cells."""
        rows, cols = self.valid_cells
        width, height = self.extents[0]
        h, w = self.shapes[0]
        row = int(y / self.scale[0] / height * h)
        col = int(x / self.scale[1] / width * w)
        return min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)

    def encoder_points(self, x: float, y: float) -> SamplingPoints:
        """Where the last encoder layer samples for the finest-level cell under original pixel (x, y)."""
        if self._encoder is None:
            raise ValueError("encoder sampling points were not recorded")
        row, col = self.encoder_cell(x, y)
        query = self._encoder[row * self.valid_cells[1] + col]
        rows, cols = self.valid_cells
        own = torch.tensor([(col + 0.5) / cols, (row + 0.5) / rows])  # the cell centre over the real cells
        refs = own[None] * self._ratios  # [L, 2]: the encoder's reference, scaled to every level
        return self._in_pixels(query_points(self._encoder_attn, query, refs, self.shapes))

    def _in_pixels(self, points: SamplingPoints) -> SamplingPoints:
        sy, sx = self.scale
        per_level = torch.tensor([[w * sx, h * sy] for w, h in self.extents])  # [L, 2]
        locations = points.locations * per_level[None, :, None, :]
        size = per_level[0].repeat(2) if points.reference.numel() == 4 else per_level[0]
        return SamplingPoints(points.reference * size, locations, points.weights)


class SamplingCapture(AttentionCapture):
    """Records, during one forward of a `DeformableDETR`, the last layers' attention queries and references."""

    def __init__(self, model: DeformableDETR):
        self.model = model
        self._encoder_layer = model.transformer.encoder.layers[-1]
        self._decoder_layer = model.transformer.decoder.layers[-1]
        for layer in (self._encoder_layer, self._decoder_layer):
            layer.keep_query = True
        self._shapes: Shapes = ()
        self._ratios: Tensor | None = None
        self._hooks = [model.transformer.encoder.register_forward_pre_hook(self._remember_levels)]

    def _remember_levels(self, _module: nn.Module, args: tuple) -> None:
        _src, shapes, ratios = args[:3]  # [N, S, C], (h_l, w_l) per level, [N, L, 2] (w, h)
        self._shapes = tuple((int(h), int(w)) for h, w in shapes)
        self._ratios = ratios.float().cpu()

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        for layer in (self._encoder_layer, self._decoder_layer):
            layer.keep_query = False

    def collect(
        self,
        pad_mask: Tensor,
        input_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[SamplingAttention]:
        self.close()
        decoder, encoder = self._decoder_layer.last_query, self._encoder_layer.last_query
        self._decoder_layer.last_query = self._encoder_layer.last_query = None
        if decoder is None or self._ratios is None:
            raise RuntimeError("sampling points were not recorded; is this a Deformable DETR model?")
        layers = (_cpu_copy(self._decoder_layer.cross_attn), _cpu_copy(self._encoder_layer.self_attn))
        shapes = self._shapes
        extents = tuple((float(w * s), float(h * s)) for (h, w), s in zip(shapes, self.model.level_strides))
        h0, w0 = shapes[0]
        results = []
        for i, ((in_h, in_w), (orig_h, orig_w)) in enumerate(zip(input_sizes, original_sizes)):
            ratios = self._ratios[i]  # [L, 2]
            cells = None
            if encoder is not None:
                rows, cols = round(float(ratios[0, 1]) * h0), round(float(ratios[0, 0]) * w0)
                grid = encoder[0][i, : h0 * w0].reshape(h0, w0, -1)[:rows, :cols]  # [rows, cols, C]
                cells = grid.reshape(rows * cols, -1).to(torch.float16).cpu()
            queries, refs = decoder[0][i].float().cpu(), decoder[1][i].float().cpu()  # [Q, C], [Q, L, 2|4]
            scale = (orig_h / in_h, orig_w / in_w)
            results.append(
                SamplingAttention(
                    layers, (queries, refs), cells, ratios, shapes, extents, (in_h, in_w), scale
                )
            )
        self._ratios = None
        return results


def _cpu_copy(attn: MSDeformAttn) -> MSDeformAttn:
    return copy.deepcopy(attn).float().cpu().eval()
