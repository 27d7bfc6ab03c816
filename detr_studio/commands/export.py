"""``detr-studio export``: write a checkpoint as an ONNX model with a dynamic batch and image size,
checked against PyTorch before the file appears. ``--int8`` writes a CPU model whose backbone
convolutions are quantised, and prints how far its detections agree with fp32."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.images import is_image_file
from ..model.state_dicts import CheckpointError
from . import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX (checked against PyTorch)",
        description=(
            "Export a DETR checkpoint to ONNX: inputs images [B,3,H,W] float32 and mask [B,H,W] bool "
            "(True = padding), batch and size dynamic; class names and preprocessing in the file's metadata. "
            "The file is written only when ONNX Runtime matches PyTorch."
        ),
    )
    p.add_argument(
        "--weights", required=True, help="checkpoint file/folder, or a model-zoo name (`zoo list`)"
    )
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument(
        "--panoptic", action="store_true", help="also output per-query masks (panoptic checkpoints)"
    )
    p.add_argument("--fp16", action="store_true", help="half-precision weights and activations, for GPUs")
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 backbone convolutions for CPUs (ONNX Runtime), judged by detection agreement with fp32",
    )
    p.add_argument(
        "--int8-backbone-only",
        action="store_true",
        help="int8: keep the whole transformer fp32 (when the int8 check fails with its feed-forward layers in int8)",
    )
    p.add_argument(
        "--calibration",
        nargs="+",
        metavar="IMAGE",
        help="images (or folders) to calibrate int8 activation ranges on; default: synthetic demo images",
    )
    p.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (17 keeps LayerNorm one node for TensorRT)"
    )
    p.add_argument(
        "--exporter",
        choices=("auto", "torchscript", "dynamo"),
        default="auto",
        help="auto: TorchScript below opset 18, dynamo from 18",
    )
    p.add_argument(
        "--check", nargs="+", metavar="IMAGE", help="also compare ONNX and PyTorch on these images"
    )
    p.add_argument("--atol", type=float, default=None, help="parity tolerance (default 1e-4, 2e-2 for fp16)")
    p.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="int8: fraction of PyTorch's detections the int8 model must keep (default 0.9)",
    )
    p.add_argument(
        "--check-data",
        metavar="COCO_JSON",
        help="with --int8: a COCO instances file; prints the box AP of fp32 (PyTorch) and int8 (ONNX Runtime) on it",
    )
    p.add_argument(
        "--check-images", metavar="FOLDER", help="the images of --check-data (default: its folder)"
    )
    p.add_argument(
        "--size",
        type=int,
        help="shorter image side recorded for runtimes (default: the checkpoint's, else 800)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        help="cap on the longer side recorded for runtimes (default: the checkpoint's, else 1333)",
    )
    p.set_defaults(run=run)


def _check_images(items: list[str] | None, option: str = "--check") -> list[Path] | None:
    if not items:
        return None
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p)))
        elif path.is_file():
            paths.append(path)
        else:
            raise CommandError(f"{path}: no such image file or folder")
    if not paths:
        raise CommandError(f"{option}: no images found")
    return paths


def run(args: argparse.Namespace) -> int:
    from ..infer.onnx_export import OnnxExportError, export_onnx
    from ..model.loading import load_model

    output = Path(args.output)
    if output.suffix.lower() != ".onnx":
        raise CommandError(f"{output}: the output file must end in .onnx")
    if (args.calibration or args.int8_backbone_only) and not args.int8:
        raise CommandError("--calibration and --int8-backbone-only need --int8")
    if args.int8 and (args.fp16 or args.panoptic):
        raise CommandError(
            "--int8 is for detection models on CPUs; it cannot be combined with --fp16 or --panoptic"
        )
    if (args.check_data or args.check_images) and not args.int8:
        raise CommandError("--check-data compares fp32 with int8: it needs --int8")
    if args.check_images and not args.check_data:
        raise CommandError("--check-images needs --check-data (the COCO file of those images)")
    check = _check_images(args.check)
    calibration = _check_images(args.calibration, "--calibration")
    try:
        loaded = load_model(args.weights)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    if args.panoptic and not loaded.family.has_masks(loaded.config):
        raise CommandError(f"{args.weights}: --panoptic needs a panoptic checkpoint (one with a mask head)")
    size = args.size or loaded.input_size.size
    max_size = args.max_size or loaded.input_size.max_size
    dataset = _check_dataset(args, size, max_size) if args.check_data else None
    task = "panoptic" if args.panoptic else "detection"
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    print(
        f"exporting {args.weights} ({loaded.family.title} {task}, {precision}) to {output} ...",
        file=sys.stderr,
    )
    if args.int8:
        print(
            f"int8: calibrating on {len(calibration) if calibration else 'synthetic'} images, then checking "
            "the int8 model against PyTorch (a few minutes for R50 on a CPU)",
            file=sys.stderr,
        )
    agreement = {} if args.min_agreement is None else {"min_agreement": args.min_agreement}
    try:
        report = export_onnx(
            loaded.model,
            loaded.config,
            output,
            panoptic=args.panoptic,
            fp16=args.fp16,
            int8=args.int8,
            calibration=calibration,
            opset=args.opset,
            class_names=loaded.class_names,
            source=str(loaded.path or args.weights),
            check_inputs=check,
            exporter=args.exporter,
            size=size,
            max_size=max_size,
            atol=args.atol,
            int8_transformer=not args.int8_backbone_only,
            **agreement,
        )
    except (OnnxExportError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(report)
    if dataset is not None:
        print(_ap_side_by_side(loaded, report.path, dataset))
    return 0


def _check_dataset(args: argparse.Namespace, size: int, max_size: int | None):
    """The --check-data COCO file as a dataset at the export's input size; one line for any problem."""
    from ..data.dataset import CocoDetectionDataset
    from ..data.transforms import make_transforms
    from .eval import one_line_errors

    images = args.check_images or str(Path(args.check_data).parent)
    with one_line_errors():
        return CocoDetectionDataset(
            args.check_data, images, make_transforms("val", scales=[size], max_size=max_size)
        )


def _ap_side_by_side(loaded, onnx_path: Path, dataset) -> str:
    """The box AP of the fp32 PyTorch model and of the exported file on ``dataset``, as a small table."""
    import torch

    from ..infer.onnx_backend import OnnxPredictor
    from ..train.evaluate import evaluate_coco
    from .eval import one_line_errors

    predictor = OnnxPredictor(onnx_path, providers="cpu")

    def exported(samples) -> dict[str, torch.Tensor]:
        logits, boxes = predictor.forward_batch(samples.tensors.numpy(), samples.mask.numpy())
        return {"pred_logits": torch.from_numpy(logits), "pred_boxes": torch.from_numpy(boxes)}

    cpu = torch.device("cpu")
    print(
        f"measuring AP on {len(dataset)} images (fp32 PyTorch, then {predictor.precision} ONNX) ...",
        file=sys.stderr,
    )
    with torch.inference_mode(), one_line_errors():
        fp32 = evaluate_coco(loaded.model, loaded.family, dataset, cpu, batch_size=1)["bbox"].stats
        ours = evaluate_coco(exported, loaded.family, dataset, cpu, batch_size=1)["bbox"].stats
    lines = [f"box AP on {len(dataset)} images     fp32 (PyTorch)   {predictor.precision} (ONNX Runtime)"]
    for name in ("AP", "AP50", "AP75"):
        lines.append(f"  {name:<6}{'':>20}{fp32[name]:>8.4f}   {ours[name]:>12.4f}")
    return "\n".join(lines)
