"""ONNX Runtime (fp32 and int8) against our PyTorch paths on the CPU, and the kept-queries panoptic paths
against the full one.

Network rows: DETR R50 (``DetrConfig()`` defaults, random weights, eval) exported once with ``export_onnx``
into a temporary folder (dynamic batch and size) and once more as int8 (``export_onnx(int8=True)``: the
backbone's convolutions quantised, calibrated on the synthetic demo generator's pictures, and the
transformer's feed-forward layers quantised dynamically), both run
through ``OnnxPredictor``'s sessions (its defaults: CPU provider, all graph optimisations, 2 intra-op
threads, spin-waiting), against our network as ``Predictor`` runs it (fp32, the peer of every ratio;
fp32 channels-last, ``Predictor``'s CPU default; bf16 autocast + channels-last) and Hugging Face ``transformers``' DETR with the same weights, at batch 1 and 4
on 800x1066 inputs. Every figure is the latency per image as a ratio to our fp32 network in the same run.
On a CPU without native bf16 the bf16 path is timed once at batch 1 only (it is several times slower
there). The int8 file's agreement with PyTorch fp32 comes from its export check on the calibration
pictures; with random weights no query is a confident detection, so only top-class agreement and the
size of the differences can be seen: a trained model's detection agreement (printed by ``detr-studio
export --int8``) is the real check.

A full run also compares ONNX Runtime session settings on the fp32 file (spin-waiting, optimisation level,
threads, a graph exported with batch norm already folded) against ``OnnxPredictor``'s defaults, and ends
this part with one profiled run: time by operator, graph size before and after optimisation, threads.

Panoptic rows: four ways to the same panoptic result of one 1333x1000 picture through the same network:
the reference's way in PyTorch (mask head for all 100 queries, then ``PostProcessPanoptic``), the same
with the whole panoptic ONNX file in ONNX Runtime, and the kept-queries paths of both backends
(``Predictor.predict(..., panoptic=True)``; ``OnnxPredictor``, which runs the file as two parts and the
mask head for the kept queries only). The target compares the fastest kept-queries path with the
reference's way. Each kept-queries path is checked against the full path of its own backend for the same
PNG bytes and segments_info (the ONNX Runtime check must hold: the bench fails otherwise). A random network
keeps no query, which would flatter the kept-queries paths, so a per-query bias on the class head makes
``KEPT_QUERIES`` of the 100 queries confident, as a trained model does on a typical COCO picture. With
random weights the queries' mask logits differ by ~1e-6 per pixel, so the identity checks are bit-exact
in practice: any numerical difference between two paths changes the PNG.

``--quick`` halves the input and times one repeat: a smoke run, not a measurement.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from detr_studio.data.preprocess import batch as make_batch
from detr_studio.data.preprocess import prepare
from detr_studio.infer import device as devices
from detr_studio.infer.onnx_backend import OnnxPredictor, session_options
from detr_studio.infer.onnx_export import ExportReport, export_onnx
from detr_studio.infer.onnx_metadata import DETECTION_OUTPUTS
from detr_studio.infer.predictor import Predictor
from detr_studio.infer.quantize import synthetic_calibration_images
from detr_studio.model.classes import default_is_thing_map
from detr_studio.model.detr.build import build_detr
from detr_studio.model.detr.config import DetrConfig
from detr_studio.model.detr.panoptic import PostProcessPanoptic
from detr_studio.model.fuse import FoldedConv2d, fold_frozen_batchnorm
from detr_studio.model.nested import NestedTensor

from .bench_inference import build_hf_peer, synthetic_picture
from .common import THREADS, Report, Timing, cpu_has_fast_bf16, set_threads, time_interleaved

FULL = (800, 1066, 800, 1333)  # network input (H, W); Predictor size, max_size
QUICK = (400, 533, 400, 667)
BATCHES = (1, 4)
LARGE_BATCH_REPEATS = 2  # batch 4 costs four images a call
QUICK_CALIBRATION_IMAGES = 2  # --quick: fewer calibration pictures for the int8 export
ORT_TARGET = 0.6  # ONNX Runtime fp32 / ours fp32, per image
BEST_TARGET = 0.35  # our fastest path / ours fp32, per image
PANOPTIC_TARGET = 0.3  # fastest kept-queries panoptic / the reference's full panoptic, end to end
PANOPTIC_CLASSES = 250
# Classes of the confident queries: things (<= 90) and stuff, with a repeated thing and a repeated stuff
# class so that the stuff-merging step of the post-processing runs too.
KEPT_CLASSES = (1, 3, 18, 44, 62, 1, 7, 27, 84, 90, 184, 187, 199, 184, 132)
KEPT_QUERIES = len(KEPT_CLASSES)
CONFIDENT_LOGIT = 12.0  # added to one column per query: softmax probability ~0.98 with random weights
CPU = torch.device("cpu")
ORT = "ONNX Runtime fp32"
ORT_INT8 = "ONNX Runtime int8"
FP32 = "ours fp32"
FP32_CL = "ours fp32 channels-last"
BF16 = "ours bf16 channels-last"
HF = "HF transformers fp32"
DEFAULT_SESSION = "OnnxPredictor session (defaults)"


class _Last:
    """Wraps a callable and keeps its latest return value, so that timed runs also give the outputs."""

    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self.value: object = None

    def __call__(self) -> object:
        self.value = self.fn()
        return self.value


def per_image(timing: Timing, batch: int) -> Timing:
    """A batch's call times divided by its size: seconds per image."""
    return Timing(tuple(t / batch for t in timing.samples), tuple(t / batch for t in timing.cpu_samples))


