"""Fixtures of the COCO document tests: a small instances file, and the document loaded from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from detr_studio.data.coco import CocoDocument

from .helpers import base_data, write_json


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    return write_json(tmp_path, base_data())


@pytest.fixture
def doc(coco_file: Path) -> CocoDocument:
    return CocoDocument.load(coco_file)
