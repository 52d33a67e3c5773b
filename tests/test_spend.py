"""Spend in money: prices in the config, the dollar budget, the cost counter, `query --cost`."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from perfgen.config import ConfigError, Price, Target, parse_config
from perfgen.exporter.result import ProbeResult, RequestResult
from perfgen.exporter.scheduler import CostSettings, Scheduler
from perfgen.exporter.spend import estimate_daily, render_estimate
from perfgen.generator.query_cli import query

HEAD = """
[[providers]]
name = "groq"
api_base_url = "http://127.0.0.1:9/v1"
api_key = "k"
models = ["llama", "small"]

[performance]
test_interval_minutes = 15
"""
PRICES = """
[performance.prices."groq:llama"]
input_per_million = 0.5
output_per_million = 2.0
"""


def test_prices_are_parsed_and_validated() -> None:
    perf = parse_config(HEAD + PRICES + "[performance.budget]\nmax_dollars_per_hour = 0.5\n")
    assert perf.performance.prices == {Target("groq", "llama"): Price(0.5, 2.0)}
    assert perf.performance.max_dollars_per_hour == 0.5
    bad = {
        '[performance.prices."groq:nope"]\noutput_per_million = 1\n': r"prices\.groq:nope",
        '[performance.prices."groq"]\noutput_per_million = 1\n': r"prices\.groq",
        '[performance.prices."groq:llama"]\noutput_per_million = -1\n': "at least 0",
        '[performance.prices."groq:llama"]\noutput = 1\n': r"prices\.groq:llama\.output",
        '[performance.prices]\n"groq:llama" = 3\n': "must be a table",
        "[performance.budget]\nmax_dollars_per_hour = -1\n": "max_dollars_per_hour",
    }
    for text, message in bad.items():
        with pytest.raises(ConfigError, match=message) as info:
            parse_config(HEAD + text, "c.toml")
        assert "c.toml" in str(info.value)


def test_price_in_dollars() -> None:
    assert Price(0.5, 2.0).dollars(1_000_000, 500_000) == pytest.approx(1.5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result(tokens: int) -> ProbeResult:
    request = RequestResult(
        success=True,
        ttft_seconds=0.1,
        duration_seconds=0.5,
        output_tokens=tokens,
        input_tokens=100,
        token_count_source="usage",
    )
    return ProbeResult("groq", "llama", "latency", 0.0, 0.5, (request,))


def test_dollar_budget_and_cost_counter() -> None:
    prices = {Target("groq", "llama"): Price(1_000.0, 10_000.0)}  # $0.01 per output token
    clock = Clock()
    # 100 output tokens worst case = $1 + input; the hour allows $2.5.
    scheduler = Scheduler(CostSettings(60, 30, 3, 0, 2.5, prices), clock=clock)
    key = ("groq", "llama", "latency")

    async def start(timeout: float) -> ProbeResult:
        return result(50)  # $0.50 + 100 input tokens x $0.001 = $0.60

    async def scrape() -> str:
        answer = await scheduler.probe(key, start, timeout=10, cost=100, input_tokens=100)
        return answer.outcome

    async def day() -> list[str]:
        outcomes = []
        for _ in range(6):
            outcomes.append(await scrape())
            clock.now += 61
        clock.now += 3600  # the hour has passed
        outcomes.append(await scrape())
        return outcomes

    # Each probe reserves $1.10 and settles at $0.60: three fit in the hour ($1.80), a
    # fourth would overshoot ($1.80 + $1.10 > $2.50); an hour later it fits again.
    assert asyncio.run(day()) == ["fresh"] * 3 + ["budget_exhausted"] * 3 + ["fresh"]
    assert scheduler.dollars[key] == pytest.approx(2.4)
    assert scheduler.money.used() == pytest.approx(0.6)


def test_unpriced_models_cost_nothing_and_are_not_limited() -> None:
    scheduler = Scheduler(CostSettings(60, 30, 3, 0, 0.01, {}), clock=Clock())

    async def start(timeout: float) -> ProbeResult:
        return result(50)

    answer = asyncio.run(scheduler.probe(("groq", "llama", "latency"), start, timeout=10, cost=100))
    assert answer.outcome == "fresh" and scheduler.dollars[("groq", "llama", "latency")] == 0


def test_daily_estimate() -> None:
    text = HEAD + PRICES + '[performance.test_models]\nmodels = ["groq:llama"]\n'
    performance = parse_config(text).performance
    rows = estimate_daily(performance)
    # latency (16 tokens) and throughput (256) every 15 min: 96 probes a day each.
    assert [(r.module, r.probes, r.output_tokens) for r in rows] == [
        ("latency", 96, 96 * 16),
        ("throughput", 96, 96 * 256),
    ]
    output = 96 * (16 + 256)
    assert sum(r.dollars or 0 for r in rows) == pytest.approx(
        (output * 2.0 + sum(r.input_tokens for r in rows) * 0.5) / 1e6, rel=1e-3
    )
    text_out = render_estimate(performance, {Target("groq", "llama"): 0.01})
    assert "groq:llama" in text_out and "0.0100" in text_out


def test_daily_estimate_with_adaptive_probing() -> None:
    """The latency probes watch every 10 minutes, throughput waits its hour: the steady
    spend; where a probe may change a route, throughput too comes every 10 minutes."""
    text = HEAD.replace("test_interval_minutes = 15", "test_interval_minutes = 60")
    text += '[performance.test_models]\nmodels = ["groq:llama"]\n'
    text += "[performance.adaptive]\nenabled = true\nmin_interval_minutes = 10\n"
    performance = parse_config(text).performance
    rows = estimate_daily(performance)
    assert [(r.module, r.probes, r.max_probes) for r in rows] == [
        ("latency", 144, 144),
        ("throughput", 24, 144),
    ]
    out = render_estimate(performance, None)
    assert "latency every 10 min, the other modules every 60 min" in out
    steady = 144 * 16 + 24 * 256
    assert f"total: {steady} output tokens/day" in out
    assert f"up to {144 * (16 + 256) / steady:.1f}x these figures" in out


def test_confirmations_raise_the_watchs_ceiling_not_the_steady_spend() -> None:
    """A leader's watch may confirm a degraded-looking result 30 s later, at most after
    every other probe: up to 2 probes per 10.5 minutes, 274 a day instead of 144."""
    text = HEAD.replace("test_interval_minutes = 15", "test_interval_minutes = 60")
    text += '[performance.test_models]\nmodels = ["groq:llama"]\n'
    text += "[performance.adaptive]\nenabled = true\nmin_interval_minutes = 10\n"
    performance = parse_config(text + "confirm_after_seconds = 30\n").performance
    rows = estimate_daily(performance)
    assert [(r.module, r.probes, round(r.max_probes)) for r in rows] == [
        ("latency", 144, 274),
        ("throughput", 24, 144),
    ]


def test_query_cost_command(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(HEAD + PRICES)
    runner = CliRunner()
    out = runner.invoke(
        query,
        ["--prometheus", "http://127.0.0.1:9", "--retries", "0", "--config", str(config), "--cost"],
    )
    assert out.exit_code == 0, out.output
    assert "groq:llama" in out.stdout and "no price" in out.stdout  # groq:small has none
    assert "budget ceiling: 480000 output tokens/day" in out.stdout
    assert "no measured cost" in out.stderr
    missing = runner.invoke(query, ["--prometheus", "http://127.0.0.1:9", "--cost"])
    assert missing.exit_code == 1 and "--cost needs --config" in missing.stderr
