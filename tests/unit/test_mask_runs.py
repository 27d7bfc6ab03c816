"""Training masks from the window without a window: the two-stage recipe's arguments (boxes, then the mask
head from the first stage's model), the mask head alone, panoptic snapshots with their PNGs, and what the
window starts when a stage ends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.common.panoptic_ids import rgb2id
from detr_studio.data.coco import CocoDocument
from detr_studio.data.coco.segment_edits import merge_segments_edit
from detr_studio.data.synthetic import generate
from detr_studio.model.checkpoint import save_checkpoint
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import tiny_config
from detr_studio.session.model_loading import load_network
from detr_studio.train.events import Finished, Started
from detr_studio.train.runs import (
    ANNOTATED,
    MASK_HEAD,
    MASK_STAGE,
    MASKS,
    RunRecord,
    TrainingOptions,
    TrainingSetupError,
    append_event,
    cluster_command,
    final_weights,
    held_out_metrics,
    next_stage,
    prepare_run,
)

from .coco.helpers import panoptic_data, write_panoptic


def started(run: Path) -> Started:
    return Started(epochs=1, start_epoch=0, steps_per_epoch=1, train_images=1, val_images=1, device="cpu",
                   world_size=1, out_dir=str(run))  # fmt: skip


def options(**kw) -> TrainingOptions:
    values = {"images": ANNOTATED, "holdout": 0.5, "base_weights": "base.safetensors", "device": "cpu", **kw}
    return TrainingOptions(**values)


@pytest.fixture
def instances(tmp_path) -> CocoDocument:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in (1, 2)]
    anns = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 9, 9], "area": 81, "iscrowd": 0,
         "segmentation": [[1, 1, 10, 1, 10, 10, 1, 10]]}
        for i in (1, 2)
    ]  # fmt: skip
    doc = CocoDocument({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]})
    doc.image_root = tmp_path
    return doc


def test_two_stages_train_boxes_then_the_mask_head_from_the_first_stages_model(instances, tmp_path):
    run, first = prepare_run(instances, tmp_path, options(task=MASKS))
    second = json.loads((run / MASK_STAGE / "command.json").read_text())
    assert "--masks" not in first and first[first.index("--weights") + 1] == "base.safetensors"
    assert first[first.index("--out") + 1] == str(run)
    assert second[second.index("--stage") - 1 : second.index("--stage") + 2] == [
        "--masks",
        "--stage",
        "masks",
    ]
    assert second[second.index("--weights") + 1] == str(run / "best.safetensors")
    assert second[second.index("--out") + 1] == str(run / MASK_STAGE)
    assert final_weights(run) == run / MASK_STAGE / "best.safetensors"
    record = RunRecord.load(run)
    assert record.task == MASKS and " && torchrun " in cluster_command(record, 4)

    assert next_stage(run) is None  # the first stage has not finished
    append_event(run, started(run))
    append_event(
        run, Finished(epochs_done=1, best_path=str(run / "best.safetensors"), last_path="", best_metric=0.1)
    )
    (run / "best.safetensors").write_bytes(b"")
    assert next_stage(run) == (run / MASK_STAGE, second)
    append_event(run / MASK_STAGE, started(run / MASK_STAGE))
    assert next_stage(run) is None  # started once: Resume goes on with it, Start does not repeat it


def test_the_mask_head_alone_starts_from_a_box_model(instances, tmp_path):
    run, args = prepare_run(instances, tmp_path, options(task=MASK_HEAD))
    assert "--masks" in args and args[args.index("--weights") + 1] == "base.safetensors"
    assert not (run / MASK_STAGE).exists() and final_weights(run) == run / "best.safetensors"
    with pytest.raises(TrainingSetupError, match="box model to start from"):
        prepare_run(instances, tmp_path, TrainingOptions(images=ANNOTATED, task=MASK_HEAD))


def test_a_panoptic_snapshot_holds_its_pngs_and_the_edits_not_saved_yet(tmp_path):
    data = panoptic_data()
    data["images"].append({"id": 3, "file_name": "three.jpg", "width": 8, "height": 6})
    doc = CocoDocument.load(write_panoptic(tmp_path, data), image_root=tmp_path)
    doc.apply(merge_segments_edit(doc, 1, [5, 300]))  # edited, not saved
    run, args = prepare_run(doc, tmp_path, options(task=MASKS, holdout=0.0))
    assert args[args.index("--panoptic-masks") + 1] == str(run / "panoptic") and "--panoptic" in args
    train = json.loads((run / "train.json").read_text())
    assert [img["id"] for img in train["images"]] == [1]  # the only image with segments
    with Image.open(run / "panoptic" / train["annotations"][0]["file_name"]) as png:
        ids = rgb2id(np.asarray(png.convert("RGB")))
    np.testing.assert_array_equal(ids, doc.id_map(1))
    assert RunRecord.load(run).panoptic_root == str(run / "panoptic")
    with pytest.raises(TrainingSetupError, match="all of its classes"):
        prepare_run(doc, tmp_path, options(classes=["person"]))


def test_a_panoptic_run_is_compared_by_panoptic_quality(tmp_path):
    layout = generate(tmp_path / "shapes", num_train=4, num_val=0, size=64)
    doc = CocoDocument.load(layout.panoptic_json("train"), layout.images_dir("train"))
    run, _ = prepare_run(doc, tmp_path, options(task=MASKS, size=64, max_size=64))
    record = RunRecord.load(run)
    torch.manual_seed(0)
    with_masks = tiny_config(masks=True, num_classes=9)
    masks_model = save_checkpoint(build_detr(with_masks), tmp_path / "masks", with_masks, {})
    metrics = held_out_metrics(load_network(str(masks_model)), run, record)
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"} <= set(metrics) and 0.0 <= metrics["PQ"] <= 1.0
    boxes = tiny_config(num_classes=9)
    box_model = save_checkpoint(build_detr(boxes), tmp_path / "boxes", boxes, {})
    with pytest.raises(ValueError, match="no mask head"):
        held_out_metrics(load_network(str(box_model)), run, record)
