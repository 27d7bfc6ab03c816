"""Tests for the model zoo: the official entries, and downloads against a real loopback HTTP server."""

from __future__ import annotations

import hashlib
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from detr_studio.model import zoo
from detr_studio.model.zoo import ZooDownloadError, ZooEntry, ZooHashError

PAYLOAD = random.Random(0).randbytes(2_500_000)  # a little over two 1 MiB chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
FILE = "detr-test-" + DIGEST[:8] + ".pth"


@dataclass
class FileServer:
    """Serves PAYLOAD at /FILE and records every request it gets."""

    honour_range: bool = True
    cut_after: int | None = None  # stop sending after this many body bytes (a dropped connection)
    requests: list[dict] = field(default_factory=list)
    base: str = ""

    def url(self, name: str = FILE) -> str:
        return f"{self.base}/{name}"


def _handler_for(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            record = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
            state.requests.append(record)
            if self.path != "/" + FILE:
                self.send_error(404)
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and state.honour_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(PAYLOAD):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                body = body[: state.cut_after]
                self.close_connection = True
            self.wfile.write(body)
            record["sent"] = len(body)

    return Handler


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxies, no mirror, and caches inside the test's own folder."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(zoo.MIRROR_ENV, raising=False)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def make_entry(url: str, prefix: str = DIGEST[:8]) -> ZooEntry:
    return ZooEntry(
        name="test-model",
        url=url,
        hash_prefix=prefix,
        task="detection",
        backbone="resnet50",
        dilation=False,
        num_classes=91,
    )


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{FILE}"


def test_full_download_verifies_hash_and_reports_progress(server: FileServer, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    path = zoo.download(
        make_entry(server.url()), dest_dir=tmp_path, progress=lambda d, t: calls.append((d, t)), timeout=5
    )
    assert path == tmp_path / FILE
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / (FILE + ".part")).exists()
    assert calls[0] == (0, len(PAYLOAD))
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(calls) >= 3
    done = [d for d, _ in calls]
    assert done == sorted(done)


def test_download_goes_to_cache_dir_by_default(server: FileServer, tmp_path: Path) -> None:
    path = zoo.download(make_entry(server.url()), timeout=5)
    assert path == tmp_path / "cache" / "checkpoints" / FILE
    assert zoo.cached_path(make_entry(server.url())) == path


def test_resume_sends_range_and_receives_only_the_remainder(server: FileServer, tmp_path: Path) -> None:
    half = len(PAYLOAD) // 2
    (tmp_path / (FILE + ".part")).write_bytes(PAYLOAD[:half])
    calls: list[tuple[int, int | None]] = []
    path = zoo.download(
        make_entry(server.url()), dest_dir=tmp_path, progress=lambda d, t: calls.append((d, t)), timeout=5
    )
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1
    assert server.requests[0]["range"] == f"bytes={half}-"
    assert server.requests[0]["sent"] == len(PAYLOAD) - half
    assert calls[0] == (half, len(PAYLOAD))
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_server_ignoring_range_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.honour_range = False
    half = len(PAYLOAD) // 2
    (tmp_path / (FILE + ".part")).write_bytes(PAYLOAD[:half])
    path = zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0]["sent"] == len(PAYLOAD)


def test_part_file_already_complete_is_finished_without_a_body(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / (FILE + ".part")).write_bytes(PAYLOAD)
    path = zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert [r["sent"] for r in server.requests] == [0]


def test_hash_mismatch_raises_and_leaves_no_file(server: FileServer, tmp_path: Path) -> None:
    wrong = "0" * 8 if not DIGEST.startswith("0" * 8) else "f" * 8
    entry = make_entry(server.url(), prefix=wrong)
    with pytest.raises(ZooHashError) as info:
        zoo.download(entry, dest_dir=tmp_path, timeout=5)
    message = str(info.value)
    assert server.url() in message
    assert wrong in message
    assert DIGEST in message
    assert list(tmp_path.iterdir()) == []


def test_corrupt_partial_file_fails_the_hash_and_is_deleted(server: FileServer, tmp_path: Path) -> None:
    part = tmp_path / (FILE + ".part")
    part.write_bytes(b"\x00" * 1000)
    with pytest.raises(ZooHashError):
        zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    assert not part.exists()
    assert zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5).read_bytes() == PAYLOAD


