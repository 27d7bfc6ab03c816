"""Panoptic quality follows panopticapi's rules: hand-computed cases on tiny id maps, the file-based
helper, and a whole evaluation of a tiny DETRsegm on a synthetic panoptic dataset."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.common.panoptic_ids import id2rgb, rgb2id
from detr_studio.data import synthetic
from detr_studio.data.dataset import CocoPanopticDataset
from detr_studio.data.transforms import make_transforms
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.train.panoptic_quality import (
    METRIC_KEYS,
    PanopticError,
    evaluate_panoptic,
    pq_compute,
    pq_compute_files,
)

PERSON = {"id": 1, "name": "person", "isthing": 1}
GRASS = {"id": 2, "name": "grass", "isthing": 0}
CAR = {"id": 3, "name": "car", "isthing": 1}
CATEGORIES = [PERSON, GRASS, CAR]


def ids(text: str) -> np.ndarray:
    """A small id map written as rows of digits, e.g. "110\n220"."""
    return np.array([[int(c) for c in row.strip()] for row in text.strip().splitlines()], dtype=np.int64)


def seg(seg_id: int, category_id: int, iscrowd: int = 0) -> dict:
    return {"id": seg_id, "category_id": category_id, "iscrowd": iscrowd}


def score(gt_map: np.ndarray, gt_segments: list, pred_map: np.ndarray, pred_segments: list):
    """PQ of one image given as id maps."""
    gt = [{"image_id": 7, "file_name": "7.png", "segments_info": gt_segments}]
    pred = [{"image_id": 7, "file_name": "7.png", "segments_info": pred_segments}]
    return pq_compute(gt, lambda ann: gt_map, pred, lambda ann: pred_map, CATEGORIES)


# ---------------------------------------------------------------- hand-computed cases


def test_identical_segmentation_scores_one_whatever_the_segment_ids():
    gt = ids("""
        111222
        111222
        333222
        333222""")
    pred = gt * 2 + 3  # ids 5, 7, 9: same pixels, different numbers
    m = score(gt, [seg(1, 1), seg(2, 2), seg(3, 3)], pred, [seg(5, 1), seg(7, 2), seg(9, 3)])
    assert m.flat() == {key: 1.0 for key in METRIC_KEYS}
    assert m.per_class_pq() == {"person": 1.0, "grass": 1.0, "car": 1.0}


def test_one_match_at_iou_0_6_one_missed_and_one_spurious_segment():
    # gt:   A (person, 10 px), B (person, 4 px), S (grass, 10 px)
    gt = ids("""
        111113
        111113
        223333
        223333""")
    # pred: P (person, 6 px inside A), Q (person, 4 px on grass), T (grass, 14 px)
    pred = ids("""
        111333
        111333
        333322
        333322""")
    m = score(gt, [seg(1, 1), seg(2, 1), seg(3, 2)], pred, [seg(1, 1), seg(2, 1), seg(3, 2)])
    person, grass = m.per_category[1], m.per_category[2]
    # person: P∩A = 6, union = 6 + 10 - 6 = 10 -> IoU 0.6, a TP; B unmatched -> FN; Q unmatched -> FP.
    assert (person.tp, person.fp, person.fn) == (1, 1, 1)
    assert person.iou == pytest.approx(0.6)
    assert person.pq == pytest.approx(0.6 / (1 + 0.5 + 0.5))  # 0.3
    assert person.sq == pytest.approx(0.6)
    assert person.rq == pytest.approx(1 / 2)
    # grass: T∩S = 2 + 4 = 6, union = 14 + 10 - 6 = 18 -> IoU 1/3, no match: one FN and one FP.
    assert (grass.tp, grass.fp, grass.fn) == (0, 1, 1)
    assert grass.pq == 0.0
    flat = m.flat()
    assert flat["PQ"] == pytest.approx((0.3 + 0.0) / 2)  # car never occurs: averaged over 2 categories
    assert flat["SQ"] == pytest.approx((0.6 + 0.0) / 2)
    assert flat["RQ"] == pytest.approx((0.5 + 0.0) / 2)
    assert flat["PQ_th"] == pytest.approx(0.3)
    assert flat["PQ_st"] == 0.0


def test_iou_of_exactly_one_half_is_not_a_match():
    gt = ids("""
        222222
        222222
        222222
        222222""")
    pred = ids("""
        222222
        222200
        000000
        000000""")  # 10 of the 24 grass pixels, the rest unlabelled in the prediction -> IoU 10/24
    m = score(gt, [seg(2, 2)], pred, [seg(2, 2)])
    assert (m.per_category[2].tp, m.per_category[2].fp, m.per_category[2].fn) == (0, 1, 1)
    half = ids("""
        222222
        222222
        000000
        000000""")  # 12 of 24 -> IoU exactly 0.5
    m = score(gt, [seg(2, 2)], half, [seg(2, 2)])
    assert (m.per_category[2].tp, m.per_category[2].fp, m.per_category[2].fn) == (0, 1, 1)
    more = ids("""
        222222
        222222
        200000
        000000""")  # 13 of 24 -> IoU 0.54
    m = score(gt, [seg(2, 2)], more, [seg(2, 2)])
    assert m.per_category[2].tp == 1
    assert m.per_category[2].iou == pytest.approx(13 / 24)


def test_predicted_pixels_on_void_are_left_out_of_the_union():
    gt = ids("""
        111000
        111000
        000000
        000000""")  # person A, 6 px; the rest is VOID
    pred = ids("""
        011110
        011110
        000000
        000000""")  # P: 8 px, 4 on A and 4 on VOID
    m = score(gt, [seg(1, 1)], pred, [seg(1, 1)])
    # union = 8 + 6 - 4 - 4 (on VOID) = 6 -> IoU 4/6, a match (without the VOID rule it would be 4/10).
    person = m.per_category[1]
    assert (person.tp, person.fp, person.fn) == (1, 0, 0)
    assert person.iou == pytest.approx(4 / 6)
    assert m.flat()["PQ"] == pytest.approx(4 / 6)


def test_unmatched_prediction_mostly_on_void_is_not_a_false_positive():
    gt = ids("""
        111111
        111111
        000000
        000000""")  # person A, 12 px; VOID below
    pred = ids("""
        111113
        111113
        222223
        222223""")  # P on A (10 px), Q on VOID only (10 px), R: 2 px on A + 2 px on VOID
    m = score(gt, [seg(1, 1)], pred, [seg(1, 1), seg(2, 1), seg(3, 1)])
    person = m.per_category[1]
    # P: IoU 10/12, a TP. Q: 10/10 on VOID > 1/2 -> ignored. R: 2/4 on VOID is not more than half -> FP.
    assert (person.tp, person.fp, person.fn) == (1, 1, 0)
    assert person.pq == pytest.approx((10 / 12) / (1 + 0.5))  # 5/9; counting Q too would give 5/12


def test_crowd_ground_truth_is_never_a_false_negative_and_excuses_predictions_of_its_category():
    gt = ids("""
        111222
        111222
        333222
        333222""")  # crowd of person (6 px), person A (6 px), grass S (12 px)
    gt_segments = [seg(1, 1, iscrowd=1), seg(3, 1), seg(2, 2)]
    pred = ids("""
        111222
        111222
        333222
        333222""")
    m = score(gt, gt_segments, pred, [seg(1, 1), seg(3, 1), seg(2, 2)])
    # The prediction on the crowd is not matched (crowds never are) but lies wholly on a person crowd.
    assert (m.per_category[1].tp, m.per_category[1].fp, m.per_category[1].fn) == (1, 0, 0)
    assert m.flat()["PQ"] == 1.0
    # Nothing predicted on the crowd: still no false negative.
    m = score(gt, gt_segments, np.where(pred == 1, 0, pred), [seg(3, 1), seg(2, 2)])
    assert (m.per_category[1].tp, m.per_category[1].fp, m.per_category[1].fn) == (1, 0, 0)
    # A car predicted on the person crowd is a false positive of car.
    m = score(gt, gt_segments, pred, [seg(1, 3), seg(3, 1), seg(2, 2)])
    assert (m.per_category[3].tp, m.per_category[3].fp, m.per_category[3].fn) == (0, 1, 0)
    assert m.flat()["PQ"] == pytest.approx((1 + 1 + 0) / 3)


def test_categories_that_never_occur_are_left_out_of_the_averages():
    gt = ids("""
        111222
        111222
        111222
        111222""")
    pred = ids("""
        111000
        111000
        111000
        111000""")  # person perfect, grass missed
    m = score(gt, [seg(1, 1), seg(2, 2)], pred, [seg(1, 1)])
    assert m.average()["n"] == 2
    assert m.flat()["PQ"] == pytest.approx((1.0 + 0.0) / 2)  # not / 3: car occurs nowhere
    assert m.per_class_pq() == {"person": 1.0, "grass": 0.0}


def test_things_and_stuff_are_averaged_separately_by_isthing():
    gt = ids("""
        112222
        112222
        222222
        222222""")  # person A (4 px), grass S (20 px)
    pred = ids("""
        557777
        557777
        777700
        000000""")  # person exact; grass T: 12 px inside S -> IoU 12/20
    m = score(gt, [seg(1, 1), seg(2, 2)], pred, [seg(5, 1), seg(7, 2)])
    flat = m.flat()
    assert flat["PQ_th"] == flat["SQ_th"] == flat["RQ_th"] == 1.0
    assert flat["PQ_st"] == pytest.approx(0.6)
    assert flat["SQ_st"] == pytest.approx(0.6)
    assert flat["RQ_st"] == 1.0
    assert flat["PQ"] == pytest.approx((1.0 + 0.6) / 2)
    assert m.average(isthing=True)["n"] == 1 and m.average(isthing=False)["n"] == 1


def test_ground_truth_area_comes_from_the_json_when_given_as_in_panopticapi():
    gt = ids("""
        111000
        111000""")
    pred = ids("""
        111100
        111100""")  # 6 px on the 6 px of A, 2 px on VOID
    counted = score(gt, [seg(1, 1)], pred, [seg(1, 1)])
    assert counted.per_category[1].iou == pytest.approx(6 / (8 + 6 - 6 - 2))  # 1.0 with the VOID rule
    stated = score(gt, [{**seg(1, 1), "area": 10}], pred, [seg(1, 1)])
    assert stated.per_category[1].iou == pytest.approx(6 / (8 + 10 - 6 - 2))


def test_counts_add_up_over_images():
    gt_map = ids("""
        11
        22""")
    gts = [{"image_id": i, "segments_info": [seg(1, 1), seg(2, 2)]} for i in (1, 2)]
    preds = [
        {"image_id": 1, "segments_info": [seg(1, 1), seg(2, 2)]},  # both right
        {"image_id": 2, "segments_info": [seg(1, 1)]},  # person right, grass missed
        {"image_id": 3, "segments_info": []},  # an image with no ground truth is ignored
    ]
    maps = {1: gt_map, 2: np.where(gt_map == 2, 0, gt_map), 3: gt_map * 0}
    m = pq_compute(gts, lambda a: gt_map, preds, lambda a: maps[a["image_id"]], CATEGORIES)
    assert m.images == 2
    assert (m.per_category[1].tp, m.per_category[2].tp, m.per_category[2].fn) == (2, 1, 1)
    assert m.per_category[2].pq == pytest.approx(1 / (1 + 0.5))


def test_nothing_to_score_averages_to_zero():
    empty = np.zeros((2, 3), dtype=np.int64)
    m = score(empty, [], empty, [])
    assert m.flat() == {key: 0.0 for key in METRIC_KEYS}
    assert m.per_class_pq() == {}


def test_inconsistent_predictions_are_refused_with_the_image_named():
    gt = ids("""
        11
        22""")
    with pytest.raises(
        PanopticError, match="segment id 2 is in the PNG but not in the segments_info of image 7"
    ):
        score(gt, [seg(1, 1), seg(2, 2)], gt, [seg(1, 1)])
    with pytest.raises(PanopticError, match=r"segment ids \[9\] of image 7 are in the segments_info but not"):
        score(gt, [seg(1, 1), seg(2, 2)], gt, [seg(1, 1), seg(2, 2), seg(9, 2)])
    with pytest.raises(PanopticError, match="unknown category_id 42"):
        score(gt, [seg(1, 1), seg(2, 2)], gt, [seg(1, 1), seg(2, 42)])
    with pytest.raises(PanopticError, match="3x2"):
        score(gt, [seg(1, 1), seg(2, 2)], np.ones((2, 3), dtype=np.int64), [seg(1, 1)])
    gts = [{"image_id": 7, "segments_info": [seg(1, 1)]}]
    with pytest.raises(PanopticError, match="no prediction for image 7"):
        pq_compute(gts, lambda a: gt, [], lambda a: gt, CATEGORIES)


# ---------------------------------------------------------------- files


def _write_png(path: Path, id_map: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(id2rgb(id_map)).save(path)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="module")
def synthetic_layout(tmp_path_factory: pytest.TempPathFactory) -> synthetic.SyntheticLayout:
    return synthetic.generate(tmp_path_factory.mktemp("shapes"), num_train=0, num_val=3, size=48, seed=3)


def test_predicting_the_ground_truth_pngs_gives_pq_one_through_the_files(synthetic_layout, tmp_path):
    gt_json = synthetic_layout.panoptic_json("val")
    gt = json.loads(gt_json.read_text())
    pred = {
        "annotations": [
            {
                "image_id": ann["image_id"],
                "file_name": ann["file_name"],
                "segments_info": [
                    {"id": s["id"], "category_id": s["category_id"]} for s in ann["segments_info"]
                ],
            }
            for ann in gt["annotations"]
        ]
    }
    pred_json = tmp_path / "pred.json"
    _write_json(pred_json, pred)
    pred_dir = tmp_path / "pred"
    shutil.copytree(synthetic_layout.panoptic_dir("val"), pred_dir)
    m = pq_compute_files(gt_json, synthetic_layout.panoptic_dir("val"), pred_json, pred_dir)
    assert m.images == 3
    assert m.flat() == {key: 1.0 for key in METRIC_KEYS}
    used = {s["category_id"] for ann in gt["annotations"] for s in ann["segments_info"]}
    assert m.average()["n"] == len(used)


def test_file_errors_name_the_file_at_fault(tmp_path):
    gt_map = ids("""
        1122
        1122""")
    _write_png(tmp_path / "gt" / "1.png", gt_map)
    gt_json = tmp_path / "gt.json"
    _write_json(
        gt_json,
        {
            "annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [seg(1, 1), seg(2, 2)]}],
            "categories": CATEGORIES,
        },
    )
    pred_json = tmp_path / "pred.json"
    _write_json(
        pred_json, {"annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [seg(1, 1)]}]}
    )
    pred_png = tmp_path / "pred" / "1.png"
    _write_png(pred_png, gt_map)
    with pytest.raises(
        PanopticError, match=f"{pred_png}: segment id 2 is in the PNG but not in the segments_info"
    ):
        pq_compute_files(gt_json, tmp_path / "gt", pred_json, tmp_path / "pred")

    pred_png.unlink()
    with pytest.raises(PanopticError, match=f"{pred_png}: no such file"):
        pq_compute_files(gt_json, tmp_path / "gt", pred_json, tmp_path / "pred")

    with pytest.raises(PanopticError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        pq_compute_files(gt_json, tmp_path / "gt", pred_json, tmp_path / "nowhere")

    _write_json(pred_json, {"annotations": []})
    with pytest.raises(PanopticError, match=f"{pred_json}: no prediction for image 1"):
        pq_compute_files(gt_json, tmp_path / "gt", pred_json, tmp_path / "gt")

    pred_json.write_text("{not json", encoding="utf-8")
    with pytest.raises(PanopticError, match=f"{pred_json}: not valid JSON"):
        pq_compute_files(gt_json, tmp_path / "gt", pred_json, tmp_path / "gt")

    _write_json(gt_json, {"annotations": []})
    with pytest.raises(PanopticError, match=f"{gt_json}: missing the 'categories' list"):
        pq_compute_files(gt_json, tmp_path / "gt", gt_json, tmp_path / "gt")


# ---------------------------------------------------------------- evaluating a model


@pytest.fixture(scope="module")
def val_set(synthetic_layout) -> CocoPanopticDataset:
    return CocoPanopticDataset(
        synthetic_layout.panoptic_json("val"),
        synthetic_layout.images_dir("val"),
        synthetic_layout.panoptic_dir("val"),
        transforms=make_transforms("val", scales=[40], max_size=64),
    )


@pytest.fixture(scope="module")
def random_model(val_set) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detr(tiny_config(masks=True, num_classes=val_set.num_classes), train_backbone=False).eval()


def test_evaluating_a_random_model_gives_well_formed_metrics(val_set, random_model):
    model = random_model
    calls: list[tuple[int, int]] = []
    m = evaluate_panoptic(
        model,
        val_set,
        torch.device("cpu"),
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        progress=lambda done, total: calls.append((done, total)),
        threshold=0.0,  # keep every query that does not predict no-object, so segments are scored
        batch_size=2,
    )
    assert calls == [(2, 3), (3, 3)]
    assert m.images == 3
    flat = m.flat()
    assert list(flat) == list(METRIC_KEYS)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in flat.values())
    names = {c["name"] for c in val_set.categories}
    assert set(m.per_class_pq()) <= names
    assert all(0.0 <= v <= 1.0 for v in m.per_class_pq().values())
    scored = sum(q.tp + q.fp for q in m.per_category.values()) + m.unknown_category_segments
    assert scored > 0  # some predicted segments were scored or set aside
    assert sum(q.fn + q.tp for q in m.per_category.values()) > 0


def test_a_model_that_paints_everything_sky_scores_as_a_whole_image_sky_prediction(
    val_set, synthetic_layout, random_model
):
    model = copy.deepcopy(random_model)
    with torch.no_grad():
        model.detr.class_embed.weight.zero_()
        model.detr.class_embed.bias.zero_()
        model.detr.class_embed.bias[synthetic.SKY] = 10.0  # every query: sky, p > 0.99
    m = evaluate_panoptic(model, val_set, torch.device("cpu"))

    gt = json.loads(synthetic_layout.panoptic_json("val").read_text())
    folder = synthetic_layout.panoptic_dir("val")

    def whole_image(ann: dict) -> np.ndarray:
        with Image.open(folder / ann["file_name"]) as png:
            shape = rgb2id(np.asarray(png.convert("RGB"))).shape
        return np.ones(shape, dtype=np.int64)

    preds = [
        {"image_id": a["image_id"], "file_name": a["file_name"], "segments_info": [seg(1, synthetic.SKY)]}
        for a in gt["annotations"]
    ]
    expected = pq_compute(gt["annotations"], folder, preds, whole_image, gt["categories"])
    assert m.flat() == pytest.approx(expected.flat())
    assert m.per_category == expected.per_category
    sky = m.per_category[synthetic.SKY]
    assert sky.tp >= 1 and sky.tp + sky.fp == 3  # the seed-3 images include one that is mostly sky
    assert 0.5 < sky.iou / sky.tp <= 1.0
    assert m.flat()["PQ_st"] > 0.0 and m.flat()["PQ_th"] == 0.0


def test_predicted_classes_that_are_not_categories_are_set_aside(val_set, random_model):
    model = copy.deepcopy(random_model)
    with torch.no_grad():
        model.detr.class_embed.bias[0] = 10.0  # class 0 is no category of the dataset
    m = evaluate_panoptic(model, val_set, torch.device("cpu"))
    assert m.unknown_category_segments >= 3
    assert sum(q.tp + q.fp for q in m.per_category.values()) == 0
    assert m.flat()["PQ"] == 0.0


def test_evaluate_panoptic_refuses_a_model_without_a_mask_head(val_set):
    model = build_detr(tiny_config(num_classes=val_set.num_classes), train_backbone=False)
    with pytest.raises(TypeError, match="DETRsegm"):
        evaluate_panoptic(model, val_set, torch.device("cpu"))
