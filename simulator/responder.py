"""Pace a planned response onto the wire, on absolute deadlines.

Token i is due at `received + ttft + i / tps`; sleeping until each absolute deadline
(instead of `sleep(1 / tps)` between writes) keeps scheduling delays from accumulating
into a slower rate. Deadlines and ground-truth timestamps both use `time.monotonic()`
so they stay comparable with other processes on the same machine, whatever event loop
runs the server.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from perfgen.simulator.plan import RequestPlan
from perfgen.simulator.records import RequestRecord
from perfgen.simulator.wire import FAULT_AFTER_TOKENS, StreamEncoder

_GONE_POLL_SECONDS = 0.05


async def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def wait_until_gone(request: web.Request, stopping: asyncio.Event) -> None:
    """Send nothing until the client disconnects or the server shuts down."""
    while not stopping.is_set() and not client_gone(request):
        try:
            await asyncio.wait_for(stopping.wait(), _GONE_POLL_SECONDS)
        except TimeoutError:
            pass


def _chunks(tokens: list[str], size: int) -> list[list[str]]:
    return [tokens[start : start + size] for start in range(0, len(tokens), size)]


async def write_stream(
    request: web.Request,
    response: web.StreamResponse,
    encoder: StreamEncoder,
    plan: RequestPlan,
    reasoning: list[str],
    answer: list[str],
    record: RequestRecord,
    stopping: asyncio.Event,
) -> None:
    """Write a prepared stream: preamble now, then tokens on their deadlines, then the end.

    A chunk of several tokens is sent at the deadline of its first token. Faults
    `stall`, `malformed` and `error_event` strike once FAULT_AFTER_TOKENS tokens are out.
    """
    t_first = record.received + plan.ttft_seconds
    interval = 1.0 / plan.tokens_per_second
    steps: list[tuple[int, bool, list[str]]] = []
    index = 0
    for is_reasoning, tokens in ((True, reasoning), (False, answer)):
        for chunk in _chunks(tokens, plan.tokens_per_chunk):
            steps.append((index, is_reasoning, chunk))
            index += len(chunk)
    strike_at = min(FAULT_AFTER_TOKENS, index)
    if plan.fault == "content_filter":
        # A few tokens, then the filter ends the answer (finish() says so).
        steps = [step for step in steps if step[0] < FAULT_AFTER_TOKENS]

    try:
        await response.write(encoder.preamble())
        if plan.fault in ("stall", "malformed", "error_event") and strike_at == 0:
            await _strike(request, response, encoder, plan, record, stopping)
            if plan.fault != "malformed":
                return
        for first_index, is_reasoning, chunk in steps:
            await sleep_until(t_first + first_index * interval)
            data = encoder.reasoning(chunk) if is_reasoning else encoder.answer(chunk)
            if not data:
                continue  # hidden reasoning: generated (it takes its time), never sent
            await response.write(data)
            sent = time.monotonic()
            if record.first_token_sent is None:
                record.first_token_sent = sent
            record.last_token_sent = sent
            record.tokens_sent += len(chunk)
            if plan.fault in ("stall", "malformed", "error_event") and (
                record.tokens_sent >= strike_at > record.tokens_sent - len(chunk)
            ):
                await _strike(request, response, encoder, plan, record, stopping)
                if plan.fault != "malformed":
                    return
        # An empty stream still takes its time to first token before it ends.
        await sleep_until(t_first)
        await response.write(encoder.finish())
        await response.write_eof()
    except ConnectionError:
        record.client_disconnected = True


async def _strike(
    request: web.Request,
    response: web.StreamResponse,
    encoder: StreamEncoder,
    plan: RequestPlan,
    record: RequestRecord,
    stopping: asyncio.Event,
) -> None:
    if plan.fault == "stall":
        await wait_until_gone(request, stopping)
        record.client_disconnected = client_gone(request)
    elif plan.fault == "malformed":
        await response.write(encoder.malformed())
    elif plan.fault == "error_event":
        await response.write(encoder.error_event())
        await response.write_eof()