def cores_busy(timing: Timing) -> str:
    """CPU seconds per wall second of the timed calls: ~2 when the run had both cores to itself."""
    cpu = timing.cpu_median
    return "" if cpu is None or timing.median <= 0 else f"{cpu / timing.median:.1f} cores busy"


def load_note(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    busy = ": the machine is busy, so these timings are noisy" if one > 0.5 else ""
    return f"load average {when}: {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} cores{busy}"


def run(report: Report) -> None:
    set_threads()
    torch.manual_seed(0)
    height, width, size, max_size = QUICK if report.quick else FULL
    report.note(load_note("at start"))
    _network(report, (height, width), size, max_size)
    gc.collect()
    _panoptic(report, size, max_size)
    report.note(load_note("at end"))


# ------------------------------------------------------------------------------------------ the network


def _network(report: Report, hw: tuple[int, int], size: int, max_size: int) -> None:
    config = DetrConfig()
    network = build_detr(config).eval()
    hf, hf_note = build_hf_peer(network, config)
    report.note(hf_note)
    # Our paths are the networks exactly as Predictor runs them (frozen batch norm folded): the plain
    # fp32 network, the peer of every ratio, and the channels-last one that Predictor uses on CPUs.
    ours = Predictor(network, config, device=CPU, channels_last=False).model
    ours_cl = Predictor(network, config, device=CPU, channels_last=True).model
    folded = sum(isinstance(module, FoldedConv2d) for module in ours.modules())
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as folder:
        path = Path(folder) / "detr_r50.onnx"
        exported = export_onnx(network, config, path)
        report.add(
            "ONNX export, R50 detection",
            exported.seconds,
            "s",
            note=f"{exported.exporter} exporter, opset {exported.opset}, {exported.size_bytes / 2**20:.0f} MiB, "
            "incl. parity check; reused for every batch size",
        )
        int8_path = Path(folder) / "detr_r50_int8.onnx"
        calibration = synthetic_calibration_images(QUICK_CALIBRATION_IMAGES) if report.quick else None
        quantised = export_onnx(
            network, config, int8_path, int8=True, calibration=calibration, size=size, max_size=max_size
        )
        report.add(
            "ONNX int8 export, R50 detection",
            quantised.seconds,
            "s",
            note=f"{quantised.size_bytes / 2**20:.0f} MiB; fp32 export + check, calibration, quantisation and "
            "the int8 check on the calibration pictures",
        )
        _int8_agreement(report, quantised)
        onnx = OnnxPredictor(path, providers="cpu", threads=THREADS)
        onnx_int8 = OnnxPredictor(int8_path, providers="cpu", threads=THREADS)
        options = onnx.session.get_session_options()
        report.note(
            f"ONNX Runtime sessions: {onnx.provider}, graph optimisation {options.graph_optimization_level.name}, "
            f"intra-op threads {options.intra_op_num_threads}, spin-waiting "
            f"{options.get_session_config_entry('session.intra_op.allow_spinning')}, "
            f"execution mode {options.execution_mode.name}"
        )
        report.note(
            f"DETR R50 (DetrConfig() defaults, random weights, eval), input {hw[0]}x{hw[1]}; 'ours' is the "
            f"network as Predictor runs it ({folded} frozen batch norms folded into convolutions; 'ours fp32' "
            "in the standard layout, channels-last, Predictor's CPU default, on its own row), torch "
            f"{torch.get_num_threads()} threads; latency per image = median call / batch; warm-up {report.warmup}, "
            f"median of {report.repeats} at batch 1 and of {min(report.repeats, LARGE_BATCH_REPEATS)} at larger "
            "batches; candidates interleaved so that load changes hit all alike"
        )
        if not cpu_has_fast_bf16():
            report.note(
                "this CPU has no native bf16 (no AMX / AVX-512 BF16), so bf16 runs on slow fallback kernels: "
                "it is timed once at batch 1 (paired with one fp32 run) and skipped at larger batches"
            )
        for batch in BATCHES:
            _network_batch(report, ours, ours_cl, hf, onnx, onnx_int8, batch, hw)
        del onnx, onnx_int8
        gc.collect()
        if not report.quick:
            _session_settings(report, network, config, path, hw)
            _profile_onnx(report, path, hw)
        gc.collect()


def _int8_agreement(report: Report, quantised: ExportReport) -> None:
    parity = quantised.parity[0]  # the int8 file against PyTorch fp32 on the calibration pictures
    detections = (
        f"{parity.matched_detections} of {max(parity.torch_detections, parity.onnx_detections)} detections match"
        if parity.torch_detections or parity.onnx_detections
        else "no query scores above 0.5 with random weights, so detection agreement cannot be measured here"
    )
    report.add(
        "int8 vs PyTorch fp32: top class agreement",
        100.0 * parity.top_class_agreement,
        "%",
        note=f"{parity.queries} queries of {len(parity.sizes)} calibration pictures (random weights); "
        f"max |logit diff| {parity.max_diff('pred_logits'):.3f}, max |box diff| {parity.max_diff('pred_boxes'):.4f} "
        f"of the image; {detections}; a trained model's detection agreement (detr-studio export --int8) "
        "is the real check",
    )
    report.note(quantised.notes[-1] if quantised.notes else "int8 export")


def _network_batch(
    report: Report,
    ours: nn.Module,
    ours_cl: nn.Module,
    hf: nn.Module | None,
    onnx: OnnxPredictor,
    onnx_int8: OnnxPredictor,
    batch: int,
    hw: tuple[int, int],
) -> None:
    height, width = hw
    generator = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 3, height, width, generator=generator)  # [B, 3, H, W]
    mask = torch.zeros(batch, height, width, dtype=torch.bool)  # [B, H, W], True = padding
    samples = NestedTensor(x, mask)
    samples_cl = NestedTensor(x.contiguous(memory_format=torch.channels_last), mask)
    feed = {"images": x.numpy(), "mask": mask.numpy()}
    pixel_mask = torch.ones(batch, height, width, dtype=torch.long)  # transformers: 1 = real pixel

    def ours_bf16() -> object:
        with devices.autocast(CPU, "bf16"):
            return ours_cl(samples_cl)

    candidates = {
        ORT: _Last(lambda: onnx.session.run(list(DETECTION_OUTPUTS), feed)),
        ORT_INT8: _Last(lambda: onnx_int8.session.run(list(DETECTION_OUTPUTS), feed)),
        FP32: _Last(lambda: ours(samples)),
        FP32_CL: _Last(lambda: ours_cl(samples_cl)),
    }
    if hf is not None:
        candidates[HF] = _Last(lambda: hf(pixel_values=x, pixel_mask=pixel_mask))
    fast_bf16 = cpu_has_fast_bf16()
    if fast_bf16:
        candidates[BF16] = _Last(ours_bf16)
    repeats = report.repeats if batch == 1 else min(report.repeats, LARGE_BATCH_REPEATS)
    with torch.inference_mode():
        times = {
            name: per_image(t, batch)
            for name, t in time_interleaved(candidates, report.warmup, repeats).items()
        }
        # (candidate, its fp32 peer) for the best-path row
        paths = {
            name: (times[name], times[FP32]) for name in (ORT, ORT_INT8, FP32, FP32_CL, BF16) if name in times
        }
        if not fast_bf16 and batch == 1:
            pair = {BF16: ours_bf16, FP32: lambda: ours(samples)}
            slow = {name: per_image(t, batch) for name, t in time_interleaved(pair, 0, 1).items()}
            paths[BF16] = (slow[BF16], slow[FP32])

    tag = f"batch {batch}"
    fp32 = times[FP32]
    report.add_timing(f"{tag}: {FP32}", fp32, note=f"per image; {cores_busy(fp32)}")
    report.add_timing(
        f"{tag}: {ORT}",
        times[ORT],
        peer=FP32,
        peer_timing=fp32,
        target=ORT_TARGET,
        note=f"per image; {cores_busy(times[ORT])}",
    )
    report.add_timing(
        f"{tag}: {ORT_INT8}",
        times[ORT_INT8],
        peer=FP32,
        peer_timing=fp32,
        note=f"per image; {times[ORT_INT8].median / times[ORT].median:.2f}x ONNX Runtime fp32; "
        f"{cores_busy(times[ORT_INT8])}",
    )
    report.add_timing(
        f"{tag}: {FP32_CL}",
        times[FP32_CL],
        peer=FP32,
        peer_timing=fp32,
        note=f"per image; {cores_busy(times[FP32_CL])}",
    )
    if BF16 in times:
        report.add_timing(
            f"{tag}: {BF16}",
            times[BF16],
            peer=FP32,
            peer_timing=fp32,
            note=f"per image; {cores_busy(times[BF16])}",
        )
    elif BF16 in paths:
        report.add_timing(
            f"{tag}: {BF16}",
            paths[BF16][0],
            peer=f"{FP32} (paired run)",
            peer_timing=paths[BF16][1],
            note="CPU without native bf16: one paired run, no warm-up",
        )
    else:
        report.add(f"{tag}: {BF16}", None, "s", note="skipped: CPU without native bf16 (see batch 1)")
    if HF in times:
        report.add_timing(
            f"{tag}: {HF}", times[HF], peer=FP32, peer_timing=fp32, note=f"per image; {cores_busy(times[HF])}"
        )
    best = min(paths, key=lambda name: paths[name][0].median / paths[name][1].median)
    report.add_timing(
        f"{tag}: best path",
        paths[best][0],
        peer=FP32,
        peer_timing=paths[best][1],
        target=BEST_TARGET,
        note=f"{best}, per image; target {BEST_TARGET}x",
    )
    torch_out = candidates[FP32].value
    for name in (ORT, ORT_INT8):
        out = candidates[name].value
        logit_diff = np.abs(out[0] - torch_out["pred_logits"].numpy()).max()
        box_diff = np.abs(out[1] - torch_out["pred_boxes"].numpy()).max()
        same = (out[0].argmax(-1) == torch_out["pred_logits"].numpy().argmax(-1)).mean()
        report.note(
            f"{tag}: {name} vs ours fp32 on the timing input (Gaussian noise): max |logit diff| {logit_diff:.1e}, "
            f"max |box diff| {box_diff:.1e}, top class agrees on {100 * same:.0f}% of queries"
        )


