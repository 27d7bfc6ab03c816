"""The model-family seam: the registry, the family recorded in every file we write, the one load pipeline,
the one DETR decode, and the validated configs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from detr_studio.infer.predictor import Predictor
from detr_studio.model import zoo
from detr_studio.model.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from detr_studio.model.config_fields import ConfigError
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig, tiny_config
from detr_studio.model.detr.family import DETR_FAMILY
from detr_studio.model.detr.onnx import PanopticFeatures
from detr_studio.model.loading import load_model
from detr_studio.model.nested import nested_tensor_from_tensor_list
from detr_studio.model.registry import UnknownFamilyError, family_of
from detr_studio.model.sources import demo_weights


def test_families_are_found_by_name_and_an_unknown_name_lists_the_known_ones():
    assert family_of("detr") is DETR_FAMILY
    assert DETR_FAMILY.config_type is DetrConfig and DetrConfig.family_name == "detr"
    with pytest.raises(UnknownFamilyError, match=r"unknown model family 'yolo'.*knows: detr"):
        family_of("yolo")


def test_our_sidecar_records_the_family_and_the_input_size(tmp_path):
    config = tiny_config()
    weights = save_checkpoint(
        build_detr(config), tmp_path / "best", config, {1: "cat"}, {"val_size": 64}, input_size=(96, 128)
    )
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert (meta["format"], meta["version"], meta["family"]) == ("detr-studio", FORMAT_VERSION, "detr")
    assert meta["input_size"] == {"size": 96, "max_size": 128}
    ckpt = load_checkpoint(weights)
    assert ckpt.family is DETR_FAMILY and ckpt.config == config
    assert ckpt.trained_input_size() == (96, 128)  # recorded beats the provenance's 64


def test_format_1_sidecars_still_load_as_detr_with_sizes_from_their_provenance(tmp_path):
    demo = load_checkpoint(demo_weights())  # resources/demo/model.json is a format-1 sidecar
    assert json.loads(demo_weights().with_suffix(".json").read_text())["version"] == 1
    assert demo.family is DETR_FAMILY and demo.trained_input_size() == (128, 128)
    config = tiny_config()
    weights = save_checkpoint(build_detr(config), tmp_path / "old", config, provenance={"val_size": 80})
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta.pop("family")
    meta["version"] = 1  # an old run folder's best.json
    weights.with_suffix(".json").write_text(json.dumps(meta))
    old = load_checkpoint(weights)
    assert old.family is DETR_FAMILY and old.trained_input_size() == (80, 1333)


def test_a_sidecar_of_an_unknown_family_or_format_is_refused_in_one_line(tmp_path):
    config = tiny_config()
    weights = save_checkpoint(build_detr(config), tmp_path / "m", config)
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "family": "yolo"}))
    with pytest.raises(CheckpointError, match=r"m\.safetensors: unknown model family 'yolo'"):
        load_checkpoint(weights)
    sidecar.write_text(json.dumps({**meta, "version": 3}))
    with pytest.raises(
        CheckpointError, match=r"m\.json: sidecar format 3; this version .* reads formats 1 and 2"
    ):
        load_checkpoint(weights)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("nheads", 0, "config.nheads must be an integer from 1 to 64, got 0"),
        ("enc_layers", "3", "config.enc_layers must be an integer from 0 to 48, got '3'"),
        ("enc_layers", None, "config.enc_layers must be an integer from 0 to 48, got null"),
        ("hidden_dim", "abc", "config.hidden_dim must be an integer from 1 to 4096, got 'abc'"),
        ("num_queries", 1e9, "config.num_queries must be an integer from 1 to 5000, got 1000000000.0"),
        ("num_queries", 10**9, "config.num_queries must be an integer from 1 to 5000, got 1000000000"),
        ("dropout", float("nan"), "config.dropout must be a number in [0.0, 1.0), got nan"),
        ("masks", 1, "config.masks must be true or false, got 1"),
        ("backbone", "vgg16", "config.backbone must be one of"),
    ],
)
def test_every_sidecar_config_field_is_checked_naming_the_file_and_the_field(tmp_path, field, value, problem):
    config = tiny_config()
    weights = save_checkpoint(build_detr(config), tmp_path / "m", config)
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["config"][field] = value
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(weights)
    message = str(err.value)
    assert message.startswith(f"{sidecar}: ") and problem in message and "\n" not in message


def test_bad_class_name_keys_are_refused_naming_the_key(tmp_path):
    config = tiny_config()
    weights = save_checkpoint(build_detr(config), tmp_path / "m", config)
    sidecar = weights.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["class_names"] = {"1": "cat", "dog": "dog"}
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m\.json: class_names key 'dog' is not a category id"):
        load_checkpoint(weights)


def test_cross_field_rules_name_the_field():
    with pytest.raises(ConfigError, match="hidden_dim 30 is not divisible by nheads 4"):
        tiny_config(hidden_dim=30)
    with pytest.raises(ConfigError, match="unknown fields: hiden_dim"):
        DetrConfig.from_dict({"hiden_dim": 256})


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("d_model", "abc", "d_model must be an integer from 1 to 4096, got 'abc'"),
        ("encoder_attention_heads", 0, "encoder_attention_heads must be an integer from 1 to 64, got 0"),
        ("encoder_layers", "3", "encoder_layers must be an integer from 0 to 48, got '3'"),
        ("num_queries", 1e9, "num_queries must be an integer from 1 to 5000"),
        ("num_labels", "many", "num_labels must be an integer"),
    ],
)
def test_every_hugging_face_config_value_is_checked_naming_config_json(tmp_path, key, value, problem):
    from tests.model_helpers import to_hf_config, to_hf_state_dict

    config = tiny_config(backbone="resnet50")
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(to_hf_state_dict(build_detr(config).state_dict()), str(folder / "model.safetensors"))
    hf_config = {**to_hf_config(config), key: value}
    (folder / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert str(err.value).startswith(f"{folder / 'config.json'}: ") and problem in str(err.value)


def test_weights_of_no_known_family_name_the_keys_that_did_not_fit(tmp_path):
    # A Deformable DETR-like layout: per-layer class heads and level embeddings, no DETR classifier.
    sd = {
        "transformer.level_embed": torch.zeros(4, 8),
        "class_embed.0.weight": torch.zeros(3, 8),
        "query_embed.weight": torch.zeros(5, 16),
    }
    path = tmp_path / "other.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "other.pth: not a checkpoint of any model family" in message
    assert "DETR: not a DETR state dict: no class_embed.weight" in message
    assert "as Hugging Face weights" in message


def test_a_detr_state_dict_whose_shapes_contradict_each_other_is_not_recognised(tmp_path):
    sd = build_detr(tiny_config()).state_dict()
    sd["transformer.decoder.layers.0.linear1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "broken.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match="linear1.weight: checkpoint \\[3, 3\\] vs model"):
        load_checkpoint(path)


def test_the_load_pipeline_gives_the_family_model_names_and_recorded_input_size():
    loaded = load_model("demo")
    assert loaded.family is DETR_FAMILY and loaded.name == "model.safetensors"
    assert loaded.input_size == (128, 128)
    assert loaded.class_names[1] == "circle"
    assert not loaded.model.training and not loaded.model.detr.aux_loss
    assert loaded.config.aux_loss  # the recorded config is kept; the network was built for inference
    # Every path through the pipeline uses the checkpoint's own input size, not 800.
    predictor = Predictor.from_weights("demo", device="cpu")
    assert (predictor.size, predictor.max_size) == (128, 128)
    assert Predictor.from_weights("demo", device="cpu", size=96).size == 96  # asked for: kept


def test_the_load_pipeline_reports_an_offline_zoo_name_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CheckpointError, match="could not reach 127.0.0.1"):
        load_model("detr-r50")
    with pytest.raises(CheckpointError, match="nonesuch: no such file, and not a model-zoo name"):
        load_model("nonesuch")


def test_zoo_entries_name_their_family_and_build_its_config():
    for entry in zoo.list_entries():
        config = entry.config()
        assert config.family_name == entry.family
        if entry.family == "detr":
            assert isinstance(config, DetrConfig)
            assert config.masks == (entry.task == "panoptic")


def test_one_decode_serves_detr_the_segmentation_wrapper_and_the_onnx_panoptic_graph():
    torch.manual_seed(0)
    segm = build_detr(tiny_config(masks=True)).eval()
    images = nested_tensor_from_tensor_list([torch.randn(3, 64, 80), torch.randn(3, 48, 64)])
    with torch.no_grad():
        detector = segm.detr(images)
        full = segm(images)
        features = PanopticFeatures(segm)(images.tensors, images.mask)
    for out in (full, {"pred_logits": features[0], "pred_boxes": features[1]}):
        torch.testing.assert_close(out["pred_logits"], detector["pred_logits"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["pred_boxes"], detector["pred_boxes"], atol=1e-5, rtol=1e-5)


def test_chunked_mask_rows_give_the_same_masks():
    torch.manual_seed(1)
    segm = build_detr(tiny_config(masks=True)).eval()
    images = nested_tensor_from_tensor_list([torch.randn(3, 64, 64)])
    with torch.no_grad():
        whole = segm(images)["pred_masks"]
        with DETR_FAMILY.chunked(segm, 3):
            assert segm.mask_chunk == 3
            pieces = segm(images)["pred_masks"]
    assert segm.mask_chunk == 0
    torch.testing.assert_close(pieces, whole)


def test_a_copied_run_folder_still_loads(tmp_path):
    shutil.copy(demo_weights(), tmp_path / "best.safetensors")
    shutil.copy(demo_weights().with_suffix(".json"), tmp_path / "best.json")
    assert load_checkpoint(tmp_path).family is DETR_FAMILY


def test_onnx_metadata_records_the_family_and_files_without_it_read_as_detr():
    from detr_studio.infer.onnx_metadata import META_PREFIX, OnnxMetadata

    meta = OnnxMetadata(config=tiny_config(), class_names={1: "cat"}, task="detection", precision="fp32")
    props = meta.to_props()
    assert props[META_PREFIX + "family"] == "detr"
    assert OnnxMetadata.from_props(props, "m.onnx").family is DETR_FAMILY
    older = {k: v for k, v in props.items() if k != META_PREFIX + "family"}
    assert OnnxMetadata.from_props(older, "old.onnx").config == tiny_config()
    with pytest.raises(ValueError, match=r"new\.onnx: unknown model family 'yolo'"):
        OnnxMetadata.from_props({**props, META_PREFIX + "family": "yolo"}, "new.onnx")
    bad = json.loads(props[META_PREFIX + "config"])
    bad["nheads"] = 0
    with pytest.raises(ValueError, match=r"bad\.onnx: detr_studio\.config\.nheads must be an integer"):
        OnnxMetadata.from_props({**props, META_PREFIX + "config": json.dumps(bad)}, "bad.onnx")


def test_hugging_face_weights_of_another_family_are_not_taken_for_detr(tmp_path):
    # Hugging Face Deformable DETR names its queries like DETR does, but has keys DETR has no place for.
    sd = {
        "model.query_position_embeddings.weight": torch.zeros(5, 16),
        "model.level_embed": torch.zeros(4, 8),
        "class_embed.0.weight": torch.zeros(3, 8),
    }
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "not a checkpoint of any model family" in message
    assert "DETR: cannot convert these Hugging Face weights" in message and "model.level_embed" in message
