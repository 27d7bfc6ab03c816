"""How unsure a prediction is: the review queue's three measures, for softmax and sigmoid heads alike.

Each measure maps a row's class distribution ``p`` ([C+1], no-object last; ``Detections.distribution``, which
for a sigmoid head is built from its sigmoids, see ``detections.py``) to [0, 1]:
- entropy: ``-sum p log p / log(C+1)``, normalised so that a uniform distribution gives 1;
- top-2 margin: ``1 - (p1 - p2)`` over the two largest entries (1 when two outcomes tie);
- no-object mass: ``1 - |2 p_no_object - 1|``, 1 when the model cannot tell object from background (for a
  sigmoid head: when the best class's sigmoid is 0.5).

Entropy and margin look only at rows that put at least ``CANDIDATE_MASS`` on real classes (the rest are
confident background), so an image of empty queries does not rank as uncertain.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .detections import Detections

ENTROPY, MARGIN, NO_OBJECT = "entropy", "margin", "no_object"
MEASURES = {ENTROPY: "Entropy", MARGIN: "Top-2 margin", NO_OBJECT: "No-object mass"}
CANDIDATE_MASS = 0.1  # a row with less probability on real classes is confident background


def query_uncertainty(distribution: np.ndarray, measure: str) -> np.ndarray:
    """[N] uncertainty in [0, 1] of each row of ``distribution`` [N, C+1] (no-object last)."""
    p = np.asarray(distribution, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"a class distribution must be [N, C+1] with C >= 1, got shape {p.shape}")
    if measure == ENTROPY:
        logs = np.log(np.clip(p, 1e-12, 1.0))
        return -(p * logs).sum(1) / np.log(p.shape[1])
    if measure == MARGIN:
        top2 = np.sort(p, axis=1)[:, -2:]  # [N, 2] ascending
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if measure == NO_OBJECT:
        return 1.0 - np.abs(2.0 * p[:, -1] - 1.0)
    raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")


def image_uncertainty(dets: Detections, measure: str, skip: Iterable[int] = ()) -> tuple[float, int | None]:
    """(uncertainty, query id) of the most doubtful row of one image; queries in ``skip`` are left out."""
    if len(dets) == 0:
        return 0.0, None
    values = query_uncertainty(dets.distribution, measure)  # [N]
    keep = ~np.isin(dets.query_ids, np.fromiter(skip, dtype=np.int64))
    if measure != NO_OBJECT:
        keep &= (1.0 - dets.no_object) >= CANDIDATE_MASS
    if not keep.any():
        return 0.0, None
    rows = np.flatnonzero(keep)
    best = rows[int(np.argmax(values[rows]))]
    return float(values[best]), int(dets.query_ids[best])