def _session_settings(
    report: Report, network: nn.Module, config: DetrConfig, path: Path, hw: tuple[int, int]
):
    """ONNX Runtime session settings on the fp32 file at batch 1, each against OnnxPredictor's defaults,
    and the same network exported with its batch norms folded before export."""
    import onnxruntime as ort

    folded = copy.deepcopy(network)
    fold_frozen_batchnorm(folded)
    folded_path = path.with_name("detr_r50_folded.onnx")
    export_onnx(folded, config, folded_path)
    level = ort.GraphOptimizationLevel

    def session(model: Path, **changes):
        options = session_options(THREADS, spinning=changes.pop("spinning", True))
        for key, value in changes.items():
            setattr(options, key, value)
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

    sessions = {
        DEFAULT_SESSION: session(path),
        "spin-waiting off": session(path, spinning=False),
        "optimisation level EXTENDED": session(path, graph_optimization_level=level.ORT_ENABLE_EXTENDED),
        "optimisation level BASIC": session(path, graph_optimization_level=level.ORT_ENABLE_BASIC),
        "1 intra-op thread": session(path, intra_op_num_threads=1),
        "graph exported with batch norm folded": session(folded_path),
    }
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(3))  # [1, 3, H, W]
    feed = {"images": x.numpy(), "mask": np.zeros((1, *hw), dtype=bool)}
    candidates = {name: (lambda s=s: s.run(list(DETECTION_OUTPUTS), feed)) for name, s in sessions.items()}
    times = report.time(candidates)
    for name in list(sessions)[1:]:
        report.add_timing(
            f"ORT session: {name}",
            times[name],
            peer=DEFAULT_SESSION,
            peer_timing=times[DEFAULT_SESSION],
            note=f"fp32, batch 1; {cores_busy(times[name])}",
        )
    folded_path.unlink(missing_ok=True)


