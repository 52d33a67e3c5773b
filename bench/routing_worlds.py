"""Scripted worlds for bench/routing_quality.py: models whose true behaviour is known.

Each world has three models on one routing scenario (`default`). A model's truth at a
time of day is a lognormal TTFT (median and spread), a decode rate and an error rate.
What a user of the route pays is the expected time of one reference request
(`REFERENCE_TOKENS` output tokens, or `--answer-tokens`) through the chain: a failed
attempt costs the model's `fail_seconds` and moves on to the next route, as the proxy's
fallback does.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from perfgen.exporter.result import ProbeResult, RequestResult, decode_rate

DAY_SECONDS = 24 * 3600
REFERENCE_TOKENS = 100  # a typical interactive answer
# A model this much worse than the best counts as degraded (the start of an event).
DEGRADED_RATIO = 1.2
# Events shorter than this are noise to a router (a flapping provider's bad minutes).
MIN_EVENT_SECONDS = 15 * 60
# A request's decode rate varies around the truth by this (lognormal sigma): batching.
DECODE_SIGMA = 0.1
# Standard deviation of a decode time's measurement: the arrival jitter of its first and
# last chunk on a wide-area link, assumed ~15 ms each (an assumption, not a measurement:
# on loopback bench/fidelity.py sees under 2 ms).
ARRIVAL_JITTER_SECONDS = 0.02
MIN_DECODE_SECONDS = 0.005


@dataclass(frozen=True)
class Truth:
    ttft_median: float  # seconds
    ttft_sigma: float  # lognormal spread
    decode: float  # tokens/s
    error: float = 0.0  # probability a request fails
    fail_reason: str = "http_5xx"
    fail_seconds: float = 2.0  # what a failed attempt costs before the fallback

    @property
    def mean_ttft(self) -> float:
        return self.ttft_median * math.exp(self.ttft_sigma**2 / 2)

    def request_seconds(self, tokens: int = REFERENCE_TOKENS) -> float:
        return self.mean_ttft + tokens / self.decode

    def slower(self, factor: float) -> Truth:
        """`factor` times slower in both first token and decode."""
        return replace(self, ttft_median=self.ttft_median * factor, decode=self.decode / factor)


TruthFn = Callable[[str, float], Truth]  # (model, seconds into the day) -> truth


@dataclass(frozen=True)
class World:
    name: str
    description: str
    models: tuple[str, ...]
    truth: TruthFn
    incumbent: str  # the model that is best at the start; events are its bad times
    fail_reasons: tuple[str, ...] = ("http_5xx",)


def chain_seconds(truths: Sequence[Truth], tokens: int = REFERENCE_TOKENS) -> float:
    """Expected time of a request of `tokens` output tokens through a fallback chain."""
    total, reach = 0.0, 1.0
    for truth in truths:
        total += reach * (
            (1 - truth.error) * truth.request_seconds(tokens) + truth.error * truth.fail_seconds
        )
        reach *= truth.error
    # Every route failed: the user waited for all of them and got nothing; count it as
    # one more best-case request so a dead chain is never "free".
    return total + reach * min(t.request_seconds(tokens) for t in truths)


def best_seconds(world: World, at: float, max_chain: int, tokens: int = REFERENCE_TOKENS) -> float:
    truths = {m: world.truth(m, at) for m in world.models}
    size = min(max_chain, len(world.models))
    return min(
        chain_seconds([truths[m] for m in order], tokens)
        for order in itertools.permutations(world.models, size)
    )


def regret(
    world: World,
    chain: Sequence[str],
    at: float,
    max_chain: int,
    tokens: int = REFERENCE_TOKENS,
) -> float:
    """How much slower the chain truly is than the best chain, as a fraction of the best."""
    best = best_seconds(world, at, max_chain, tokens)
    got = chain_seconds([world.truth(m, at) for m in chain[:max_chain]], tokens)
    return got / best - 1


@dataclass(frozen=True)
class Event:
    start: float  # the incumbent becomes DEGRADED_RATIO worse than the best model
    end: float | None  # it is the best model again (None: not within the day)


def events(world: World, step: float = 60.0, tokens: int = REFERENCE_TOKENS) -> list[Event]:
    """The incumbent's degradations for requests of `tokens`, at `step` resolution."""
    found: list[Event] = []
    start: float | None = None
    t = 0.0
    while t < DAY_SECONDS:
        truths = {m: world.truth(m, t) for m in world.models}
        mine = truths[world.incumbent].request_seconds(tokens) / (
            1 - min(truths[world.incumbent].error, 0.999)
        )
        best = min(x.request_seconds(tokens) / (1 - min(x.error, 0.999)) for x in truths.values())
        if start is None and mine >= DEGRADED_RATIO * best:
            start = t
        elif start is not None and mine <= best * 1.0001:
            found.append(Event(start, t))
            start = None
        t += step
    if start is not None:
        found.append(Event(start, None))
    return [e for e in found if (e.end or DAY_SECONDS) - e.start >= MIN_EVENT_SECONDS]


def draw_probe(
    truth: Truth,
    rng: random.Random,
    *,
    provider: str,
    model: str,
    module: str,
    max_tokens: int,
    started_at: float,
    runs: int = 1,
) -> ProbeResult:
    """One probe's result drawn from the truth: `runs` sequential requests, each drawn
    independently (concurrency 1: the baseline modules the score reads)."""
    requests = tuple(_draw_request(truth, rng, max_tokens) for _ in range(runs))
    elapsed = sum(
        r.duration_seconds if r.duration_seconds is not None else truth.fail_seconds
        for r in requests
    )
    return ProbeResult(provider, model, module, started_at, elapsed, requests)


