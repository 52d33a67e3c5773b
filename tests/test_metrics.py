"""ProbeResult -> exposition text: names, labels, histograms fed only by real successes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfgen.exporter.metrics import (
    TTFT_BUCKETS,
    CumulativeStore,
    render_probe,
    render_single_probe,
)
from perfgen.exporter.result import (
    COUNTED_FAILURE_REASONS,
    FAILURE_REASONS,
    ProbeResult,
    RequestResult,
)

KEY = ("sim", "fast-model", "latency")
LABELS = {"provider": "sim", "model": "fast-model", "module": "latency"}


def ok_request(ttft: float = 0.2, duration: float = 1.2, tokens: int = 51) -> RequestResult:
    return RequestResult(
        success=True,
        http_status=200,
        ttft_seconds=ttft,
        first_content_seconds=ttft,
        duration_seconds=duration,
        output_tokens=tokens,
        input_tokens=12,
        tokens_per_second=(tokens - 1) / (duration - ttft),
        token_count_source="usage",
    )


def failed_request(reason: str = "http_5xx") -> RequestResult:
    return RequestResult(
        success=False, failure_reason=reason, http_status=500, failure_detail="upstream said no"
    )


def result_of(*requests: RequestResult, **kwargs: object) -> ProbeResult:
    fields: dict = {
        "provider": "sim",
        "model": "fast-model",
        "module": "latency",
        "started_at": 1_700_000_000.0,
        "elapsed_seconds": 1.5,
        "requests": requests,
    }
    fields.update(kwargs)
    return ProbeResult(**fields)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **extra: str) -> float | None:
    labels = tuple(sorted({**LABELS, **extra}.items()))
    return samples(text).get((name, labels))


def test_successful_probe_exposes_every_contract_gauge():
    text = render_single_probe(result_of(ok_request()))
    for name in (
        "llm_probe_success",
        "llm_probe_duration_seconds",
        "llm_probe_ttft_seconds",
        "llm_probe_first_content_seconds",
        "llm_probe_request_duration_seconds",
        "llm_probe_tokens_per_second",
        "llm_probe_output_tokens",
        "llm_probe_input_tokens",
        "llm_probe_token_count_estimated",
        "llm_probe_cached",
        "llm_probe_timestamp_seconds",
    ):
        assert value(text, name) is not None, name
    assert value(text, "llm_probe_success") == 1
    assert value(text, "llm_probe_ttft_seconds") == pytest.approx(0.2)
    assert value(text, "llm_probe_tokens_per_second") == pytest.approx(50.0)
    assert value(text, "llm_probe_token_count_estimated") == 0
    assert value(text, "llm_probe_cached") == 0
    assert value(text, "llm_probe_timestamp_seconds") == 1_700_000_000.0
    for reason in FAILURE_REASONS:
        assert value(text, "llm_probe_failed", reason=reason) == 0


def test_histograms_and_counters_after_one_success():
    text = render_single_probe(result_of(ok_request(ttft=0.2)))
    assert value(text, "llm_ttft_seconds_count") == 1
    assert value(text, "llm_ttft_seconds_sum") == pytest.approx(0.2)
    assert value(text, "llm_ttft_seconds_bucket", le="0.1") == 0
    assert value(text, "llm_ttft_seconds_bucket", le="0.25") == 1
    assert value(text, "llm_ttft_seconds_bucket", le="+Inf") == 1
    assert value(text, "llm_request_duration_seconds_count") == 1
    assert value(text, "llm_decode_tokens_per_second_count") == 1
    assert value(text, "llm_first_content_seconds_count") == 1
    assert value(text, "llm_requests_total") == 1
    assert value(text, "llm_output_tokens_total") == 51
    assert value(text, "llm_input_tokens_total") == 12
    for reason in COUNTED_FAILURE_REASONS:
        assert value(text, "llm_request_failures_total", reason=reason) == 0
    # A request that was never sent is not the provider's failure: no such series.
    assert value(text, "llm_request_failures_total", reason="no_api_key") is None


def test_sums_of_squares_accompany_the_score_figures_histograms():
    # What the recording rules take a window's standard error from: the sum of the
    # squares, not the square of the sum (two requests tell them apart).
    fast, slow = ok_request(ttft=0.2, duration=1.2), ok_request(ttft=0.6, duration=1.1)
    text = render_single_probe(result_of(fast, slow))
    assert value(text, "llm_ttft_seconds_squared_total") == pytest.approx(0.04 + 0.36)
    rates = [fast.tokens_per_second, slow.tokens_per_second]
    assert value(text, "llm_decode_tokens_per_second_squared_total") == pytest.approx(
        sum(rate * rate for rate in rates if rate is not None)
    )
    assert value(text, "llm_request_duration_seconds_squared_total") is None


def test_value_on_a_bucket_bound_lands_in_that_bucket():
    store = CumulativeStore()
    store.observe(result_of(ok_request(ttft=TTFT_BUCKETS[3])))
    text = render_probe(store, KEY, None, cached=True).decode()
    assert value(text, "llm_ttft_seconds_bucket", le=repr(TTFT_BUCKETS[3])) == 1
    assert value(text, "llm_ttft_seconds_bucket", le=repr(TTFT_BUCKETS[2])) == 0


def test_failures_count_but_never_feed_histograms():
    store = CumulativeStore()
    store.observe(result_of(failed_request("http_429"), failed_request("http_429"), ok_request()))
    failed = result_of(failed_request("timeout"))
    store.observe(failed)
    text = render_probe(store, KEY, failed, cached=False).decode()
    assert value(text, "llm_requests_total") == 4
    assert value(text, "llm_request_failures_total", reason="http_429") == 2
    assert value(text, "llm_request_failures_total", reason="timeout") == 1
    assert value(text, "llm_ttft_seconds_count") == 1
    assert value(text, "llm_probe_success") == 0
    assert value(text, "llm_probe_failed", reason="timeout") == 1
    assert value(text, "llm_probe_failed", reason="http_429") == 0
    # Unknown values of a failed probe are absent, not zero.
    assert value(text, "llm_probe_ttft_seconds") is None
    assert value(text, "llm_probe_tokens_per_second") is None


def test_cached_answer_does_not_observe_again():
    store = CumulativeStore()
    result = result_of(ok_request())
    store.observe(result)
    first = render_probe(store, KEY, result, cached=False).decode()
    again = render_probe(store, KEY, result, cached=True).decode()
    assert value(again, "llm_probe_cached") == 1
    assert value(again, "llm_requests_total") == value(first, "llm_requests_total") == 1


def test_each_scrape_only_shows_its_own_target_and_module():
    store = CumulativeStore()
    store.observe(result_of(ok_request()))
    store.observe(result_of(ok_request(), model="other"))
    text = render_probe(store, KEY, None, cached=True).decode()
    models = {labels for (_, labels) in samples(text)}
    assert all(("model", "fast-model") in labels for labels in models)


def test_estimated_tokens_and_concurrent_aggregate():
    estimated = RequestResult(
        success=True,
        ttft_seconds=0.1,
        duration_seconds=0.6,
        output_tokens=11,
        tokens_per_second=20.0,
        token_count_source="estimate",
    )
    text = render_single_probe(
        result_of(estimated, ok_request(), module="concurrent", aggregate_tokens_per_second=90.0)
    )
    labels = {**LABELS, "module": "concurrent"}
    found = samples(text)
    assert found[("llm_probe_token_count_estimated", tuple(sorted(labels.items())))] == 1
    assert found[("llm_probe_aggregate_tokens_per_second", tuple(sorted(labels.items())))] == 90
    assert found[("llm_probe_output_tokens", tuple(sorted(labels.items())))] == 62


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition():
    store = CumulativeStore()
    failed = result_of(failed_request())
    store.observe(result_of(ok_request()))
    store.observe(failed)
    text = render_probe(store, KEY, failed, cached=True)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("reason", "detail", "status"),
    [
        ("no_api_key", "environment variable K is not set", None),
        # Sent and refused, but for a parameter the probe chose: the operator's fix.
        ("unsupported_parameter", "the provider refused max_tokens", 400),
    ],
)
def test_misconfigured_probe_is_not_counted_against_the_model(reason, detail, status):
    store = CumulativeStore()
    store.observe(result_of(ok_request()))
    spoiled = result_of(
        RequestResult(
            success=False, failure_reason=reason, failure_detail=detail, http_status=status
        )
    )
    store.observe(spoiled)
    text = render_probe(store, KEY, spoiled, cached=False).decode()
    # The per-probe gauges tell the story ...
    assert value(text, "llm_probe_success") == 0
    assert value(text, "llm_probe_failed", reason=reason) == 1
    # ... but the success ratio the rules and the generator use is untouched.
    assert value(text, "llm_requests_total") == 1
    assert value(text, "llm_request_failures_total", reason=reason) is None
    assert (
        sum(value(text, "llm_request_failures_total", reason=r) for r in COUNTED_FAILURE_REASONS)
        == 0
    )


def test_spread_of_the_successful_requests():
    requests = (
        ok_request(ttft=0.2, duration=1.2),
        ok_request(ttft=0.5, duration=1.0),
        ok_request(ttft=0.3, duration=2.3),
        failed_request("timeout"),
    )
    result = result_of(*requests, module="concurrent")
    text = render_single_probe(result)
    labels = {"module": "concurrent"}
    assert value(text, "llm_probe_ttft_min_seconds", **labels) == pytest.approx(0.2)
    assert value(text, "llm_probe_ttft_max_seconds", **labels) == pytest.approx(0.5)
    assert value(text, "llm_probe_tokens_per_second_min", **labels) == pytest.approx(25.0)
    assert value(text, "llm_probe_tokens_per_second_max", **labels) == pytest.approx(100.0)
    assert result.to_json()["spread"] == {
        "ttft_seconds": [0.2, 0.5],
        "tokens_per_second": [pytest.approx(25.0), 100.0],
    }
    # No successful request, no spread (absent, not 0).
    failed = result_of(failed_request())
    text = render_single_probe(failed)
    for name in (
        "llm_probe_ttft_min_seconds",
        "llm_probe_ttft_max_seconds",
        "llm_probe_tokens_per_second_min",
        "llm_probe_tokens_per_second_max",
    ):
        assert value(text, name) is None, name
    assert failed.to_json()["spread"] == {"ttft_seconds": None, "tokens_per_second": None}


def test_reasoning_cache_and_connect_metrics_pass_promtool():
    from dataclasses import replace

    hidden = replace(
        ok_request(),
        reasoning_tokens=192,
        reasoning_hidden=True,
        decode_rate_basis="visible_answer",
        cached_input_tokens=1024,
        connect_seconds=0.042,
    )
    result = result_of(hidden, replace(ok_request(), connect_seconds=None))
    text = render_single_probe(result)
    assert value(text, "llm_probe_reasoning_tokens") == 192
    assert value(text, "llm_probe_reasoning_hidden") == 1
    assert value(text, "llm_probe_cached_input_tokens") == 1024
    assert value(text, "llm_probe_prompt_cache_hit") == 1
    assert value(text, "llm_probe_connect_seconds") == 0.042
    assert value(text, "llm_cached_input_tokens_total") == 1024
    assert value(text, "llm_prompt_cache_hit_requests_total") == 1
    assert value(text, "llm_reasoning_hidden_requests_total") == 1
    assert value(text, "llm_connect_seconds_count") == 1  # a reused connection is no sample
    for reason in ("unsupported_parameter", "overloaded", "reasoning_truncated"):
        assert value(text, "llm_probe_failed", reason=reason) == 0
    for reason in ("overloaded", "reasoning_truncated"):
        assert value(text, "llm_request_failures_total", reason=reason) == 0
    # The exporter's own configuration is never counted against the model.
    assert value(text, "llm_request_failures_total", reason="unsupported_parameter") is None
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    plain = render_single_probe(result_of(ok_request()))
    assert value(plain, "llm_probe_reasoning_hidden") == 0
    assert value(plain, "llm_probe_connect_seconds") is None  # unknown: left out, not zeroed
