"""Deformable DETR end to end on the command line, as a user runs it: ``predict`` from our files, official
release files and Hugging Face folders for every released configuration (tiny random models), ``export`` (and
``--int8``) and ``predict`` of the ONNX file, ``eval`` on the synthetic demo set, ``zoo list``, and a zoo
download from a local server (no published checksum: recorded on first download, checked after)."""

from __future__ import annotations

import argparse
import hashlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import numpy as np
import pytest
import torch
from PIL import Image

from detr_studio.cli import main
from detr_studio.model import zoo
from detr_studio.model.deformable_detr.config import tiny_deformable_config
from detr_studio.model.loading import load_model
from tests.deformable_helpers import (
    CONFIGURATIONS,
    random_model,
    to_hf_state_dict,
    write_hf_folder,
    write_official,
    write_ours,
)

SIZE = ("--size", "96", "--max-size", "128")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, (w, h) in {"a.jpg": (120, 80), "b.png": (64, 96)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _predictions(capsys, weights: Path | str, images: Path, out: Path, *extra: str) -> list[dict]:
    code, _, err = run_cli(capsys, "predict", "--weights", str(weights), str(images), "--threshold", "0",
                           "-o", str(out), *SIZE, *extra)  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    return json.loads(out.read_text())


def _write(layout: str, model, config, root: Path, name: str) -> Path:
    if layout == "ours":
        return write_ours(model, config, root / f"{name}.safetensors", class_names={1: "cat"})
    if layout == "official":
        hints = argparse.Namespace(nheads=config.nheads, dilation=config.dilation, two_stage=config.two_stage,
                                   num_queries=config.num_queries, with_box_refine=config.with_box_refine)  # fmt: skip
        return write_official(model, root / f"r50_{name}-checkpoint.pth", hints)
    return write_hf_folder(model, config, root / f"hf-{name}")


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_predict_gives_the_same_detections_from_every_layout(name, images, tmp_path, capsys):
    """One model of each released configuration, written as our file, an official release file and a Hugging
    Face folder: ``predict`` reads each and reports the same detections (sigmoid scores, label = index mod C)."""
    config = tiny_deformable_config(nheads=8, backbone_width=64, **CONFIGURATIONS[name])
    model = random_model(config)
    results = {}
    for layout in ("ours", "official", "huggingface"):
        weights = _write(layout, model, config, tmp_path, name)
        results[layout] = _predictions(capsys, weights, images, tmp_path / f"{layout}.json")
    first = results["ours"]
    assert len(first) == 2 * 50  # the top min(100, 10 queries x 5 classes) pairs of each image
    assert all(0 <= r["category_id"] < config.num_classes for r in first)
    scores = [r["score"] for r in first if r["image_id"] == 1]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5
    for layout in ("official", "huggingface"):
        other = results[layout]
        assert [r["category_id"] for r in other] == [r["category_id"] for r in first], layout
        assert np.allclose([r["score"] for r in other], [r["score"] for r in first], atol=1e-5), layout
        assert np.allclose([r["bbox"] for r in other], [r["bbox"] for r in first], atol=1e-2), layout


@pytest.mark.parametrize("name", ["multi-scale", "two-stage"])
def test_export_and_predict_the_onnx_file(name, images, tmp_path, capsys):
    config = tiny_deformable_config(**CONFIGURATIONS[name])
    weights = write_ours(random_model(config), config, tmp_path / "m.safetensors")
    onnx_path = tmp_path / "m.onnx"
    code, out, err = run_cli(capsys, "export", "--weights", str(weights), "-o", str(onnx_path), *SIZE)
    assert code == 0, err
    assert "ONNX parity PASSED" in out
    torch_rows = _predictions(capsys, weights, images, tmp_path / "torch.json")
    onnx_rows = _predictions(capsys, onnx_path, images, tmp_path / "onnx.json")
    assert len(onnx_rows) == len(torch_rows) == 2 * 50  # every (query, class) pair of both images

    def by_pair(rows: list[dict]) -> list[dict]:  # near-equal scores may swap places between runtimes
        return sorted(rows, key=lambda r: (r["image_id"], r["category_id"], r["score"]))

    onnx_rows, torch_rows = by_pair(onnx_rows), by_pair(torch_rows)
    assert [r["category_id"] for r in onnx_rows] == [r["category_id"] for r in torch_rows]
    assert np.allclose([r["score"] for r in onnx_rows], [r["score"] for r in torch_rows], atol=1e-4)
    assert max(r["score"] for r in torch_rows) > 0.5


@pytest.mark.slow
def test_export_int8_is_checked_and_runs(images, tmp_path, capsys):
    config = tiny_deformable_config()
    weights = write_ours(random_model(config), config, tmp_path / "m.safetensors")
    onnx_path = tmp_path / "q.onnx"
    code, out, err = run_cli(
        capsys, "export", "--weights", str(weights), "-o", str(onnx_path), "--int8", *SIZE
    )
    assert code == 0, err
    assert "int8" in out and "ONNX parity PASSED" in out
    rows = _predictions(capsys, onnx_path, images, tmp_path / "q.json")
    assert len(rows) == 2 * 50


def test_eval_on_the_demo_set_with_a_checkpoint_and_its_onnx_file(tmp_path, capsys):
    data = tmp_path / "demo"
    code, _, err = run_cli(capsys, "demo", str(data), "--train", "1", "--val", "3", "--size", "96")
    assert code == 0, err
    annotations = data / "annotations" / "instances_val.json"
    categories = json.loads(annotations.read_text())["categories"]
    config = tiny_deformable_config(num_classes=max(c["id"] for c in categories) + 1)
    weights = write_ours(random_model(config), config, tmp_path / "m.safetensors")
    onnx_path = tmp_path / "m.onnx"
    assert run_cli(capsys, "export", "--weights", str(weights), "-o", str(onnx_path), *SIZE)[0] == 0
    results = {}
    for kind, source in (("torch", weights), ("onnx", onnx_path)):
        out = tmp_path / f"{kind}.json"
        code, printed, err = run_cli(capsys, "eval", "--weights", str(source), "--data", str(annotations),
                                     "--images", str(data / "val"), *SIZE, "-o", str(out))  # fmt: skip
        assert code == 0, err
        assert "AP" in printed
        results[kind] = json.loads(out.read_text())["bbox"]
    assert len(results["torch"]) == 12
    for key, value in results["torch"].items():
        assert results["onnx"][key] == pytest.approx(value, abs=1e-3), key


def test_zoo_list_shows_the_five_deformable_checkpoints_with_their_ap(capsys):
    code, out, _ = run_cli(capsys, "zoo", "list")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.startswith("deformable")}
    expected = {
        "deformable-detr": "44.5",
        "deformable-detr-single-scale": "39.4",
        "deformable-detr-single-scale-dc5": "41.5",
        "deformable-detr-box-refine": "46.2",
        "deformable-detr-two-stage": "46.9",
    }
    assert {name: row[4] for name, row in rows.items()} == expected
    assert all(row[1] == "deformable_detr" and row[-2] == "unpublished" for row in rows.values())


