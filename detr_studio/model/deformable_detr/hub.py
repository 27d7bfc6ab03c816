"""The five Deformable DETR checkpoints on the Hugging Face hub (``SenseTime/deformable-detr*``, converted
from the official release files, so their COCO val2017 box AP is the official README's).

Their SHA-256 digests are not published with the files, so no hash prefix is known in advance: a
download of one of them is verified against the digest recorded at its first download.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import PRESETS, DeformableDetrConfig

HUB = "https://huggingface.co/"


@dataclass(frozen=True)
class HubCheckpoint:
    """One hub repository: the weights file to fetch, its configuration and the published AP."""

    name: str  # our zoo name
    repo: str  # Hugging Face repository id
    preset: str  # one of config.PRESETS
    box_ap: float  # COCO val2017, official README
    size_mb: int = 0  # 0 when not known

    @property
    def url(self) -> str:
        return f"{HUB}{self.repo}/resolve/main/pytorch_model.bin"

    @property
    def filename(self) -> str:
        """Cache file name: the repository's name (every repository calls its file pytorch_model.bin)."""
        return self.repo.split("/")[-1] + ".bin"

    def config(self) -> DeformableDetrConfig:
        return PRESETS[self.preset]


HUB_CHECKPOINTS = (
    HubCheckpoint("deformable-detr", "SenseTime/deformable-detr", "multi-scale", 44.5),
    HubCheckpoint(
        "deformable-detr-single-scale", "SenseTime/deformable-detr-single-scale", "single-scale", 39.4
    ),
    HubCheckpoint(
        "deformable-detr-single-scale-dc5",
        "SenseTime/deformable-detr-single-scale-dc5",
        "single-scale-dc5",
        41.5,
    ),
    HubCheckpoint(
        "deformable-detr-box-refine", "SenseTime/deformable-detr-with-box-refine", "box-refine", 46.2
    ),
    HubCheckpoint(
        "deformable-detr-two-stage",
        "SenseTime/deformable-detr-with-box-refine-two-stage",
        "two-stage",
        46.9,
        size_mb=165,
    ),
)
