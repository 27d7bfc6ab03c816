"""ONNX export, parity check and the ONNX Runtime backend, on tiny random models and small images."""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from torch import nn

from detr_studio import __version__
from detr_studio.commands import export as export_command
from detr_studio.infer import onnx_graphs
from detr_studio.infer.onnx_backend import CPU, CUDA, OnnxModelError, OnnxPredictor, provider_order
from detr_studio.infer.onnx_export import OnnxExportError, export_onnx
from detr_studio.infer.onnx_metadata import read_metadata
from detr_studio.infer.onnx_panoptic import split_panoptic
from detr_studio.infer.onnx_parity import FP16_ATOL, check_parity
from detr_studio.infer.predictor import Predictor
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.classes import default_is_thing_map
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.detr.panoptic import PostProcessPanoptic, panoptic_scores
from detr_studio.model.nested import nested_tensor_from_tensor_list

SAMPLE = (64, 96)  # export trace size (h, w); every check below uses other sizes and batch sizes
SIZE, MAX_SIZE = 96, 160  # small preprocessing so that predictions stay fast
NAMES = {1: "cat", 2: "dog", 3: "bird", 4: "boat"}


def _model(**changes) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    config = tiny_config(**changes)
    return build_detr(config).eval(), config


def _images(*sizes: tuple[int, int], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    model, config = _model()
    path = tmp_path_factory.mktemp("det") / "tiny.onnx"
    report = export_onnx(
        model,
        config,
        path,
        sample_size=SAMPLE,
        class_names=NAMES,
        source="tiny.pth",
        size=SIZE,
        max_size=MAX_SIZE,
    )
    return model, config, path, report


def _decisive_masks(model: nn.Module, config) -> None:
    """A random mask head gives every query almost the same mask (they differ by ~1e-5), so the
    per-pixel winner is a coin toss that float noise decides. Make the query-dependent attention
    dominate so that panoptic id maps can be compared between runtimes."""
    with torch.no_grad():
        model.mask_head.lay1.weight[:, config.hidden_dim :] *= 1000
        model.bbox_attention.q_linear.weight *= 10
        for adapter in (model.mask_head.adapter1, model.mask_head.adapter2, model.mask_head.adapter3):
            adapter.weight.zero_()
            adapter.bias.zero_()


@pytest.fixture(scope="module")
def panoptic(tmp_path_factory):
    model, config = _model(masks=True)
    _decisive_masks(model, config)
    path = tmp_path_factory.mktemp("pan") / "tiny_panoptic.onnx"
    report = export_onnx(model, config, path, panoptic=True, sample_size=SAMPLE, size=SIZE, max_size=MAX_SIZE)
    return model, config, path, report


# ------------------------------------------------------------------------------------------------ export


def test_detection_export_matches_pytorch_for_another_batch_and_size(detection):
    model, _, path, report = detection
    assert path.is_file() and report.passed and report.exporter == "torchscript" and report.opset == 17
    assert report.parity[0].batch_size == 2  # the check after export used batch 2, the trace batch 1
    batch = nested_tensor_from_tensor_list(
        [torch.randn(3, 70, 90), torch.randn(3, 50, 110), torch.randn(3, 64, 64)]
    )
    parity = check_parity(path, model, batch)
    assert parity.passed
    assert parity.max_diff("pred_logits") < 1e-4 and parity.max_diff("pred_boxes") < 1e-4
    assert parity.top_class_agreement == 1.0
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["images"] == ["batch", "", "height", "width"] and dims["mask"] == ["batch", "height", "width"]


def test_parity_report_reads_as_text(detection):
    text = str(detection[3].parity[0])
    assert "PASSED" in text and "pred_logits" in text and "max |diff|" in text and "top class agrees" in text
    assert "exported" in str(detection[3])


def test_panoptic_export_matches_pytorch_masks(panoptic):
    model, _, path, report = panoptic
    assert report.passed and report.task == "panoptic"
    batch = nested_tensor_from_tensor_list([torch.randn(3, 72, 60), torch.randn(3, 40, 88)])
    parity = check_parity(path, model, batch)
    assert [d.name for d in parity.outputs] == ["pred_logits", "pred_boxes", "pred_masks"]
    assert parity.passed and parity.max_diff("pred_masks") < 1e-4 * max(1.0, parity.outputs[2].scale)


def test_metadata_round_trip(detection):
    _, config, path, _ = detection
    meta = read_metadata(path)
    assert meta.config == config and meta.num_classes == config.num_classes
    assert meta.class_names == NAMES
    assert (meta.task, meta.precision, meta.source, meta.version) == (
        "detection",
        "fp32",
        "tiny.pth",
        __version__,
    )
    assert (meta.size, meta.max_size) == (SIZE, MAX_SIZE)
    assert meta.mean == (0.485, 0.456, 0.406) and meta.std == (0.229, 0.224, 0.225)
    assert meta.sample_shape == (1, 3, *SAMPLE)


def test_failed_parity_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    model, config = _model()
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous export")
    original = onnx_graphs.trace

    class Shifted(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images, mask):
            logits, boxes = self.inner(images, mask)
            return logits + 0.01, boxes

    monkeypatch.setattr(onnx_graphs, "trace", lambda graph, *rest: original(Shifted(graph), *rest))
    with pytest.raises(OnnxExportError, match="does not match PyTorch") as info:
        export_onnx(model, config, target, sample_size=SAMPLE)
    assert "pred_logits" in str(info.value) and "TOO LARGE" in str(info.value)
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_fp16_export_matches_within_the_fp16_tolerance(tmp_path):
    model, config = _model()
    report = export_onnx(model, config, tmp_path / "half.onnx", fp16=True, sample_size=SAMPLE)
    parity = report.parity[0]
    assert report.passed and parity.atol == FP16_ATOL and read_metadata(report.path).precision == "fp16"
    graph = onnx.load(str(report.path)).graph
    weights = [t for t in graph.initializer if len(t.dims) >= 2]
    assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights)
    producers = {out: node for node in graph.node for out in node.output}

    def fed_fp32(node) -> bool:
        source = producers.get(node.input[0])
        return source is not None and source.op_type == "Cast" and source.attribute[0].i == TensorProto.FLOAT

    for kind in ("LayerNormalization", "Softmax"):  # both run in fp32 inside the fp16 graph
        nodes = [n for n in graph.node if n.op_type == kind]
        assert nodes and all(fed_fp32(n) for n in nodes), kind


