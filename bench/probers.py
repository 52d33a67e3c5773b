"""The probers under test, and a worker process that runs one of them on command.

- `perfgen`: perfgen's own probe engine, `exporter.probe.run_probe`, one call per stream,
  without a session (run_probe makes and closes its own): as `perfgen probe` calls it, and
  as the exporter did until it kept one session.
- `perfgen_shared`: the same engine given the exporter's long-lived session
  (`exporter.service.create_probe_session`: keep-alive, no connection limit).
- `perfgen_exporter`: as the exporter runs it: that session plus the exporter process's
  GC settings (`exporter.cli.tune_gc`: gc.freeze() and a 20 000 gen-0 threshold).
- `sdk`: what a user writes by hand with the official `openai` SDK (AsyncOpenAI,
  `perf_counter` before the request, first chunk with content, last chunk).
- `bare`: the floor: an aiohttp line reader with `json.loads` per `data:` line.
- `raw`: below the floor: an asyncio.Protocol with a hand-written HTTP/1.1 request (new
  connection per stream) and `json.loads` per `data:` line; what the event loop alone costs.

Each prober runs in its own process (`python bench/probers.py KIND --base-url URL`), so
its CPU time (`time.process_time()`) is its own. The parent writes one JSON command per
line on stdin and reads one JSON answer per line on stdout.

Timestamps are `time.perf_counter()`, which on Linux is CLOCK_MONOTONIC, the clock the
simulator stamps its ground truth with (`time.monotonic()`), so they compare across
processes on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "m"
PROVIDER = "sim"
PROMPT = "Explain in one sentence what a hash map is."
# perf_counter and monotonic must be one clock for cross-process comparisons.
assert (
    time.get_clock_info("perf_counter").implementation
    == time.get_clock_info("monotonic").implementation
)

Stream = dict[str, Any]  # rid, t0, first, last, ttft, tps, tokens, ok, error


# --------------------------------------------------------------------------- sdk


class SdkProber:
    """The hand-written baseline with the official openai SDK."""

    def __init__(self, base_url: str) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(
            base_url=f"{base_url}/{PROVIDER}/v1", api_key="sk-bench", max_retries=0, timeout=60
        )

    async def stream(self, max_tokens: int) -> Stream:
        perf_counter = time.perf_counter
        t0 = perf_counter()
        first = last = None
        chunks = 0
        usage_tokens = None
        stream = await self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        rid = stream.response.headers.get("x-sim-request-id")
        async for chunk in stream:
            now = perf_counter()
            if chunk.choices and chunk.choices[0].delta.content:
                if first is None:
                    first = now
                last = now
                chunks += 1
            if chunk.usage is not None:
                usage_tokens = chunk.usage.completion_tokens
        tokens = usage_tokens if usage_tokens is not None else chunks
        ok = first is not None
        ttft = first - t0 if ok else None
        tps = (tokens - 1) / (last - first) if ok and last > first and tokens > 1 else None
        return {
            "rid": rid,
            "t0": t0,
            "first": first,
            "last": last,
            "ttft": ttft,
            "tps": tps,
            "tokens": tokens,
            "ok": ok,
            "error": None,
        }

    async def close(self) -> None:
        await self.client.close()


# --------------------------------------------------------------------------- bare


class BareProber:
    """The floor: aiohttp, one `json.loads` per `data:` line, nothing else."""

    def __init__(self, base_url: str) -> None:
        import aiohttp

        self.url = f"{base_url}/{PROVIDER}/v1/chat/completions"
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stream(self, max_tokens: int) -> Stream:
        perf_counter = time.perf_counter
        loads = json.loads
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        t0 = perf_counter()
        first = last = None
        chunks = 0
        usage_tokens = None
        async with self.session.post(
            self.url, json=body, headers={"Authorization": "Bearer sk-bench"}
        ) as resp:
            rid = resp.headers.get("x-sim-request-id")
            async for line in resp.content:
                now = perf_counter()
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].rstrip()
                if payload == b"[DONE]":
                    break
                obj = loads(payload)
                choices = obj.get("choices")
                if choices:
                    if choices[0]["delta"].get("content"):
                        if first is None:
                            first = now
                        last = now
                        chunks += 1
                elif obj.get("usage"):
                    usage_tokens = obj["usage"]["completion_tokens"]
        tokens = usage_tokens if usage_tokens is not None else chunks
        ok = first is not None
        ttft = first - t0 if ok else None
        tps = (tokens - 1) / (last - first) if ok and last > first and tokens > 1 else None
        return {
            "rid": rid,
            "t0": t0,
            "first": first,
            "last": last,
            "ttft": ttft,
            "tps": tps,
            "tokens": tokens,
            "ok": ok,
            "error": None,
        }

    async def close(self) -> None:
        await self.session.close()


# --------------------------------------------------------------------------- raw


class _RawProtocol(asyncio.Protocol):
    """HTTP/1.1 by hand on an asyncio Protocol: the least a Python event loop can do."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.head = b""
        self.rid: str | None = None
        self.first: float | None = None
        self.last: float | None = None
        self.chunks = 0
        self.usage: int | None = None
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.rid is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"x-sim-request-id:"):
                    self.rid = line.split(b":", 1)[1].strip().decode()
            self.rid = self.rid or ""
        # Chunked transfer framing is skipped: every event is one write, so its
        # `data:` line arrives whole inside one HTTP chunk.
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            if not line.startswith(b"data: "):
                continue
            if line.startswith(b"data: [DONE]"):
                if not self.done.done():
                    self.done.set_result(None)
                return
            obj = json.loads(line[6:])
            choices = obj.get("choices")
            if choices:
                if choices[0]["delta"].get("content"):
                    if self.first is None:
                        self.first = now
                    self.last = now
                    self.chunks += 1
            elif obj.get("usage"):
                self.usage = obj["usage"]["completion_tokens"]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class RawProber:
    """The floor of the floor: asyncio.Protocol, hand-written request, json.loads per line."""

    def __init__(self, base_url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"/{PROVIDER}/v1/chat/completions"

    async def stream(self, max_tokens: int) -> Stream:
        loop = asyncio.get_running_loop()
        body = json.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Authorization: Bearer sk-bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        done: asyncio.Future[None] = loop.create_future()
        transport, protocol = await loop.create_connection(
            lambda: _RawProtocol(done), self.host, self.port
        )
        t0 = time.perf_counter()
        transport.write(request + body)
        try:
            await done
        finally:
            transport.close()
        p = protocol
        tokens = p.usage if p.usage is not None else p.chunks
        ok = p.first is not None and p.last is not None
        ttft = p.first - t0 if ok else None
        tps = (tokens - 1) / (p.last - p.first) if ok and p.last > p.first and tokens > 1 else None
        return {
            "rid": p.rid,
            "t0": t0,
            "first": p.first,
            "last": p.last,
            "ttft": ttft,
            "tps": tps,
            "tokens": tokens,
            "ok": ok,
            "error": None,
        }

    async def close(self) -> None:
        pass


# --------------------------------------------------------------------------- perfgen

_STREAM_SLOT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bench_stream_slot", default=None
)


