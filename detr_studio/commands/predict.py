"""``detr-studio predict``: run a model over images and write COCO results (and panoptic PNGs + JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.images import ImageReadError, is_image_file
from ..infer.detections import DEFAULT_THRESHOLD
from ..model.state_dicts import CheckpointError
from . import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="detect (and optionally segment) objects in images",
        description="Run a model (DETR or another family) over images and folders of images; write COCO results JSON.",
    )
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    p.add_argument(
        "--weights", required=True, help="checkpoint file/folder, or a model-zoo name (`zoo list`)"
    )
    p.add_argument("-o", "--output", default="predictions.json", help="COCO results JSON to write")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"keep detections scoring above this (default {DEFAULT_THRESHOLD}, the window's; 0 keeps all)",
    )
    p.add_argument(
        "--panoptic", action="store_true", help="also write panoptic PNGs + JSON (panoptic models)"
    )
    p.add_argument(
        "--panoptic-threshold", type=float, default=0.85, help="query confidence for panoptic segments"
    )
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory layout (default: on for CPUs, where it is faster)",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="run the network exactly as built (no batch-norm folding; slower, differs only by float rounding)",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default=None,
        help="inference engine (default: onnx for .onnx files, else torch)",
    )
    p.add_argument(
        "--size", type=int, default=None, help="shorter image side fed to the network (default: the model's)"
    )
    p.add_argument("--max-size", type=int, default=None, help="cap on the longer side (default: the model's)")
    p.set_defaults(run=run)


def expand_images(items: list[str]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, not recursive)."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not found:
                print(f"warning: {path}: no images in this folder", file=sys.stderr)
            paths.extend(found)
        else:
            paths.append(path)
    return paths


def load_predictor(args: argparse.Namespace):
    """The torch Predictor, or the ONNX Runtime one for ``.onnx`` files / ``--backend onnx``."""
    backend = args.backend or ("onnx" if str(args.weights).endswith(".onnx") else "torch")
    sizes = {k: v for k, v in (("size", args.size), ("max_size", args.max_size)) if v is not None}
    try:
        if backend == "onnx":
            from ..infer.onnx_backend import OnnxPredictor

            providers = (
                "cpu" if args.device == "cpu" else "cuda" if args.device.startswith("cuda") else "auto"
            )
            predictor = OnnxPredictor(
                args.weights, providers=providers, panoptic_threshold=args.panoptic_threshold, **sizes
            )
            if predictor.provider_note:
                print(f"note: {predictor.provider_note}", file=sys.stderr)
            return predictor
        from ..infer.predictor import Predictor

        predictor = Predictor.from_weights(
            args.weights,
            device=args.device,
            precision=args.precision,
            channels_last=args.channels_last,
            panoptic_threshold=args.panoptic_threshold,
            fold_batchnorm=not args.exact,
            **sizes,
        )
        if predictor.note:
            print(f"note: {predictor.note}", file=sys.stderr)
        return predictor
    except (CheckpointError, ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise CommandError("--batch must be at least 1")
    paths = expand_images(args.images)
    if not paths:
        raise CommandError("no images to predict")
    predictor = load_predictor(args)
    if args.panoptic and not predictor.supports_masks:
        raise CommandError(f"{args.weights}: --panoptic needs a panoptic model (one with a mask head)")
    output = Path(args.output)
    panoptic_dir = output.with_name(output.stem + "_panoptic")
    if args.panoptic:
        panoptic_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    panoptic_annotations: list[dict] = []
    images: list[dict] = []
    failures = 0
    stream = predictor.predict_files(paths, batch_size=args.batch, panoptic=args.panoptic)
    said = ""
    for image_id, (path, outcome) in enumerate(tqdm(stream, total=len(paths), unit="img"), start=1):
        plan = predictor.last_plan
        if plan is not None and plan.note and plan.note != said:
            said = plan.note
            tqdm.write(f"note: {plan.note}", file=sys.stderr)
        if isinstance(outcome, ImageReadError):
            failures += 1
            tqdm.write(f"skipped: {outcome}", file=sys.stderr)
            continue
        height, width = outcome.image_size
        images.append({"id": image_id, "file_name": str(path), "height": height, "width": width})
        for entry in outcome.above(args.threshold).sorted().to_coco(image_id):
            entry["file_name"] = str(path)
            results.append(entry)
        if args.panoptic and outcome.panoptic is not None:
            png_name = f"{path.stem}_{image_id:06d}.png"
            (panoptic_dir / png_name).write_bytes(outcome.panoptic.png)
            panoptic_annotations.append(
                {"image_id": image_id, "file_name": png_name, "segments_info": outcome.panoptic.segments_info}
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results), encoding="utf-8")
    done = len(paths) - failures
    print(f"{len(results)} detections in {done} images -> {output}", file=sys.stderr)
    if args.panoptic:
        names = predictor.class_names
        categories = sorted({s["category_id"] for a in panoptic_annotations for s in a["segments_info"]})
        doc = {
            "images": images,
            "annotations": panoptic_annotations,
            "categories": [
                {"id": c, "name": names.get(c, str(c)), "isthing": int(c <= 90)} for c in categories
            ],
        }
        pan_json = output.with_name(output.stem + "_panoptic.json")
        pan_json.write_text(json.dumps(doc), encoding="utf-8")
        print(f"panoptic PNGs in {panoptic_dir}, segments in {pan_json}", file=sys.stderr)
    if failures:
        print(f"{failures} of {len(paths)} images could not be read (see above)", file=sys.stderr)
        return 1
    return 0
