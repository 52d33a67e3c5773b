"""Cost control: decide whether a scrape pays for a new probe or reuses the last one.

Prometheus scrapes every 30-60 s; a paid probe should run at most once per
`test_interval_minutes`. Everything here is about money and provider goodwill, so
the rules are conservative:

* one paid probe per target+module per interval; scrapes in between get the last result;
* concurrent scrapes of one target+module share a single in-flight probe;
* at most `max_concurrent_tests` probes run at once;
* a rolling-hour output-token budget, reserved before a probe starts (at the module's
  worst case) and settled with the real count afterwards, so concurrent probes cannot
  jointly overshoot it;
* a failed target is retried on exponential backoff rather than every scrape, because
  hammering a provider that answers 429 only makes it worse; a Retry-After the provider
  sent lengthens the wait (never beyond the interval).

A manual test (the management API's `POST /performance/test`) is an explicit request, so
it skips the interval and backoff check, but nothing else: it shares an in-flight probe,
waits for a concurrency slot and pays from the same budget. It is not a scrape and is not
counted in `scrapes`.

The clock is injected so tests can move time instead of sleeping. No HTTP here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from perfgen.config import Performance, Price, Target
from perfgen.exporter.adaptive import AdaptiveIntervals, Choice
from perfgen.exporter.result import ProbeResult

OUTCOMES = ("fresh", "cached", "budget_exhausted", "backoff")
# A manual test: ran now, joined a probe already in flight, refused by the budget, or found
# no concurrency slot within half its timeout.
MANUAL_OUTCOMES = ("fresh", "shared", "budget_exhausted", "no_slot")
BUDGET_WINDOW_SECONDS = 3600.0

ProbeKey = tuple[str, str, str]  # provider, model, module
# Runs one paid probe; receives the seconds it may take.
StartProbe = Callable[[float], Awaitable[ProbeResult]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class CostSettings:
    interval_seconds: float
    backoff_initial_seconds: float
    max_concurrent: int
    tokens_per_hour: int  # 0 = unlimited
    dollars_per_hour: float = 0.0  # 0 = unlimited
    prices: Mapping[Target, Price] = field(default_factory=dict)

    @classmethod
    def from_performance(cls, performance: Performance) -> CostSettings:
        return cls(
            interval_seconds=performance.test_interval_minutes * 60.0,
            backoff_initial_seconds=performance.exporter.backoff_initial_seconds,
            max_concurrent=performance.max_concurrent_tests,
            tokens_per_hour=performance.max_output_tokens_per_hour,
            dollars_per_hour=performance.max_dollars_per_hour,
            prices=performance.prices,
        )

    def dollars(self, key: ProbeKey, input_tokens: int, output_tokens: int) -> float:
        """What these tokens cost on the key's model (0 without a configured price)."""
        price = self.prices.get(Target(key[0], key[1]))
        return price.dollars(input_tokens, output_tokens) if price else 0.0


@dataclass(frozen=True)
class Answer:
    """What one scrape gets: a result (None if nothing was ever measured) and why."""

    result: ProbeResult | None
    outcome: str

    @property
    def cached(self) -> bool:
        """True when this scrape did not itself pay for the measurement it reports."""
        return self.outcome != "fresh"


