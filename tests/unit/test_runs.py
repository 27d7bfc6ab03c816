"""Fine-tuning runs without a window: the snapshot of the document, the ``detr-studio train`` arguments, the
run history read from events, the crash message and the before/after record."""

from __future__ import annotations

import json

import pytest

from detr_studio.data.coco import CocoDocument
from detr_studio.train.config import split_ids
from detr_studio.train.events import EpochEnd, Failed, Finished, Started
from detr_studio.train.runs import (
    AFTER,
    ANNOTATED,
    BEFORE,
    REVIEWED,
    RUNS_FOLDER,
    ApChange,
    RunRecord,
    TrainingOptions,
    TrainingSetupError,
    ap_change,
    append_event,
    choose_images,
    crash_event,
    list_runs,
    new_run_dir,
    prepare_run,
    read_comparison,
    resume_arguments,
    save_command,
    split_images,
    store_comparison,
    torchrun_command,
    train_arguments,
    training_scales,
    write_snapshot,
)


@pytest.fixture
def reviewed_doc(tmp_path) -> CocoDocument:
    """Image 1 reviewed: a human cat, a rejected model dog and a pending model cat. Image 2 not reviewed,
    with a human dog. Image 3 reviewed, empty (a negative). Image 4 untouched."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 40} for i in (1, 2, 3, 4)]
    ours = {"source": "model", "score": 0.9, "model": "m"}
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "area": 81, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 5, 9, 9], "area": 81, "iscrowd": 0,
         "detr_studio": {**ours, "review": "rejected"}},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [30, 5, 9, 9], "area": 81, "iscrowd": 0,
         "detr_studio": {**ours, "review": "pending"}},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0},
    ]  # fmt: skip
    doc = CocoDocument(
        {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        },
        image_root=tmp_path,
    )
    doc.set_image_reviewed(1)
    doc.set_image_reviewed(3)
    return doc


def test_the_snapshot_holds_the_chosen_images_and_only_trusted_labels(reviewed_doc, tmp_path):
    assert choose_images(reviewed_doc, REVIEWED) == [1, 3]
    assert choose_images(reviewed_doc, ANNOTATED) == [1, 2, 3]
    run = new_run_dir(tmp_path)
    snap = write_snapshot(reviewed_doc, run, TrainingOptions(images=ANNOTATED, holdout=0.34, classes=["cat"]))
    assert sorted(snap.train_ids + snap.val_ids) == [1, 2, 3] and len(snap.val_ids) == 1
    train, val = json.loads(snap.train_json.read_text()), json.loads(snap.val_json.read_text())
    labels = train["annotations"] + val["annotations"]
    assert [a["id"] for a in labels] == [1]  # no rejected, no pending proposal, no dog
    assert train["categories"] == [{"id": 1, "name": "cat"}] == val["categories"]
    assert snap.image_root == tmp_path.resolve()
    args = train_arguments(snap, TrainingOptions(images=ANNOTATED, size=64, max_size=96, device="cpu"))
    assert args[:3] == ["train", "--data", str(snap.train_json)] and "--val-data" in args
    assert (
        args[args.index("--scales") + 1] == ",".join(str(s) for s in training_scales(64))
        and args[args.index("--max-size") + 1] == "96"
    )
    assert "--weights" not in args and args[-4:] == ["--device", "cpu", "--workers", "2"]
    line = torchrun_command(train_arguments(snap, TrainingOptions(), local=False), 8)
    assert line.startswith("torchrun --nproc_per_node=8 -m detr_studio train") and "--device" not in line


def test_a_run_cannot_start_without_images_and_cannot_resume_without_a_checkpoint(reviewed_doc, tmp_path):
    for image in (1, 3):
        reviewed_doc.set_image_reviewed(image, False)
    with pytest.raises(TrainingSetupError, match="no reviewed images to train on: mark images as reviewed"):
        write_snapshot(reviewed_doc, tmp_path, TrainingOptions())
    with pytest.raises(TrainingSetupError, match="no classes chosen"):
        write_snapshot(reviewed_doc, tmp_path, TrainingOptions(images=ANNOTATED, classes=[]))
    run = new_run_dir(tmp_path)
    save_command(run, ["train", "--data", "x.json"])
    with pytest.raises(TrainingSetupError, match="nothing to resume from"):
        resume_arguments(run)
    (run / "last.pth").write_bytes(b"")
    assert resume_arguments(run) == ["train", "--data", "x.json", "--resume", str(run)]


def test_the_run_history_reads_each_run_state_from_its_events(tmp_path):
    started = Started(epochs=3, start_epoch=0, steps_per_epoch=2, train_images=4, val_images=1, device="cpu",
                      world_size=1, out_dir="")  # fmt: skip
    runs = []
    for name, final in (
        ("a", None),
        ("b", Finished(epochs_done=1, best_path="", last_path="", best_metric=0.5, cancelled=True)),
        ("c", Failed("boom")),
    ):
        run = tmp_path / RUNS_FOLDER / name
        run.mkdir(parents=True)
        save_command(run, ["train"])
        append_event(run, started)
        append_event(run, EpochEnd(epoch=1, train_loss=1.0, train_losses={}, metrics={}, seconds=1.0))
        if final is not None:
            append_event(run, final)
        runs.append(run)
    with (runs[0] / "events.jsonl").open("a") as fh:
        fh.write('{"event": "step", "epo')  # a line torn by a crash
    states = {s.name: (s.state, s.epochs_done, s.epochs) for s in list_runs(tmp_path)}
    assert states == {"c": ("failed", 1, 3), "b": ("cancelled", 1, 3), "a": ("stopped", 1, 3)}
    assert [s.name for s in list_runs(tmp_path)] == ["c", "b", "a"]  # newest (by name) first


def test_the_window_holds_out_images_by_the_trainers_own_rule():
    ids = list(range(1, 11))
    assert split_images(ids, 0.2, 42) == split_ids(ids, 0.2, 42)
    train, held = split_ids(ids, 0.2, 42)
    assert len(held) == 2 and sorted(train + held) == ids
    assert split_ids([5], 0.5, 0) == ([5], [])  # never every image
    assert split_ids([1, 2], 0.9, 0)[0] != []
    assert split_ids(ids, 0.0, 0) == (ids, [])


def test_training_scales_are_the_reference_recipe_scaled():
    assert training_scales(800) == list(range(480, 801, 32))
    small = training_scales(64)
    assert max(small) == 64 and small == sorted(small) and len(small) == len(set(small))


def test_prepare_run_writes_a_record_and_leaves_no_folder_when_it_cannot_start(reviewed_doc, tmp_path):
    run, args = prepare_run(reviewed_doc, tmp_path, TrainingOptions(images=ANNOTATED, holdout=0.34))
    record = RunRecord.load(run)
    assert record.train_images + record.val_images == 3 and record.val_images == 1
    assert json.loads((run / "command.json").read_text()) == args
    assert "--device" not in record.args and "--device" in args
    for image in (1, 3):
        reviewed_doc.set_image_reviewed(image, False)
    with pytest.raises(TrainingSetupError):
        prepare_run(reviewed_doc, tmp_path, TrainingOptions())
    assert [p.name for p in (tmp_path / RUNS_FOLDER).iterdir()] == [run.name]


def test_a_crash_names_how_the_child_ended_and_the_checkpoint_that_is_kept(tmp_path):
    failed = crash_event(tmp_path, -9, "Killed")
    assert failed.message.startswith("The training process was stopped by SIGKILL (killed: out of memory")
    assert "It had not saved a checkpoint yet." in failed.message and failed.last_checkpoint == ""
    (tmp_path / "last.pth").write_bytes(b"")
    kept = crash_event(tmp_path, 1, "")
    assert "exited with code 1" in kept.message and kept.last_checkpoint == str(tmp_path / "last.pth")


def test_the_comparison_keeps_both_sides(tmp_path):
    assert read_comparison(tmp_path) == {}
    store_comparison(tmp_path, BEFORE, {"AP": 0.25})
    store_comparison(tmp_path, AFTER, {"error": "no memory"})
    assert read_comparison(tmp_path) == {BEFORE: {"AP": 0.25}, AFTER: {"error": "no memory"}}
    (tmp_path / "comparison.json").write_text("{broken")
    assert read_comparison(tmp_path) == {}


def test_a_trained_model_that_scores_lower_than_its_base_is_called_worse(tmp_path):
    assert ap_change({}) is None and ap_change({BEFORE: {"AP": 0.4}, AFTER: {"error": "no memory"}}) is None
    store_comparison(tmp_path, BEFORE, {"AP": 0.462, "AP50": 0.8})
    store_comparison(tmp_path, AFTER, {"AP": 0.277, "AP50": 0.5})
    change = ap_change(read_comparison(tmp_path))
    assert change == ApChange(0.462, 0.277) and change.worse
    assert not ApChange(0.277, 0.462).worse and not ApChange(0.4621, 0.4619).worse  # equal as shown
