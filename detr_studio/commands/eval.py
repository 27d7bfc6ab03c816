"""``detr-studio eval``: COCO box/mask AP (or panoptic quality) of a model on an annotated dataset."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..model.checkpoint import CheckpointError, build_from_checkpoint, load_checkpoint, provenance_input_size
from ..model.sources import resolve
from .errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure a model's AP (or PQ) on a COCO dataset")
    p.add_argument("--weights", required=True, help="checkpoint file/folder or zoo name")
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
def _as_command_error():
    """Bad data found while evaluating (a missing PNG, an unreadable image) becomes one clear line."""
    from ..data.dataset import DatasetError
    from ..data.images import ImageReadError

    try:
        yield
    except (DatasetError, ImageReadError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ..data.dataset import DatasetError
    from ..infer.device import pick_device
    from ..train.measure import evaluation_dataset, measure

    try:
        ckpt = load_checkpoint(resolve(args.weights))
        model = build_from_checkpoint(ckpt, aux_loss=False)
        device = pick_device(args.device)
    except (CheckpointError, ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    if (args.masks or args.panoptic) and not ckpt.config.masks:
        raise CommandError(f"{args.weights}: mask AP and PQ need a model with a mask head")
    trained = provenance_input_size(ckpt.provenance)  # the sizes it was trained and evaluated at
    size, max_size = args.size or trained[0], args.max_size or trained[1]
    try:
        dataset = evaluation_dataset(args.data, args.images, size, max_size, masks=args.masks,
                                     panoptic=args.panoptic, panoptic_masks=args.panoptic_masks)  # fmt: skip
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    with tqdm(total=len(dataset), unit="img", desc="evaluating") as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        with _as_command_error():
            result = measure(
                model, dataset, device, batch_size=args.batch, masks=args.masks, progress=progress
            )
    report = result.tables()
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
