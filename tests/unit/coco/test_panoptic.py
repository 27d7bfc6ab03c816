"""Panoptic documents: segments, PNG checks against segments_info, lossless round trips, conversion to
instances."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from detr_studio.data.coco import CocoDocument, CocoEditError, CocoFormatError, id2rgb, rgb2id

from .helpers import SEGMENT_IDS, panoptic_data, panoptic_ids, write_json, write_panoptic


def test_rgb2id_inverts_id2rgb() -> None:
    ids = np.array([[0, 1, 255], [256, 65535, 16777215]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    assert rgb2id(np.array([[[1, 2, 3]]], dtype=np.uint8))[0, 0] == 1 + 2 * 256 + 3 * 65536


def test_panoptic_document_is_detected_with_segments(tmp_path: Path) -> None:
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path)
    assert doc.is_panoptic and doc.warnings == []
    assert doc.panoptic_root == tmp_path / "panoptic_val"
    assert doc.panoptic_png(1) == tmp_path / "panoptic_val" / "one.png"
    segments = doc.segments_for(1)
    assert [s.id for s in segments] == list(SEGMENT_IDS)
    assert segments[2].category_id == 200 and segments[2].iscrowd and segments[2].isthing is False
    assert segments[0].bbox == (0.0, 0.0, 4.0, 6.0) and segments[0].area == 24.0
    assert doc.segments_for(2) == []
    assert doc.category(200).color == (70, 130, 180) and doc.category(1).isthing is True
    assert doc.num_classes == 201
    assert doc.annotation_counts() == {1: 1, 2: 1, 200: 1}


def test_panoptic_round_trip_is_lossless(tmp_path: Path) -> None:
    path = write_panoptic(tmp_path)
    doc = CocoDocument.load(path)
    doc.apply(doc.set_image_reviewed(2))  # an edit and its undo
    doc.save()
    assert json.dumps(json.loads(path.read_text())) == json.dumps(panoptic_data())


def test_panoptic_segment_missing_from_png_is_an_error(tmp_path: Path) -> None:
    ids = panoptic_ids()
    ids[ids == 300] = 5
    path = write_panoptic(tmp_path, ids=ids)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    assert str(path) in str(info.value)
    assert "panoptic annotation for image 1" in str(info.value)
    assert "segments_info ids [300] do not appear in" in str(info.value)
    assert CocoDocument.load(path, check_masks=False).is_panoptic


def test_png_segment_missing_from_segments_info_is_an_error(tmp_path: Path) -> None:
    ids = panoptic_ids()
    ids[0, 0] = 12345
    path = write_panoptic(tmp_path, ids=ids)
    with pytest.raises(CocoFormatError, match=r"one\.png contains segment ids \[12345\] that segments_info"):
        CocoDocument.load(path)


def test_missing_or_wrong_size_png_is_an_error(tmp_path: Path) -> None:
    path = write_panoptic(tmp_path)
    (tmp_path / "panoptic_val" / "one.png").unlink()
    with pytest.raises(
        CocoFormatError, match=r"panoptic_val\.json: panoptic annotation for image 1: .*not found"
    ):
        CocoDocument.load(path)
    Image.fromarray(id2rgb(np.zeros((3, 3), dtype=np.int64))).save(tmp_path / "panoptic_val" / "one.png")
    with pytest.raises(CocoFormatError, match="is 3x3 but the image is 8x6"):
        CocoDocument.load(path)


def test_panoptic_structure_errors_are_named(tmp_path: Path) -> None:
    data = panoptic_data()
    data["annotations"][0]["segments_info"][1]["category_id"] = 77
    data["annotations"][0]["segments_info"].append({"id": 5, "category_id": 1})
    data["annotations"].append({"image_id": 1, "file_name": "again.png", "segments_info": []})
    path = write_json(tmp_path, data)
    with pytest.raises(CocoFormatError) as info:
        CocoDocument.load(path)
    text = str(info.value)
    assert "panoptic annotation for image 1, segment id 300: category_id 77 is not in 'categories'" in text
    assert "segments_info[3]: duplicate segment id 5" in text
    assert "annotations[2]: a second panoptic annotation for image 1" in text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2
def test_panoptic_to_instances_gives_boxes_and_rle_masks(tmp_path: Path) -> None:
    doc = CocoDocument.load(write_panoptic(tmp_path))
    inst = doc.panoptic_to_instances()
    assert not inst.is_panoptic
    anns = inst.annotations
    assert [a.category_id for a in anns] == [1, 2, 200]
    assert [a.bbox for a in anns] == [(0, 0, 4, 6), (4, 0, 4, 3), (4, 3, 4, 3)]
    assert [a.iscrowd for a in anns] == [False, False, True]
    ids = panoptic_ids()
    for ann, sid in zip(anns, SEGMENT_IDS):
        decoded = mask_utils.decode(copy.deepcopy(ann.segmentation))  # [H, W]
        assert np.array_equal(decoded.astype(bool), ids == sid)
    assert inst.categories == doc.categories
    json.dumps(inst.to_json())


def test_panoptic_to_instances_without_pngs_uses_segment_boxes(tmp_path: Path) -> None:
    path = write_json(tmp_path, panoptic_data())
    doc = CocoDocument.load(path)
    assert doc.panoptic_root is None
    inst = doc.panoptic_to_instances()
    assert [a.bbox for a in inst.annotations] == [(0, 0, 4, 6), (4, 0, 4, 3), (4, 3, 4, 3)]
    assert all(a.segmentation is None for a in inst.annotations)
    data = panoptic_data()
    del data["annotations"][0]["segments_info"][0]["bbox"]
    with pytest.raises(CocoFormatError, match="segment id 5: no 'bbox' and no PNG folder"):
        CocoDocument.load(write_json(tmp_path, data)).panoptic_to_instances()


def test_panoptic_document_refuses_instance_edits_clearly(tmp_path: Path) -> None:
    doc = CocoDocument.load(write_panoptic(tmp_path))
    with pytest.raises(CocoEditError, match="panoptic"):
        doc.add(1, 1, [0, 0, 2, 2])
    with pytest.raises(CocoEditError, match="panoptic"):
        _ = doc.annotations
    with pytest.raises(CocoEditError, match="used by 1 segments"):
        doc.remove_category(200)
    doc.rename_category(200, "sky-other")
    assert doc.category(200).name == "sky-other"
