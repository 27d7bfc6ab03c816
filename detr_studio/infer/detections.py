"""``Detections``: every reported row of one image's prediction, the one result type of inference.

All rows are kept; a score threshold is a cheap view (``dets.above(0.5)``), so a threshold slider never re-runs
the model. Arrays are numpy on the CPU, ready for drawing and saving.

Rows and scores for both kinds of class head (``scoring``):
- "softmax" (DETR): one row per decoder query. ``probs`` [Q, C+1] is the query's softmax, "no object" last;
  ``labels`` its best real class (no-object is ignored in the argmax, as the reference does) and ``scores``
  that class's probability.
- "sigmoid" (Deformable DETR): the top (query, class) pairs of the independent per-class sigmoids, best first
  (the reference keeps 100), so a query may appear in several rows with different classes; ``query_ids``
  names it. ``probs`` [N, C] holds the query's sigmoids; ``scores`` the row's class's sigmoid. There is no
  "no object" column.

One meaning serves the inspector, the threshold, ghosts and the review queue whatever the head:
- ``score``: how sure the model is of this box *with this label*; the threshold and ghosts compare it.
- ``no_object``: softmax: the no-object probability; sigmoid: ``1 - the query's best class sigmoid`` (a query
  none of whose classes fires is background).
- ``distribution`` [N, C+1]: a class distribution with no-object last for either head. Softmax: ``probs``.
  Sigmoid: the object mass ``m`` = the best class sigmoid, shared among the classes in proportion to their
  sigmoids, and ``1 - m`` for no object. The review queue's entropy, top-2 margin and no-object mass
  (``uncertainty.py``) are computed on it, so they mean the same for both heads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..common.panoptic_ids import rgb2id
from ..model.kinds import SIGMOID, SOFTMAX, ImageAttention

DEFAULT_THRESHOLD = 0.5  # the score a detection must pass to be shown or written, in the window and commands


@dataclass(frozen=True)
class PanopticResult:
    """Panoptic segmentation of one image: the reference's RGB-encoded PNG (id = R + 256 G + 256² B) and what
    each segment id is (``segments_info`` entries {"id", "isthing", "category_id", "area"}, as the reference).

    Only the compressed PNG is kept (a few kB, where the id map of a 640x480 image is 1.2 MB), so that a window
    holding the results of many images does not grow by an id map each; ``ids`` decodes it when drawn.
    ``query_ids`` names the decoder query behind each entry of ``segments_info`` (None when not known), so
    that accepting a query can keep its segment as its mask.
    """

    segments_info: list[dict]
    png: bytes
    query_ids: tuple[int, ...] | None = None

    def query_mask(self, query_id: int) -> np.ndarray | None:
        """[H, W] bool pixels of the segment query ``query_id`` made; None when it made none."""
        if self.query_ids is None or query_id not in self.query_ids:
            return None
        return self.ids == self.segments_info[self.query_ids.index(query_id)]["id"]

    @property
    def ids(self) -> np.ndarray:
        """[H, W] int32: the segment id of every pixel, decoded from ``png``."""
        with Image.open(io.BytesIO(self.png)) as img:
            return rgb2id(np.asarray(img.convert("RGB"))).astype(np.int32)


@dataclass(frozen=True)
class Detections:
    """Predictions of one image: N rows (all reported rows, or a thresholded subset), C classes.

    ``boxes`` [N, 4] absolute xyxy pixels of the original image; ``scores`` [N]; ``labels`` [N] category ids;
    ``probs`` [N, K] the class probabilities of each row's query (K = C+1 softmax with no-object last, or C
    sigmoids; see the module docstring); ``query_ids`` [N] the decoder query each row came from; ``masks``
    optional [N, H, W] bool instance masks; ``attention`` the family's recorded attention, when asked for.
    """

    image_size: tuple[int, int]  # (height, width) of the original image
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    query_ids: np.ndarray
    masks: np.ndarray | None = None
    attention: ImageAttention | None = None
    panoptic: PanopticResult | None = None
    source: str = ""  # the image this came from, for messages and output files
    scoring: str = SOFTMAX

    def __post_init__(self) -> None:
        if self.scoring not in (SOFTMAX, SIGMOID):
            raise ValueError(f"scoring must be {SOFTMAX!r} or {SIGMOID!r}, got {self.scoring!r}")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def num_classes(self) -> int:
        """C: the class count of the head (the largest category id + 1)."""
        return self.probs.shape[1] - 1 if self.scoring == SOFTMAX else self.probs.shape[1]

    @property
    def class_probs(self) -> np.ndarray:
        """[N, C]: each row's probability of every real class (softmax without no-object, or the sigmoids)."""
        return self.probs[:, :-1] if self.scoring == SOFTMAX else self.probs

    @property
    def no_object(self) -> np.ndarray:
        """[N] how likely each row's query is background (see the module docstring)."""
        if self.scoring == SOFTMAX:
            return self.probs[:, -1]
        return 1.0 - self.probs.max(1) if len(self.probs) else np.zeros(0, dtype=self.probs.dtype)

    @property
    def distribution(self) -> np.ndarray:
        """[N, C+1] a class distribution with no-object last, for either head (see the module docstring)."""
        if self.scoring == SOFTMAX:
            return self.probs
        p = self.probs.astype(np.float64)
        mass = p.max(1, keepdims=True) if len(p) else np.zeros((0, 1))
        share = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
        return np.concatenate([share * mass, 1.0 - mass], axis=1)

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
        real = self.class_probs[row]
        order = np.argsort(-real, kind="stable")[:k]
        return [(int(c), float(real[c])) for c in order]

    def row_mask(self, row: int) -> np.ndarray | None:
        """[H, W] bool mask of one row: its instance mask, else the panoptic segment its query made; None
        when the model gave it neither (no mask head, or a query below the panoptic threshold)."""
        if self.masks is not None:
            return np.asarray(self.masks[row], dtype=bool)
        if self.panoptic is not None:
            return self.panoptic.query_mask(int(self.query_ids[row]))
        return None

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
