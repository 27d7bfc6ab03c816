"""``detr-studio eval``: COCO box/mask AP (or panoptic quality) of a model on an annotated dataset.

``--weights`` names PyTorch weights (a file, a folder, a zoo name or "demo"), read by the load pipeline, or an
exported ``.onnx`` file, run by ONNX Runtime: the AP of what is deployed. Every problem with the weights or the
dataset (a COCO file the checker refuses, a missing image, a broken PNG) ends in one line naming the file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ..model.checkpoint import InputSize
from ..model.state_dicts import CheckpointError
from . import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure a model's AP (or PQ) on a COCO dataset")
    p.add_argument(
        "--weights", required=True, help="checkpoint file/folder, zoo name, 'demo' or an .onnx file"
    )
    p.add_argument("--data", required=True, help="COCO instances (or panoptic) JSON")
    p.add_argument("--images", required=True, help="folder of the images")
    p.add_argument("--panoptic", action="store_true", help="the JSON is COCO panoptic: report PQ")
    p.add_argument("--panoptic-masks", help="folder of the panoptic PNGs (default: beside the JSON)")
    p.add_argument("--masks", action="store_true", help="also mask AP (segmentation models)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--size", type=int, help="shorter side fed to the network (default: the checkpoint's, else 800)"
    )
    p.add_argument(
        "--max-size", type=int, help="cap on the longer side (default: the checkpoint's, else 1333)"
    )
    p.add_argument("-o", "--output", help="write the metrics as JSON here")
    p.set_defaults(run=run)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Bad weights or data (a COCO file the checker refuses, a missing PNG, an unreadable image, a broken
    checkpoint, no such device) become one clear line: every rejection is a ValueError (``DatasetError``,
    ``CocoFormatError``, ``FileProblem``), an OSError, an ``ImageReadError`` or a ``CheckpointError``."""
    from ..data.images import ImageReadError

    try:
        yield
    except (ImageReadError, CheckpointError, ValueError, OSError, KeyError, RuntimeError) as exc:
        raise CommandError(one_line(exc)) from None


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a list of problems joined with "; ")."""
    text = (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)).strip()
    lines = [line.strip(" -•\t") for line in str(text).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {'; '.join(lines[1:])}"


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.dataset import CocoDetectionDataset, CocoPanopticDataset
    from ..data.transforms import make_transforms
    from ..infer.device import pick_device
    from ..train.evaluate import evaluate_coco

    if args.batch < 1:
        raise CommandError("--batch must be at least 1")
    onnx = str(args.weights).lower().endswith(".onnx")
    if onnx and (args.masks or args.panoptic):
        raise CommandError(
            f"{args.weights}: mask AP and PQ need a model with a mask head (an ONNX file gives box AP; "
            "evaluate the checkpoint for masks)"
        )
    with one_line_errors():
        if onnx:
            family, forward, device, trained = _onnx_runner(args)
            has_masks = False
        else:
            from ..model.loading import load_model

            loaded = load_model(args.weights)
            family, forward, trained = loaded.family, loaded.model, loaded.input_size
            device = pick_device(args.device)
            has_masks = family.has_masks(loaded.config)
    if (args.masks or args.panoptic) and not has_masks:
        raise CommandError(f"{args.weights}: mask AP and PQ need a model with a mask head")
    size = InputSize(args.size or trained.size, args.max_size or trained.max_size)
    transforms = make_transforms("val", scales=[size.size], max_size=size.max_size)
    with one_line_errors():
        if args.panoptic:
            pan_root = args.panoptic_masks or str(Path(args.data).with_suffix(""))
            dataset = CocoPanopticDataset(args.data, args.images, pan_root, transforms)
        else:
            dataset = CocoDetectionDataset(args.data, args.images, transforms, masks=args.masks)
    if not onnx:
        forward.to(device).eval()
    with tqdm(total=len(dataset), unit="img", desc="evaluating") as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        with torch.inference_mode(), one_line_errors():
            if args.panoptic:
                from ..train.panoptic_quality import evaluate_panoptic

                result = evaluate_panoptic(forward, dataset, device, progress=progress)
                report = {"panoptic": result.flat(), "per_class_pq": result.per_class_pq()}
            else:
                metrics = evaluate_coco(
                    forward, family, dataset, device, args.batch, args.masks, progress=progress
                )
                report = {kind: m.stats for kind, m in metrics.items()}
                report["per_class_ap"] = metrics["bbox"].per_class
    for kind, values in report.items():
        print(f"{kind}:")
        for name, value in values.items():
            print(f"  {name:>16}: {value:.4f}")
    if args.output:
        try:
            Path(args.output).write_text(json.dumps(report, indent=2), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{args.output}: cannot write the metrics ({exc.strerror or exc})") from None
        print(f"metrics written to {args.output}", file=sys.stderr)
    return 0


def _onnx_runner(args: argparse.Namespace):
    """(family, forward over a padded batch, device, input size) for an exported ONNX file."""
    import torch

    from ..infer.onnx_backend import OnnxPredictor

    providers = "cpu" if args.device == "cpu" else "cuda" if str(args.device).startswith("cuda") else "auto"
    predictor = OnnxPredictor(args.weights, providers=providers)
    if predictor.provider_note:
        print(f"note: {predictor.provider_note}", file=sys.stderr)

    def forward(samples) -> dict[str, torch.Tensor]:
        logits, boxes = predictor.forward_batch(samples.tensors.cpu().numpy(), samples.mask.cpu().numpy())
        return {"pred_logits": torch.from_numpy(logits), "pred_boxes": torch.from_numpy(boxes)}

    size = InputSize(predictor.size, predictor.max_size)
    return predictor.family, forward, torch.device("cpu"), size
