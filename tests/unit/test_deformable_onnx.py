"""Deformable DETR exported to ONNX once (``export_onnx``: the family's graph, the parity check at another
batch and size), then run by ONNX Runtime at two other batches and sizes: the graph has no size baked in
(GridSample at opset 17, shapes read from tensors)."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch

from detr_studio.infer.onnx_export import export_onnx
from detr_studio.infer.onnx_metadata import read_metadata
from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.deformable_detr.detector import build_deformable_detr
from detr_studio.model.nested import NestedTensor

TOLERANCE = 1e-4


def _batch(b: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, h, w, generator=g)
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    if b > 1:
        mask[-1, h - h // 3 :, :] = True
        mask[-1, :, w - w // 4 :] = True
        images[-1][:, mask[-1]] = 0
    return images, mask


@pytest.mark.parametrize(
    "flags", [{"num_feature_levels": 1}, {}, {"with_box_refine": True, "two_stage": True}]
)
def test_exported_at_one_size_runs_at_others(flags, tmp_path):
    torch.manual_seed(0)
    model = build_deformable_detr(tiny_deformable_config(**flags)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # offsets and attention weights start at zero weight
    config = tiny_deformable_config(**flags)
    path = tmp_path / "deformable.onnx"
    report = export_onnx(model, config, path, sample_size=(96, 128), class_names={1: "a"})
    assert report.passed and report.exporter == "torchscript"
    (parity,) = report.parity
    assert parity.batch_size == 2 and all(size != (96, 128) for size in parity.sizes)
    assert parity.max_diff("pred_logits") <= TOLERANCE
    meta = read_metadata(path)
    assert meta.family.name == "deformable_detr" and meta.config == config
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    levels = model.num_feature_levels
    assert ops.count("GridSample") == levels * 4  # one per level in each of 2 encoder + 2 decoder layers
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, h, w, seed in [(2, 80, 112, 2), (3, 128, 96, 3)]:
        images, mask = _batch(b, h, w, seed)
        logits, boxes = session.run(None, {"images": images.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            ref = model(NestedTensor(images, mask))
        assert logits.shape == tuple(ref["pred_logits"].shape)
        assert (torch.from_numpy(logits) - ref["pred_logits"]).abs().max().item() <= TOLERANCE
        assert (torch.from_numpy(boxes) - ref["pred_boxes"]).abs().max().item() <= TOLERANCE
