"""The Predictor: preprocessing, batching, Detections, attention and panoptic results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.data.images import ImageReadError
from detr_studio.data.preprocess import resized_size
from detr_studio.infer.predictor import Predictor
from detr_studio.model.box_ops import box_cxcywh_to_xyxy
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.nested import nested_tensor_from_tensor_list


def random_image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(1)
    config = tiny_config()
    return Predictor(build_detr(config), config, device="cpu", size=96, max_size=160)


@pytest.mark.parametrize(
    ("w", "h", "expected"),
    [
        (640, 480, (800, 1066)),
        (480, 640, (1066, 800)),
        (2000, 500, (333, 1332)),
        (800, 600, (800, 1066)),
        (1066, 800, (800, 1066)),
        (300, 300, (800, 800)),
    ],
)
def test_resize_follows_the_reference_rounding(w, h, expected):
    assert resized_size(w, h) == expected


def test_detections_match_the_raw_network_output(detector):
    img = random_image(150, 100, 0)
    dets = detector.predict([img])[0]
    tensor = detector._prepare(img).tensor
    with torch.no_grad():
        out = detector.model([tensor])
    probs = out["pred_logits"][0].softmax(-1)
    scores, labels = probs[:, :-1].max(-1)
    boxes = box_cxcywh_to_xyxy(out["pred_boxes"][0]) * torch.tensor([150, 100, 150, 100])
    assert dets.image_size == (100, 150)
    np.testing.assert_allclose(dets.scores, scores.numpy(), atol=1e-6)
    np.testing.assert_array_equal(dets.labels, labels.numpy())
    np.testing.assert_allclose(dets.boxes, boxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(dets.probs.sum(1), 1.0, atol=1e-5)
    assert list(dets.query_ids) == list(range(10))


def test_a_batch_of_same_size_images_gives_what_single_images_give(detector):
    # With mixed sizes, padding changes what the backbone sees: DETR itself is batch-dependent then.
    images = [random_image(150, 100, 1), random_image(150, 100, 2), random_image(150, 100, 3)]
    batched = detector.predict(images)
    for img, dets in zip(images, batched):
        alone = detector.predict([img])[0]
        np.testing.assert_allclose(dets.scores, alone.scores, atol=1e-5)
        np.testing.assert_allclose(dets.boxes, alone.boxes, atol=1e-3)


def test_threshold_is_a_view_that_keeps_query_ids(detector):
    dets = detector.predict([random_image(120, 90, 4)])[0]
    cut = float(np.median(dets.scores))
    above = dets.above(cut)
    assert 0 < len(above) < len(dets)
    assert set(above.query_ids) == {q for q, s in zip(dets.query_ids, dets.scores) if s > cut}
    assert list(above.sorted().scores) == sorted(above.scores, reverse=True)
    top = dets.top_classes(0, k=2)
    assert top[0][1] >= top[1][1] and top[0][0] == dets.labels[0]


def test_unreadable_file_names_the_file_and_the_batch_goes_on(detector, tmp_path):
    good = tmp_path / "good.png"
    random_image(64, 48, 5).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    outcomes = list(detector.predict_files([bad, good, tmp_path / "missing.png", good], batch_size=2))
    assert [p.name for p, _ in outcomes] == ["broken.jpg", "missing.png", "good.png", "good.png"]
    errors = [o for _, o in outcomes if isinstance(o, ImageReadError)]
    assert "broken.jpg" in str(errors[0]) and "missing.png" in str(errors[1])
    assert all(len(o) == 10 for _, o in outcomes[2:])


def test_attention_maps_cover_each_image_and_sum_to_one(detector):
    images = [random_image(150, 100, 6), random_image(90, 120, 7)]
    alone = detector.predict(images[:1], attention=True)[0].attention
    h_in, w_in = resized_size(150, 100, 96, 160)
    assert alone.feature_size == (-(-h_in // 32), -(-w_in // 32))
    for img, dets in zip(images, detector.predict(images, attention=True)):
        att = dets.attention
        fh, fw = att.feature_size
        assert att.decoder.shape == (4, 10, fh, fw)
        # Each image attends only to its own (unpadded) cells, so its cropped maps still sum to 1.
        np.testing.assert_allclose(att.decoder_map(3).sum(), 1.0, atol=2e-3)
        np.testing.assert_allclose(att.decoder_map(3, head=1).sum(), 1.0, atol=2e-3)
        np.testing.assert_allclose(att.encoder_map(img.width - 1, img.height - 1).sum(), 1.0, atol=2e-3)
        assert att.cell_at(0, 0) == (0, 0)
        row, col = att.cell_at(img.width - 1, img.height - 1)
        assert fh - 2 <= row < fh and fw - 2 <= col < fw
        assert att.encoder_map(0, 0, direction="to").shape == (fh, fw)
    # Recording is switched off again afterwards.
    assert detector.predict([images[0]])[0].attention is None


def test_bf16_autocast_runs_and_roughly_agrees(detector):
    config = detector.config
    fast = Predictor(
        detector.model, config, device="cpu", precision="bf16", channels_last=True, size=96, max_size=160
    )
    img = random_image(150, 100, 8)
    a = detector.predict([img])[0]
    b = fast.predict([img])[0]
    detector.model.to(memory_format=torch.contiguous_format)
    assert b.scores.dtype == np.float32
    assert np.abs(a.probs - b.probs).max() < 0.1


def test_fp16_on_cpu_is_refused_with_a_clear_message(detector):
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        Predictor(detector.model, detector.config, device="cpu", precision="fp16")


def test_panoptic_keeps_only_confident_queries_and_matches_the_full_path():
    torch.manual_seed(3)
    config = tiny_config(masks=True, num_classes=250)
    model = build_detr(config).eval()
    predictor = Predictor(model, config, device="cpu", size=96, max_size=160, panoptic_threshold=0.0)
    images = [random_image(150, 100, 9), random_image(90, 120, 10)]
    fast = predictor.predict(images, panoptic=True)
    tensors = [predictor._prepare(img).tensor for img in images]
    with torch.no_grad():
        full = model(nested_tensor_from_tensor_list(tensors))
    reference = predictor.panoptic(full, [t.shape[-2:] for t in tensors], [(100, 150), (120, 90)])
    for dets, ref in zip(fast, reference):
        assert dets.panoptic.png == ref["png_string"]
        assert dets.panoptic.segments_info == ref["segments_info"]
        assert dets.panoptic.ids.shape == dets.image_size
        ids_present = set(np.unique(dets.panoptic.ids).tolist())
        assert ids_present == {s["id"] for s in ref["segments_info"]} or not ref["segments_info"]


def test_panoptic_without_a_mask_head_is_refused(detector):
    with pytest.raises(ValueError, match="mask head"):
        detector.predict([random_image(64, 64, 11)], panoptic=True)
