"""Post-processing on hand-made network outputs, checked against hand-computed results."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.common.panoptic_ids import id2rgb, rgb2id
from detr_studio.model.classes import coco_panoptic_is_thing, default_is_thing_map
from detr_studio.model.detr.family import DETR_FAMILY
from detr_studio.model.detr.panoptic import (
    PostProcessPanoptic,
    panoptic_from_kept,
    panoptic_keep,
    panoptic_scores,
)
from detr_studio.model.detr.postprocess import instance_masks


def post_process_detection(outputs, sizes):
    return DETR_FAMILY.postprocess(outputs, sizes)


# Panoptic tests use 4 classes + no-object (column 4): 0 and 1 are things, 2 and 3 are stuff.
THING_MAP = {0: True, 1: True, 2: False, 3: False}
NO_OBJECT = 4


def class_logits(cat: int) -> list[float]:
    """A confident query: logit 10 on ``cat``, 0 elsewhere -> p = e^10 / (e^10 + 4) ≈ 0.99982 > 0.85."""
    row = [0.0] * 5
    row[cat] = 10.0
    return row


UNSURE = [0.0, 1.0, 0.0, 0.0, 0.0]  # top class 1 with p = e / (e + 4) ≈ 0.405 < 0.85: not kept


def decode_png(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGB"
    return rgb2id(np.asarray(image))


# --------------------------------------------------------------------------------------- id <-> rgb


def test_id2rgb_splits_ids_into_little_endian_bytes_and_rgb2id_inverts_it():
    ids = np.array([[0, 255, 256, 65535], [65536, 70000, 16777215, 1]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (2, 4, 3)
    # 256 = 1*256 -> (0, 1, 0); 65535 = 255 + 255*256 -> (255, 255, 0); 65536 = 256² -> (0, 0, 1)
    # 70000 = 65536 + 17*256 + 112 -> (112, 17, 1); 16777215 = 256³ - 1 -> (255, 255, 255)
    expected = [
        [[0, 0, 0], [255, 0, 0], [0, 1, 0], [255, 255, 0]],
        [[0, 0, 1], [112, 17, 1], [255, 255, 255], [1, 0, 0]],
    ]
    np.testing.assert_array_equal(rgb, np.array(expected, dtype=np.uint8))
    back = rgb2id(rgb)
    assert back.dtype in (np.int32, np.int64)
    np.testing.assert_array_equal(back, ids)


def test_rgb2id_refuses_an_image_without_three_channels():
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        rgb2id(np.zeros((2, 2), dtype=np.uint8))


def test_default_is_thing_map_marks_ids_up_to_90_as_things():
    table = default_is_thing_map(250)
    assert len(table) == 250
    assert table[1] and table[90]
    assert not table[91] and not table[249]
    assert coco_panoptic_is_thing(90) and not coco_panoptic_is_thing(91)


# ---------------------------------------------------------------------------------------- detection


def detection_outputs() -> dict[str, torch.Tensor]:
    # Logits are logs of numbers summing to 10, so the softmax is those numbers / 10.
    logits = torch.tensor(
        [
            [[1.0, 2.0, 7.0], [6.0, 3.0, 1.0]],  # image 0: query 0 is mostly no-object; query 1 is class 0
            [[2.0, 5.0, 3.0], [4.0, 4.5, 1.5]],  # image 1
        ]
    ).log()
    boxes = torch.tensor(
        [
            [[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]],
            [[0.25, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]],
        ]
    )
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_detection_drops_no_object_before_argmax_and_keeps_every_query():
    results = post_process_detection(detection_outputs(), torch.tensor([[100, 200], [50, 10]]))
    assert len(results) == 2
    # image 0, query 0: softmax (0.1, 0.2, 0.7); no-object wins overall but the best real class is 1 (0.2)
    # image 0, query 1: softmax (0.6, 0.3, 0.1) -> class 0, 0.6
    torch.testing.assert_close(results[0].scores, torch.tensor([0.2, 0.6]))
    assert results[0].labels.tolist() == [1, 0]
    assert results[0].labels.dtype == torch.int64
    # image 1: (0.2, 0.5, 0.3) -> class 1, 0.5; (0.4, 0.45, 0.15) -> class 1, 0.45
    torch.testing.assert_close(results[1].scores, torch.tensor([0.5, 0.45]))
    assert results[1].labels.tolist() == [1, 1]


def test_detection_scales_boxes_by_each_images_own_size():
    results = post_process_detection(detection_outputs(), torch.tensor([[100, 200], [50, 10]]))
    # image 0 is (h, w) = (100, 200): (cx, cy, w, h) = (0.5, 0.5, 0.2, 0.4) -> (0.4, 0.3, 0.6, 0.7)
    #   * (200, 100, 200, 100) = (80, 30, 120, 70); (0.25, 0.25, 0.5, 0.5) -> (0, 0, 0.5, 0.5) -> (0, 0, 100, 50)
    torch.testing.assert_close(
        results[0].boxes, torch.tensor([[80.0, 30.0, 120.0, 70.0], [0.0, 0.0, 100.0, 50.0]])
    )
    # image 1 is (50, 10): (0.25, 0.5, 0.5, 1) -> (0, 0, 0.5, 1) * (10, 50, 10, 50) = (0, 0, 5, 50)
    torch.testing.assert_close(
        results[1].boxes, torch.tensor([[0.0, 0.0, 5.0, 50.0], [0.0, 0.0, 10.0, 50.0]])
    )


def test_detection_reports_one_row_per_query_in_query_order():
    sizes = torch.tensor([[100, 200], [50, 10]])
    for result in post_process_detection(detection_outputs(), sizes):
        assert result.query_index.tolist() == [0, 1]
        assert result.boxes.shape == (2, 4)


def test_detection_refuses_sizes_that_are_not_one_hw_pair_per_image():
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        post_process_detection(detection_outputs(), torch.tensor([100, 200]))
    with pytest.raises(ValueError, match="batch of 2"):
        post_process_detection(detection_outputs(), torch.tensor([[100, 200]]))


# -------------------------------------------------------------------------------------------- segm


def segm_outputs() -> dict[str, torch.Tensor]:
    # [B=2, Q=1, 2, 2]; both are upsampled to the batch's largest size, 4 x 4.
    # Bilinear 2 -> 4 (align_corners=False) samples source positions -0.25 (clamped to 0), 0.25, 0.75,
    # 1.25 (clamped to 1), so a (10, -10) profile becomes (10, 5, -5, -10).
    masks = torch.tensor(
        [
            [[[10.0, 10.0], [-10.0, -10.0]]],  # image 0: rows (10, 5, -5, -10)
            [[[10.0, -10.0], [10.0, -10.0]]],  # image 1: columns (10, 5, -5, -10)
        ]
    )
    return {"pred_masks": masks}


def test_segm_thresholds_the_sigmoid_of_the_upsampled_masks():
    max_sizes = torch.tensor([[4, 4], [4, 3]])
    orig_sizes = torch.tensor([[4, 4], [2, 6]])
    # threshold 0.5: sigmoid(x) > 0.5 <=> x > 0 -> rows 10, 5 are in, -5, -10 are out
    low = instance_masks(segm_outputs(), orig_sizes, max_sizes)
    assert low[0].dtype == torch.uint8
    assert low[0].shape == (1, 1, 4, 4)
    assert low[0][0, 0, :, 0].tolist() == [1, 1, 0, 0]
    # threshold 0.999: sigmoid(10) ≈ 0.99995 is in, sigmoid(5) ≈ 0.9933 is out
    high = instance_masks(segm_outputs(), orig_sizes, max_sizes, threshold=0.999)
    assert high[0][0, 0, :, 0].tolist() == [1, 0, 0, 0]


def test_segm_crops_to_each_input_size_before_resizing_to_the_original_size():
    max_sizes = torch.tensor([[4, 4], [4, 3]])
    orig_sizes = torch.tensor([[2, 2], [2, 6]])
    results = instance_masks(segm_outputs(), orig_sizes, max_sizes)
    # image 0: rows (1, 1, 0, 0); nearest 4 -> 2 takes source rows 0 and 2
    assert results[0][0, 0].tolist() == [[1, 1], [0, 0]]
    # image 1: columns (1, 1, 0, 0) cropped to width 3 -> (1, 1, 0); nearest 3 -> 6 takes source columns
    # floor(j * 3 / 6) = 0, 0, 1, 1, 2, 2 -> (1, 1, 1, 1, 0, 0). Without the crop it would be 1, 1, 1, 0, 0, 0.
    assert results[1].shape == (1, 1, 2, 6)
    assert results[1][0, 0].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]]


# ----------------------------------------------------------------------------------------- panoptic


def test_panoptic_keep_needs_a_real_class_above_the_threshold():
    logits = torch.tensor([[class_logits(2), class_logits(NO_OBJECT), UNSURE]])  # [B=1, Q=3, 5]
    keep = panoptic_keep(logits, 0.85)
    assert keep.shape == (1, 3)
    assert keep.tolist() == [[True, False, False]]
    # the same test on one image's [Q, C+1]; with threshold 0.4 the unsure query (0.405) is kept too
    assert panoptic_keep(logits[0], 0.4).tolist() == [True, False, True]
    scores, classes = panoptic_scores(logits[0])
    # the no-object column counts: query 1's top class is no-object itself
    assert classes.tolist() == [2, NO_OBJECT, 1]
    torch.testing.assert_close(scores[2], torch.tensor(math.e / (math.e + 4)))


def column_masks(values_per_query: list[list[float]]) -> torch.Tensor:
    """[Q, 2, 4] masks, constant down each column."""
    return torch.tensor(values_per_query, dtype=torch.float32)[:, None, :].expand(-1, 2, -1).clone()


def merge_case() -> tuple[dict[str, torch.Tensor], list[int]]:
    """Two things, and one stuff class predicted twice; masks at [2, 4], processed size (4, 8).

    Bilinear 4 -> 8 columns (align_corners=False): output column x samples x / 2 - 0.25, so output
    columns 2k and 2k+1 take 0.75 of source column k and 0.25 of its neighbour (edge columns clamp).
    """
    logits = torch.tensor(
        [
            class_logits(2),  # q0: stuff 2 -> kept index 0
            class_logits(NO_OBJECT),  # q1: no-object, ignored despite its strong mask
            class_logits(0),  # q2: thing 0 -> kept index 1
            class_logits(2),  # q3: stuff 2 again -> kept index 2
            UNSURE,  # q4: below the threshold, ignored
            class_logits(1),  # q5: thing 1 -> kept index 3
        ]
    )
    masks = column_masks(
        [
            [10, 0, 0, 5],  # q0: source column 0, and second best on column 3
            [20, 20, 20, 20],
            [0, 10, 0, 0],  # q2: source column 1
            [0, 0, 0, 10],  # q3: source column 3
            [20, 20, 20, 20],
            [0, 0, 10, 0],  # q5: source column 2
        ]
    )
    return {"pred_logits": logits[None], "pred_masks": masks[None]}, [0, 2, 3, 5]


def test_panoptic_merges_duplicate_stuff_and_keeps_ids_of_later_segments():
    outputs, _ = merge_case()
    (result,) = PostProcessPanoptic(THING_MAP)(outputs, [(4, 8)])
    # First pass, kept (q0, q2, q3, q5) = ids 0..3: columns 0-1 -> 0, 2-3 -> 1, 4-5 -> 3, 6-7 -> 2
    # (at column 6: q3 0.75*10 = 7.5 beats q0 0.75*5 = 3.75 and q5 0.25*10 = 2.5).
    # Id 2 is the duplicate of stuff 2 and merges into id 0: areas (16, 8, 0, 8).
    # Id 2 has area 0 <= 4 and is dropped; the second pass over (q0, q2, q5) gives columns 6-7 to q0
    # (3.75 and 5 against q5's 2.5 and 0), so stuff 2 covers columns 0-1 and 6-7: 2 * 2 * 4 = 16 px.
    # q5 becomes id 2 and keeps its columns (merging with the first pass's stale ids would swallow it).
    assert result["segments_info"] == [
        {"id": 0, "isthing": False, "category_id": 2, "area": 16},
        {"id": 1, "isthing": True, "category_id": 0, "area": 8},
        {"id": 2, "isthing": True, "category_id": 1, "area": 8},
    ]
    ids = decode_png(result["png_string"])
    assert ids.shape == (4, 8)
    np.testing.assert_array_equal(ids, np.array([[0, 0, 1, 1, 2, 2, 0, 0]] * 4))


def small_segment_case() -> dict[str, torch.Tensor]:
    """Masks at the processed size (2, 4), so the bilinear step is the identity; target size (4, 8)."""
    logits = torch.tensor([class_logits(0), class_logits(3), class_logits(1)])
    masks = torch.tensor(
        [
            [[10.0, 0, 0, 0], [0, 0, 0, 0]],  # thing 0: one pixel -> 2 x 2 = 4 px at the target size
            [[5.0, 5, 5, 5], [5, 5, 5, 5]],  # stuff 3: second best everywhere
            [[0.0, 0, 0, 10], [0, 0, 0, 10]],  # thing 1: two pixels -> 8 px at the target size
        ]
    )
    return {"pred_logits": logits[None], "pred_masks": masks[None]}


def test_panoptic_drops_segments_of_at_most_4_px_at_the_target_size_and_reassigns_them():
    (result,) = PostProcessPanoptic(THING_MAP)(small_segment_case(), [(2, 4)], [(4, 8)])
    # First pass (NEAREST 2x upscale): id 0 has 1 px * 4 = 4 <= 4 -> dropped; id 2 has 2 px * 4 = 8 and
    # stays although it covers only 2 px at the processed size. Second pass over (stuff 3, thing 1):
    # stuff 3 gets 6 px * 4 = 24, thing 1 keeps 8.
    assert result["segments_info"] == [
        {"id": 0, "isthing": False, "category_id": 3, "area": 24},
        {"id": 1, "isthing": True, "category_id": 1, "area": 8},
    ]
    ids = decode_png(result["png_string"])
    assert ids.shape == (4, 8)
    np.testing.assert_array_equal(ids, np.array([[0, 0, 0, 0, 0, 0, 1, 1]] * 4))


def test_panoptic_resizes_the_id_image_with_nearest_neighbour():
    logits = torch.tensor([class_logits(0), class_logits(1), class_logits(3)])
    masks = torch.tensor(
        [
            [[10.0, 0.0]],  # thing 0: left pixel
            [[-10.0, -10.0]],  # thing 1: never wins a pixel
            [[0.0, 10.0]],  # stuff 3: right pixel
        ]
    )  # [3, 1, 2], at the processed size
    outputs = {"pred_logits": logits[None], "pred_masks": masks[None]}
    (result,) = PostProcessPanoptic(THING_MAP)(outputs, [(1, 2)], [(3, 8)])
    # First pass: ids (0, 2). NEAREST 2 -> 8 repeats each 4 times: (0, 0, 0, 0, 2, 2, 2, 2); a smooth
    # filter would give id 1 the blend (0 + 2) / 2 at the border and keep it. Id 1 has area 0 and is
    # dropped; the second pass renumbers stuff 3 to 1: areas 4 * 3 = 12 each.
    assert result["segments_info"] == [
        {"id": 0, "isthing": True, "category_id": 0, "area": 12},
        {"id": 1, "isthing": False, "category_id": 3, "area": 12},
    ]
    np.testing.assert_array_equal(decode_png(result["png_string"]), np.array([[0, 0, 0, 0, 1, 1, 1, 1]] * 3))


def test_panoptic_with_nothing_kept_gives_a_black_png_and_no_segments():
    logits = torch.tensor([[class_logits(NO_OBJECT), UNSURE]])  # [1, 2, 5]
    outputs = {"pred_logits": logits, "pred_masks": torch.full((1, 2, 3, 3), 20.0)}
    (result,) = PostProcessPanoptic(THING_MAP)(outputs, torch.tensor([[6, 5]]), torch.tensor([[12, 10]]))
    assert result["segments_info"] == []
    ids = decode_png(result["png_string"])
    assert ids.shape == (12, 10)
    assert not ids.any()


def test_panoptic_refuses_a_class_missing_from_the_thing_map():
    outputs, _ = merge_case()
    with pytest.raises(KeyError, match=r"class id\(s\) \[2\]"):
        PostProcessPanoptic({0: True, 1: True})(outputs, [(4, 8)])


def random_panoptic_outputs() -> tuple[dict[str, torch.Tensor], list[tuple[int, int]], list[tuple[int, int]]]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 30, 5, generator=generator) * 4  # many confident queries, some no-object
    masks = torch.randn(2, 30, 6, 9, generator=generator) * 3
    return {"pred_logits": logits, "pred_masks": masks}, [(24, 30), (20, 36)], [(31, 43), (17, 40)]


def test_panoptic_from_kept_on_the_kept_subset_is_byte_identical_to_the_full_call():
    outputs, processed, targets = random_panoptic_outputs()
    post = PostProcessPanoptic(THING_MAP)
    full = post(outputs, processed, targets)
    keep = post.select(outputs)  # [2, 30]
    assert keep.sum() >= 4  # the case exercises several segments
    for b in range(2):
        classes = panoptic_scores(outputs["pred_logits"][b])[1][keep[b]]
        part = panoptic_from_kept(
            outputs["pred_masks"][b][keep[b]], classes, processed[b], targets[b], THING_MAP
        )
        assert part["png_string"] == full[b]["png_string"]
        assert part["segments_info"] == full[b]["segments_info"]
    assert full[0]["segments_info"]  # not a trivially empty result


def test_panoptic_from_selected_masks_matches_the_full_call():
    outputs, processed, targets = random_panoptic_outputs()
    post = PostProcessPanoptic(THING_MAP)
    keep = post.select(outputs)
    index = keep.nonzero()  # [N, 2] in (image, query) order, as DETRsegm(select=...) returns it
    selected = {
        "pred_logits": outputs["pred_logits"],
        "pred_masks": outputs["pred_masks"][index[:, 0], index[:, 1]],
        "mask_index": index,
    }
    assert post.from_selected(selected, processed, targets) == post(outputs, processed, targets)
    selected["mask_index"] = index[1:]
    with pytest.raises(ValueError, match="mask_index"):
        post.from_selected(selected, processed, targets)


def test_panoptic_fast_path_through_detrsegm_select_matches_the_full_model_call():
    from detr_studio.model.detr.build import build_detr
    from detr_studio.model.detr.config import tiny_config

    torch.manual_seed(0)
    model = build_detr(tiny_config(masks=True, num_classes=4), train_backbone=False).eval()
    images = [torch.rand(3, 64, 64), torch.rand(3, 32, 96)]
    processed, targets = [(64, 64), (32, 96)], [(100, 120), (30, 70)]
    post = PostProcessPanoptic(THING_MAP, threshold=0.0)  # keep every query not predicting no-object
    with torch.no_grad():
        full = model(images)
        fast = model(images, select=post.select)
    assert len(fast["mask_index"]) > 2
    assert post.from_selected(fast, processed, targets) == post(full, processed, targets)


def test_panoptic_void_leaves_pixels_no_mask_covers_out_of_every_segment():
    things = {0: True, 1: True}
    logits = torch.tensor([[9.0, 0.0, -9.0], [0.0, 9.0, -9.0]])  # two confident things
    masks = torch.tensor(
        [
            [[4.0, 4, -3, -3], [-3, -3, -3, -3]],  # thing 0: the top-left pair
            [[-3.0, -3, -3, 2], [-3, -3, -3, 2]],  # thing 1: the right column
        ]
    )
    outputs = {"pred_logits": logits[None], "pred_masks": masks[None]}
    (reference,) = PostProcessPanoptic(things)(outputs, [(2, 4)], [(4, 8)])
    (void,) = PostProcessPanoptic(things, void=True)(outputs, [(2, 4)], [(4, 8)])
    # The reference gives every pixel to the stronger mask; void keeps only the covered ones (id 2).
    assert sum(s["area"] for s in reference["segments_info"]) == 32
    row = [0, 0, 0, 0, 2, 2, 1, 1]
    np.testing.assert_array_equal(decode_png(void["png_string"])[::2], [row, [2, 2, 2, 2, 2, 2, 1, 1]])
    assert [(s["id"], s["category_id"], s["area"]) for s in void["segments_info"]] == [(0, 0, 8), (1, 1, 8)]


def test_the_backends_post_processing_is_the_reference_unless_the_model_has_no_stuff_class():
    assert not PostProcessPanoptic.for_model(THING_MAP).void  # stuff classes 2 and 3: the reference
    assert PostProcessPanoptic.for_model({0: True, 1: True}).void
