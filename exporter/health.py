"""The exporter's own health series (`/metrics`), read from its service object."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING

from perfgen.exporter.scheduler import OUTCOMES
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import perfgen

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
            "Output tokens probes may spend per hour (0 = unlimited).",
            scheduler.budget.limit,
        )
        yield gauge(
            "perfgen_exporter_budget_exhausted",
            "1 while the hourly token budget refuses probes.",
            1 if scheduler.budget.exhausted() else 0,
        )
        yield gauge(
            "perfgen_exporter_event_loop_lag_seconds",
            "How late the last periodic wake-up of the event loop was.",
            exporter.event_loop_lag,
        )
        yield gauge(
            "perfgen_exporter_targets",
            "Targets configured in [performance.test_models].",
            len(performance.targets),
        )
        yield BUILD_INFO


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