def _profile_onnx(report: Report, path: Path, hw: tuple[int, int]) -> None:
    """One profiled ONNX Runtime run at batch 1: where the time goes, whether the graph was optimised
    (node count, NCHWc convolution layout) and how many threads the session added."""
    import onnx
    import onnxruntime as ort

    folder = path.parent
    options = session_options(THREADS)
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "ort-profile")
    options.optimized_model_filepath = str(folder / "optimised.onnx")
    options.log_severity_level = 3  # the optimised file is for this CPU only, which is fine here
    tasks = Path("/proc/self/task")
    threads_before = len(list(tasks.iterdir())) if tasks.is_dir() else None
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    added = None if threads_before is None else len(list(tasks.iterdir())) - threads_before
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(1))  # [1, 3, H, W]
    session.run(None, {"images": x.numpy(), "mask": np.zeros((1, *hw), dtype=bool)})
    events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    by_op: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values()) or 1
    top = ", ".join(f"{op} {100 * us / total:.0f}%" for op, us in by_op.most_common(5))
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    optimised = onnx.load(str(folder / "optimised.onnx"), load_external_data=False).graph.node
    nchwc = sum(1 for node in optimised if node.domain == "com.microsoft.nchwc")
    threads = "" if added is None else f"; the session added {added} thread(s) to the calling one"
    report.note(
        f"ONNX Runtime profile (fp32, batch 1, one run): kernel time by operator {top}; graph {nodes} nodes -> "
        f"{len(optimised)} after optimisation, {nchwc} in the NCHWc (blocked) layout{threads}"
    )


