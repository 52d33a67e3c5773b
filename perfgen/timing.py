"""Durations derived from [performance] that more than one part must agree on.

The alerting rules (rules/render.py) and the generator (generator/run.py, `perfgen
query`) both call a target stale after `stale_after`; deriving it twice once gave 45 s
in the rules and 9 s in the generator for the same config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from perfgen.config import Performance, duration_seconds

# A target is probed only when Prometheus scrapes it, rarely more often than every 15 s:
# below that the configured test interval is not the real cadence of measurements, and
# durations derived from it would page on one late scrape.
MIN_PROBE_CADENCE_SECONDS = 15.0
# A target without a measurement for this many probe intervals is stale.
STALE_INTERVALS = 3


# A module costing at most this share of another one's tokens per probe measures the
# same target for it: adaptive probing watches with it and settles contests with it.
CHEAP_MODULE_SHARE = 0.5


def watching_module(costs: Mapping[str, int]) -> str | None:
    """Of baseline modules with these output tokens per probe, the one that watches a
    target under adaptive probing: the cheapest, if it costs at most CHEAP_MODULE_SHARE of
    the priciest (ties by name)."""
    if len(costs) < 2:
        return None
    cheapest = min(costs, key=lambda name: (costs[name], name))
    priciest = max(costs, key=lambda name: (costs[name], name))
    return cheapest if costs[cheapest] <= CHEAP_MODULE_SHARE * costs[priciest] else None


def confirming_module(costs: Mapping[str, int]) -> str | None:
    """Of a target's baseline modules (output tokens per probe), the one adaptive probing
    confirms a degraded-looking leader with (`confirm_after_seconds`): the watching one,
    or the only one."""
    if len(costs) == 1:
        return next(iter(costs))
    return watching_module(costs)


def probed_baseline_costs(performance: Performance) -> dict[str, int]:
    """The baseline modules every target is probed with (`test_models.modules`), with
    their output tokens per probe."""
    return {
        name: module.output_tokens_per_probe
        for name in performance.sd_modules
        if (module := performance.modules.get(name)) is not None and module.baseline
    }


def watch_module(performance: Performance) -> str | None:
    """The module that watches every target under adaptive probing, if there is one: the
    watching one of the baseline modules probed (`test_models.modules`). Then each target
    is measured at least every `min_interval_minutes`, whatever its other modules wait
    (exporter/adaptive.py).
    """
    if not performance.adaptive.enabled:
        return None
    return watching_module(probed_baseline_costs(performance))


def probe_cadence_seconds(performance: Performance) -> float:
    """Seconds between two measurements of one target, as they really arrive."""
    minutes = performance.test_interval_minutes
    if watch_module(performance):
        minutes = min(minutes, performance.adaptive.min_interval_minutes)
    return max(minutes * 60.0, MIN_PROBE_CADENCE_SECONDS)


def stale_after_seconds(performance: Performance) -> float:
    """`[performance.generator] stale_after`, else STALE_INTERVALS probe cadences.

    Whole seconds, rounded up: never shorter than derived.
    """
    if performance.generator.stale_after:
        seconds = duration_seconds(performance.generator.stale_after)
    else:
        seconds = STALE_INTERVALS * probe_cadence_seconds(performance)
    return float(math.ceil(seconds - 1e-9))