def test_panoptic_export_of_a_detection_model_is_refused(tmp_path):
    model, config = _model()
    with pytest.raises(OnnxExportError, match="mask head"):
        export_onnx(model, config, tmp_path / "x.onnx", panoptic=True)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ backend


def test_onnx_predictor_gives_the_same_detections_as_predictor(detection):
    model, config, path, _ = detection
    images = _images((120, 90), (70, 140), (100, 100))
    ours = OnnxPredictor(path, providers="cpu").predict(images)
    theirs = Predictor(model, config, size=SIZE, max_size=MAX_SIZE).predict(images)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert a.image_size == b.image_size
        assert np.abs(a.boxes - b.boxes).max() < 1e-4  # pixels
        assert np.abs(a.scores - b.scores).max() < 1e-4 and np.abs(a.probs - b.probs).max() < 1e-4
        assert (a.labels == b.labels).all() and (a.query_ids == b.query_ids).all()


def test_onnx_predictor_has_the_predictor_interface(detection, tmp_path):
    _, config, path, _ = detection
    predictor = OnnxPredictor(path, providers="cpu")
    assert predictor.provider == CPU and predictor.provider_note == ""
    assert predictor.description.startswith("onnxruntime CPU fp32")
    assert predictor.config == config and predictor.class_names == NAMES and not predictor.supports_masks
    assert predictor.resized_size(200, 100) == (80, MAX_SIZE)  # the longer side capped at max_size
    good = tmp_path / "a.png"
    _images((50, 60))[0].save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not an image")
    results = dict(predictor.predict_files([good, bad], batch_size=2))
    assert len(results[good]) == config.num_queries and isinstance(results[bad], Exception)