# ------------------------------------------------------------------------------------------ panoptic


def confident_query_bias(num_queries: int, num_classes: int, kept: Sequence[int], seed: int = 0) -> Tensor:
    """A [Q, C+1] bias for the class head's logits: ``len(kept)`` queries (chosen at random) get
    ``CONFIDENT_LOGIT`` on their class, all others on no-object (the last column)."""
    bias = torch.zeros(num_queries, num_classes + 1)
    bias[:, num_classes] = CONFIDENT_LOGIT
    queries = torch.randperm(num_queries, generator=torch.Generator().manual_seed(seed))[: len(kept)]
    for query, cls in zip(queries.tolist(), kept):
        bias[query] = 0.0
        bias[query, cls] = CONFIDENT_LOGIT
    return bias


class BiasedClassHead(nn.Module):
    """The class head plus a fixed per-query bias [Q, C+1]: a module, so that the ONNX export has it too."""

    def __init__(self, head: nn.Linear, bias: Tensor):
        super().__init__()
        self.head = head
        self.register_buffer("query_bias", bias)

    def forward(self, hs: Tensor) -> Tensor:
        return self.head(hs) + self.query_bias  # [..., Q, C+1]


def _full_panoptic(
    model: nn.Module, post: PostProcessPanoptic, picture: Image.Image, size: int, max_size: int
) -> dict:
    """The reference's way: masks of all queries, then the post-processor keeps what it needs."""
    tensor = prepare(picture, size, max_size)  # [3, h, w]
    out = model(make_batch([tensor]))  # pred_masks [1, Q, h/4, w/4]
    return post(out, [tuple(tensor.shape[-2:])], [(picture.height, picture.width)])[0]


def _whole_onnx_panoptic(
    session, post: PostProcessPanoptic, picture: Image.Image, size: int, max_size: int
) -> dict:
    """The reference's way with the panoptic ONNX file run whole: masks of all queries, then the
    post-processor."""
    tensor = prepare(picture, size, max_size)  # [3, h, w]
    nested = make_batch([tensor])
    logits, _, masks = session.run(None, {"images": nested.tensors.numpy(), "mask": nested.mask.numpy()})
    outputs = {"pred_logits": torch.from_numpy(logits), "pred_masks": torch.from_numpy(masks)}
    return post(outputs, [tuple(tensor.shape[-2:])], [(picture.height, picture.width)])[0]


def _differing(ours, theirs: dict) -> list[str]:
    same = (
        ("PNG bytes", ours.png == theirs["png_string"]),
        ("segments_info", ours.segments_info == theirs["segments_info"]),
    )
    return [what for what, equal in same if not equal]


