"""After a fine-tune that ends worse than it began, the Training dock says so plainly and keeping the model in
use is what Enter (or closing the question) does; a better model is used without a question."""

from __future__ import annotations

import shutil

import pytest

from detr_studio.train.runs import AFTER, BEFORE, RunRecord, store_comparison

from .helpers import open_and_wait


def _finished_run(folder, checkpoint, before_ap: float, after_ap: float):
    """A run folder as a finished fine-tune leaves it: its record, best model and before/after AP."""
    run = folder / "run-1"
    run.mkdir(parents=True)
    RunRecord("run-1", "base.safetensors", {"device": "cpu", "size": 96, "max_size": 128}, 8, 2).save(run)
    shutil.copy(checkpoint, run / "best.safetensors")
    shutil.copy(checkpoint.with_suffix(".json"), run / "best.json")
    store_comparison(run, BEFORE, {"AP": before_ap, "AP50": 0.8})
    store_comparison(run, AFTER, {"AP": after_ap, "AP50": 0.5})
    return run


def test_a_worse_model_is_said_plainly_and_keeping_the_old_one_is_the_default(
    qtbot, window, dataset, tiny_checkpoint, tmp_path
):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    panel = window.training_dock.panel
    panel.show_run(_finished_run(tmp_path, tiny_checkpoint, 0.462, 0.277))
    assert "The trained model is worse" in panel.compare_label.text()
    assert (
        "0.462 → 0.277" in panel.compare_label.text()
        and "keep the model you have" in panel.compare_label.text()
    )
    assert panel.use_button.text() == "Use it anyway…" and panel.use_button.isEnabled()

    questions: list[tuple] = []

    def answer_with_enter(title, text, choices=("Yes", "No"), default=None):
        questions.append((title, text, tuple(choices), default))
        return default  # what Enter picks

    window.services.ask = answer_with_enter
    assert not panel.use_model() and window.session.model_choice is None
    title, text, choices, default = questions[0]
    assert "worse" in title and "0.277" in text and "0.462" in text
    assert default == choices[-1] == "Keep the current model"  # Enter and closing the box both keep it

    window.services.ask = lambda title, text, choices=("Yes", "No"), default=None: "Use the trained model"
    assert panel.use_model()
    assert window.session.model_choice.source.endswith("best.safetensors")


def test_a_better_model_is_used_without_a_question(qtbot, window, dataset, tiny_checkpoint, tmp_path):
    open_and_wait(qtbot, window, window.projects.open_coco, dataset.instances_json("train"))
    panel = window.training_dock.panel
    panel.show_run(_finished_run(tmp_path, tiny_checkpoint, 0.277, 0.462))
    assert "worse" not in panel.compare_label.text() and panel.use_button.text() == "Use this model"
    window.services.ask = lambda *args, **kwargs: pytest.fail("a better model needs no question")
    assert panel.use_model() and window.session.model_choice.source.endswith("best.safetensors")
