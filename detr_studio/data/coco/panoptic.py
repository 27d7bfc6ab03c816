"""Panoptic PNGs: reading their segment ids, checking them against ``segments_info``, and converting a
panoptic document to instances.

One check serves the window, ``train`` and ``eval``: a PNG must have its image's size, every id that
``segments_info`` lists must appear in it, and every id in it must be listed (0 is "unlabelled" unless
listed). `check_pngs` runs it over a whole document when it is opened; `checked_id_map` runs it on one
image as a dataset or panoptic quality reads it, so a large dataset opens without decoding every PNG first.
Ids are decoded by the one codec, `detr_studio.common.panoptic_ids`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from detr_studio.common.panoptic_ids import rgb2id

from .index import CocoIndex
from .paths import resolve_inside
from .problems import Checker, CocoFormatError, DatasetError, Problem
from .validate import PNG_FOLDER
from .values import plain


def read_id_png(path: Path) -> np.ndarray:
    """Segment ids of a panoptic PNG, [H, W] int32; `DatasetError` naming the file when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))  # [H, W, 3]
    except FileNotFoundError:
        raise DatasetError(f"panoptic PNG {path} not found") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise DatasetError(f"cannot read panoptic PNG {path} ({exc})") from None
    return rgb2id(rgb)


def id_map_problems(
    ids: np.ndarray, listed: set[int], size: tuple[int, int] | None, png: str | Path
) -> list[str]:
    """What is wrong with the id map ``ids`` [H, W] (read from ``png``, or named so) for an entry listing
    ``listed`` segment ids, in an image of ``size`` (width, height) when known."""
    if size is not None and (ids.shape[1], ids.shape[0]) != size:
        return [f"{png} is {ids.shape[1]}x{ids.shape[0]} but the image is {size[0]}x{size[1]}"]
    problems = []
    present = {int(v) for v in np.unique(ids)}
    missing = sorted(listed - present)
    if missing:
        problems.append(f"segments_info ids {missing[:10]} do not appear in {png}")
    extra = sorted(present - listed - {0})
    if extra:
        problems.append(f"{png} contains segment ids {extra[:10]} that segments_info does not list")
    return problems


def _entry_where(image_id: int) -> str:
    return f"panoptic annotation for image {image_id}"


def png_path(index: CocoIndex, image_id: int, root: Path | None) -> Path:
    """Where the PNG of ``image_id``'s panoptic entry is, inside ``root``."""
    return resolve_inside(root, index.panoptic[image_id]["file_name"], PNG_FOLDER)


def checked_id_map(
    index: CocoIndex, image_id: int, root: Path | None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """The [H, W] segment ids of ``image_id``'s PNG in ``root``, checked against its entry and against ``size``
    (width, height; default: the image record's). `CocoFormatError` names the file and the entry."""
    where = _entry_where(image_id)
    try:
        png = png_path(index, image_id, root)
        ids = read_id_png(png)
    except DatasetError as exc:
        raise CocoFormatError([Problem(index.source, where, str(exc))]) from None
    listed = {seg["id"] for seg in index.panoptic[image_id]["segments_info"]}
    problems = id_map_problems(ids, listed, size if size is not None else index.sizes[image_id], png)
    if problems:
        raise CocoFormatError([Problem(index.source, where, p) for p in problems])
    return ids


def check_pngs(index: CocoIndex, root: Path, ck: Checker) -> None:
    """`checked_id_map` for every panoptic entry, each problem reported to ``ck``."""
    for image_id in index.panoptic:
        try:
            checked_id_map(index, image_id, root)
        except CocoFormatError as exc:
            ck.errors.extend(exc.problems)


def instances_data(index: CocoIndex, root: Path | None) -> dict[str, Any]:
    """The JSON data of an instances document with one annotation per segment: box from ``segments_info`` (or
    from the mask), mask as RLE from the PNG when the PNG folder ``root`` is known. Images and categories are
    copied."""
    from pycocotools import mask as mask_utils

    index.require_panoptic("convert to instances")
    anns: list[dict[str, Any]] = []
    for iid, ann in index.panoptic.items():
        ids = checked_id_map(index, iid, root) if root is not None else None  # [H, W]
        for seg in ann["segments_info"]:
            rec: dict[str, Any] = {"id": len(anns) + 1, "image_id": iid, "category_id": seg["category_id"]}
            rle = None
            if ids is not None:
                mask = np.asfortranarray((ids == seg["id"]).astype(np.uint8))  # [H, W]
                rle = mask_utils.encode(mask)
                rle["counts"] = rle["counts"].decode("ascii")
                box = seg.get("bbox") or [float(v) for v in mask_utils.toBbox(rle)]
                area = seg.get("area", int(mask.sum()))
            elif "bbox" in seg:
                box = seg["bbox"]
                area = seg.get("area", float(box[2]) * float(box[3]))
            else:
                where = f"{_entry_where(iid)}, segment id {seg['id']}"
                raise CocoFormatError([Problem(index.source, where, "no 'bbox' and no PNG folder")])
            rec.update(bbox=plain(box), area=area, iscrowd=int(seg.get("iscrowd", 0)))
            if rle is not None:
                rec["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}
            anns.append(rec)
    return {key: (anns if key == "annotations" else plain(value)) for key, value in index.data.items()}
