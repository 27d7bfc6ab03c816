"""The foundation every layer may import: reading JSON files, writing files atomically, the panoptic id codec.

Nothing here imports anything else of DETR Studio, so `model/`, `data/`, `train/`, `infer/` and `app/` can all
use it without an import cycle.
"""