def perfgen_config_text(base_url: str, max_tokens: int = 64) -> str:
    return f"""
[[providers]]
name = "{PROVIDER}"
api_base_url = "{base_url}/{PROVIDER}/v1"
api_key = "sk-bench"
models = ["{MODEL}"]

[performance]
test_timeout_seconds = 60

[performance.budget]
max_output_tokens_per_hour = 0

[performance.modules.bench]
prompts = ["{PROMPT}"]
max_tokens = {max_tokens}
timeout_seconds = 60
"""


class PerfgenProber:
    """perfgen's probe engine: `run_probe(config, target, module, session=...)` per stream.

    shared_session=False (the default) calls run_probe without a session, so each probe
    makes and closes its own (create_session). True passes one long-lived session made as
    the exporter makes its own (exporter.service.create_probe_session).

    One extra aiohttp TraceConfig, added next to perfgen's own, reads at on_request_end
    the response's x-sim-request-id and perfgen's own t0 (its trace_request_ctx), so the
    reported TTFT can be placed on the shared clock; a context variable set per stream
    tells the hook which stream it serves. It runs once per request, not per chunk.
    """

    def __init__(self, base_url: str, shared_session: bool = False) -> None:
        import aiohttp

        import perfgen.exporter.probe as engine
        from perfgen.config import Target, parse_config

        self.run_probe = engine.run_probe
        self.config = parse_config(perfgen_config_text(base_url), "<bench>")
        self.target = Target(PROVIDER, MODEL)
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_end)

        def create_session(**kwargs: Any) -> aiohttp.ClientSession:
            kwargs.setdefault("timeout", engine.NO_TIMEOUT)
            return aiohttp.ClientSession(trace_configs=[engine.TRACE, trace], **kwargs)

        # Both run_probe (no session given) and the exporter's session factory call
        # engine.create_session: this one adds the bench's trace next to perfgen's.
        engine.create_session = create_session  # type: ignore[assignment]
        self.session: aiohttp.ClientSession | None = None
        if shared_session:
            from perfgen.exporter.service import create_probe_session

            self.session = create_probe_session()

    @staticmethod
    async def _on_end(session: Any, ctx: Any, params: Any) -> None:
        slot = _STREAM_SLOT.get()
        if slot is not None:
            slot["rid"] = params.response.headers.get("x-sim-request-id")
            slot["t0"] = getattr(ctx.trace_request_ctx, "t0", None)

    async def stream(self, max_tokens: int) -> Stream:
        from dataclasses import replace

        module = self.config.module("bench")
        assert module is not None
        if module.max_tokens != max_tokens:
            module = replace(module, max_tokens=max_tokens)
        slot: dict[str, Any] = {}
        _STREAM_SLOT.set(slot)
        result = await self.run_probe(self.config, self.target, module, session=self.session)
        request = result.requests[0] if result.requests else None
        ok = bool(request and request.success)
        t0 = slot.get("t0")
        ttft = request.ttft_seconds if request else None
        duration = request.duration_seconds if request else None
        return {
            "rid": slot.get("rid"),
            "t0": t0,
            "first": t0 + ttft if ok and t0 is not None and ttft is not None else None,
            "last": t0 + duration if ok and t0 is not None and duration is not None else None,
            "ttft": ttft,
            "tps": request.tokens_per_second if request else None,
            "tokens": request.output_tokens if request else None,
            "ok": ok,
            "error": None if ok else (request.failure_detail if request else "no request"),
        }

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class PerfgenSharedProber(PerfgenProber):
    """perfgen's engine with one long-lived session passed in (keep-alive connections)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, shared_session=True)


class PerfgenExporterProber(PerfgenProber):
    """perfgen's engine as the exporter runs it: its session and its GC settings."""

    def __init__(self, base_url: str) -> None:
        from perfgen.exporter.cli import tune_gc

        super().__init__(base_url, shared_session=True)
        tune_gc()  # as `perfgen exporter` does once its app is built


