"""Reading and writing checkpoints: official layouts, training files, our format, and refusals."""

from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from detr_studio.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.detr.recognise import recognise_official
from detr_studio.model.family import Hints
from detr_studio.model.loading import from_checkpoint
from detr_studio.model.state_dicts import load_strictly
from tests.model_helpers import reset_class_head, save_official


def build_from_checkpoint(ckpt, **changes) -> torch.nn.Module:
    """The checkpoint's network (its config with ``changes``), weights loaded strictly."""
    if not changes:
        return from_checkpoint(ckpt).model
    model = ckpt.family.build(ckpt.config.replace(**changes))
    load_strictly(model, ckpt.state_dict, str(ckpt.path))
    return model


def load_for_finetuning(model, ckpt) -> list[str]:
    return ckpt.family.load_for_finetuning(model, ckpt.state_dict, str(ckpt.path))


@pytest.fixture
def tiny():
    config = tiny_config()
    return config, build_detr(config).eval()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_release_layout_round_trips(tmp_path, tiny):
    config, model = tiny
    path = save_official(model, tmp_path / "detr-tiny.pth")
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["model"]
    ckpt = load_checkpoint(path)
    assert ckpt.source == "official"
    # The official layout does not record the head count; 8 is every official model's.
    assert ckpt.config.nheads == 8
    assert ckpt.config.replace(nheads=4, aux_loss=True, dropout=0.0) == config
    assert same_weights(build_from_checkpoint(ckpt), model)


def test_official_training_file_with_argparse_namespace_is_read(tmp_path, tiny):
    config, model = tiny
    args = argparse.Namespace(lr=1e-4, dilation=False, nheads=4, dropout=0.0, aux_loss=True, output_dir="out")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "lr_scheduler": {},
                "epoch": 7, "args": args}, path)  # fmt: skip
    ckpt = load_checkpoint(path)
    assert ckpt.source == "official-training"
    assert ckpt.family.name == "detr"
    assert ckpt.config == config
    assert same_weights(build_from_checkpoint(ckpt), model)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"model": {}, "payload": _RunsCode()}, fh)
    torch.save({"model": tiny[1].state_dict(), "payload": _RunsCode()}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load: not a weights-only"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"evil2\.pth: refused to load: .*\(posix\.system\)"):
        load_checkpoint(tmp_path / "evil2.pth")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_wrong_shapes_name_the_mismatched_keys(tmp_path, tiny):
    config, _ = tiny
    other = build_detr(config.replace(num_classes=9, num_queries=12))
    path = save_official(other, tmp_path / "other.pth")
    ckpt = load_checkpoint(path)
    ckpt.config = config  # pretend the file claims the tiny architecture
    with pytest.raises(CheckpointError) as err:
        build_from_checkpoint(ckpt)
    message = str(err.value)
    assert "other.pth" in message
    assert "class_embed.weight: checkpoint [10, 32] vs model [6, 32]" in message
    assert "query_embed.weight: checkpoint [12, 32] vs model [10, 32]" in message


def test_garbage_and_missing_files_get_clear_messages(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth: refused to load: not a weights-only"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="nothing.pth: no such file"):
        load_checkpoint(tmp_path / "nothing.pth")
    weird = tmp_path / "weird.pth"
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, weird)
    with pytest.raises(CheckpointError, match="weird.pth: not a checkpoint of any model family.*class_embed"):
        load_checkpoint(weird)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"{{{{")
    with pytest.raises(CheckpointError, match="bad.safetensors: not a readable safetensors file"):
        load_checkpoint(bad_st)


def test_our_format_keeps_config_class_names_and_provenance(tmp_path, tiny):
    config, model = tiny
    names = {1: "cat", 2: "dog", 4: "bird"}
    path = save_checkpoint(model, tmp_path / "run" / "best", config, names, {"epochs": 3, "base": "detr-r50"})
    assert path.name == "best.safetensors" and path.with_suffix(".json").exists()
    ckpt = load_checkpoint(path)
    assert ckpt.source == "detr-studio"
    assert ckpt.config == config
    assert ckpt.class_names == names
    assert ckpt.provenance == {"epochs": 3, "base": "detr-r50"}
    assert same_weights(build_from_checkpoint(ckpt), model)
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_config_is_inferred_from_shapes():
    config = tiny_config(position_embedding="learned", pre_norm=True, num_classes=12, dec_layers=3)
    hints = Hints(training_args={"nheads": 4, "aux_loss": True, "dropout": 0.0})
    inferred = recognise_official(build_detr(config).state_dict(), hints).config
    assert inferred == config


