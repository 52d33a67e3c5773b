"""Cost control with a fake clock: interval, sharing, concurrency, budget, backoff."""

from __future__ import annotations

import asyncio

import pytest

from perfgen.exporter.result import ProbeResult, RequestResult
from perfgen.exporter.scheduler import CostSettings, Scheduler

pytestmark = pytest.mark.asyncio

KEY = ("sim", "m", "latency")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_result(success: bool = True, tokens: int = 10) -> ProbeResult:
    request = (
        RequestResult(
            success=True,
            ttft_seconds=0.1,
            duration_seconds=0.5,
            output_tokens=tokens,
            token_count_source="usage",
        )
        if success
        else RequestResult(success=False, failure_reason="http_5xx", output_tokens=None)
    )
    return ProbeResult("sim", "m", "latency", 0.0, 0.5, (request,))


class Upstream:
    """A probe function that counts calls and can be told to fail or to wait."""

    def __init__(self, success: bool = True, tokens: int = 10) -> None:
        self.calls = 0
        self.success = success
        self.tokens = tokens
        self.gate: asyncio.Event | None = None
        self.timeouts: list[float] = []

    async def __call__(self, timeout: float) -> ProbeResult:
        self.calls += 1
        self.timeouts.append(timeout)
        if self.gate is not None:
            await self.gate.wait()
        return make_result(self.success, self.tokens)


def settings(**overrides: float) -> CostSettings:
    values = {
        "interval_seconds": 600.0,
        "backoff_initial_seconds": 30.0,
        "max_concurrent": 3,
        "tokens_per_hour": 0,
    }
    values.update(overrides)
    return CostSettings(**values)  # type: ignore[arg-type]


async def test_one_paid_probe_per_interval():
    clock, upstream = FakeClock(), Upstream()
    scheduler = Scheduler(settings(), clock)
    first = await scheduler.probe(KEY, upstream, timeout=5, cost=16)
    clock.advance(599)
    second = await scheduler.probe(KEY, upstream, timeout=5, cost=16)
    clock.advance(1)
    third = await scheduler.probe(KEY, upstream, timeout=5, cost=16)
    assert (first.outcome, second.outcome, third.outcome) == ("fresh", "cached", "fresh")
    assert not first.cached and second.cached
    assert second.result is first.result
    assert upstream.calls == 2
    assert scheduler.scrapes[("latency", "cached")] == 1
    assert scheduler.scrapes[("latency", "fresh")] == 2


async def test_concurrent_scrapes_share_one_probe():
    upstream = Upstream()
    upstream.gate = asyncio.Event()
    scheduler = Scheduler(settings(), FakeClock())
    scrapes = [
        asyncio.create_task(scheduler.probe(KEY, upstream, timeout=5, cost=16)) for _ in range(5)
    ]
    await asyncio.sleep(0)
    assert scheduler.in_flight == 1
    upstream.gate.set()
    answers = await asyncio.gather(*scrapes)
    assert upstream.calls == 1
    assert sorted(a.outcome for a in answers) == ["cached"] * 4 + ["fresh"]
    assert len({id(a.result) for a in answers}) == 1
    assert scheduler.in_flight == 0


async def test_max_concurrent_tests_limits_running_probes():
    running = 0
    peak = 0
    release = asyncio.Event()

    async def slow(timeout: float) -> ProbeResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return make_result()

    scheduler = Scheduler(settings(max_concurrent=2), FakeClock())
    tasks = [
        asyncio.create_task(scheduler.probe(("sim", f"m{i}", "latency"), slow, timeout=5, cost=1))
        for i in range(4)
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    assert peak == 2 and scheduler.in_flight == 4
    release.set()
    answers = await asyncio.gather(*tasks)
    assert peak == 2
    assert all(a.outcome == "fresh" for a in answers)


async def test_no_slot_within_half_the_timeout_skips_the_round():
    release = asyncio.Event()

    async def hold(timeout: float) -> ProbeResult:
        await release.wait()
        return make_result()

    scheduler = Scheduler(settings(max_concurrent=1), FakeClock())
    holder = asyncio.create_task(scheduler.probe(("sim", "a", "latency"), hold, timeout=5, cost=1))
    await asyncio.sleep(0)
    upstream = Upstream()
    answer = await scheduler.probe(KEY, upstream, timeout=0.05, cost=1)
    assert answer.outcome == "cached" and answer.result is None
    assert upstream.calls == 0
    release.set()
    await holder
    # The skipped round did not count as a probe: the next scrape runs one.
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "fresh"


async def test_budget_reserves_worst_case_and_rolls_over_the_hour():
    clock = FakeClock()
    upstream = Upstream(tokens=40)
    scheduler = Scheduler(settings(interval_seconds=60, tokens_per_hour=100), clock)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=50)).outcome == "fresh"
    assert scheduler.budget.used() == 40
    clock.advance(60)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=50)).outcome == "fresh"
    assert scheduler.budget.used() == 80
    clock.advance(60)
    refused = await scheduler.probe(KEY, upstream, timeout=5, cost=50)
    assert refused.outcome == "budget_exhausted" and refused.cached
    assert refused.result is not None and refused.result.success
    assert scheduler.budget.exhausted()
    assert upstream.calls == 2
    clock.advance(3600)
    assert not scheduler.budget.exhausted()
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=50)).outcome == "fresh"
    assert scheduler.scrapes[("latency", "budget_exhausted")] == 1