PROBERS = {
    "perfgen": PerfgenProber,
    "perfgen_shared": PerfgenSharedProber,
    "perfgen_exporter": PerfgenExporterProber,
    "sdk": SdkProber,
    "bare": BareProber,
    "raw": RawProber,
}


# --------------------------------------------------------------------------- worker


async def _guarded(prober: Any, max_tokens: int) -> Stream:
    try:
        return await prober.stream(max_tokens)
    except Exception as exc:  # noqa: BLE001 - a failed stream is data, not a crash
        return {"rid": None, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def run_burst(
    prober: Any, concurrency: int, sequential: int, max_tokens: int
) -> list[Stream]:
    """`concurrency` tasks, each running `sequential` streams back to back."""

    async def lane() -> list[Stream]:
        return [await _guarded(prober, max_tokens) for _ in range(sequential)]

    lanes = await asyncio.gather(*(lane() for _ in range(concurrency)))
    return [s for lane_result in lanes for s in lane_result]


async def run_sustained(
    prober: Any, streams: int, seconds: float, max_tokens: int, stream_seconds: float
) -> list[Stream]:
    """Keep `streams` streams open for `seconds`, starts spread over one stream's length."""
    stop_at = time.perf_counter() + seconds
    rng = random.Random(1)

    async def lane() -> list[Stream]:
        await asyncio.sleep(rng.random() * stream_seconds)
        out: list[Stream] = []
        while time.perf_counter() < stop_at:
            out.append(await _guarded(prober, max_tokens))
        return out

    lanes = await asyncio.gather(*(lane() for _ in range(streams)))
    return [s for lane_result in lanes for s in lane_result]


class GcPauses:
    """Times every cyclic-GC collection (gc.callbacks): count, total and longest per generation.

    A collection runs inside whichever callback allocated last, so it blocks the event loop
    and delays every token that arrives meanwhile."""

    def __init__(self) -> None:
        self.started = 0.0
        self.stats: dict[int, list[float]] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        entry = self.stats.setdefault(info["generation"], [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += took
        entry[2] = max(entry[2], took)

    def take(self) -> dict[str, list[float]]:
        out = {str(k): v for k, v in sorted(self.stats.items())}
        self.stats = {}
        return out


async def serve(
    kind: str, base_url: str, slow_callback_ms: float | None = None, gc_mode: str = "on"
) -> None:
    prober = PROBERS[kind](base_url)
    if gc_mode in ("freeze", "big0"):
        gc.collect()
        gc.freeze()  # start-up objects to the permanent generation: never scanned again
    if gc_mode == "big0":
        gc.set_threshold(20_000, 20, 100)
    loop = asyncio.get_running_loop()
    if slow_callback_ms:
        # Diagnostic: asyncio's debug mode logs (to stderr) every callback slower than this.
        loop.set_debug(True)
        loop.slow_callback_duration = slow_callback_ms / 1000
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": kind, "pid": os.getpid()}), flush=True)
    pauses = GcPauses()
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if gc.isenabled():
                gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            pauses.take()
            if command["mode"] == "burst":
                streams = await run_burst(
                    prober,
                    command["concurrency"],
                    command.get("sequential", 1),
                    command["max_tokens"],
                )
            else:
                streams = await run_sustained(
                    prober,
                    command["streams"],
                    command["seconds"],
                    command["max_tokens"],
                    command["stream_seconds"],
                )
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            print(
                json.dumps(
                    {
                        "cpu": cpu,
                        "wall": wall,
                        "streams": streams,
                        # Involuntary context switches: another process took this one's CPU.
                        "preempted": ru1.ru_nivcsw - ru0.ru_nivcsw,
                        # generation -> [collections, total seconds, longest seconds]
                        "gc": pauses.take(),
                    }
                ),
                flush=True,
            )
    finally:
        await prober.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=sorted(PROBERS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop (uvloop: bench-only experiment, `pip install uvloop`)",
    )
    parser.add_argument(
        "--gc",
        choices=["on", "off", "freeze", "big0"],
        default="on",
        help="experiments: off = gc.disable(); freeze = gc.freeze() once the "
        "prober is set up; big0 = freeze + gc.set_threshold(20_000, 20, 100)",
    )
    parser.add_argument(
        "--slow-callback-ms",
        type=float,
        default=None,
        help="diagnostic: asyncio debug mode, log callbacks slower than this",
    )
    args = parser.parse_args()
    if args.gc == "off":
        gc.disable()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve(args.kind, args.base_url, args.slow_callback_ms, args.gc))


if __name__ == "__main__":
    main()
