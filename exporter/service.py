"""The exporter's state and behaviour, in one object both of its HTTP faces use.

`ExporterService` owns what one running exporter knows (config and its reloads, cost
control, the cumulative stores, the kept probes, its own health) and does what it does
(answer a scrape, test now, forget a target, start and stop). The `/probe` handlers
(exporter/app.py) and the management API (exporter/management.py) are thin HTTP layers
over it; neither imports the other. Nothing here parses exposition text: the values come
from the objects that hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from perfgen.config import (
    Config,
    ConfigError,
    Module,
    Provider,
    Target,
    load_config,
    redact,
    secret_values,
)
from perfgen.exporter import logs
from perfgen.exporter import probe as probe_engine
from perfgen.exporter.adaptive import AdaptiveIntervals
from perfgen.exporter.health import HealthCollector
from perfgen.exporter.metrics import CumulativeStore, Key, SeriesTotals
from perfgen.exporter.probe import run_probe as default_run_probe
from perfgen.exporter.result import ProbeResult
from perfgen.exporter.scheduler import Answer, CostSettings, Scheduler
from perfgen.exporter.spend import probe_input_tokens, probe_output_tokens

RECENT_PROBES = 100
LAG_INTERVAL_SECONDS = 0.5
# An idle kept-alive connection to a provider is closed after this long (aiohttp's default,
# stated here because it matters): below the idle timeouts of the usual front ends
# (nginx 75 s, cloud load balancers 60 s and more), so it is normally the exporter, not the
# provider, that closes it. A provider that closes one first is handled by the probe engine.
KEEPALIVE_SECONDS = 15.0

ProbeFunction = Callable[..., Awaitable[ProbeResult]]


def create_probe_session() -> aiohttp.ClientSession:
    """The one ClientSession the exporter probes with for its whole life.

    Made by the probe engine's create_session, so t0 stays "request headers sent" (a
    reused connection changes no definition; connection set-up was never charged). A
    per-probe session cost a session, a connector and a TCP connection per probe (about
    twice the CPU per request) and left cyclic garbage behind. No connection limit: cost
    control already bounds the probes in flight. No cookie jar: a probe must not carry a
    provider's cookies into the next one, as a fresh session per probe never did.
    """
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS)
    return probe_engine.create_session(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


@dataclass(frozen=True)
class RecentProbe:
    """One paid probe, kept for the landing page and its debug view."""

    id: int
    result: ProbeResult
    timeout: float
    module: Module
    provider: Provider
    lines: tuple[str, ...]


class BadProbeRequest(Exception):
    """A request that names nothing probe-able; its message is the 400 body."""


def resolve(config: Config, query: dict[str, str]) -> tuple[Target, Module, Provider]:
    target_text, module_name = query.get("target", ""), query.get("module", "")
    if not target_text:
        raise BadProbeRequest("missing parameter: target (PROVIDER:MODEL)")
    if not module_name:
        raise BadProbeRequest("missing parameter: module")
    module = config.module(module_name)
    if module is None:
        known = ", ".join(sorted(config.performance.modules))
        raise BadProbeRequest(f"unknown module {module_name!r} (known: {known})")
    # Only configured provider+model pairs are probed: a URL in the query string would turn
    # the exporter into an open proxy carrying our API keys.
    try:
        target = Target.parse(target_text)
    except ValueError as exc:
        raise BadProbeRequest(f"bad target: {exc}") from None
    provider = config.provider_for(target)
    if provider is None:
        raise BadProbeRequest(
            f"unknown target {target_text!r}: not a model of a configured provider"
        )
    return target, module, provider


class ExporterService:
    """Everything one running exporter knows: config, cost control, metrics, history."""

    def __init__(
        self,
        config_path: str,
        *,
        run_probe: ProbeFunction | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_format: str | None = None,
        log_stream: TextIO | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)  # a bad file stops startup: ConfigError
        self._previous_secrets: list[str] = []
        self._log_format_override = log_format
        self.logger = logs.make_logger(
            log_format or self.config.performance.exporter.log_format, self.secrets, log_stream
        )
        self._run_probe = run_probe or default_run_probe
        # Opened by lifetime(), closed when it ends; until then, and for a service used
        # without the app, run_probe makes its own.
        self.session: aiohttp.ClientSession | None = None
        self.clock = clock
        self.scheduler = Scheduler(
            CostSettings.from_performance(self.config.performance),
            clock,
            AdaptiveIntervals.from_performance(self.config.performance, clock),
        )
        # One store per target+module, so that the management API can forget a target.
        self.stores: dict[Key, CumulativeStore] = {}
        self.recent: deque[RecentProbe] = deque(maxlen=RECENT_PROBES)
        self._next_id = 1
        self.started_at = time.time()
        self.last_probe_at: float | None = None  # unix time the last paid probe finished
        self.manual_tests: dict[Key, float] = {}  # clock time of the last manual test
        self.reload_successful = True
        self.reload_success_time = time.time()
        self.event_loop_lag = 0.0
        self._budget_warned = False
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.registry.register(HealthCollector(self))

    # ------------------------------------------------------------------ config

    def secrets(self) -> list[str]:
        # Keys of the previous config too: a probe started before a reload may still log.
        return _secret_values(self.config) + self._previous_secrets

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def reload(self) -> ConfigError | None:
        """Re-read the config file; a bad one is refused and the running one kept."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.reload_successful = False
            logs.event(
                self.logger,
                logging.ERROR,
                "config reload failed, running config kept",
                file=exc.path,
                key=exc.key,
                error=exc.message,
            )
            return exc
        self._previous_secrets = _secret_values(self.config)
        self.config = config
        self.scheduler.configure(CostSettings.from_performance(config.performance))
        self.scheduler.intervals = AdaptiveIntervals.from_performance(
            config.performance, self.clock, self.scheduler.intervals
        )
        logs.set_format(
            self.logger, self._log_format_override or config.performance.exporter.log_format
        )
        self.reload_successful = True
        self.reload_success_time = time.time()
        logs.event(
            self.logger,
            logging.INFO,
            "config reloaded",
            file=config.path,
            targets=len(config.performance.targets),
        )
        self.log_config_warnings()
        return None

    def log_config_warnings(self) -> None:
        """What the running config accepts but an operator should know (a weak literal key)."""
        for warning in self.config.warnings:
            logs.event(self.logger, logging.WARNING, "config warning", warning=warning)

    def resolve(self, query: dict[str, str]) -> tuple[Target, Module, Provider]:
        """The target, module and provider a request names, in the running config."""
        return resolve(self.config, query)

    # ------------------------------------------------------------------ probing

    async def answer(
        self, target: Target, module: Module, provider: Provider, timeout: float
    ) -> Answer:
        """One scrape's answer, paying for a probe only when cost control allows it."""
        key = (target.provider, target.model, module.name)
        config = self.config

        async def start(remaining: float) -> ProbeResult:
            return await self._paid_probe(config, target, module, provider, remaining)

        answer = await self.scheduler.probe(
            key,
            start,
            timeout=timeout,
            cost=probe_cost(module),
            input_tokens=probe_input_tokens(module),
        )
        if answer.outcome == "fresh":
            self._budget_warned = False
            return answer
        # Every scrape of every target is refused while the budget is spent: warn once
        # per exhaustion, not once per scrape.
        level = logging.DEBUG
        if answer.outcome == "budget_exhausted" and not self._budget_warned:
            self._budget_warned = True
            level = logging.WARNING
        logs.event(
            self.logger,
            level,
            "probe not run",
            target=target.name,
            module=module.name,
            outcome=answer.outcome,
            budget_used=self.scheduler.budget.used(),
            budget_limit=self.scheduler.budget.limit,
        )
        return answer

    async def test_now(self, target: Target, module: Module, provider: Provider) -> Answer:
        """A manual test: a probe now, past the interval, within concurrency and budget.

        Its result feeds the store and becomes the last result like any paid probe.
        """
        key = (target.provider, target.model, module.name)
        config = self.config
        began = self.clock()

        async def start(remaining: float) -> ProbeResult:
            return await self._paid_probe(config, target, module, provider, remaining)

        answer = await self.scheduler.probe(
            key,
            start,
            timeout=module.timeout_seconds,
            cost=probe_cost(module),
            manual=True,
            input_tokens=probe_input_tokens(module),
        )
        if answer.outcome == "fresh":
            self.manual_tests[key] = began
        return answer

    def manual_test_wait(self, key: Key) -> float:
        """Seconds until the next manual test of `key` is allowed (0 when it is now)."""
        last = self.manual_tests.get(key)
        if last is None:
            return 0.0
        gap = self.config.performance.exporter.backoff_initial_seconds
        return max(0.0, last + gap - self.clock())

    def store_for(self, key: Key) -> CumulativeStore:
        """The cumulative store of one target+module (an empty one before its first probe)."""
        return self.stores.get(key) or CumulativeStore()

    def totals(self, key: Key) -> SeriesTotals:
        """The cumulative counts and histograms of one target+module, as numbers."""
        return self.store_for(key).totals(*key)

    def keys(self) -> list[Key]:
        """Every target+module with cumulative data, sorted."""
        return sorted(self.stores)

    def forget(self, target: Target, module: str | None = None) -> dict[str, int]:
        """Drop a target's cumulative data, last results and kept probes; counts per kind."""

        def matches(provider: str, model: str, module_name: str) -> bool:
            return (provider, model) == (target.provider, target.model) and (
                module is None or module_name == module
            )

        series = [key for key in self.stores if matches(*key)]
        for key in series:
            del self.stores[key]
        results = self.scheduler.forget(target.provider, target.model, module)
        kept = [
            p
            for p in self.recent
            if not matches(p.result.provider, p.result.model, p.result.module)
        ]
        dropped = len(self.recent) - len(kept)
        self.recent.clear()
        self.recent.extend(kept)
        return {"series": len(series), "last_results": results, "recent_probes": dropped}

    async def _paid_probe(
        self, config: Config, target: Target, module: Module, provider: Provider, timeout: float
    ) -> ProbeResult:
        # The probe engine rotates prompts per target+module on its own.
        result = await self._run_probe(
            config, target, module, timeout=timeout, session=self.session
        )
        self.stores.setdefault(
            (result.provider, result.model, result.module), CumulativeStore()
        ).observe(result)
        self.last_probe_at = time.time()
        fields = _result_fields(result)
        line = logs.probe_line("probe finished", timeout=round(timeout, 3), **fields)
        self.recent.append(RecentProbe(self._next_id, result, timeout, module, provider, (line,)))
        self._next_id += 1
        logs.event(self.logger, logging.INFO, "probe finished", timeout=round(timeout, 3), **fields)
        return result

    def find_recent(self, probe_id: int) -> RecentProbe | None:
        return next((p for p in self.recent if p.id == probe_id), None)

    def recent_for(self, result: ProbeResult | None) -> RecentProbe | None:
        return next((p for p in reversed(self.recent) if p.result is result), None)

    def history(self, target: Target, module: str | None, limit: int) -> list[RecentProbe]:
        """The kept probes of a target (and module), newest first, at most `limit`."""
        return [
            p
            for p in reversed(self.recent)
            if (p.result.provider, p.result.model) == (target.provider, target.model)
            and (module is None or p.result.module == module)
        ][:limit]

    # ------------------------------------------------------------------ lifetime

    @contextlib.asynccontextmanager
    async def lifetime(self) -> AsyncIterator[None]:
        """The probe session and the event-loop lag watch, for as long as the app runs."""
        # One session for the exporter's life; a config reload keeps it (connections are
        # pooled per host, so a provider's new URL simply gets a connection of its own).
        session = self.session = create_probe_session()
        try:
            task = asyncio.create_task(self._measure_lag())
            logs.event(
                self.logger,
                logging.INFO,
                "exporter started",
                config=self.config.path,
                targets=len(self.config.performance.targets),
                gc_threshold=",".join(str(n) for n in gc.get_threshold()),
                gc_frozen=gc.get_freeze_count(),
            )
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self.scheduler.close()
        finally:
            # After the scheduler has closed, so no probe is left using the session.
            self.session = None
            await session.close()

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + LAG_INTERVAL_SECONDS
            await asyncio.sleep(LAG_INTERVAL_SECONDS)
            self.event_loop_lag = max(0.0, loop.time() - expected)


# The service of an aiohttp app, for the handlers of both faces.
SERVICE = web.AppKey("exporter", ExporterService)


def service_of(app: web.Application) -> ExporterService:
    return app[SERVICE]


def probe_cost(module: Module) -> int:
    """The most output tokens one probe of `module` can spend (its budget reservation)."""
    return probe_output_tokens(module)


def _secret_values(config: Config) -> list[str]:
    """Provider keys and the management token: every value logs and answers must not show."""
    values = secret_values(config)
    token = config.performance.exporter.management_token
    if token is not None:
        with contextlib.suppress(KeyError):
            values.append(token.reveal())
    return values


def _result_fields(result: ProbeResult) -> dict[str, object]:
    return {
        "target": result.target,
        "module": result.module,
        "success": result.success,
        "reason": result.failure_reason,
        "detail": result.failure_detail,
        "ttft_seconds": result.ttft_seconds,
        "duration_seconds": result.duration_seconds,
        "tokens_per_second": result.tokens_per_second,
        "output_tokens": result.output_tokens,
        "requests": len(result.requests),
        "elapsed_seconds": result.elapsed_seconds,
    }