async def test_budget_refusal_with_nothing_measured_yet():
    scheduler = Scheduler(settings(tokens_per_hour=10), FakeClock())
    answer = await scheduler.probe(KEY, Upstream(), timeout=5, cost=16)
    assert answer.outcome == "budget_exhausted" and answer.result is None


async def test_zero_budget_is_unlimited():
    clock = FakeClock()
    scheduler = Scheduler(settings(interval_seconds=1, tokens_per_hour=0), clock)
    for _ in range(5):
        assert (
            await scheduler.probe(KEY, Upstream(tokens=10**6), timeout=5, cost=10**6)
        ).outcome == "fresh"
        clock.advance(1)
    assert not scheduler.budget.exhausted()


async def test_failed_target_backs_off_exponentially_capped_at_the_interval():
    clock = FakeClock()
    upstream = Upstream(success=False)
    scheduler = Scheduler(settings(interval_seconds=100, backoff_initial_seconds=30), clock)
    retries_after = []
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "fresh"
    for _ in range(4):
        waited = 0
        while True:
            clock.advance(1)
            waited += 1
            answer = await scheduler.probe(KEY, upstream, timeout=5, cost=1)
            if answer.outcome == "fresh":
                break
            assert answer.outcome == "backoff"
            assert answer.result is not None and not answer.result.success
        retries_after.append(waited)
    assert retries_after == [30, 60, 100, 100]
    upstream.success = True
    clock.advance(100)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "fresh"
    clock.advance(99)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "cached"


async def test_crash_propagates_and_backs_off():
    clock = FakeClock()

    async def crash(timeout: float) -> ProbeResult:
        raise RuntimeError("boom")

    scheduler = Scheduler(settings(), clock)
    with pytest.raises(RuntimeError):
        await scheduler.probe(KEY, crash, timeout=5, cost=1)
    assert scheduler.budget.reserved == 0 and scheduler.in_flight == 0
    answer = await scheduler.probe(KEY, crash, timeout=5, cost=1)
    assert answer.outcome == "backoff" and answer.result is None


async def test_reconfigure_changes_interval_and_budget():
    clock = FakeClock()
    upstream = Upstream()
    scheduler = Scheduler(settings(interval_seconds=600), clock)
    await scheduler.probe(KEY, upstream, timeout=5, cost=1)
    clock.advance(60)
    scheduler.configure(settings(interval_seconds=30, tokens_per_hour=500))
    assert scheduler.budget.limit == 500
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "fresh"


async def test_probe_receives_the_time_left():
    upstream = Upstream()
    scheduler = Scheduler(settings(), FakeClock())
    await scheduler.probe(KEY, upstream, timeout=7.5, cost=1)
    assert 7.0 < upstream.timeouts[0] <= 7.5


@pytest.mark.parametrize(
    ("retry_after", "retried_after"),
    [
        (None, 30),  # no Retry-After: the backoff
        (10.0, 30),  # shorter than the backoff: the backoff
        (90.0, 90),  # longer: the provider's word
        (5000.0, 600),  # longer than the interval: capped at the interval
    ],
)
async def test_retry_after_lengthens_the_backoff(retry_after, retried_after):
    clock = FakeClock()
    limited = ProbeResult(
        "sim",
        "m",
        "latency",
        0.0,
        0.5,
        (
            RequestResult(
                success=False,
                failure_reason="http_429",
                http_status=429,
                retry_after_seconds=retry_after,
            ),
        ),
    )
    calls = 0

    async def upstream(timeout: float) -> ProbeResult:
        nonlocal calls
        calls += 1
        return limited

    scheduler = Scheduler(settings(interval_seconds=600, backoff_initial_seconds=30), clock)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "fresh"
    clock.advance(retried_after - 1)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "backoff"
    clock.advance(1)
    assert (await scheduler.probe(KEY, upstream, timeout=5, cost=1)).outcome == "fresh"
    assert calls == 2
