"""Deformable DETR checkpoints: official release files (only ``model`` used, ``args`` allowed by name,
training state ignored), DC5 from args or the file name, and wrong files recognised for what they are."""

from __future__ import annotations

import argparse
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from detr_studio.model.checkpoint import CheckpointError, _torch_load
from detr_studio.model.config import tiny_config
from detr_studio.model.deformable_detr.checkpoint import config_from_official, distinct_tensors
from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.deformable_detr.detector import build_deformable_detr
from detr_studio.model.deformable_detr.keys import family_of_state_dict
from detr_studio.model.detr import build_detr


def _official_file(path, model, args=None):
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 40)
    content = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 49}
    content["lr_scheduler"] = scheduler.state_dict()
    if args is not None:
        content["args"] = args
    torch.save(content, path)


def test_official_training_file_loads_with_its_args(tmp_path):
    config = tiny_deformable_config(with_box_refine=True, dilation=True, nheads=4)
    model = build_deformable_detr(config)
    path = tmp_path / "r50_deformable_detr_plus_iterative_bbox_refinement-checkpoint.pth"
    args = argparse.Namespace(
        dilation=True, nheads=4, dropout=0.0, aux_loss=True, with_box_refine=True, lr=2e-4
    )
    _official_file(path, model, args)
    obj = _torch_load(path)
    read = config_from_official(obj["model"], obj["args"], path)
    assert read == config
    fresh = build_deformable_detr(read)
    fresh.load_state_dict(obj["model"], strict=True)


def test_dc5_comes_from_the_file_name_when_there_are_no_args(tmp_path):
    config = tiny_deformable_config(num_feature_levels=1, dilation=True, nheads=8)
    path = tmp_path / "r50_deformable_detr_single_scale_dc5-checkpoint.pth"
    torch.save({"model": build_deformable_detr(config).state_dict()}, path)
    assert config_from_official(_torch_load(path)["model"], None, path).dilation is True


def test_args_contradicting_the_weights_are_named(tmp_path):
    model = build_deformable_detr(tiny_deformable_config(nheads=4))
    path = tmp_path / "x.pth"
    _official_file(path, model, argparse.Namespace(nheads=4, two_stage=True, with_box_refine=True))
    obj = _torch_load(path)
    with pytest.raises(ValueError, match="its args say with_box_refine=True but its weights are False"):
        config_from_official(obj["model"], obj["args"], path)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_with_other_python_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"model": {}, "args": _Payload()}, fh)
    with pytest.raises(CheckpointError, match="refused to load"):
        _torch_load(path)


def test_a_detr_checkpoint_is_named_as_such():
    detr = build_detr(tiny_config()).state_dict()
    assert family_of_state_dict(detr) == "detr"
    with pytest.raises(ValueError, match="DETR checkpoint, not Deformable DETR"):
        config_from_official(detr, None, None)


def test_a_state_dict_of_neither_family_names_its_keys():
    stray = {"encoder.weight": torch.zeros(2), "head.bias": torch.zeros(1)}
    assert family_of_state_dict(stray) is None
    with pytest.raises(
        ValueError, match=r"neither a DETR nor a Deformable DETR.*encoder\.weight, head\.bias"
    ):
        config_from_official(stray, None, None)


def test_a_deformable_state_dict_is_not_taken_for_detr():
    sd = build_deformable_detr(tiny_deformable_config()).state_dict()
    assert family_of_state_dict(sd) == "deformable_detr"
    from detr_studio.model.checkpoint import infer_config as detr_infer_config

    with pytest.raises(CheckpointError, match="not a DETR state dict"):
        detr_infer_config(sd)


def test_shared_heads_are_written_as_copies(tmp_path):
    model = build_deformable_detr(tiny_deformable_config())
    path = tmp_path / "w.safetensors"
    save_file(distinct_tensors(model.state_dict()), str(path))
    again = build_deformable_detr(tiny_deformable_config())
    again.load_state_dict(load_file(str(path)), strict=True)
    assert torch.equal(again.class_embed[1].weight, model.class_embed[0].weight)
