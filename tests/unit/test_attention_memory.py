"""Memory that never runs away: the encoder attention of a probed cell is computed on demand (equal to what
the layer computed), nothing of size cells × cells is kept, and a forward past the memory budget runs in
pieces that give the same detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.infer.memory import plan_forward
from detr_studio.infer.predictor import Predictor
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.model.detr.family import DETR_FAMILY


def picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(2)
    config = tiny_config()
    return Predictor(build_detr(config), config, device="cpu", size=96, max_size=160, fold_batchnorm=False)


def layer_attention(predictor: Predictor, image: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """The last encoder layer's own per-head weights [heads, HW, HW] for one image, asked of PyTorch."""
    layer = predictor.model.transformer.encoder.layers[-1]
    seen = {}

    def grab(module, args):
        src, mask, pos = args
        qk = src + pos
        seen["weights"] = module.self_attn(
            qk, qk, src, key_padding_mask=mask, need_weights=True, average_attn_weights=False
        )[1]

    hook = layer.register_forward_pre_hook(grab)
    try:
        dets = predictor.predict([image], attention=True)[0]
    finally:
        hook.remove()
    return seen["weights"][0].numpy(), dets.attention.feature_size


def test_the_probed_encoder_attention_equals_what_the_layer_computed(predictor):
    image = picture(150, 100, 0)
    weights, (h, w) = layer_attention(predictor, image)  # a single image: no padding, HW = h * w
    maps = predictor.predict([image], attention=True)[0].attention
    scale_y, scale_x = maps.scale
    for row, col in ((0, 0), (h - 1, w - 1), (1, 2)):
        x, y = (col * maps.stride + 1) * scale_x, (row * maps.stride + 1) * scale_y
        cell = row * w + col
        for head in range(weights.shape[0]):
            expected_from = weights[head, cell].reshape(h, w)
            expected_to = weights[head, :, cell].reshape(h, w)
            np.testing.assert_allclose(maps.encoder_map(x, y, head), expected_from, atol=1e-5)
            np.testing.assert_allclose(maps.encoder_map(x, y, head, direction="to"), expected_to, atol=1e-5)


def test_nothing_of_size_cells_squared_is_kept_per_image(predictor):
    wide = Predictor(
        predictor.model, predictor.config, device="cpu", size=256, max_size=1024, fold_batchnorm=False
    )
    small = wide.predict([picture(96, 96, 1)], attention=True)[0].attention  # 8 x 8 cells
    large = wide.predict([picture(384, 96, 2)], attention=True)[0].attention  # 8 x 32 cells
    cells = [int(np.prod(m.feature_size)) for m in (small, large)]
    heads = small.decoder.shape[0]
    assert large.nbytes < heads * cells[1] ** 2 * 2  # less than one fp16 copy of the full encoder map
    growth, cell_growth = large.nbytes / small.nbytes, cells[1] / cells[0]
    assert growth == pytest.approx(cell_growth, rel=0.05)  # linear in the cells, not quadratic


def test_the_estimate_grows_with_the_batch_the_area_and_the_mask_rows():
    config = tiny_config(masks=True)
    one = DETR_FAMILY.estimate_peak_bytes(config, 1, 256, 256).total
    assert DETR_FAMILY.estimate_peak_bytes(config, 4, 256, 256).total == 4 * one
    assert DETR_FAMILY.estimate_peak_bytes(config, 1, 512, 512).total > 3 * one
    assert DETR_FAMILY.estimate_peak_bytes(config, 1, 256, 256, mask_rows=10).total > one


def test_a_batch_past_the_budget_runs_in_smaller_batches_with_the_same_detections(predictor):
    images = [picture(120, 90, s) for s in range(4)]
    whole = predictor.predict(images)
    one = plan_forward(DETR_FAMILY, predictor.config, [(96, 128)], None).estimate
    tight = Predictor(
        predictor.model, predictor.config, device="cpu", size=96, max_size=160, fold_batchnorm=False,
        memory_budget=int(one * 1.5),
    )  # fmt: skip
    split = tight.predict(images)
    assert tight.last_plan.batches == ((0,), (1,), (2,), (3,))
    assert "above the memory budget" in tight.last_plan.note and "1 image at a time" in tight.last_plan.note
    for a, b in zip(whole, split):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    assert predictor.last_plan.note == ""  # the default budget: nothing changed


def test_panoptic_past_the_budget_runs_the_mask_head_a_few_queries_at_a_time():
    torch.manual_seed(3)
    config = tiny_config(masks=True, num_classes=250)
    model = build_detr(config).eval()
    kwargs = dict(device="cpu", size=96, max_size=160, panoptic_threshold=0.0, fold_batchnorm=False)
    image = picture(150, 100, 9)
    free = Predictor(model, config, **kwargs).predict([image], panoptic=True)[0]
    rows = DETR_FAMILY.estimate_peak_bytes(config, 1, 96, 144, mask_rows=config.num_queries)
    without = DETR_FAMILY.estimate_peak_bytes(config, 1, 96, 144)
    budget = without.total + (rows.total - without.total) // 3
    tight = Predictor(model, config, memory_budget=budget, **kwargs)
    chunked = tight.predict([image], panoptic=True)[0]
    assert 0 < tight.last_plan.mask_rows < config.num_queries and "mask head" in tight.last_plan.note
    assert chunked.panoptic.png == free.panoptic.png
    assert model.mask_chunk == 0  # restored afterwards