def test_dropped_connection_keeps_part_and_next_call_resumes(server: FileServer, tmp_path: Path) -> None:
    server.cut_after = 1_000_000
    with pytest.raises(ZooDownloadError, match="run it again to resume"):
        zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    part = tmp_path / (FILE + ".part")
    assert part.read_bytes() == PAYLOAD[:1_000_000]
    server.cut_after = None
    path = zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == "bytes=1000000-"


def test_progress_callback_raising_stops_and_keeps_part(server: FileServer, tmp_path: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel_after_first_chunk(done: int, total: int | None) -> None:
        if done > 0:
            raise Cancelled

    with pytest.raises(Cancelled):
        zoo.download(
            make_entry(server.url()), dest_dir=tmp_path, progress=cancel_after_first_chunk, timeout=5
        )
    assert (tmp_path / (FILE + ".part")).stat().st_size > 0
    assert not (tmp_path / FILE).exists()


def test_connection_refused_raises_clear_error(tmp_path: Path) -> None:
    url = closed_port_url()
    with pytest.raises(ZooDownloadError) as info:
        zoo.download(make_entry(url), dest_dir=tmp_path, timeout=5)
    message = str(info.value)
    assert "could not reach 127.0.0.1" in message
    assert "check your connection" in message.lower()
    assert url in message
    assert not (tmp_path / FILE).exists()


def test_http_error_names_status_and_url(server: FileServer, tmp_path: Path) -> None:
    url = server.url("missing.pth")
    with pytest.raises(ZooDownloadError, match="HTTP 404") as info:
        zoo.download(make_entry(url), dest_dir=tmp_path, timeout=5)
    assert url in str(info.value)


def test_cached_file_is_returned_without_any_request(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(PAYLOAD)
    path = zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    assert path == tmp_path / FILE
    assert server.requests == []


def test_corrupt_cached_file_is_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"not the checkpoint")
    path = zoo.download(make_entry(server.url()), dest_dir=tmp_path, timeout=5)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_torch_hub_copy_is_used_without_any_request(server: FileServer, tmp_path: Path) -> None:
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FILE).write_bytes(PAYLOAD)
    entry = make_entry(server.url())
    assert zoo.download(entry, timeout=5) == hub / FILE
    assert zoo.cached_path(entry) == hub / FILE
    assert server.requests == []