def _panoptic(report: Report, size: int, max_size: int) -> None:
    import onnxruntime as ort

    config = DetrConfig(num_classes=PANOPTIC_CLASSES, masks=True)
    model = build_detr(config).eval()
    bias = confident_query_bias(config.num_queries, config.num_classes, KEPT_CLASSES)
    model.detr.class_embed = BiasedClassHead(model.detr.class_embed, bias)
    picture = synthetic_picture(max_size, size * 5 // 4)  # 1333x1000 -> 800x1066 network input
    predictor = Predictor(model, config, device=CPU, size=size, max_size=max_size)
    post = PostProcessPanoptic(
        default_is_thing_map(config.num_classes), predictor.panoptic.threshold, void=predictor.panoptic.void
    )
    with tempfile.TemporaryDirectory(prefix="bench-panoptic-") as folder:
        path = Path(folder) / "detr_r50_panoptic.onnx"
        exported = export_onnx(model, config, path, panoptic=True, size=size, max_size=max_size)
        report.add(
            "ONNX export, R50 panoptic (two-part graph)",
            exported.seconds,
            "s",
            note=f"{exported.size_bytes / 2**20:.0f} MiB, incl. parity check of the masks of every query",
        )
        onnx = OnnxPredictor(path, providers="cpu", threads=THREADS)
        whole = ort.InferenceSession(str(path), session_options(THREADS), providers=["CPUExecutionProvider"])
        # The torch paths both run the very network Predictor runs, so that only the mask-head work differs.
        candidates = {
            "torch full": _Last(lambda: _full_panoptic(predictor.model, post, picture, size, max_size)),
            "torch kept": _Last(lambda: predictor.predict([picture], panoptic=True)[0].panoptic),
            "onnx full": _Last(lambda: _whole_onnx_panoptic(whole, post, picture, size, max_size)),
            "onnx kept": _Last(lambda: onnx.predict([picture], panoptic=True)[0].panoptic),
        }
        with torch.inference_mode():
            times = report.time(candidates)
    h, w = predictor.resized_size(picture.width, picture.height)
    setting = (
        f"{KEPT_QUERIES} of {config.num_queries} queries made confident by a per-query class-head bias; "
        f"{picture.width}x{picture.height} picture -> {h}x{w}, batch 1"
    )
    reference = "torch, all queries + PostProcessPanoptic"
    kept = {"onnx kept": "ONNX Runtime, two-part file", "torch kept": "torch, Predictor"}
    best = min(kept, key=lambda name: times[name].median)
    report.add_timing(
        "panoptic end to end, best kept-queries path",
        times[best],
        peer=reference,
        peer_timing=times["torch full"],
        target=PANOPTIC_TARGET,
        note=f"{kept[best]}; {setting}",
    )
    for name, label in kept.items():
        report.add_timing(
            f"panoptic kept queries, {label}",
            times[name],
            peer=reference,
            peer_timing=times["torch full"],
            note="mask head for the kept queries only",
        )
    report.add_timing(
        "panoptic ONNX Runtime: kept queries vs whole file",
        times["onnx kept"],
        peer="whole file (all queries) + PostProcessPanoptic",
        peer_timing=times["onnx full"],
        note="the same backend on both sides",
    )
    torch_differs = _differing(candidates["torch kept"].value, candidates["torch full"].value)
    onnx_differs = _differing(candidates["onnx kept"].value, candidates["onnx full"].value)
    segments = len(candidates["onnx kept"].value.segments_info)
    for label, differing, count in (
        ("ONNX Runtime", onnx_differs, segments),
        ("torch", torch_differs, len(candidates["torch kept"].value.segments_info)),
    ):
        report.add(
            f"panoptic {label} kept vs full: outputs that differ",
            float(len(differing)),
            "",
            note=", ".join(differing) + " DIFFER"
            if differing
            else f"PNG bytes and segments_info identical ({count} segments)",
        )
    ids_same = (candidates["onnx kept"].value.ids == candidates["torch kept"].value.ids).mean()
    report.note(
        f"panoptic ONNX Runtime vs torch: {100 * ids_same:.1f}% of pixels have the same segment id, {segments} vs "
        f"{len(candidates['torch kept'].value.segments_info)} segments; with random weights the winning mask of a "
        "pixel is decided by ~1e-6 differences, so this only shows that the two runtimes round differently"
    )
    if onnx_differs:
        raise AssertionError(
            f"ONNX Runtime kept-queries panoptic differs from the whole file in {', '.join(onnx_differs)}"
        )
