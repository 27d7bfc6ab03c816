"""Deformable DETR checkpoints through the one load pipeline: official release files (only ``model`` used,
``args`` allowed by name, training state ignored), DC5 from the args or the file name, Hugging Face folders
(4.x and 5.x names), our own files (sidecar v2), and wrong files recognised for what they are."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from detr_studio.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.loading import build_for_training, load_model
from detr_studio.model.nested import nested_tensor_from_tensor_list
from tests.deformable_helpers import random_model, write_hf_folder, write_official, write_ours


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    batch = nested_tensor_from_tensor_list([torch.randn(3, 64, 96), torch.randn(3, 48, 80)])
    with torch.no_grad():
        out_a, out_b = a.eval()(batch), b.eval()(batch)
    assert torch.equal(out_a["pred_logits"], out_b["pred_logits"])
    assert torch.equal(out_a["pred_boxes"], out_b["pred_boxes"])


def test_official_training_file_loads_with_its_args(tmp_path):
    config = tiny_deformable_config(with_box_refine=True, dilation=True, nheads=4)
    model = random_model(config)
    path = tmp_path / "r50_deformable_detr_plus_iterative_bbox_refinement-checkpoint.pth"
    args = argparse.Namespace(
        dilation=True, nheads=4, dropout=0.0, aux_loss=True, with_box_refine=True, lr=2e-4
    )
    write_official(model, path, args)
    checkpoint = load_checkpoint(path)
    assert checkpoint.family.name == "deformable_detr" and checkpoint.source == "official-training"
    assert checkpoint.config == config
    loaded = load_model(path)
    _same_outputs(loaded.model, model)


def test_dc5_comes_from_the_file_name_when_there_are_no_args(tmp_path):
    config = tiny_deformable_config(num_feature_levels=1, dilation=True, nheads=8)
    path = write_official(
        random_model(config), tmp_path / "r50_deformable_detr_single_scale_dc5-checkpoint.pth"
    )
    assert load_checkpoint(path).config.dilation is True
    plain = write_official(random_model(config), tmp_path / "r50_deformable_detr_single_scale-checkpoint.pth")
    assert load_checkpoint(plain).config.dilation is False


def test_args_contradicting_the_weights_are_named(tmp_path):
    path = tmp_path / "x.pth"
    write_official(
        random_model(tiny_deformable_config(nheads=4)),
        path,
        argparse.Namespace(nheads=4, with_box_refine=True),
    )
    with pytest.raises(CheckpointError, match="its args say with_box_refine=True but its weights are False"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_with_other_python_objects_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"model": {}, "args": _Payload()}, fh)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags", [{}, {"with_box_refine": True}, {"with_box_refine": True, "two_stage": True}]
)
def test_our_files_record_the_family_and_load_strictly(tmp_path, flags):
    config = tiny_deformable_config(**flags)
    model = random_model(config)
    weights = write_ours(model, config, tmp_path / "best.safetensors", class_names={1: "cat", 2: "dog"})
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    assert (sidecar["version"], sidecar["family"]) == (2, "deformable_detr")
    loaded = load_model(weights)
    assert loaded.family.name == "deformable_detr" and loaded.config == config
    assert loaded.class_names == {1: "cat", 2: "dog"}
    _same_outputs(loaded.model, model)


def test_a_model_saved_as_it_is_keeps_its_shared_heads_as_copies(tmp_path):
    """save_checkpoint takes the module itself too: the heads shared by all layers are written once each."""
    config = tiny_deformable_config()
    model = random_model(config)
    assert model.class_embed[0] is model.class_embed[1]
    weights = save_checkpoint(model, tmp_path / "m.safetensors", config)
    _same_outputs(load_model(weights).model, model)


@pytest.mark.parametrize("legacy", [False, True], ids=["transformers-5", "transformers-4"])
def test_a_hugging_face_folder_loads(tmp_path, legacy):
    config = tiny_deformable_config(with_box_refine=True, nheads=4, backbone_width=64)
    model = random_model(config)
    folder = write_hf_folder(model, config, tmp_path / "hf", legacy_names=legacy, class_names={3: "bird"})
    checkpoint = load_checkpoint(folder)
    assert checkpoint.family.name == "deformable_detr" and checkpoint.source == "huggingface"
    assert checkpoint.config == config.replace(aux_loss=True)
    assert checkpoint.class_names[3] == "bird"
    _same_outputs(load_model(folder).model, model)


def test_a_detr_checkpoint_is_recognised_as_detr(tmp_path):
    path = tmp_path / "detr.pth"
    torch.save({"model": build_detr(tiny_config()).state_dict()}, path)
    assert load_checkpoint(path).family.name == "detr"


def test_a_deformable_checkpoint_is_not_taken_for_detr(tmp_path):
    path = write_official(
        random_model(tiny_deformable_config()), tmp_path / "d.pth", with_training_state=False
    )
    assert load_checkpoint(path).family.name == "deformable_detr"


def _swap_weights(weights, other_sd) -> None:
    save_file({k: v.contiguous() for k, v in other_sd.items()}, str(weights))


def test_a_detr_file_where_a_deformable_one_is_expected_is_named_as_detr(tmp_path):
    """A sidecar that says Deformable DETR beside DETR weights: the message says what the weights are."""
    config = tiny_deformable_config()
    weights = write_ours(random_model(config), config, tmp_path / "m.safetensors")
    _swap_weights(weights, build_detr(tiny_config()).state_dict())
    with pytest.raises(
        CheckpointError, match="says it is a Deformable DETR model, but its weights are a DETR model's"
    ):
        load_model(weights)
    with pytest.raises(CheckpointError, match="but its weights are a DETR model's"):
        build_for_training(load_checkpoint(weights), config)


def test_a_deformable_file_where_a_detr_one_is_expected_is_named_as_deformable(tmp_path):
    weights = save_checkpoint(build_detr(tiny_config()), tmp_path / "m.safetensors", tiny_config())
    model = random_model(tiny_deformable_config())
    _swap_weights(weights, {k: v.clone() for k, v in model.state_dict().items()})
    with pytest.raises(
        CheckpointError, match="says it is a DETR model, but its weights are a Deformable DETR model's"
    ):
        load_model(weights)


def test_a_hugging_face_config_naming_the_other_family_is_named(tmp_path):
    config = tiny_deformable_config(backbone_width=64)
    folder = write_hf_folder(random_model(config), config, tmp_path / "hf")
    hf_config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**hf_config, "model_type": "detr"}))
    with pytest.raises(
        CheckpointError,
        match=r"config.json says model_type 'detr' \(DETR\), but the weights are a Deformable DETR model's",
    ):
        load_checkpoint(folder)


def test_a_state_dict_of_neither_family_names_its_keys(tmp_path):
    path = tmp_path / "stray.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(2), "head.bias": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "not a checkpoint of any model family" in message
    assert "no class_embed.weight" in message and "no transformer.level_embed" in message
    assert "its keys: encoder.weight; head.bias" in message
    assert "\n" not in message


def test_a_deformable_state_dict_with_a_foreign_key_names_it(tmp_path):
    sd = random_model(tiny_deformable_config()).state_dict()
    sd["extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match="1 unexpected keys: extra_head.weight"):
        load_checkpoint(path)


def test_a_bad_sidecar_value_names_the_file_and_the_field(tmp_path):
    config = tiny_deformable_config()
    weights = write_ours(random_model(config), config, tmp_path / "m.safetensors")
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["config"]["enc_n_points"] = 0
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match=r"m.json: config.enc_n_points must be an integer from 1 to 64, got 0"
    ):
        load_checkpoint(weights)
