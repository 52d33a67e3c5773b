"""Cost control against a provider's hostile Retry-After and a scrape joining a long probe."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
from test_exporter_scheduler import KEY, FakeClock, Upstream, make_result, settings

from perfgen.exporter.result import ProbeResult, RequestResult
from perfgen.exporter.scheduler import Scheduler

pytestmark = pytest.mark.asyncio


def throttled(retry_after: float) -> ProbeResult:
    request = RequestResult(
        success=False, failure_reason="http_429", retry_after_seconds=retry_after
    )
    return ProbeResult("sim", "m", "latency", 0.0, 0.1, (request,))


@pytest.mark.parametrize("wait", [math.inf, math.nan, 1e300, -3.0])
async def test_a_hostile_retry_after_stays_a_bounded_number(wait: float) -> None:
    clock = FakeClock()
    scheduler = Scheduler(settings(interval_seconds=600.0), clock)

    async def start(timeout: float) -> ProbeResult:
        return throttled(wait)

    await scheduler.probe(KEY, start, timeout=5, cost=1)
    provider_wait = scheduler.provider_wait(KEY)
    json.dumps(provider_wait, allow_nan=False)  # what the management API serializes
    assert 0.0 <= provider_wait <= 600.0
    assert scheduler.due_at(KEY) <= clock.now + 600.0


async def test_a_joining_scrape_answers_within_its_own_timeout() -> None:
    scheduler = Scheduler(settings(), time.monotonic)
    upstream = Upstream()
    upstream.gate = asyncio.Event()
    first = asyncio.create_task(scheduler.probe(KEY, upstream, timeout=30, cost=1))
    await asyncio.sleep(0.01)
    began = time.monotonic()
    joined = await scheduler.probe(KEY, upstream, timeout=0.2, cost=1)
    waited = time.monotonic() - began
    # 0.2 s timeout; up to 0.3 s more for a loaded 2-core machine to wake the task.
    assert waited < 0.5
    assert joined.outcome == "cached" and joined.result is None
    assert not first.done()  # the probe it joined goes on for the scrape that started it
    upstream.gate.set()
    answer = await first
    assert answer.outcome == "fresh" and upstream.calls == 1
    assert answer.result == make_result()
