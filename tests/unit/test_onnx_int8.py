"""int8 ONNX export (backbone convolutions static int8, feed-forward layers dynamic int8) and its detection check,
on a tiny random model whose class head is biased so that every query is a confident detection."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from torch import nn

from detr_studio.commands import export as export_command
from detr_studio.data.preprocess import prepare
from detr_studio.infer import quantize
from detr_studio.infer.onnx_backend import OnnxPredictor
from detr_studio.infer.onnx_export import OnnxExportError, export_onnx
from detr_studio.infer.onnx_metadata import OnnxMetadata, read_metadata
from detr_studio.infer.onnx_parity import INT8_MIN_AGREEMENT, check_parity
from detr_studio.infer.predictor import Predictor
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config

SAMPLE = (64, 96)
SIZE, MAX_SIZE = 96, 160
DETECTED_CLASS = 2


def _model(seed: int = 0) -> tuple[nn.Module, object]:
    """A tiny DETR whose queries all detect ``DETECTED_CLASS`` confidently; boxes still depend on the image."""
    torch.manual_seed(seed)
    config = tiny_config()
    model = build_detr(config).eval()
    with torch.no_grad():
        model.class_embed.bias[DETECTED_CLASS] += 8.0
    return model, config


def _images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(90, 120), (130, 100), (100, 100)]
    return [Image.fromarray(rng.integers(0, 256, (*sizes[k % 3], 3), dtype=np.uint8)) for k in range(count)]


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    model, config = _model()
    path = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    report = export_onnx(
        model,
        config,
        path,
        int8=True,
        calibration=_images(2),
        sample_size=SAMPLE,
        size=SIZE,
        max_size=MAX_SIZE,
    )
    return model, config, path, report


def test_int8_export_quantises_the_backbone_convolutions_and_feed_forward_layers(int8_export):
    _, config, path, report = int8_export
    assert report.passed and report.precision == "int8" and path.is_file()
    meta = read_metadata(path)
    assert meta.precision == "int8" and meta.config == config
    described = json.loads(meta.quantization)
    assert (
        described["quantized"] == "backbone convolutions" and described["calibration"] == "2 given image(s)"
    )
    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    int8_weights = [name for name, w in weights.items() if w.dtype == np.int8 and w.ndim == 4]
    assert len(int8_weights) == described["nodes"] > 0
    assert all("backbone" in name for name in int8_weights)
    # linear1 and linear2 of every encoder and decoder layer: int8 weights, activations quantised at run time
    layers = config.enc_layers + config.dec_layers
    assert described["feed_forward_layers"] == 2 * layers
    assert sum(w.dtype == np.int8 and w.ndim == 2 for w in weights.values()) == 2 * layers
    assert sum(node.op_type == "DynamicQuantizeLinear" for node in graph.node) == 2 * layers
    # the input projection and every transformer / head weight stay float32
    assert [
        name for name, w in weights.items() if "input_proj" in name and w.dtype == np.float32 and w.ndim == 4
    ]
    assert not any("transformer" in name or "embed" in name for name in int8_weights)


def test_int8_report_shows_agreement_on_the_calibration_images(int8_export):
    _, _, _, report = int8_export
    (parity,) = report.parity
    assert parity.label == "calibration" and parity.batch_size == 2
    assert parity.sizes == ((SIZE, 128), (124, SIZE))  # two sizes padded into one batch
    assert parity.min_agreement == INT8_MIN_AGREEMENT
    assert parity.torch_detections > 0 and parity.detection_agreement >= INT8_MIN_AGREEMENT
    assert parity.kept_class_agreement == 1.0 and parity.max_kept_box_diff < 0.01
    assert 0 < parity.max_diff("pred_logits") < 1.0  # int8 changes the numbers, a little
    text = str(report)
    assert "int8: " in text and "calibrated on 2 given image(s)" in text and "feed-forward" in text
    assert "not judged for int8" in text and "90% needed" in text and "largest box difference" in text


def test_int8_parity_fails_when_detections_disagree(int8_export):
    _, _, path, _ = int8_export
    other, _ = _model(seed=5)  # same class bias, other weights: the boxes move
    parity = check_parity(path, other, _images(2, seed=3), batch_size=2)
    assert parity.torch_detections > 0 and parity.detection_agreement < INT8_MIN_AGREEMENT
    assert not parity.passed and "FAILED" in str(parity)


def test_onnx_predictor_runs_the_int8_file_with_the_same_detections(int8_export):
    model, config, path, _ = int8_export
    images = _images(3, seed=7)
    ours = OnnxPredictor(path, providers="cpu")
    assert ours.precision == "int8" and "int8" in ours.description
    theirs = Predictor(model, config, size=SIZE, max_size=MAX_SIZE)
    for a, b in zip(ours.predict(images), theirs.predict(images)):
        kept = b.scores > 0.5
        assert kept.sum() > 0
        assert (a.labels[kept] == b.labels[kept]).all()
        assert np.abs(a.boxes[kept] - b.boxes[kept]).max() < 0.01 * max(a.image_size)


def test_a_quantisation_that_loses_detections_is_not_written(tmp_path, monkeypatch):
    model, config = _model()
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous export")
    real = quantize.quantize_int8

    def damaged(fp32_path, out_path, *args, **kwargs):
        info = real(fp32_path, out_path, *args, **kwargs)
        proto = onnx.load(str(out_path))
        weights = {t.name: t for t in proto.graph.initializer}
        int8 = {name for name, t in weights.items() if numpy_helper.to_array(t).dtype == np.int8}
        for node in proto.graph.node:  # quadruple every dequantised backbone weight
            if node.op_type == "DequantizeLinear" and node.input[0] in int8:
                scale = weights[node.input[1]]
                scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 4, scale.name))
        onnx.save(proto, str(out_path))
        return info

    monkeypatch.setattr(quantize, "quantize_int8", damaged)
    with pytest.raises(OnnxExportError, match="does not match PyTorch") as info:
        export_onnx(model, config, target, int8=True, calibration=_images(1), sample_size=SAMPLE, size=SIZE)
    assert "int8" in str(info.value) and "FAILED" in str(info.value)
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_calibration_reader_feeds_our_preprocessing_one_image_at_a_time(tmp_path):
    images = _images(2)
    path = tmp_path / "photo.png"
    images[1].save(path)
    reader = quantize.CalibrationImages([images[0], path], SIZE, MAX_SIZE)
    first, second = reader.get_next(), reader.get_next()
    assert reader.get_next() is None and len(reader) == 2
    expected = prepare(images[0], SIZE, MAX_SIZE).numpy()
    assert first["images"].shape == (1, *expected.shape) and np.array_equal(first["images"][0], expected)
    assert first["mask"].dtype == bool and not first["mask"].any()
    assert second["images"].shape[-2:] == prepare(images[1], SIZE, MAX_SIZE).shape[-2:]
    reader.rewind()
    assert np.array_equal(reader.get_next()["images"], first["images"])
    with pytest.raises(quantize.QuantizationError, match="at least one image"):
        quantize.CalibrationImages([], SIZE, MAX_SIZE)


def test_synthetic_calibration_images_are_repeatable():
    a, b = quantize.synthetic_calibration_images(2), quantize.synthetic_calibration_images(2)
    assert len(a) == 2 and all(img.mode == "RGB" and max(img.size) == quantize.SYNTHETIC_SIDE for img in a)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_int8_requests_that_cannot_work_are_refused(tmp_path):
    model, config = _model()
    with pytest.raises(ValueError, match="fp16"):
        export_onnx(model, config, tmp_path / "a.onnx", int8=True, fp16=True)
    with pytest.raises(ValueError, match="only used by int8"):
        export_onnx(model, config, tmp_path / "b.onnx", calibration=_images(1))
    pan_config = tiny_config(masks=True)
    with pytest.raises(OnnxExportError, match="int8 export is for detection models"):
        export_onnx(build_detr(pan_config).eval(), pan_config, tmp_path / "c.onnx", panoptic=True, int8=True)
    assert not list(tmp_path.iterdir())
    props = OnnxMetadata(config=config, class_names={}, task="detection", precision="fp32").to_props()
    props["detr_studio.precision"] = "int4"
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        OnnxMetadata.from_props(props, "x.onnx")


def test_export_command_writes_an_int8_model(tmp_path, capsys):
    model, config = _model()
    weights = save_checkpoint(model, tmp_path / "tiny.safetensors", config)
    image = tmp_path / "photo.png"
    _images(1)[0].save(image)
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    out = tmp_path / "tiny.onnx"
    common = ["export", "--weights", str(weights), "-o", str(out), "--size", "64", "--max-size", "100"]
    options = ["--int8", "--int8-backbone-only", "--calibration", str(image), "--check", str(image)]
    args = parser.parse_args([*common, *options])
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "int8" in printed and printed.count("ONNX parity PASSED") == 2  # calibration and --check images
    assert "1 calibration image(s)" in printed and "1 real image(s)" in printed
    meta = read_metadata(out)
    assert meta.precision == "int8" and json.loads(meta.quantization)["feed_forward_layers"] == 0
    with pytest.raises(
        export_command.CommandError, match="--calibration and --int8-backbone-only need --int8"
    ):
        args = parser.parse_args([*common, "--calibration", str(image)])
        args.run(args)
