"""The model chooser runs a checkpoint at the size it was trained at unless the user picks another."""

from __future__ import annotations

from detr_studio.app.demo_project import demo_model_path
from detr_studio.app.model_dialog import ModelDialog
from detr_studio.session.model_loading import ModelChoice, load_predictor


def test_the_dialog_defaults_to_the_checkpoints_own_input_size(qtbot):
    dialog = ModelDialog(None)
    qtbot.addWidget(dialog)
    dialog.file_radio.setChecked(True)
    dialog.path_edit.setText(str(demo_model_path()))
    choice = dialog.choice()
    assert choice is not None and choice.size is None and choice.max_size is None
    assert "as the model was trained" in dialog.size_spin.text()
    predictor, info = load_predictor(choice)
    assert (predictor.size, info.input_size[0]) == (128, 128)  # what the demo model's sidecar records


def test_a_size_the_user_picks_is_kept_and_shown_again(qtbot):
    dialog = ModelDialog(None, ModelChoice("detr-r50", size=640, max_size=1066))
    qtbot.addWidget(dialog)
    choice = dialog.choice()
    assert (choice.source, choice.size, choice.max_size) == ("detr-r50", 640, 1066)
    dialog.size_spin.setValue(0)
    assert dialog.choice().size is None
