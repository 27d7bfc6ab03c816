"""Shared test set-up: offscreen Qt, small thread counts, deterministic seeds."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DETR_STUDIO_CACHE", os.path.join(os.path.dirname(__file__), ".cache-unused"))

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
