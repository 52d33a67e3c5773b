"""ProbeResult -> Prometheus text exposition.

Two kinds of series come out of a /probe scrape, as in blackbox_exporter:

* per-probe gauges describing the last measurement of one target+module, built fresh
  for every scrape so that nothing of another target leaks into the answer;
* cumulative histograms and counters for the same target+module, kept in a
  `CumulativeStore` across probes so Prometheus can compute percentiles over any window.

The store is fed once per paid probe (never on a cached answer) and failed requests
never reach the histograms: a timeout is not a latency sample. A request that was never
sent (no usable API key: the exporter's misconfiguration) is not counted at all; the
per-probe `llm_probe_failed{reason="no_api_key"}` reports it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from perfgen.exporter.result import (
    COUNTED_FAILURE_REASONS,
    FAILURE_REASONS,
    MISCONFIGURED_REASONS,
    ProbeResult,
)

LABELS = ("provider", "model", "module")

# LLM latencies span three orders of magnitude: a small hosted model answers in 100 ms,
# a loaded reasoning model can take a minute before its first token.
TTFT_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
)
# Reasoning models think before their first visible token, so this one reaches further.
FIRST_CONTENT_BUCKETS = TTFT_BUCKETS + (90.0, 120.0)
DURATION_BUCKETS = (
    0.25,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    240.0,
    300.0,
)
DECODE_RATE_BUCKETS = (
    1.0,
    2.0,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    75.0,
    100.0,
    150.0,
    200.0,
    300.0,
    500.0,
    750.0,
    1000.0,
)

# DNS + TCP + TLS of a new connection: loopback takes 0.1 ms, a far TLS endpoint 0.5 s.
CONNECT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# name -> (help, buckets, RequestResult attribute)
HISTOGRAMS: dict[str, tuple[str, Sequence[float], str]] = {
    "llm_ttft_seconds": (
        "Time to first token of successful probe requests.",
        TTFT_BUCKETS,
        "ttft_seconds",
    ),
    "llm_first_content_seconds": (
        "Time to first visible answer token of successful probe requests.",
        FIRST_CONTENT_BUCKETS,
        "first_content_seconds",
    ),
    "llm_request_duration_seconds": (
        "Time from request written to last token of successful probe requests.",
        DURATION_BUCKETS,
        "duration_seconds",
    ),
    "llm_decode_tokens_per_second": (
        "Decode rate (output tokens - 1) / (duration - ttft) of successful probe requests.",
        DECODE_RATE_BUCKETS,
        "tokens_per_second",
    ),
    "llm_connect_seconds": (
        "Connection set-up (DNS, TCP, TLS) of successful probe requests that opened one; "
        "never part of TTFT.",
        CONNECT_BUCKETS,
        "connect_seconds",
    ),
}
# Histograms whose sum of squared observations is exposed too (`<name>_squared_total`):
# with `_sum` and `_count` it gives a window's standard deviation, and so the standard
# error of the score's two figures, which `switch_confidence` weighs a lead against.
SQUARED = ("llm_ttft_seconds", "llm_decode_tokens_per_second")

Key = tuple[str, str, str]  # provider, model, module


class _Histogram:
    __slots__ = ("bounds", "counts", "total", "squares", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last slot: above every bound
        self.total = 0.0
        self.squares = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # `le` is inclusive, so a value equal to a bound belongs to that bucket.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.squares += value * value
        self.count += 1

    def totals(self) -> HistogramTotals:
        running, buckets = 0, []
        for bound, count in zip(self.bounds + (float("inf"),), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return HistogramTotals(tuple(buckets), self.total, self.count)

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip(self.bounds + (float("inf"),), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else _float_text(bound), running))
        return out


def _float_text(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True)
class HistogramTotals:
    """One cumulative histogram as numbers: (upper bound, count) buckets, +Inf last."""

    buckets: tuple[tuple[float, int], ...]
    total: float
    count: int


@dataclass(frozen=True)
class SeriesTotals:
    """The cumulative counters and histograms of one target+module, as numbers."""

    requests: int
    failures: dict[str, int]
    output_tokens: int
    input_tokens: int
    histograms: dict[str, HistogramTotals]


@dataclass
class _Series:
    histograms: dict[str, _Histogram] = field(
        default_factory=lambda: {name: _Histogram(spec[1]) for name, spec in HISTOGRAMS.items()}
    )
    requests: int = 0
    failures: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(COUNTED_FAILURE_REASONS, 0)
    )
    output_tokens: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    prompt_cache_hits: int = 0
    reasoning_hidden: int = 0


class CumulativeStore:
    """Histograms and counters per provider+model+module, alive as long as the exporter."""

    def __init__(self) -> None:
        # Only touched from the event loop, between awaits: no lock needed.
        self._series: dict[Key, _Series] = {}

    def observe(self, result: ProbeResult) -> None:
        """Account for every real request of one paid probe."""
        series = self._series.setdefault(_key(result), _Series())
        for request in result.requests:
            if request.failure_reason in MISCONFIGURED_REASONS:
                continue  # the exporter's configuration, not the provider's failure
            series.requests += 1
            # Tokens are counted whatever the outcome: a stream that broke late was
            # still paid for, and the token counters are what the budget is about.
            series.output_tokens += request.output_tokens or 0
            series.input_tokens += request.input_tokens or 0
            series.cached_input_tokens += request.cached_input_tokens or 0
            if not request.success:
                reason = request.failure_reason or "bad_stream"
                series.failures[reason] = series.failures.get(reason, 0) + 1
                continue
            series.prompt_cache_hits += request.prompt_cache_hit
            series.reasoning_hidden += request.reasoning_hidden
            for name, (_, _, attribute) in HISTOGRAMS.items():
                value = getattr(request, attribute)
                if value is not None:
                    series.histograms[name].observe(value)

    def totals(self, provider: str, model: str, module: str) -> SeriesTotals:
        """What families() exposes for one target+module, for readers in this process."""
        series = self._series.get((provider, model, module)) or _Series()
        return SeriesTotals(
            requests=series.requests,
            failures=dict(series.failures),
            output_tokens=series.output_tokens,
            input_tokens=series.input_tokens,
            histograms={name: h.totals() for name, h in series.histograms.items()},
        )

    def families(self, provider: str, model: str, module: str) -> list[Metric]:
        """Cumulative families of one target+module (zero-valued before its first probe)."""
        labels = [provider, model, module]
        series = self._series.get((provider, model, module)) or _Series()
        families: list[Metric] = []
        for name, (help_text, _, _) in HISTOGRAMS.items():
            histogram = series.histograms[name]
            family = HistogramMetricFamily(name, help_text, labels=LABELS)
            family.add_metric(labels, histogram.cumulative(), histogram.total)
            families.append(family)
        for name in SQUARED:
            squared = CounterMetricFamily(
                f"{name}_squared",
                f"Sum of the squares of {name}'s observations (with its _sum and _count: "
                "the variance over a window).",
                labels=LABELS,
            )
            squared.add_metric(labels, series.histograms[name].squares)
            families.append(squared)
        requests = CounterMetricFamily(
            "llm_requests",
            "Probe requests sent, successful or not (one never sent for want of a key is not).",
            labels=LABELS,
        )
        requests.add_metric(labels, series.requests)
        failures = CounterMetricFamily(
            "llm_request_failures", "Failed probe requests by reason.", labels=(*LABELS, "reason")
        )
        for reason, count in series.failures.items():
            failures.add_metric([*labels, reason], count)
        output = CounterMetricFamily(
            "llm_output_tokens", "Output tokens received by probes.", labels=LABELS
        )
        output.add_metric(labels, series.output_tokens)
        inputs = CounterMetricFamily(
            "llm_input_tokens", "Input tokens sent by probes.", labels=LABELS
        )
        inputs.add_metric(labels, series.input_tokens)
        families += [requests, failures, output, inputs]
        for name, help_text, value in (
            (
                "llm_cached_input_tokens",
                "Input tokens the provider served from its prompt cache.",
                series.cached_input_tokens,
            ),
            (
                "llm_prompt_cache_hit_requests",
                "Successful probe requests whose prompt was partly served from cache "
                "(their TTFT flatters the model).",
                series.prompt_cache_hits,
            ),
            (
                "llm_reasoning_hidden_requests",
                "Successful probe requests whose reasoning was counted but not streamed; "
                "their decode rate is the visible answer's.",
                series.reasoning_hidden,
            ),
        ):
            counter = CounterMetricFamily(name, help_text, labels=LABELS)
            counter.add_metric(labels, value)
            families.append(counter)
        return families


def _key(result: ProbeResult) -> Key:
    return (result.provider, result.model, result.module)


def probe_families(result: ProbeResult, *, cached: bool) -> list[Metric]:
    """The per-probe gauges of one result; unknown values are left out, not zeroed."""
    labels = [result.provider, result.model, result.module]
    families: list[Metric] = []

    def gauge(name: str, help_text: str, value: float | None) -> None:
        if value is None:
            return
        family = GaugeMetricFamily(name, help_text, labels=LABELS)
        family.add_metric(labels, float(value))
        families.append(family)

    gauge(
        "llm_probe_success",
        "1 if every request of the probe succeeded.",
        1 if result.success else 0,
    )
    gauge("llm_probe_duration_seconds", "Wall time of the whole probe.", result.elapsed_seconds)
    gauge(
        "llm_probe_ttft_seconds",
        "Time to first token (median over the probe's requests).",
        result.ttft_seconds,
    )
    gauge(
        "llm_probe_first_content_seconds",
        "Time to first visible answer token, after any reasoning (median).",
        result.first_content_seconds,
    )
    gauge(
        "llm_probe_request_duration_seconds",
        "Time from request to last token (median).",
        result.duration_seconds,
    )
    gauge(
        "llm_probe_tokens_per_second",
        "Decode rate (output tokens - 1) / (duration - ttft), median over the requests.",
        result.tokens_per_second,
    )
    gauge(
        "llm_probe_aggregate_tokens_per_second",
        "All streams' output tokens / wall time of the probe.",
        result.aggregate_tokens_per_second,
    )
    # The spread over the probe's successful requests (concurrent streams, several runs).
    for attribute, low, high, what in (
        (
            "ttft_seconds",
            "llm_probe_ttft_min_seconds",
            "llm_probe_ttft_max_seconds",
            "Time to first token",
        ),
        (
            "tokens_per_second",
            "llm_probe_tokens_per_second_min",
            "llm_probe_tokens_per_second_max",
            "Decode rate",
        ),
    ):
        spread = result.spread(attribute)
        gauge(
            low,
            f"{what}, lowest of the probe's successful requests.",
            spread[0] if spread else None,
        )
        gauge(
            high,
            f"{what}, highest of the probe's successful requests.",
            spread[1] if spread else None,
        )
    gauge("llm_probe_output_tokens", "Output tokens of the probe.", result.output_tokens)
    gauge("llm_probe_input_tokens", "Input tokens of the probe.", result.input_tokens)
    gauge(
        "llm_probe_reasoning_tokens",
        "Reasoning tokens of the probe (the server's count, else estimated).",
        result.reasoning_tokens,
    )
    gauge(
        "llm_probe_reasoning_hidden",
        "1 when usage counted reasoning the stream did not show: the decode rate is then "
        "the visible answer's tokens over the visible answer's stream.",
        int(result.reasoning_hidden) if result.successes else None,
    )
    gauge(
        "llm_probe_cached_input_tokens",
        "Input tokens the provider served from its prompt cache.",
        result.cached_input_tokens,
    )
    gauge(
        "llm_probe_prompt_cache_hit",
        "1 when part of the prompt came from the provider's cache (a flattering TTFT).",
        int(result.prompt_cache_hit) if result.successes else None,
    )
    gauge(
        "llm_probe_connect_seconds",
        "Connection set-up (DNS, TCP, TLS), median of the requests that opened one.",
        result.connect_seconds,
    )
    source = result.token_count_source
    gauge(
        "llm_probe_token_count_estimated",
        "1 when token counts were estimated, 0 when the server counted them.",
        None if source is None else int(source == "estimate"),
    )
    # Every reason is present so that an alert on `== 1` sees the series go back to 0.
    failed = GaugeMetricFamily(
        "llm_probe_failed",
        "1 for the failure reason of a failed probe.",
        labels=(*LABELS, "reason"),
    )
    reason = None if result.success else result.failure_reason
    for name in FAILURE_REASONS:
        failed.add_metric([*labels, name], 1.0 if name == reason else 0.0)
    families.append(failed)
    gauge(
        "llm_probe_cached",
        "1 when this scrape was answered from the last result (not paid for).",
        1 if cached else 0,
    )
    gauge("llm_probe_timestamp_seconds", "Unix time the measurement started.", result.started_at)
    return families


class _ProbeCollector(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render_probe(
    store: CumulativeStore, key: Key, result: ProbeResult | None, *, cached: bool
) -> bytes:
    """The body of one /probe answer, from a registry that lives only for this scrape.

    `result` is None when no measurement exists yet (e.g. the budget refused the very
    first probe): then only the cumulative families are exposed, so the missing
    `llm_probe_success` reads as "no data" rather than as a failure.
    """
    families = probe_families(result, cached=cached) if result is not None else []
    families += store.families(*key)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProbeCollector(families))
    return generate_latest(registry)


def render_single_probe(result: ProbeResult) -> str:
    """What the first /probe of a fresh exporter would return for this result.

    `perfgen probe --format text` prints this, so a one-off probe reads exactly like
    the exporter's answer.
    """
    store = CumulativeStore()
    store.observe(result)
    return render_probe(store, _key(result), result, cached=False).decode("utf-8")
