"""The exporter probes through one long-lived session, and keep-alive never costs a probe.

A scripted upstream on 127.0.0.1 counts the TCP connections it accepts and can close a
kept-alive connection the ways real servers do: idle, well before the next request, or
just as the next request arrives (its idle timeout and our request crossing).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from perfgen.exporter.app import create_app, exporter_of
from perfgen.exporter.cli import GC_THRESHOLDS, tune_gc

KEY = "sk-session-test-0123456789"

_CHUNKS = [
    {"choices": [{"delta": {"content": "Hello "}}]},
    {"choices": [{"delta": {"content": "there"}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 9}},
]
BODY = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in _CHUNKS)
BODY += b"data: [DONE]\n\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % len(BODY)
) + BODY


class Upstream:
    """An OpenAI-style streaming server, HTTP/1.1 keep-alive, written by hand.

    close: None keeps connections open; "idle" closes each connection right after its
    response (the next probe finds it closed); "on_reuse" reads the next request on a
    kept-alive connection and closes without answering; "always" closes every
    connection without answering.
    """

    def __init__(self, close: str | None = None) -> None:
        self.close = close
        self.connections = 0
        self.answered = 0
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if self.close == "always" or (self.close == "on_reuse" and served):
                    return
                writer.write(RESPONSE)
                await writer.drain()
                served += 1
                self.answered += 1
                if self.close == "idle":
                    return
        finally:
            writer.close()
            # Closed for real (the FIN is on its way), not only asked to close.
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.closed.set()


def config_toml(port: int) -> str:
    return f"""
[[providers]]
name = "up"
api_base_url = "http://127.0.0.1:{port}/v1"
api_key = "{KEY}"
models = ["m1", "m2", "m3"]

[performance]
test_interval_minutes = 10
test_timeout_seconds = 10

[performance.test_models]
models = ["up:m1", "up:m2", "up:m3"]
modules = ["latency"]
"""


async def start(aiohttp_client, tmp_path: Path, upstream: Upstream) -> TestClient:
    port = await upstream.start()
    config = tmp_path / "config.toml"
    config.write_text(config_toml(port))
    return await aiohttp_client(create_app(str(config), log_stream=io.StringIO()))


async def probe(client: TestClient, model: str) -> str:
    response = await client.get(
        "/probe", params={"target": f"up:{model}", "module": "latency", "debug": "true"}
    )
    text = await response.text()
    assert response.status == 200, text
    return text


def succeeded(debug_page: str, model: str) -> bool:
    return f'llm_probe_success{{model="{model}",module="latency",provider="up"}} 1.0' in debug_page


@pytest.mark.asyncio
async def test_probes_share_one_session_and_one_connection(aiohttp_client, tmp_path):
    upstream = Upstream()
    client = await start(aiohttp_client, tmp_path, upstream)
    exporter = exporter_of(client.server.app)
    session = exporter.session
    assert session is not None and not session.closed
    try:
        assert succeeded(await probe(client, "m1"), "m1")
        assert succeeded(await probe(client, "m2"), "m2")
        assert (upstream.connections, upstream.answered) == (1, 2)
        # A config reload keeps the session and its pooled connection.
        assert (await client.post("/-/reload")).status == 200
        assert succeeded(await probe(client, "m3"), "m3")
        assert exporter.session is session
        assert (upstream.connections, upstream.answered) == (1, 3)
    finally:
        await client.close()
        await upstream.stop()
    assert session.closed and exporter.session is None


@pytest.mark.asyncio
async def test_probe_after_the_upstream_closed_the_idle_connection(aiohttp_client, tmp_path):
    upstream = Upstream(close="idle")
    client = await start(aiohttp_client, tmp_path, upstream)
    try:
        assert succeeded(await probe(client, "m1"), "m1")
        await asyncio.wait_for(upstream.closed.wait(), 5)
        # The exporter's side sees the FIN: loop passes, not time. On loopback the FIN is
        # in the exporter socket's queue once the upstream's close returned; the next pass
        # reads the EOF, the one after runs connection_lost. Ten passes leave room.
        for _ in range(10):
            await asyncio.sleep(0)
        page = await probe(client, "m2")
        assert succeeded(page, "m2"), page
        assert (upstream.connections, upstream.answered) == (2, 2)
        assert "sending it again" not in page  # a closed pooled connection is just dropped
    finally:
        await client.close()
        await upstream.stop()


@pytest.mark.asyncio
async def test_upstream_closing_a_kept_alive_connection_as_the_request_arrives(
    aiohttp_client, tmp_path
):
    upstream = Upstream(close="on_reuse")
    client = await start(aiohttp_client, tmp_path, upstream)
    try:
        assert succeeded(await probe(client, "m1"), "m1")
        page = await probe(client, "m2")
        # Not a `connect` failure of the provider: the request is sent again, once.
        assert succeeded(page, "m2"), page
        assert "closed a kept-alive connection as the request went out" in page
        assert (upstream.connections, upstream.answered) == (2, 2)
    finally:
        await client.close()
        await upstream.stop()


@pytest.mark.asyncio
async def test_a_new_connection_closed_without_answer_is_not_retried(aiohttp_client, tmp_path):
    upstream = Upstream(close="always")
    client = await start(aiohttp_client, tmp_path, upstream)
    try:
        page = await probe(client, "m1")
        assert not succeeded(page, "m1")
        assert "failed: connect: connection failed before a response" in page
        assert upstream.connections == 1  # a provider fault: reported, not retried
    finally:
        await client.close()
        await upstream.stop()


def test_tune_gc_freezes_and_raises_the_thresholds():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
