"""perfgen.timing: one stale_after for the alerting rules and the generator."""

from __future__ import annotations

import dataclasses

import pytest

from perfgen.config import AdaptiveSettings, GeneratorSettings, Performance, duration_seconds
from perfgen.generator.query_cli import stale_after
from perfgen.rules.render import timings
from perfgen.timing import stale_after_seconds, watch_module

ADAPTIVE = Performance(
    test_interval_minutes=60,
    adaptive=AdaptiveSettings(enabled=True, min_interval_minutes=10),
    sd_modules=("latency", "throughput"),
)


@pytest.mark.parametrize(
    "performance, seconds",
    [
        (Performance(test_interval_minutes=60), 3 * 3600),
        # The demo's 3 s interval: probes follow 15 s scrapes, so 3 x 15 s, not 3 x 3 s.
        (Performance(window="2m", test_interval_minutes=0.05), 45),
        (Performance(window="2m", test_interval_minutes=0.25), 45),
        (Performance(test_interval_minutes=0.5), 90),
        (Performance(generator=GeneratorSettings(stale_after="10m")), 600),
        (Performance(generator=GeneratorSettings(stale_after="90s")), 90),
        # Adaptive probing with latency (16 tokens) beside throughput (256): latency
        # watches every target at the 10-minute minimum, so 3 x 10 min, not 3 x 60.
        (ADAPTIVE, 3 * 600),
        (dataclasses.replace(ADAPTIVE, sd_modules=("throughput",)), 3 * 3600),
    ],
)
def test_rules_and_generator_share_one_stale_after(performance, seconds):
    assert stale_after_seconds(performance) == seconds
    rules = timings(performance)
    assert rules.stale_after_seconds == seconds
    assert duration_seconds(rules.stale_after) == seconds
    assert duration_seconds(stale_after(performance)) == seconds


def test_the_watch_is_the_cheapest_probed_baseline_module_at_half_the_cost() -> None:
    def watch(**changes: object) -> str | None:
        return watch_module(dataclasses.replace(ADAPTIVE, **changes))  # type: ignore[arg-type]

    assert watch() == "latency"
    # Off, one module, or a cheap module that is not a baseline one (concurrent streams).
    assert watch(adaptive=AdaptiveSettings()) is None
    assert watch(sd_modules=("latency",)) is None
    assert watch(sd_modules=("concurrent", "throughput")) is None
    # Costing more than half of the other one, latency (16 tokens) does not watch.
    pricey = dataclasses.replace(ADAPTIVE.modules["latency"], max_tokens=200)
    assert watch(modules={**ADAPTIVE.modules, "latency": pricey}) is None
