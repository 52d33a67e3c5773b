"""perfgen.timing: one stale_after for the alerting rules and the generator."""

from __future__ import annotations

import pytest

from perfgen.config import GeneratorSettings, Performance, duration_seconds
from perfgen.generator.query_cli import stale_after
from perfgen.rules.render import timings
from perfgen.timing import stale_after_seconds


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
    ],
)
def test_rules_and_generator_share_one_stale_after(performance, seconds):
    assert stale_after_seconds(performance) == seconds
    rules = timings(performance)
    assert rules.stale_after_seconds == seconds
    assert duration_seconds(rules.stale_after) == seconds
    assert duration_seconds(stale_after(performance)) == seconds