class _Server:
    """A one-file web server on 127.0.0.1 that counts its requests; ``body`` is what it serves."""

    def __init__(self, body: bytes):
        self.body = body
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_zoo_download_records_its_checksum_and_the_model_predicts(images, tmp_path, capsys, monkeypatch):
    """The hub file layout (transformers 4.x names, no config.json) of a tiny single-scale model under the DC5
    entry's name: downloaded from a local mirror, its SHA-256 recorded, used without a request afterwards, a
    changed file refused, and ``predict --weights <zoo name>`` runs it with DC5 from the entry's file name."""
    config = tiny_deformable_config(num_feature_levels=1, nheads=8, dilation=True, num_classes=91)
    model = random_model(config)
    payload = tmp_path / "payload.bin"
    torch.save(to_hf_state_dict(model.state_dict(), legacy_names=True), payload)
    body = payload.read_bytes()
    server = _Server(body)
    try:
        monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
        monkeypatch.setenv(zoo.MIRROR_ENV, server.url)
        name = "deformable-detr-single-scale-dc5"
        code, out, err = run_cli(capsys, "zoo", "download", name)
        assert code == 0, err
        digest = hashlib.sha256(body).hexdigest()
        assert f"no checksum is published for {name}" in out and digest in out
        cached = zoo.cache_dir() / f"{name}.bin"
        assert cached.read_bytes() == body
        assert (zoo.cache_dir() / f"{name}.bin.sha256").read_text().strip() == digest
        assert run_cli(capsys, "zoo", "download", name)[0] == 0
        assert server.requests == 1  # the cached copy matched its record
        loaded = load_model(name)
        assert loaded.family.name == "deformable_detr" and loaded.config.dilation is True
        rows = _predictions(capsys, name, images, tmp_path / "zoo.json")
        assert len(rows) == 2 * 100 and server.requests == 1

        server.body = body[:-1] + bytes([body[-1] ^ 1])  # the file changes on the server
        cached.unlink()
        code, _, err = run_cli(capsys, "zoo", "download", name)
        assert code == 1 and "checksum mismatch" in err and "first download of this file was" in err
        assert not cached.exists()
        code, out, _ = run_cli(capsys, "zoo", "list")
        assert (
            next(line for line in out.splitlines() if line.startswith(name + " ")).split()[-2] == "recorded"
        )
    finally:
        server.close()