def test_head_reset_keeps_everything_but_the_classifier(tiny):
    _, model = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reset_class_head(model, num_classes=3)
    after = model.state_dict()
    assert after["class_embed.weight"].shape == (4, 32)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("class_embed"))


def test_finetuning_load_skips_only_the_class_head(tmp_path, tiny):
    config, model = tiny
    ckpt = load_checkpoint(save_official(model, tmp_path / "base.pth"))
    target = build_detr(config.replace(num_classes=3))
    fresh = load_for_finetuning(target, ckpt)
    assert fresh == ["class_embed.bias", "class_embed.weight"]
    assert torch.equal(target.state_dict()["query_embed.weight"], model.state_dict()["query_embed.weight"])
    bad = build_detr(config.replace(num_queries=4))
    with pytest.raises(CheckpointError, match="query_embed.weight"):
        load_for_finetuning(bad, ckpt)


def test_finetuning_a_detector_into_a_segmentation_model_keeps_the_mask_head_fresh(tmp_path):
    config = tiny_config(masks=True)
    detector = build_detr(config.replace(masks=False))
    ckpt = load_checkpoint(save_official(detector, tmp_path / "det.pth"))
    segm = build_detr(config)
    fresh = load_for_finetuning(segm, ckpt)
    assert all(k.startswith(("bbox_attention.", "mask_head.")) for k in fresh) and fresh
    assert torch.equal(segm.detr.query_embed.weight, detector.query_embed.weight)


def test_finetuning_boxes_from_a_segmentation_checkpoint_takes_its_detector(tmp_path):
    config = tiny_config(masks=True)
    segm = build_detr(config)
    ckpt = load_checkpoint(save_official(segm, tmp_path / "segm.pth"))
    detector = build_detr(config.replace(masks=False, num_classes=3))
    fresh = load_for_finetuning(detector, ckpt)
    assert fresh == ["class_embed.bias", "class_embed.weight"]
    assert torch.equal(detector.query_embed.weight, segm.detr.query_embed.weight)
    assert torch.equal(detector.backbone[0].body.conv1.weight, segm.detr.backbone[0].body.conv1.weight)


def test_hugging_face_files_are_read_and_written_back_in_the_official_layout(tmp_path):
    import json

    from safetensors.torch import save_file

    from tests.model_helpers import to_hf_config, to_hf_state_dict

    config = tiny_config(backbone="resnet50", num_classes=4)
    model = build_detr(config).eval()
    folder = tmp_path / "detr-hub"
    folder.mkdir()
    save_file(to_hf_state_dict(model.state_dict()), str(folder / "model.safetensors"))
    hf_config = to_hf_config(config, class_names={0: "N/A", 1: "cat", 2: "dog", 3: "cow", 4: "emu"})
    (folder / "config.json").write_text(json.dumps(hf_config))
    ckpt = load_checkpoint(folder)
    assert ckpt.source == "huggingface"
    assert ckpt.class_names[1] == "cat"
    assert same_weights(build_from_checkpoint(ckpt, aux_loss=True, dropout=0.0), model)
    official = load_checkpoint(save_official(build_from_checkpoint(ckpt), tmp_path / "back.pth"))
    assert official.source == "official"
    assert official.state_dict.keys() == model.state_dict().keys()


def test_a_checkpoint_is_predicted_at_the_input_size_it_was_trained_and_evaluated_at(tmp_path):
    from detr_studio.infer.predictor import Predictor
    from detr_studio.model.checkpoint import REFERENCE_INPUT_SIZE, provenance_input_size

    assert provenance_input_size({}) == REFERENCE_INPUT_SIZE == (800, 1333)
    assert provenance_input_size({"scales": [96, 112], "max_size": 128}) == (112, 128)
    assert provenance_input_size({"scales": [96, 112], "val_size": 100, "max_size": 128}) == (100, 128)
    assert provenance_input_size({"val_size": "big"}, default=(64, 64)) == (64, 64)
    config = tiny_config()
    weights = save_checkpoint(
        build_detr(config), tmp_path / "m", config, provenance={"val_size": 96, "max_size": 128}
    )
    predictor = Predictor.from_weights(weights, device="cpu")
    assert (predictor.size, predictor.max_size) == (96, 128)
    assert Predictor.from_weights(weights, device="cpu", size=200).size == 200  # asked for: kept
