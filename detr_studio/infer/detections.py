"""``Detections``: every query's prediction for one image, the one result type of inference.

All queries are kept; a score threshold is a cheap view (``dets.above(0.7)``), so a threshold slider
never re-runs the model. Arrays are numpy on the CPU, ready for drawing and saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class AttentionMaps:
    """Attention of the last encoder and decoder layers, cropped to the image's own feature cells.

    ``decoder``: [heads, Q, h, w] cross-attention of each query over the feature map.
    ``encoder``: [heads, h, w, h, w] self-attention; ``encoder[:, y, x]`` is where cell (y, x) looks.
    ``stride``: input pixels per feature cell; ``scale``: original pixels per input pixel (y, x).
    """

    decoder: np.ndarray
    encoder: np.ndarray | None
    stride: int
    scale: tuple[float, float]

    @property
    def feature_size(self) -> tuple[int, int]:
        return int(self.decoder.shape[-2]), int(self.decoder.shape[-1])

    def decoder_map(self, query: int, head: int | None = None) -> np.ndarray:
        """[h, w] where decoder query ``query`` looks; mean over heads unless ``head`` is given."""
        maps = self.decoder[:, query].astype(np.float32)
        return maps.mean(0) if head is None else maps[head]

    def cell_at(self, x: float, y: float) -> tuple[int, int]:
        """Feature cell (row, col) under the original-image pixel (x, y)."""
        h, w = self.feature_size
        row = int(y / self.scale[0] // self.stride)
        col = int(x / self.scale[1] // self.stride)
        return min(max(row, 0), h - 1), min(max(col, 0), w - 1)

    def encoder_map(self, x: float, y: float, head: int | None = None, direction: str = "from") -> np.ndarray:
        """[h, w] encoder self-attention at original-image pixel (x, y).

        ``direction="from"``: where that location looks; ``"to"``: how much every location looks at it.
        """
        if self.encoder is None:
            raise ValueError("encoder attention was not recorded")
        row, col = self.cell_at(x, y)
        if direction == "from":
            maps = self.encoder[:, row, col]
        elif direction == "to":
            maps = self.encoder[:, :, :, row, col]
        else:
            raise ValueError("direction must be 'from' or 'to'")
        maps = maps.astype(np.float32)
        return maps.mean(0) if head is None else maps[head]


@dataclass(frozen=True)
class PanopticResult:
    """Panoptic segmentation of one image: ``ids`` [H, W] segment id per pixel, and what each id is.

    ``segments_info`` entries follow the reference: {"id", "isthing", "category_id", "area"}.
    ``png`` holds the reference's RGB-encoded PNG bytes (id = R + 256 G + 256² B).
    """

    ids: np.ndarray
    segments_info: list[dict]
    png: bytes


@dataclass(frozen=True)
class Detections:
    """Predictions of one image. Shapes: Q queries (all of them, or a thresholded subset), C classes.

    ``boxes`` [Q, 4] absolute xyxy pixels of the original image; ``scores`` [Q]; ``labels`` [Q] category
    ids (the best real class: no-object is ignored in the argmax, as the reference does); ``probs``
    [Q, C+1] full softmax, no-object last; ``query_ids`` [Q] the decoder query each row came from;
    ``masks`` optional [Q, H, W] bool instance masks.
    """

    image_size: tuple[int, int]  # (height, width) of the original image
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    query_ids: np.ndarray
    masks: np.ndarray | None = None
    attention: AttentionMaps | None = None
    panoptic: PanopticResult | None = None
    source: str = ""  # the image this came from, for messages and output files
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def no_object(self) -> np.ndarray:
        """[Q] probability of "no object" for each query."""
        return self.probs[:, -1]

    def select(self, index: np.ndarray) -> Detections:
        """A subset of rows (bool mask or integer index), keeping query ids."""
        masks = None if self.masks is None else self.masks[index]
        return replace(
            self,
            boxes=self.boxes[index],
            scores=self.scores[index],
            labels=self.labels[index],
            probs=self.probs[index],
            query_ids=self.query_ids[index],
            masks=masks,
        )

    def above(self, threshold: float) -> Detections:
        """Rows whose score is strictly above ``threshold`` (a view for display, no model run)."""
        return self.select(self.scores > threshold)

    def sorted(self) -> Detections:
        """Rows ordered by descending score."""
        return self.select(np.argsort(-self.scores, kind="stable"))

    def top_classes(self, row: int, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most probable real classes of one row, as (category id, probability)."""
        real = self.probs[row, :-1]
        order = np.argsort(-real, kind="stable")[:k]
        return [(int(c), float(real[c])) for c in order]

    def to_coco(self, image_id: int) -> list[dict]:
        """COCO results entries (bbox as x, y, w, h)."""
        out = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            x0, y0, x1, y1 = box
            out.append(
                {
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "score": round(float(score), 5),
                }
            )
        return out
