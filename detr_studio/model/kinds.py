"""The names that tell model families apart without importing torch: how a class head scores and what
attention a family can show. The window reads them before any model is loaded (`model.family` re-exports
them for the families themselves)."""

from __future__ import annotations

SOFTMAX = "softmax"  # logits [B, Q, C+1]: one distribution per query, "no object" last
SIGMOID = "sigmoid"  # logits [B, Q, C]: an independent probability per class, no "no object" column

ATTENTION_MAPS = "maps"  # decoder cross-attention maps per query, encoder attention at a probed pixel
SAMPLING_POINTS = "sampling_points"  # deformable attention: reference and sampling points with weights


class ImageAttention:
    """Base of one image's recorded attention; each family defines its own (``kind`` says which)."""

    kind: str = ""
