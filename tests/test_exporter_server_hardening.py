"""The exporter's HTTP server against malformed requests, and its accept queue.

A real exporter process; raw bytes over a socket, as an attacker (or a broken client)
sends them. aiohttp's parser refuses each with 400; the exporter's log must show one
structured, redacted line per refusal and never a traceback, a key or a query.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from perfgen.exporter.cli import FALLBACK_BACKLOG, listen_backlog
from perfgen.stack.processes import ManagedProcess, free_port, start_perfgen

KEY = "sk-server-hardening-key-0123456789"
CONFIG = f"""
[[providers]]
name = "local"
api_base_url = "http://127.0.0.1:9/v1"
api_key = "{KEY}"
models = ["m"]
"""

GOOD = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
MALFORMED: dict[str, bytes | tuple[bytes, ...]] = {
    "header_without_colon": (
        f"GET /probe?target=local:m&secret={KEY} HTTP/1.1\r\nHost: x\r\n{KEY}\r\n\r\n"
    ).encode(),
    "control_char_in_header": (
        f"GET /probe?k={KEY} HTTP/1.1\r\nHost: x\r\nX-Key: {KEY}\x01\r\n\r\n"
    ).encode(),
    "oversized_header": (
        f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}{'a' * 9000}\r\n\r\n"
    ).encode(),
    # Garbage as the second request of a kept-alive connection is logged as an error
    # by aiohttp (the first request's garbage only at debug level).
    "bad_method_after_a_good_request": (GOOD, f"G\x00T /?key={KEY} HTTP/1.1\r\n\r\n".encode()),
    "bad_version": f"GET /?key={KEY} HTTP/9.9x\r\nHost: x\r\n\r\n".encode(),
}


def send_raw(port: int, data: bytes | tuple[bytes, ...]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        for part in data if isinstance(data, tuple) else (data,):
            connection.sendall(part)
            time.sleep(0.2)  # the server handles each part as its own request
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> ManagedProcess:
    workdir = tmp_path_factory.mktemp("server")
    config = workdir / "config.toml"
    config.write_text(CONFIG)
    port = free_port()
    process = start_perfgen(
        ["exporter", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
        + ["--log-format", "json"],
        "exporter listening on",
        workdir,
    )
    yield process
    process.stop()


def port_of(process: ManagedProcess) -> int:
    assert process.url is not None
    return int(process.url.rsplit(":", 1)[1])


def log_records(process: ManagedProcess) -> list[dict[str, object]]:
    lines = process.log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_malformed_requests_are_one_redacted_line_each(exporter: ManagedProcess) -> None:
    port = port_of(exporter)
    for name, data in MALFORMED.items():
        answer = send_raw(port, data)
        assert b"HTTP/1.1 400" in answer or b"HTTP/1.0 400" in answer, (name, answer[:200])
    # The process writes its log on its own time: wait for the lines (a condition polled
    # for up to 10 s), not for a moment that may be too short on a busy machine.
    deadline = time.monotonic() + 10
    bad: list[dict[str, object]] = []
    while len(bad) < len(MALFORMED) and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            bad = [r for r in log_records(exporter) if r["msg"] == "bad HTTP request"]
        except json.JSONDecodeError:  # read while a line was half written: read again
            continue
    text = exporter.log_path.read_text(errors="replace")
    assert "Traceback" not in text
    assert KEY not in text and KEY[:12] not in text
    assert len(bad) >= len(MALFORMED)
    for record in bad:
        assert record["level"] == "warning" and record["status"] == 400
        assert record["remote"] == "127.0.0.1"
        assert len(str(record["error"])) <= 200
    # Every non-JSON line is the ready line: nothing unstructured reached the log.
    others = [line for line in text.splitlines() if not line.startswith("{")]
    assert others == [exporter.ready_line]


def test_the_accept_queue_is_the_kernels_limit(exporter: ManagedProcess) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listen_backlog() == somaxconn
    # For a listening socket, ss shows the backlog it was given as Send-Q.
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port_of(exporter)}"], capture_output=True, text=True
    ).stdout.split()
    assert int(listing[2]) == somaxconn > 128


def test_the_backlog_falls_back_when_the_kernel_file_is_unreadable(tmp_path: Path) -> None:
    assert listen_backlog(str(tmp_path / "missing")) == FALLBACK_BACKLOG
    (tmp_path / "junk").write_text("many\n")
    assert listen_backlog(str(tmp_path / "junk")) == FALLBACK_BACKLOG