class TokenBudget:
    """Output tokens spent in the last hour, with reservations for probes still running.

    The money budget is one too, counting dollars instead of tokens.
    """

    def __init__(self, limit: float, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._spent: deque[tuple[float, float]] = deque()
        self.reserved: float = 0
        # The cost of the last probe refused; the budget stays "exhausted" while that
        # probe would still be refused, even if a smaller one could squeeze in.
        self._refused_cost: float | None = None

    def used(self) -> float:
        horizon = self._clock() - BUDGET_WINDOW_SECONDS
        while self._spent and self._spent[0][0] <= horizon:
            self._spent.popleft()
        return sum(tokens for _, tokens in self._spent)

    def try_reserve(self, cost: float) -> bool:
        if self.limit > 0 and self.used() + self.reserved + cost > self.limit:
            self._refused_cost = cost
            return False
        self._refused_cost = None
        self.reserved += cost
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved -= reserved
        if actual > 0:
            self._spent.append((self._clock(), actual))

    def exhausted(self) -> bool:
        if self.limit <= 0:
            return False
        committed = self.used() + self.reserved
        if committed >= self.limit:
            return True
        return self._refused_cost is not None and committed + self._refused_cost > self.limit


class _KeyState:
    __slots__ = ("last", "finished_at", "failures", "retry_after", "task")

    def __init__(self) -> None:
        self.last: ProbeResult | None = None
        self.finished_at: float | None = None
        self.failures = 0  # consecutive failed (or crashed) probes
        self.retry_after = 0.0  # seconds the last probe's provider asked us to wait
        self.task: asyncio.Task[ProbeResult | None] | None = None


def _matches(key: ProbeKey, provider: str, model: str, module: str | None) -> bool:
    return key[0] == provider and key[1] == model and (module is None or key[2] == module)


def retry_after(result: ProbeResult) -> float:
    """The longest Retry-After among the probe's requests (0 when none was sent)."""
    waits = (r.retry_after_seconds for r in result.requests)
    # Only finite, non-negative waits: nan or inf would make every comparison meaningless.
    return max((w for w in waits if w is not None and 0.0 <= w < math.inf), default=0.0)


def spent_tokens(result: ProbeResult) -> int:
    """Output tokens paid for, failed requests included (a stream cut late still cost)."""
    return sum(request.output_tokens or 0 for request in result.requests)


def spent_input_tokens(result: ProbeResult) -> int:
    return sum(request.input_tokens or 0 for request in result.requests)


class Scheduler:
    def __init__(
        self,
        settings: CostSettings,
        clock: Clock = time.monotonic,
        intervals: AdaptiveIntervals | None = None,
    ) -> None:
        self._clock = clock
        # None: every key waits `interval_seconds`; else exporter/adaptive.py chooses.
        self.intervals = intervals
        self._states: dict[ProbeKey, _KeyState] = {}
        self.budget = TokenBudget(settings.tokens_per_hour, clock)
        self.money = TokenBudget(settings.dollars_per_hour, clock)
        # Dollars paid per key since start, by the configured prices (a counter).
        self.dollars: defaultdict[ProbeKey, float] = defaultdict(float)
        self.scrapes: Counter[tuple[str, str]] = Counter()  # (module, outcome)
        self.in_flight = 0
        self.settings = settings
        self._semaphore = asyncio.Semaphore(settings.max_concurrent)

    def configure(self, settings: CostSettings) -> None:
        """Apply reloaded settings; probes already running finish under the old limits."""
        if settings.max_concurrent != self.settings.max_concurrent:
            self._semaphore = asyncio.Semaphore(settings.max_concurrent)
        self.budget.limit = settings.tokens_per_hour
        self.money.limit = settings.dollars_per_hour
        self.settings = settings

    def last_result(self, key: ProbeKey) -> ProbeResult | None:
        state = self._states.get(key)
        return state.last if state else None

    def provider_wait(self, key: ProbeKey) -> float:
        """Seconds left of a Retry-After the provider sent with the last probe of `key`."""
        state = self._states.get(key)
        if state is None or state.finished_at is None or not state.retry_after:
            return 0.0
        return max(0.0, state.finished_at + state.retry_after - self._clock())

    def busy(self, provider: str, model: str, module: str | None = None) -> bool:
        """True while a probe of this target (of one module, or of any) is in flight."""
        return any(
            state.task is not None
            for key, state in self._states.items()
            if _matches(key, provider, model, module)
        )

    def forget(self, provider: str, model: str, module: str | None = None) -> int:
        """Drop the last results of a target (one module, or all); returns how many.

        The schedule (when each key is due, its backoff) is kept: forgetting data must not
        double as a way to make the next scrape pay for a probe.
        """
        forgotten = 0
        for key, state in self._states.items():
            if _matches(key, provider, model, module) and state.last is not None:
                state.last = None
                forgotten += 1
        return forgotten

    def interval(self, key: ProbeKey) -> Choice:
        """How long `key` waits after a successful probe, and why."""
        if self.intervals is None:
            return Choice(self.settings.interval_seconds, "fixed")
        limit = self.budget.limit
        share = (self.budget.used() + self.budget.reserved) / limit if limit > 0 else 0.0
        return self.intervals.choose(key, share)

    def schedule_note(self, key: ProbeKey) -> str:
        """One line for the debug view: the key's interval, why, and when it is next due."""
        choice = self.interval(key)
        why = f"{choice.reason}: {choice.detail}" if choice.detail else choice.reason
        wait = self.due_at(key) - self._clock()
        when = "now" if wait <= 0 else f"in {wait:.0f}s"
        return f"Schedule: interval {choice.seconds:g}s ({why}); next paid probe due {when}"

    def keys(self) -> list[ProbeKey]:
        """Every key probed (or asked for) so far."""
        return list(self._states)

    def due_at(self, key: ProbeKey) -> float:
        """Clock time from which a scrape of `key` may pay for a new probe."""
        state = self._states.get(key)
        if state is None or state.finished_at is None:
            return -math.inf
        wait = self.interval(key).seconds
        if state.failures:
            backoff = self.settings.backoff_initial_seconds * 2.0 ** (state.failures - 1)
            # A provider that said when to come back is not asked earlier; the interval
            # still bounds the wait, so a huge Retry-After cannot silence a target.
            wait = min(max(backoff, state.retry_after), wait)
        return state.finished_at + wait

    async def probe(
        self,
        key: ProbeKey,
        start: StartProbe,
        *,
        timeout: float,
        cost: int,
        manual: bool = False,
        input_tokens: int = 0,
    ) -> Answer:
        """Answer one scrape of `key`, running `start(timeout)` only if cost control allows.

        `cost` is the most output tokens the probe can spend (reserved from the budget);
        with prices, it and `input_tokens` are also reserved in dollars.
        An exception from `start` propagates to every scrape waiting on that probe.
        `manual`: a manual test, not a scrape (outcomes in MANUAL_OUTCOMES, see above).
        """
        state = self._states.setdefault(key, _KeyState())
        if state.task is not None:
            try:
                # The probe was started for another scrape, with its own (maybe longer)
                # timeout: this one answers within its own, with the last result if need be.
                async with asyncio.timeout(timeout):
                    result = await asyncio.shield(state.task)
            except TimeoutError:
                if manual:
                    return Answer(state.last, "no_slot")
                return self._answer(key, state.last, "cached")
            if manual:
                return Answer(
                    result if result is not None else state.last,
                    "shared" if result is not None else "no_slot",
                )
            return self._answer(key, result if result is not None else state.last, "cached")
        if not manual and self._clock() < self.due_at(key):
            outcome = "backoff" if state.failures else "cached"
            return self._answer(key, state.last, outcome)
        if not self.budget.try_reserve(cost):
            return self._answer(key, state.last, "budget_exhausted", manual)
        worst = self.settings.dollars(key, input_tokens, cost)
        if not self.money.try_reserve(worst):
            self.budget.settle(cost, 0)
            return self._answer(key, state.last, "budget_exhausted", manual)
        self.in_flight += 1  # counted from here so a scrape can never see a gap
        task = asyncio.create_task(self._run(state, start, timeout, cost, key, worst))
        # If every waiting scrape is cancelled, nobody reads a crash: mark it retrieved.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if self.intervals is not None:
            task.add_done_callback(lambda t, key=key: self._observe(key, t))  # type: ignore[misc]
        state.task = task
        result = await asyncio.shield(task)
        if result is None:  # no concurrency slot in time: not a failure of the target
            return self._answer(key, state.last, "no_slot" if manual else "cached", manual)
        return self._answer(key, result, "fresh", manual)

    async def _run(
        self,
        state: _KeyState,
        start: StartProbe,
        timeout: float,
        cost: int,
        key: ProbeKey | None = None,
        worst_dollars: float = 0.0,
    ) -> ProbeResult | None:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphore  # release the one acquired, even across a reload
        actual = 0
        dollars = 0.0
        try:
            began = loop.time()
            try:
                # Waiting for a slot eats the probe's own time; past half of it, a
                # timeout would be blamed on the provider, so skip this round instead.
                async with asyncio.timeout(timeout / 2):
                    await semaphore.acquire()
            except TimeoutError:
                return None
            try:
                remaining = timeout - (loop.time() - began)
                try:
                    result = await start(remaining)
                except Exception:
                    state.failures += 1
                    state.retry_after = 0.0
                    state.finished_at = self._clock()
                    raise
                actual = spent_tokens(result)
                if key is not None:
                    dollars = self.settings.dollars(key, spent_input_tokens(result), actual)
                    self.dollars[key] += dollars
                state.last = result
                state.failures = 0 if result.success else state.failures + 1
                # Capped here, where the interval is known: a provider's wait never
                # exceeds it, so provider_wait() and due_at() stay ordinary numbers.
                state.retry_after = (
                    0.0
                    if result.success
                    else min(retry_after(result), self.settings.interval_seconds)
                )
                state.finished_at = self._clock()
                return result
            finally:
                semaphore.release()
        finally:
            self.budget.settle(cost, actual)
            self.money.settle(worst_dollars, dollars)
            self.in_flight -= 1
            state.task = None

    def _observe(self, key: ProbeKey, task: asyncio.Task[ProbeResult | None]) -> None:
        if self.intervals is None or task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if result is not None:
            self.intervals.observe(key, result)

    def _answer(
        self, key: ProbeKey, result: ProbeResult | None, outcome: str, manual: bool = False
    ) -> Answer:
        if not manual:
            self.scrapes[(key[2], outcome)] += 1
        return Answer(result, outcome)

    async def close(self) -> None:
        """Cancel probes still running (exporter shutdown)."""
        tasks = [s.task for s in self._states.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
