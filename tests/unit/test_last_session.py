"""What a start brings back: the last model as the settings keep it, and only when it loads without a
download; the last project's location from its recent-projects entry."""

from __future__ import annotations

import json

from detr_studio.session import project as projects
from detr_studio.session.last_session import model_choice_from_text, model_choice_text, unavailable_reason
from detr_studio.session.model_loading import ModelChoice


def test_a_model_choice_round_trips_through_its_text(tmp_path):
    choice = ModelChoice(
        str(tmp_path / "best.safetensors"), device="cpu", precision="bf16", size=320, max_size=533
    )
    assert model_choice_from_text(model_choice_text(choice)) == choice


def test_unreadable_or_foreign_text_is_no_model():
    for text in (None, "", "{broken", "[]", json.dumps({"source": ""}), json.dumps({"size": 3})):
        assert model_choice_from_text(text) is None
    extra = json.dumps({"source": "m.pth", "from_a_newer_version": 1})
    assert model_choice_from_text(extra) == ModelChoice("m.pth")


def test_a_model_file_that_is_gone_or_a_zoo_model_not_downloaded_is_not_brought_back(tmp_path, monkeypatch):
    weights = tmp_path / "best.safetensors"
    weights.write_bytes(b"x")
    assert unavailable_reason(ModelChoice(str(weights))) is None
    weights.unlink()
    assert "no such file" in unavailable_reason(ModelChoice(str(weights)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DETR_STUDIO_CACHE", str(tmp_path / "cache"))
    assert "not downloaded" in unavailable_reason(ModelChoice("detr-r50"))


def test_the_last_project_location_comes_from_its_recent_entry(tmp_path):
    entry = json.dumps({"kind": "coco", "path": str(tmp_path / "a.json"), "image_root": None})
    assert projects.recent_path(entry) == tmp_path / "a.json"
    assert projects.recent_path("not json") is None and projects.recent_path("[1]") is None