def _draw_request(truth: Truth, rng: random.Random, max_tokens: int) -> RequestResult:
    if rng.random() < truth.error:
        return RequestResult(
            success=False, failure_reason=truth.fail_reason, output_tokens=0, input_tokens=20
        )
    ttft = truth.ttft_median * math.exp(rng.gauss(0.0, truth.ttft_sigma))
    rate = truth.decode * math.exp(rng.gauss(0.0, DECODE_SIGMA))
    # The measured decode time is off by the arrival jitter of its first and last chunk,
    # which a short answer cannot average out: a 16-token probe's rate is far noisier
    # than a 256-token one's, as on a real network.
    decode_time = (max_tokens - 1) / rate + rng.gauss(0.0, ARRIVAL_JITTER_SECONDS)
    duration = ttft + max(decode_time, MIN_DECODE_SECONDS)
    return RequestResult(
        success=True,
        ttft_seconds=ttft,
        first_content_seconds=ttft,
        duration_seconds=duration,
        output_tokens=max_tokens,
        input_tokens=20,
        tokens_per_second=decode_rate(max_tokens, duration, ttft),
        token_count_source="usage",
    )


# ------------------------------------------------------------------------- the worlds

A = Truth(ttft_median=0.5, ttft_sigma=0.25, decode=90.0, error=0.005)
B = Truth(ttft_median=0.8, ttft_sigma=0.5, decode=70.0, error=0.01)
C = Truth(ttft_median=1.2, ttft_sigma=0.8, decode=45.0, error=0.02)
HOUR = 3600.0


def _steady(truths: dict[str, Truth], special: Callable[[float], Truth]) -> TruthFn:
    def truth(model: str, at: float) -> Truth:
        return special(at) if model == "a" else truths[model]

    return truth


def _degrade(at: float) -> Truth:
    return A.slower(3.0) if 8 * HOUR <= at < 10 * HOUR else A


def _queueing(at: float) -> Truth:
    # A provider queueing requests: the first token waits, the decode once started does
    # not slow. Only the latency component sees it.
    if 8 * HOUR <= at < 10 * HOUR:
        return replace(A, ttft_median=A.ttft_median * 4.0)
    return A


def _outage(at: float) -> Truth:
    if 12 * HOUR <= at < 12.75 * HOUR:
        return replace(A, error=1.0, fail_reason="connect", fail_seconds=10.0)
    return A


def _drift(at: float) -> Truth:
    share = min(1.0, max(0.0, (at - 6 * HOUR) / (12 * HOUR)))
    return A.slower(1.0 + 2.0 * share)


def _flapping(at: float) -> Truth:
    if 9 * HOUR <= at < 15 * HOUR and int((at - 9 * HOUR) // 600) % 2 == 0:
        return replace(A.slower(2.0), error=0.3)
    return A


def _diurnal(at: float) -> Truth:
    hour = at / HOUR
    load = max(0.0, math.sin(math.pi * (hour - 8) / 10)) if 8 <= hour <= 18 else 0.0
    return A.slower(1.0 + 2.0 * load)


NOISE_A = Truth(ttft_median=0.6, ttft_sigma=0.45, decode=80.0, error=0.01)
NOISE_B = Truth(ttft_median=0.62, ttft_sigma=0.4, decode=79.0, error=0.01)
# Heavy tail with the lower median against a tight one: the mean (what users wait) and
# the p95 favour b, the median favours a.
SPREAD_A = Truth(ttft_median=0.45, ttft_sigma=1.0, decode=80.0, error=0.01)
SPREAD_B = Truth(ttft_median=0.7, ttft_sigma=0.15, decode=100.0, error=0.01)

WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        World(
            "degrade",
            "a (the best) is 3x slower (TTFT x3, decode /3) 08:00-10:00, then recovers",
            ("a", "b", "c"),
            _steady({"b": B, "c": C}, _degrade),
            "a",
        ),
        World(
            "queueing",
            "a's first token waits 4x longer (TTFT x4, decode unchanged) 08:00-10:00",
            ("a", "b", "c"),
            _steady({"b": B, "c": C}, _queueing),
            "a",
        ),
        World(
            "outage",
            "a fails every request (connect, 10 s each) 12:00-12:45",
            ("a", "b", "c"),
            _steady({"b": B, "c": C}, _outage),
            "a",
            ("http_5xx", "connect"),
        ),
        World(
            "drift",
            "a slows linearly from 1x to 3x between 06:00 and 18:00 and stays there",
            ("a", "b", "c"),
            _steady({"b": B, "c": C}, _drift),
            "a",
        ),
        World(
            "flapping",
            "a alternates 10 min bad (2x slower, 30 % errors) / 10 min good, 09:00-15:00",
            ("a", "b", "c"),
            _steady({"b": B, "c": C}, _flapping),
            "a",
        ),
        World(
            "noise",
            "a and b within noise of each other (means 0.66 vs 0.67 s, decode 80 vs 79)",
            ("a", "b", "c"),
            lambda m, at: {"a": NOISE_A, "b": NOISE_B, "c": C}[m],
            "a",
        ),
        World(
            "diurnal",
            "a slows up to 3x in business hours (08:00-18:00, sine), b and c steady",
            ("a", "b", "c"),
            _steady({"b": B, "c": C}, _diurnal),
            "a",
        ),
        World(
            "spread",
            "a: lower median TTFT, heavy tail (sigma 1.0); b: tight, decodes faster",
            ("a", "b", "c"),
            lambda m, at: {"a": SPREAD_A, "b": SPREAD_B, "c": C}[m],
            "b",
        ),
    )
}
QUICK_WORLDS = ("degrade", "outage", "noise", "spread")