def test_onnx_panoptic_results_match_predictor(panoptic):
    model, config, path, _ = panoptic
    images = _images((90, 70), (60, 100), seed=3)
    ours = OnnxPredictor(path, providers="cpu", panoptic_threshold=0.0).predict(images, panoptic=True)
    theirs = Predictor(model, config, size=SIZE, max_size=MAX_SIZE, panoptic_threshold=0.0).predict(
        images, panoptic=True
    )
    for a, b in zip(ours, theirs):
        assert a.panoptic is not None and b.panoptic is not None
        assert [s["category_id"] for s in a.panoptic.segments_info] == [
            s["category_id"] for s in b.panoptic.segments_info
        ]
        assert a.panoptic.ids.shape == b.panoptic.ids.shape == a.image_size
        assert (a.panoptic.ids == b.panoptic.ids).mean() > 0.999


def _whole_file(path, images) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The reference's way with an ONNX file: masks of every query from the whole graph.
    -> (logits [B, Q, C+1], masks [B, Q, H/4, W/4], the prepared images)."""
    prepared = [OnnxPredictor(path, providers="cpu")._prepare(img) for img in images]
    batch = nested_tensor_from_tensor_list([p.tensor for p in prepared])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, _, masks = session.run(None, {"images": batch.tensors.numpy(), "mask": batch.mask.numpy()})
    return torch.from_numpy(logits), torch.from_numpy(masks), prepared


def test_panoptic_file_splits_into_parts_that_reproduce_it(panoptic):
    _, _, path, _ = panoptic
    assert read_metadata(path).splits_for_kept_queries
    features, head = (
        ort.InferenceSession(part.SerializeToString(), providers=["CPUExecutionProvider"])
        for part in split_panoptic(onnx.load(str(path)))
    )
    whole = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = nested_tensor_from_tensor_list([torch.randn(3, 70, 90), torch.randn(3, 50, 110)])
    feed = {"images": batch.tensors.numpy(), "mask": batch.mask.numpy()}
    logits, boxes, masks = whole.run(None, feed)  # masks [B, Q, H/4, W/4]
    parts = dict(zip([o.name for o in features.get_outputs()], features.run(None, feed)))
    assert np.array_equal(parts["pred_logits"], logits) and np.array_equal(parts["pred_boxes"], boxes)
    attention = parts["mask_attention"]  # [B, Q, heads, h, w]
    b, q = attention.shape[:2]
    head_feed = {k: parts[k] for k in ("mask_projected", "mask_fpn1", "mask_fpn2", "mask_fpn3")}
    rows = attention.reshape(b * q, *attention.shape[2:])
    every = head.run(None, {**head_feed, "mask_rows": rows, "mask_row_image": np.repeat(np.arange(b), q)})[0]
    assert np.array_equal(every.reshape(masks.shape), masks)
    some = [1, 4, q + 2, 2 * q - 1]  # rows of both images
    chosen = head.run(None, {**head_feed, "mask_rows": rows[some], "mask_row_image": np.array(some) // q})[0]
    assert np.array_equal(chosen, every[some])


def test_kept_queries_panoptic_is_byte_identical_to_the_whole_file(panoptic):
    _, config, path, _ = panoptic
    images = _images((90, 70), (60, 100), seed=5)
    logits, masks, prepared = _whole_file(path, images)
    scores, classes = panoptic_scores(logits)  # [B, Q]
    real = classes != config.num_classes
    # the lower of the images' median scores: each image keeps queries, and some are dropped
    threshold = min(float(scores[i][real[i]].median()) for i in range(len(images)))
    keep = real & (scores > threshold)
    assert (keep.sum(1) > 0).all() and keep.sum() < keep.numel()
    post = PostProcessPanoptic.for_model(
        default_is_thing_map(config.num_classes), threshold
    )  # as the backend
    reference = post(
        {"pred_logits": logits, "pred_masks": masks},
        [p.tensor.shape[-2:] for p in prepared],
        [p.original for p in prepared],
    )
    assert all(r["segments_info"] for r in reference)
    ours = OnnxPredictor(path, providers="cpu", panoptic_threshold=threshold).predict(images, panoptic=True)
    for dets, ref in zip(ours, reference):
        assert dets.panoptic.png == ref["png_string"]
        assert dets.panoptic.segments_info == ref["segments_info"]


def test_older_panoptic_files_without_the_split_run_whole(panoptic, tmp_path):
    _, _, path, _ = panoptic
    proto = onnx.load(str(path))
    props = [p for p in proto.metadata_props if p.key != "detr_studio.mask_head"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    older = tmp_path / "older.onnx"
    onnx.save(proto, str(older))
    images = _images((80, 64), seed=2)
    whole = OnnxPredictor(older, providers="cpu", panoptic_threshold=0.0)
    split = OnnxPredictor(path, providers="cpu", panoptic_threshold=0.0)
    assert whole.mask_session is None and split.mask_session is not None
    a, b = whole.predict(images, panoptic=True)[0], split.predict(images, panoptic=True)[0]
    assert a.panoptic.png == b.panoptic.png and a.panoptic.segments_info == b.panoptic.segments_info
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.boxes, b.boxes)
    detections = split.predict(images)[0]  # detection only: the first part alone
    assert detections.panoptic is None and np.array_equal(detections.probs, b.probs)


def test_attention_and_panoptic_requests_are_refused_clearly(detection):
    predictor = OnnxPredictor(detection[2], providers="cpu")
    with pytest.raises(ValueError, match="attention maps are not available from an ONNX model"):
        predictor.predict(_images((40, 40)), attention=True)
    with pytest.raises(ValueError, match="mask head"):
        predictor.predict(_images((40, 40)), panoptic=True)


def test_cuda_request_reports_what_runs_and_why(detection):
    predictor = OnnxPredictor(detection[2], providers="cuda")
    assert predictor.provider == predictor.providers[0]
    if predictor.provider != CUDA:
        assert (
            predictor.provider_note.startswith("CUDA is not used:")
            and predictor.provider_note in predictor.description
        )
    assert provider_order("cpu") == [CPU] and provider_order("cuda") == [CUDA, CPU]
    with pytest.raises(ValueError, match="providers must be one of"):
        provider_order("gpu")


def test_corrupt_onnx_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    with pytest.raises(OnnxModelError, match=r"broken\.onnx: not a readable ONNX model"):
        OnnxPredictor(path, providers="cpu")
    with pytest.raises(OnnxModelError, match="no such file"):
        OnnxPredictor(tmp_path / "missing.onnx", providers="cpu")


def test_non_detr_onnx_model_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "other", [x], [y])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    with pytest.raises(OnnxModelError, match=r"other\.onnx: not a DETR Studio ONNX model.*inputs \['x'\]"):
        OnnxPredictor(path, providers="cpu")


def test_model_without_metadata_is_refused(detection, tmp_path):
    proto = onnx.load(str(detection[2]))
    del proto.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(OnnxModelError, match=r"bare\.onnx: the ONNX model lacks DETR Studio metadata"):
        OnnxPredictor(path, providers="cpu")


# ------------------------------------------------------------------------------------------------ command


def test_export_command_writes_a_checked_model(tmp_path, capsys):
    model, config = _model()
    weights = save_checkpoint(model, tmp_path / "tiny.safetensors", config, class_names=NAMES)
    image = tmp_path / "photo.png"
    _images((60, 80))[0].save(image)
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    out = tmp_path / "tiny.onnx"
    args = parser.parse_args(
        [
            "export",
            "--weights",
            str(weights),
            "-o",
            str(out),
            "--check",
            str(image),
            "--size",
            "64",
            "--max-size",
            "100",
        ]
    )
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("ONNX parity PASSED") == 2 and "real image(s)" in printed
    meta = read_metadata(out)
    assert meta.class_names == NAMES and meta.source.endswith("tiny.safetensors") and meta.size == 64
