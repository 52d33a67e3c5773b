"""Shared helpers for the simulator tests (plain functions; fixtures live in the tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from perfgen.simulator.config import SimulatorConfig, parse_simulator_config

OPENAI_KEY = "sim-openai-key"
ANTHROPIC_KEY = "sim-anthropic-key"


def make_config(
    openai_models: dict[str, dict[str, Any]] | None = None,
    anthropic_models: dict[str, dict[str, Any]] | None = None,
    seed: int | None = None,
) -> SimulatorConfig:
    """One OpenAI provider `oai` and one Anthropic provider `anth`, both keyed."""
    providers = []
    if openai_models:
        providers.append(_provider("oai", "openai", OPENAI_KEY, openai_models))
    if anthropic_models:
        providers.append(_provider("anth", "anthropic", ANTHROPIC_KEY, anthropic_models))
    data: dict[str, Any] = {"providers": providers}
    if seed is not None:
        data["seed"] = seed
    return parse_simulator_config(data, "<test>")


def _provider(
    name: str, protocol: str, key: str, models: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "protocol": protocol,
        "api_key": key,
        "models": [{"name": model, **profile} for model, profile in models.items()],
    }


def chat_body(model: str, stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say something."}],
        **extra,
    }


OPENAI_HEADERS = {"Authorization": f"Bearer {OPENAI_KEY}"}
ANTHROPIC_HEADERS = {"x-api-key": ANTHROPIC_KEY}


@dataclass(frozen=True)
class TimedStream:
    """One streamed answer as the client saw it: when it was sent, and when each line came."""

    t0: float  # when the request was written (monotonic)
    status: int
    request_id: str | None  # x-sim-request-id: which /-/requests record is this request's
    lines: list[tuple[float, bytes]]  # (arrival monotonic time, line)


async def timed_stream(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> TimedStream:
    """POST and read the stream, timing every line on the clock the simulator records on.

    t0 is when the request was written (as docs/exporter.md, "What is measured", defines it),
    so connection set-up on a busy machine does not count against the simulator.
    """
    written: list[float] = []

    async def on_sent(*_: Any) -> None:
        written.append(time.monotonic())

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(on_sent)
    trace.freeze()
    lines: list[tuple[float, bytes]] = []
    # A per-call session so the trace sees only this request; it shares the connector.
    async with (
        aiohttp.ClientSession(
            connector=session.connector, connector_owner=False, trace_configs=[trace]
        ) as traced,
        traced.post(url, json=body, headers=headers) as response,
    ):
        async for line in response.content:
            lines.append((time.monotonic(), line))
        return TimedStream(
            written[-1], response.status, response.headers.get("x-sim-request-id"), lines
        )


async def timed_sse_lines(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[float, int, list[tuple[float, bytes]]]:
    """timed_stream as (t0, status, [(arrival monotonic time, line)])."""
    stream = await timed_stream(session, url, body, headers)
    return stream.t0, stream.status, stream.lines


async def records(session: aiohttp.ClientSession, base: str, limit: int = 100) -> list[dict]:
    async with session.get(f"{base}/-/requests", params={"limit": str(limit)}) as response:
        assert response.status == 200
        return (await response.json())["requests"]
