"""DETR R50 inference on the CPU: our network against Hugging Face ``transformers``' DETR with the same
configuration and weights, our bf16 + channels-last path against our fp32 path, how far bf16 answers
stray from fp32 answers, and the same comparisons end to end through ``Predictor.predict``.

Batch 1, network input 800x1066 (a 1333x1000 picture for the end-to-end rows, which the reference
preprocessing resizes to 800x1066). ``--quick`` halves the input and times one repeat: a smoke run,
not a measurement.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

import detr_studio
from detr_studio.infer import device as devices
from detr_studio.infer.detections import Detections
from detr_studio.infer.predictor import Predictor
from detr_studio.model.box_ops import box_cxcywh_to_xyxy
from detr_studio.model.checkpoint import CheckpointError
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig
from detr_studio.model.nested import NestedTensor

from .common import Report, cpu_has_fast_bf16, set_threads

FULL = (800, 1066, 800, 1333)  # network input (H, W); Predictor size, max_size
QUICK = (400, 533, 400, 667)
FORWARD_TARGET = 1.0  # ours / Hugging Face, fp32
BF16_TARGET = 0.4  # ours bf16 + channels-last / ours fp32
DEMO_DIR = Path(detr_studio.__file__).resolve().parent / "resources" / "demo"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Agreement:
    """How far one set of raw outputs strays from another, query by query."""

    top_class: float  # share of queries whose argmax over all classes (no-object included) agrees, in %
    box_norm: float  # largest |difference| of a box coordinate divided by the image side
    box_px: float  # largest |difference| of an xyxy corner coordinate, in input pixels
    queries: int


def agreement(
    ref_logits: Tensor, ref_boxes: Tensor, logits: Tensor, boxes: Tensor, hw: tuple[int, int]
) -> Agreement:
    """ref_logits, logits: [Q, C+1]; ref_boxes, boxes: [Q, 4] normalised cxcywh; hw: the input size."""
    ref_logits, ref_boxes, logits, boxes = (t.float() for t in (ref_logits, ref_boxes, logits, boxes))
    same = (ref_logits.argmax(-1) == logits.argmax(-1)).float().mean().item() * 100
    h, w = hw
    diff = (box_cxcywh_to_xyxy(ref_boxes) - box_cxcywh_to_xyxy(boxes)).abs()  # [Q, 4] normalised xyxy
    px = (diff * torch.tensor([w, h, w, h], dtype=torch.float32)).max().item()
    return Agreement(same, diff.max().item(), px, int(ref_logits.shape[0]))


def synthetic_picture(width: int, height: int) -> Image.Image:
    """A deterministic RGB picture: a smooth background with a few filled shapes on it."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 53.0)], axis=-1)
    img = Image.fromarray((base * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        x1, y1 = (
            x0 + int(rng.integers(width // 10, width // 4)),
            y0 + int(rng.integers(height // 10, height // 4)),
        )
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=color)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=color)
    return img


class _Last:
    """Wraps a callable and keeps its latest return value, so that timed runs also give the outputs."""

    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self.value: object = None

    def __call__(self) -> object:
        self.value = self.fn()
        return self.value


# ------------------------------------------------------------------------------------ Hugging Face peer


def build_hf_peer(ours: nn.Module, config: DetrConfig) -> tuple[nn.Module | None, str]:
    """transformers' DetrForObjectDetection with ``config``'s shape, a native (non-timm) ResNet-50 and no
    pretrained download, carrying our model's weights. -> (model or None, a note on what was built)."""
    try:
        import transformers
    except ImportError:
        return None, "transformers is not installed (pip install -e '.[test]'): no Hugging Face peer"
    from tests.model_helpers import to_hf_state_dict

    backbone = transformers.ResNetConfig(
        layer_type="bottleneck",
        depths=[3, 4, 6, 3],
        hidden_sizes=[256, 512, 1024, 2048],
        embedding_size=64,
        out_features=["stage4"],
    )
    hf_config = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=config.hidden_dim,
        encoder_layers=config.enc_layers,
        decoder_layers=config.dec_layers,
        encoder_attention_heads=config.nheads,
        decoder_attention_heads=config.nheads,
        encoder_ffn_dim=config.dim_feedforward,
        decoder_ffn_dim=config.dim_feedforward,
        num_queries=config.num_queries,
        num_labels=config.num_classes,
        auxiliary_loss=False,
    )
    hf = transformers.DetrForObjectDetection(hf_config).eval()
    attn = getattr(hf.config, "_attn_implementation", None) or "default"
    note = (
        f"Hugging Face peer: transformers {transformers.__version__} DetrForObjectDetection, attention '{attn}', "
        "backbone = transformers' native ResNet-50 (same v1.5 bottleneck layout and frozen batch norm as our "
        "torchvision ResNet-50, different module code)"
    )
    try:
        hf.load_state_dict(to_hf_state_dict(ours.state_dict()), strict=True)
    except (RuntimeError, ValueError) as exc:
        return (
            hf,
            note
            + f"; could NOT load our weights ({str(exc).splitlines()[0]}), so it keeps its own random ones",
        )
    return hf, note + "; it carries our weights"


def hf_pipeline(processor, hf: nn.Module, picture: Image.Image) -> list[dict]:
    """transformers' own end-to-end path: image processor, model, post-processing (all queries kept)."""
    inputs = processor(images=[picture], return_tensors="pt")
    outputs = hf(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
    return processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[picture.size[::-1]])


# ------------------------------------------------------------------------------------ the benchmark


def run(report: Report) -> None:
    set_threads()
    torch.manual_seed(0)
    height, width, size, max_size = QUICK if report.quick else FULL
    config = DetrConfig()
    report.note(
        f"DETR R50 (DetrConfig() defaults, random weights, eval, inference_mode), batch 1, input {height}x{width}, "
        f"{torch.get_num_threads()} threads, warm-up {report.warmup}, median of {report.repeats}; timings "
        "interleave the candidates so that load changes hit all alike"
    )
    if not cpu_has_fast_bf16():
        report.note(
            "this CPU has no native bf16 (no AMX / AVX-512 BF16): oneDNN does not take bf16 convolutions here and "
            "PyTorch falls back to its slow reference convolution, so bf16 is expected to be SLOWER than fp32"
        )
    ours = build_detr(config).eval()
    hf, hf_note = build_hf_peer(ours, config)
    report.note(hf_note)
    ours_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    _forward(report, ours, ours_cl, hf, (height, width))
    _end_to_end(report, ours, ours_cl, hf, config, size, max_size)
    _demo_agreement(report, size, max_size)


def _forward(
    report: Report, ours: nn.Module, ours_cl: nn.Module, hf: nn.Module | None, hw: tuple[int, int]
) -> None:
    """The network alone on a ready [1, 3, H, W] batch: ours fp32 vs HF fp32, channels-last, bf16."""
    height, width = hw
    x = torch.randn(1, 3, height, width)  # [B, 3, H, W]
    samples = NestedTensor(x, torch.zeros(1, height, width, dtype=torch.bool))
    samples_cl = NestedTensor(x.contiguous(memory_format=torch.channels_last), samples.mask)
    pixel_mask = torch.ones(1, height, width, dtype=torch.long)  # transformers: 1 = real pixel

    def ours_bf16() -> dict:
        with devices.autocast(CPU, "bf16"):
            return ours_cl(samples_cl)

    candidates = {"ours fp32": _Last(lambda: ours(samples))}
    if hf is not None:
        candidates["HF fp32"] = _Last(lambda: hf(pixel_values=x, pixel_mask=pixel_mask))
    candidates["ours fp32 channels-last"] = _Last(lambda: ours_cl(samples_cl))
    candidates["ours bf16 channels-last"] = _Last(ours_bf16)
    with torch.inference_mode():
        times = report.time(candidates)
    fp32 = times["ours fp32"]
    ref = candidates["ours fp32"].value  # {"pred_logits": [1, Q, C+1], "pred_boxes": [1, Q, 4]}

    if hf is None:
        report.add_timing("forward fp32", fp32, note="no Hugging Face peer")
    else:
        report.add_timing(
            "forward fp32", fp32, peer="HF fp32", peer_timing=times["HF fp32"], target=FORWARD_TARGET
        )
        theirs = candidates["HF fp32"].value
        diff = (ref["pred_logits"] - theirs.logits).abs().max().item()
        box_diff = (ref["pred_boxes"] - theirs.pred_boxes).abs().max().item()
        report.note(f"same weights, ours vs HF: max |logit diff| {diff:.2e}, max |box diff| {box_diff:.2e}")
    report.add_timing(
        "forward fp32 channels-last",
        times["ours fp32 channels-last"],
        peer="ours fp32",
        peer_timing=fp32,
        note="informative",
    )
    report.add_timing(
        "forward bf16 channels-last",
        times["ours bf16 channels-last"],
        peer="ours fp32",
        peer_timing=fp32,
        target=BF16_TARGET,
        note="" if cpu_has_fast_bf16() else "CPU without native bf16",
    )
    low = candidates["ours bf16 channels-last"].value
    agree = agreement(
        ref["pred_logits"][0], ref["pred_boxes"][0], low["pred_logits"][0], low["pred_boxes"][0], hw
    )
    _add_agreement(report, "random weights", agree, f"{height}x{width} input")
    spread = ref["pred_logits"][0].std(0).mean().item()
    report.note(
        f"random weights give near-identical queries (logit spread across queries {spread:.1e}), so their "
        "bf16 agreement says little; a trained model is the real check"
    )


def _add_agreement(report: Report, what: str, agree: Agreement, pixels: str) -> None:
    report.add(f"bf16 top-class agreement ({what})", agree.top_class, "%", note=f"{agree.queries} queries")
    report.add(f"bf16 max box diff ({what})", agree.box_norm, "", note="normalised coordinates")
    report.add(f"bf16 max box diff ({what})", agree.box_px, "px", note=f"xyxy corners, {pixels}")


def _end_to_end(
    report: Report,
    ours: nn.Module,
    ours_cl: nn.Module,
    hf: nn.Module | None,
    config: DetrConfig,
    size: int,
    max_size: int,
) -> None:
    """``Predictor.predict`` on one PIL picture (resize, normalise, forward, Detections) against
    transformers' processor + model + post-processing."""
    picture = synthetic_picture(max_size, size * 5 // 4)  # 1333x1000 -> resized to 800x1066
    fp32 = Predictor(ours, config, device=CPU, size=size, max_size=max_size)
    bf16 = Predictor(
        ours_cl, config, device=CPU, precision="bf16", channels_last=True, size=size, max_size=max_size
    )
    candidates: dict[str, Callable[[], object]] = {
        "predict fp32": lambda: fp32.predict([picture]),
        "predict bf16": lambda: bf16.predict([picture]),
    }
    if hf is not None:
        import transformers

        processor = transformers.DetrImageProcessor(size={"shortest_edge": size, "longest_edge": max_size})
        candidates["HF pipeline fp32"] = lambda: hf_pipeline(processor, hf, picture)
    with torch.inference_mode():
        times = report.time(candidates)
    e2e = times["predict fp32"]
    h, w = fp32.resized_size(picture.width, picture.height)
    shape = f"{picture.width}x{picture.height} picture -> {h}x{w} input"
    if hf is not None:
        report.add_timing(
            "predict() fp32 end-to-end",
            e2e,
            peer="HF pipeline fp32",
            peer_timing=times["HF pipeline fp32"],
            target=FORWARD_TARGET,
            note=shape,
        )
    else:
        report.add_timing("predict() fp32 end-to-end", e2e, note=shape)
    report.add_timing(
        "predict() bf16 end-to-end", times["predict bf16"], peer="predict() fp32", peer_timing=e2e
    )


def _demo_agreement(report: Report, size: int, max_size: int) -> None:
    """bf16 vs fp32 on a trained model, whose confident answers make agreement meaningful."""
    if not DEMO_DIR.is_dir():
        report.add("bf16 agreement (demo model)", None, "", note="not available yet")
        report.note(
            f"bf16 agreement on a trained model: not available yet (no demo checkpoint at {DEMO_DIR})"
        )
        return
    try:
        fp32 = Predictor.from_weights(DEMO_DIR, device=CPU, size=size, max_size=max_size)
        bf16 = Predictor.from_weights(
            DEMO_DIR, device=CPU, precision="bf16", channels_last=True, size=size, max_size=max_size
        )
    except (CheckpointError, ValueError, OSError) as exc:
        report.add("bf16 agreement (demo model)", None, "", note="demo checkpoint unreadable")
        report.note(f"bf16 agreement on the demo model skipped: {exc}")
        return
    pictures = sorted(p for p in DEMO_DIR.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    picture: Image.Image | Path = pictures[0] if pictures else synthetic_picture(max_size, size * 5 // 4)
    report.note(f"demo model: {fp32.name}, picture: {pictures[0] if pictures else 'synthetic shapes'}")
    ref, low = fp32.predict([picture])[0], bf16.predict([picture])[0]
    _add_agreement(report, "demo model", _detections_agreement(ref, low), "picture pixels")
    confident = ref.scores > 0.7
    if confident.any():
        sub = _detections_agreement(ref, low, confident)
        _add_agreement(report, "demo model, fp32 score > 0.7", sub, "picture pixels")


def _detections_agreement(ref: Detections, low: Detections, keep: np.ndarray | None = None) -> Agreement:
    """Agreement of two Detections of one picture (boxes in picture pixels), optionally on some queries."""
    keep = np.ones(len(ref.scores), dtype=bool) if keep is None else keep
    same = float((ref.probs[keep].argmax(-1) == low.probs[keep].argmax(-1)).mean() * 100)
    px = float(np.abs(ref.boxes[keep] - low.boxes[keep]).max())
    h, w = ref.image_size
    norm = float((np.abs(ref.boxes[keep] - low.boxes[keep]) / np.array([w, h, w, h])).max())
    return Agreement(same, norm, px, int(keep.sum()))
