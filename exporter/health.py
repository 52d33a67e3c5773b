"""The exporter's own health series (`/metrics`), read from its service object."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import perfgen
from perfgen.config import Performance
from perfgen.exporter.adaptive import REASONS as INTERVAL_REASONS
from perfgen.exporter.scheduler import OUTCOMES, Scheduler

if TYPE_CHECKING:  # the service registers this collector: no import at run time
    from perfgen.exporter.service import ExporterService


class HealthCollector(Collector):
    """The exporter's own health, built fresh on every /metrics scrape."""

    def __init__(self, exporter: ExporterService) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        exporter = self._exporter
        scheduler, performance = exporter.scheduler, exporter.config.performance

        def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, help_text, value=value)

        yield gauge(
            "perfgen_exporter_config_last_reload_successful",
            "1 if the last config (re)load succeeded.",
            1 if exporter.reload_successful else 0,
        )
        yield gauge(
            "perfgen_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            exporter.reload_success_time,
        )
        yield gauge(
            "perfgen_exporter_probes_in_flight",
            "Paid probes running or waiting for a concurrency slot.",
            scheduler.in_flight,
        )
        scrapes = CounterMetricFamily(
            "perfgen_exporter_scrapes",
            "/probe scrapes by module and cost-control outcome.",
            labels=("module", "outcome"),
        )
        modules = sorted(set(performance.modules) | {m for m, _ in scheduler.scrapes})
        for module in modules:
            for outcome in OUTCOMES:
                scrapes.add_metric([module, outcome], scheduler.scrapes[(module, outcome)])
        yield scrapes
        yield gauge(
            "perfgen_exporter_budget_output_tokens_used",
            "Output tokens spent by probes in the last hour.",
            scheduler.budget.used(),
        )
        yield gauge(
            "perfgen_exporter_budget_output_tokens_limit",
            "Output tokens probes may spend per hour, max_output_tokens_per_hour (0 = unlimited).",
            scheduler.budget.limit,
        )
        yield gauge(
            "perfgen_exporter_budget_exhausted",
            "1 while the hourly token budget refuses probes.",
            1 if scheduler.budget.exhausted() or scheduler.money.exhausted() else 0,
        )
        yield gauge(
            "perfgen_exporter_event_loop_lag_seconds",
            "How late the last periodic wake-up of the event loop was (a busy loop skews TTFT).",
            exporter.event_loop_lag,
        )
        yield gauge(
            "perfgen_exporter_targets",
            "Targets configured in [performance.test_models].",
            len(performance.targets),
        )
        yield from _interval_families(scheduler, performance)
        yield from _spend_families(scheduler, performance)
        yield BUILD_INFO


def _interval_families(scheduler: Scheduler, performance: Performance) -> Iterator[Metric]:
    """Each target+module's current probe interval and the reason for it."""
    labels = ("provider", "model", "module")
    interval = GaugeMetricFamily(
        "perfgen_exporter_probe_interval_seconds",
        "Least time between two paid probes of the target+module, as chosen now.",
        labels=labels,
    )
    reason = GaugeMetricFamily(
        "perfgen_exporter_probe_interval_reason",
        "1 for the reason of the current interval (fixed when adaptive probing is off).",
        labels=(*labels, "reason"),
    )
    for target in performance.targets:
        for module in performance.sd_modules:
            key = (target.provider, target.model, module)
            choice = scheduler.interval(key)
            interval.add_metric(list(key), choice.seconds)
            for name in INTERVAL_REASONS:
                reason.add_metric([*key, name], 1.0 if name == choice.reason else 0.0)
    yield interval
    yield reason


def _spend_families(scheduler: Scheduler, performance: Performance) -> Iterator[Metric]:
    """Probe spend in dollars, by the configured `[performance.prices]`."""
    cost = CounterMetricFamily(
        "perfgen_exporter_probe_cost_dollars",
        "Dollars paid for probes, by [performance.prices] (0 for models without a price).",
        labels=("provider", "model", "module"),
    )
    keys = {(t.provider, t.model, m) for t in performance.targets for m in performance.sd_modules}
    for key in sorted(keys | set(scheduler.dollars)):
        cost.add_metric(list(key), scheduler.dollars[key])
    yield cost
    yield GaugeMetricFamily(
        "perfgen_exporter_budget_dollars_used",
        "Dollars spent by probes in the last hour.",
        value=scheduler.money.used(),
    )
    yield GaugeMetricFamily(
        "perfgen_exporter_budget_dollars_limit",
        "Dollars probes may spend per hour (0 = unlimited).",
        value=scheduler.money.limit,
    )


def _build_info() -> GaugeMetricFamily:
    # The blackbox_exporter convention (its <name>_build_info): a constant 1 whose labels say
    # what runs, so a query can join on it and a fleet's versions can be counted.
    info = GaugeMetricFamily(
        "perfgen_exporter_build_info",
        "Always 1; the labels name the perfgen version and the Python running it.",
        labels=("version", "python_version"),
    )
    info.add_metric([perfgen.__version__, platform.python_version()], 1)
    return info


BUILD_INFO = _build_info()
