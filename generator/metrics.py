"""The generator's own metrics (job `perfgen_generator`, names in docs/CONTRACTS.md).

Only `perfgen generate --every ... --metrics-listen HOST:PORT` serves them: a one-shot
run from a systemd timer or a CronJob lives too briefly to be scraped, and reports
through its exit code instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from perfgen.config import Route
from perfgen.generator.apply import ApplyOutcome
from perfgen.listen import parse_listen


class GeneratorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.last_run = Gauge(
            "perfgen_generator_last_run_timestamp_seconds",
            "Unix time the last generator run finished.",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "perfgen_generator_last_run_success",
            "1 if the last generator run succeeded, else 0.",
            registry=self.registry,
        )
        self.last_success_time = Gauge(
            "perfgen_generator_last_success_timestamp_seconds",
            "Unix time of the last successful generator run.",
            registry=self.registry,
        )
        # prometheus_client appends _total to the exposed name.
        self.route_changes = Counter(
            "perfgen_generator_route_changes",
            "Routes (fallback chains) the generator rewrote, by scenario.",
            ["scenario"],
            registry=self.registry,
        )
        self.primary = Gauge(
            "perfgen_generator_primary_info",
            "The primary route of each scenario after the last successful run (always 1).",
            ["scenario", "provider", "model"],
            registry=self.registry,
        )
        self._primaries: dict[str, tuple[str, str]] = {}
        self.routes_applied = Gauge(
            "perfgen_generator_routes_applied",
            "1 if the proxy's live router routes equal the file's after the last --apply "
            "step, else 0 (failed, or waiting for the restart bound).",
            registry=self.registry,
        )
        self.apply_failures = Counter(
            "perfgen_generator_apply_failures",
            "Apply steps that failed, by reason (command, no_comeback, mismatch, reload, "
            "unreachable).",
            ["reason"],
            registry=self.registry,
        )
        self.apply_waiting = Gauge(
            "perfgen_generator_apply_waiting",
            "1 while a route change waits for --max-restarts-per-hour, else 0.",
            registry=self.registry,
        )
        self.restarts = Counter(
            "perfgen_generator_proxy_restarts",
            "Proxy restarts the generator ran (--apply restart), successful or not.",
            registry=self.registry,
        )

    def init_scenarios(self, scenarios: Iterable[str]) -> None:
        # A counter that exists from the start lets increase() see the first change.
        for scenario in scenarios:
            self.route_changes.labels(scenario=scenario)

    def record_success(
        self, now: float, primaries: dict[str, Route], changed: Iterable[str]
    ) -> None:
        self.last_run.set(now)
        self.last_success.set(1)
        self.last_success_time.set(now)
        for scenario in changed:
            self.route_changes.labels(scenario=scenario).inc()
        for scenario, route in primaries.items():
            labels = (route.provider, route.model)
            previous = self._primaries.get(scenario)
            if previous is not None and previous != labels:
                self.primary.remove(scenario, *previous)
            self.primary.labels(scenario, *labels).set(1)
            self._primaries[scenario] = labels

    def init_apply(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.apply_failures.labels(reason=reason)

    def record_apply(self, outcome: ApplyOutcome) -> None:
        self.routes_applied.set(1 if outcome.applied else 0)
        self.apply_waiting.set(1 if outcome.action == "waiting" else 0)
        if outcome.reason:
            self.apply_failures.labels(reason=outcome.reason).inc()
        if outcome.restarted:
            self.restarts.inc()

    def record_failure(self, now: float) -> None:
        self.last_run.set(now)
        self.last_success.set(0)

    def serve(self, listen: str) -> int:
        """Serve /metrics on HOST:PORT in a daemon thread; returns the port bound (the one
        the system chose for port 0)."""
        host, port = parse_listen(listen)
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