def test_mirror_env_replaces_the_host(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(zoo.MIRROR_ENV, server.base + "/")
    entry = make_entry(closed_port_url())
    assert zoo.entry_url(entry) == server.url()
    assert zoo.download(entry, dest_dir=tmp_path, timeout=5).read_bytes() == PAYLOAD


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert zoo.cache_dir() == tmp_path / "elsewhere" / "checkpoints"
    monkeypatch.delenv(zoo.CACHE_ENV)
    default = zoo.cache_dir()
    assert default.parts[-2:] == ("detr-studio", "checkpoints")


def test_official_entries_match_the_published_checkpoints() -> None:
    entries = [e for e in zoo.list_entries() if e.family == "detr"]
    assert [e.name for e in entries] == [
        "detr-r50",
        "detr-r50-dc5",
        "detr-r101",
        "detr-r101-dc5",
        "detr-r50-panoptic",
        "detr-r50-dc5-panoptic",
        "detr-r101-panoptic",
    ]
    for e in entries:
        assert e.url == f"https://dl.fbaipublicfiles.com/detr/{e.name}-{e.hash_prefix}.pth"
        assert len(e.hash_prefix) == 8
        assert e.dilation == ("dc5" in e.name)
        assert e.backbone == ("resnet101" if "r101" in e.name else "resnet50")
        if e.task == "detection":
            assert e.num_classes == 91 and e.box_ap is not None and e.pq is None
        else:
            assert e.num_classes == 250 and e.pq is not None
    assert zoo.get_entry("detr-r50").hash_prefix == "e632da11"
    assert zoo.get_entry("detr-r50").box_ap == 42.0
    assert zoo.get_entry("detr-r101-panoptic").pq == 45.1


def test_get_entry_accepts_torch_hub_names() -> None:
    assert zoo.get_entry("detr_resnet101_dc5").name == "detr-r101-dc5"


def test_unknown_entry_error_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown zoo model 'detr-r18'") as info:
        zoo.get_entry("detr-r18")
    assert "detr-r50-dc5-panoptic" in str(info.value)


def test_entry_config_describes_the_architecture() -> None:
    cfg = zoo.get_entry("detr-r50-dc5-panoptic").config()
    assert (cfg.backbone, cfg.dilation, cfg.masks, cfg.num_classes) == ("resnet50", True, True, 250)
    cfg = zoo.get_entry("detr-r101").config()
    assert (cfg.backbone, cfg.dilation, cfg.masks, cfg.num_classes) == ("resnet101", False, False, 91)


def test_entry_rejects_bad_task_and_hash_prefix() -> None:
    with pytest.raises(ValueError, match="task"):
        ZooEntry("x", "https://h/x.pth", "abcd", "segmentation", "resnet50", False, 91)
    with pytest.raises(ValueError, match="hash prefix"):
        ZooEntry("x", "https://h/x.pth", "XYZ", "detection", "resnet50", False, 91)


def test_zoo_table_lists_every_model_and_marks_cached_ones(tmp_path: Path) -> None:
    entry = zoo.get_entry("detr-r50-dc5")
    (tmp_path / entry.filename).write_bytes(b"x")
    table = zoo.format_zoo_table(dest_dir=tmp_path)
    lines = table.splitlines()
    header = ["name", "family", "task", "backbone", "box", "AP", "PQ", "size", "sha256", "cached"]
    assert lines[0].split() == header
    count = len(zoo.list_entries())
    rows = {line.split()[0]: line.split() for line in lines[1 : count + 1]}
    assert set(rows) == {e.name for e in zoo.list_entries()}
    assert rows["detr-r50-dc5"][-1] == "yes"
    assert rows["detr-r50"][-1] == "no"
    assert rows["detr-r50"][1:5] == ["detr", "detection", "R50", "42.0"]
    assert rows["detr-r50"][-2] == "e632da11"
    assert rows["detr-r101-panoptic"][5] == "45.1"
    assert str(tmp_path) in lines[-1]


def test_import_opens_no_network_connection() -> None:
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('network used at import')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "import detr_studio.model.zoo\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_deformable_entries_are_the_hub_files_under_names_of_their_own() -> None:
    entries = [e for e in zoo.list_entries() if e.family == "deformable_detr"]
    assert [(e.hub_name, e.variant, e.box_ap) for e in entries] == [
        ("SenseTime/deformable-detr", "multi-scale", 44.5),
        ("SenseTime/deformable-detr-single-scale", "single-scale", 39.4),
        ("SenseTime/deformable-detr-single-scale-dc5", "single-scale-dc5", 41.5),
        ("SenseTime/deformable-detr-with-box-refine", "box-refine", 46.2),
        ("SenseTime/deformable-detr-with-box-refine-two-stage", "two-stage", 46.9),
    ]
    for e in entries:
        assert e.url == f"https://huggingface.co/{e.hub_name}/resolve/main/pytorch_model.bin"
        assert e.hash_prefix == "" and e.filename == f"{e.name}.bin"  # every hub file is pytorch_model.bin
        assert e.config().dilation == e.dilation == ("dc5" in e.name)
    assert len({e.filename for e in zoo.list_entries()}) == len(zoo.list_entries())
    assert zoo.get_entry("SenseTime/deformable-detr").name == "deformable-detr"


def test_an_entry_without_a_published_hash_records_the_first_download_and_checks_later_ones(
    server: FileServer, tmp_path: Path
) -> None:
    entry = make_entry(server.url(), prefix="")
    path = zoo.download(entry, dest_dir=tmp_path)
    assert zoo.recorded_digest(entry, tmp_path) == DIGEST
    requests = len(server.requests)
    assert zoo.download(entry, dest_dir=tmp_path) == path and len(server.requests) == requests  # checked only
    path.write_bytes(b"tampered")  # the cached copy no longer matches its record: fetched again
    assert zoo.download(entry, dest_dir=tmp_path).read_bytes() != b"tampered"
