"""The exporter's HTTP face, modelled on blackbox_exporter.

`/probe?target=PROVIDER:MODEL&module=NAME` answers one scrape (through cost control),
`/sd` lists the targets for Prometheus http_sd, `/metrics` is the exporter's own health,
`/-/reload` and `/-/healthy` are the management endpoints, `/` and `/debug/{id}` are for
people. The spec's management API (`/performance/*`, `/health/performance`) is in
exporter/management.py. The probe itself, the metrics and the cost rules live in their
own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from perfgen.exporter import logs
from perfgen.exporter import probe as probe_engine
from perfgen.exporter.metrics import CumulativeStore, Key, render_probe
from perfgen.exporter.probe import run_probe as default_run_probe
from perfgen.exporter.protocols.base import loggable_url
from perfgen.exporter.result import ProbeResult
from perfgen.exporter.scheduler import OUTCOMES, Answer, CostSettings, Scheduler
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

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

# Prometheus 2.x parses this; the client library's default names a newer format version.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT_PROBES = 100
LAG_INTERVAL_SECONDS = 0.5
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
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


class Exporter:
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
        # Opened when the app starts, closed when it stops (probe_session below); until
        # then, and for an Exporter used without the app, run_probe makes its own.
        self.session: aiohttp.ClientSession | None = None
        self.clock = clock
        self.scheduler = Scheduler(CostSettings.from_performance(self.config.performance), clock)
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
        self.registry.register(_HealthCollector(self))

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
        return None

    # ------------------------------------------------------------------ probing

    async def answer(
        self, target: Target, module: Module, provider: Provider, timeout: float
    ) -> Answer:
        """One scrape's answer, paying for a probe only when cost control allows it."""
        key = (target.provider, target.model, module.name)
        config = self.config

        async def start(remaining: float) -> ProbeResult:
            return await self._paid_probe(config, target, module, provider, remaining)

        answer = await self.scheduler.probe(key, start, timeout=timeout, cost=probe_cost(module))
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
            key, start, timeout=module.timeout_seconds, cost=probe_cost(module), manual=True
        )
        if answer.outcome == "fresh":
            self.manual_tests[key] = began
        return answer

    def store_for(self, key: Key) -> CumulativeStore:
        """The cumulative store of one target+module (an empty one before its first probe)."""
        return self.stores.get(key) or CumulativeStore()

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


def probe_cost(module: Module) -> int:
    """The most output tokens one probe of `module` can spend (its budget reservation)."""
    return module.max_tokens * module.runs * module.concurrency


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


class _HealthCollector(Collector):
    """The exporter's own health, built fresh on every /metrics scrape."""

    def __init__(self, exporter: Exporter) -> None:
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


# ---------------------------------------------------------------------- helpers

EXPORTER = web.AppKey("exporter", Exporter)


class BadProbeRequest(Exception):
    """A /probe request that names nothing probe-able; its message is the 400 body."""


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body if body.endswith("\n") else body + "\n", status=status, content_type="text/plain"
    )


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


def probe_timeout(module: Module, header: str | None, offset: float) -> float:
    """min(module timeout, Prometheus' scrape timeout - offset), as blackbox_exporter does."""
    if header is None:
        return module.timeout_seconds
    try:
        scrape_timeout = float(header)
    except ValueError:
        raise BadProbeRequest(f"{SCRAPE_TIMEOUT_HEADER} is not a number: {header!r}") from None
    if not math.isfinite(scrape_timeout):
        raise BadProbeRequest(f"{SCRAPE_TIMEOUT_HEADER} is not a finite number")
    available = scrape_timeout - offset
    if available <= 0:
        raise BadProbeRequest(
            f"scrape timeout {scrape_timeout:g}s leaves no time after the "
            f"{offset:g}s offset (performance.exporter.scrape_timeout_offset_seconds)"
        )
    return min(module.timeout_seconds, available)


def _secret_text(provider: Provider, which: str) -> str:
    secret = provider.api_key if which == "api_key" else provider.probe_api_key
    if secret is None:
        return "(none)"
    return f"${secret.env_var}" if secret.env_var else "<redacted>"


def _config_lines(module: Module, provider: Provider) -> list[str]:
    lines = ["Module:"]
    for name in (
        "name",
        "prompts",
        "max_tokens",
        "timeout_seconds",
        "runs",
        "concurrency",
        "input_tokens",
        "expected_response",
        "temperature",
        "reasoning_effort",
    ):
        lines.append(f"  {name} = {getattr(module, name)!r}")
    lines += [
        "",
        "Provider:",
        f"  name = {provider.name!r}",
        f"  protocol = {provider.protocol!r}",
        f"  api_base_url = {loggable_url(provider.api_base_url)!r}",
        f"  models = {list(provider.models)!r}",
        f"  api_key = {_secret_text(provider, 'api_key')}",
        f"  probe_api_key = {_secret_text(provider, 'probe_api_key')}",
    ]
    return lines


def debug_text(
    exporter: Exporter,
    answer: Answer,
    metrics: bytes,
    module: Module,
    provider: Provider,
    timeout: float | None,
) -> str:
    """The `?debug=true` page: what was decided, what the probe logged, what it returned."""
    result = answer.result
    recent = exporter.recent_for(result)
    lines = [f"Scrape outcome: {answer.outcome} (llm_probe_cached {int(answer.cached)})"]
    if timeout is not None:
        lines.append(f"Probe timeout: {timeout:g}s")
    if recent is not None:
        lines.append(f"Stored as: /debug/{recent.id}")
    lines += ["", "Logs for the probe:"]
    if result is None:
        lines.append("  no measurement yet for this target and module")
    else:
        lines += [f"  {line}" for line in result.log]
        lines += [f"  {line}" for line in (recent.lines if recent else ())]
    lines += ["", "Metrics that would have been returned:", metrics.decode("utf-8")]
    lines += _config_lines(module, provider)
    return exporter.redact("\n".join(lines) + "\n")


# ---------------------------------------------------------------------- handlers


async def handle_probe(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER]
    config = exporter.config
    if not config.performance.enabled:
        return _text("probing is disabled ([performance] enabled = false)", 503)
    try:
        target, module, provider = resolve(config, dict(request.query))
        timeout = probe_timeout(
            module,
            request.headers.get(SCRAPE_TIMEOUT_HEADER),
            config.performance.exporter.scrape_timeout_offset_seconds,
        )
    except BadProbeRequest as exc:
        return _text(exporter.redact(str(exc)), 400)
    try:
        answer = await exporter.answer(target, module, provider, timeout)
    except Exception as exc:  # a bug in the probe engine must not take the exporter down
        logs.event(
            exporter.logger,
            logging.ERROR,
            "probe crashed",
            target=target.name,
            module=module.name,
            error=f"{type(exc).__name__}: {exc}",
        )
        return _text(exporter.redact(f"probe crashed: {type(exc).__name__}: {exc}"), 500)
    key = (target.provider, target.model, module.name)
    body = render_probe(exporter.store_for(key), key, answer.result, cached=answer.cached)
    if request.query.get("debug", "").lower() in ("true", "1", "yes"):
        return _text(debug_text(exporter, answer, body, module, provider, timeout))
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


async def handle_debug(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER]
    try:
        probe_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such probe\n") from None
    recent = exporter.find_recent(probe_id)
    if recent is None:
        raise web.HTTPNotFound(
            text=f"probe {probe_id} is no longer kept (the last {RECENT_PROBES} are)\n"
        )
    key = (recent.result.provider, recent.result.model, recent.result.module)
    body = render_probe(exporter.store_for(key), key, recent.result, cached=False)
    answer = Answer(recent.result, "fresh")
    return _text(debug_text(exporter, answer, body, recent.module, recent.provider, recent.timeout))


async def handle_sd(request: web.Request) -> web.Response:
    performance = request.app[EXPORTER].config.performance
    groups = (
        []
        if not performance.enabled
        else [
            {
                "targets": [target.name],
                "labels": {
                    "__param_target": target.name,
                    "__param_module": module,
                    "provider": target.provider,
                    "model": target.model,
                    "module": module,
                },
            }
            for target in performance.targets
            for module in performance.sd_modules
        ]
    )
    return web.json_response(groups)


async def handle_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[EXPORTER].registry)
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


async def handle_reload(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER]
    error = exporter.reload()
    if error is not None:
        return _text(exporter.redact(f"reload failed, running config kept: {error}"), 500)
    return _text("config reloaded")


async def handle_healthy(request: web.Request) -> web.Response:
    return _text("Healthy")


def _probe_link(target: str, module: str) -> str:
    return "/probe?" + urlencode({"target": target, "module": module, "debug": "true"})


def _fmt(value: float | None, unit: str = "s") -> str:
    return "" if value is None else f"{value:.3f}{unit}"


def landing_page(exporter: Exporter) -> str:
    config = exporter.config
    performance = config.performance
    esc = html.escape
    target_rows = "".join(
        f"<tr><td>{esc(t.name)}</td><td>"
        + " ".join(
            f'<a href="{esc(_probe_link(t.name, m))}">{esc(m)}</a>' for m in performance.sd_modules
        )
        + "</td></tr>"
        for t in performance.targets
    )
    probe_rows = "".join(
        "<tr>"
        f"<td>{esc(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(p.result.started_at)))}</td>"
        f"<td>{esc(p.result.target)}</td><td>{esc(p.result.module)}</td>"
        f"<td>{'ok' if p.result.success else esc(p.result.failure_reason or 'failed')}</td>"
        f"<td>{_fmt(p.result.ttft_seconds)}</td><td>{_fmt(p.result.duration_seconds)}</td>"
        f"<td>{_fmt(p.result.tokens_per_second, ' tok/s')}</td>"
        f'<td><a href="/debug/{p.id}">debug</a></td></tr>'
        for p in reversed(exporter.recent)
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>perfgen exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f4f4}}</style></head>
<body><h1>perfgen exporter</h1>
<p>Config <code>{esc(config.path)}</code>.
<a href="/metrics">Metrics</a> · <a href="/sd">Service discovery</a> ·
<a href="/performance/metrics">Performance (JSON)</a> ·
<a href="/health/performance">Health</a> ·
probe interval {performance.test_interval_minutes:g} min, budget
{exporter.scheduler.budget.used()}/{performance.max_output_tokens_per_hour or "∞"}
output tokens per hour.</p>
<h2>Targets</h2>
<p>Links run (or reuse, under cost control) a probe and show its debug view.</p>
<table><tr><th>target</th><th>modules</th></tr>{target_rows}</table>
<h2>Recent probes</h2>
<table><tr><th>started</th><th>target</th><th>module</th><th>result</th><th>ttft</th>
<th>duration</th><th>decode rate</th><th></th></tr>{probe_rows}</table>
</body></html>
"""
    return exporter.redact(page)


async def handle_index(request: web.Request) -> web.Response:
    return web.Response(text=landing_page(request.app[EXPORTER]), content_type="text/html")


# ---------------------------------------------------------------------- app


async def _measure_lag(exporter: Exporter) -> None:
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + LAG_INTERVAL_SECONDS
        await asyncio.sleep(LAG_INTERVAL_SECONDS)
        exporter.event_loop_lag = max(0.0, loop.time() - expected)


def _background(exporter: Exporter) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_measure_lag(exporter))
        logs.event(
            exporter.logger,
            logging.INFO,
            "exporter started",
            config=exporter.config.path,
            targets=len(exporter.config.performance.targets),
            gc_threshold=",".join(str(n) for n in gc.get_threshold()),
            gc_frozen=gc.get_freeze_count(),
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await exporter.scheduler.close()

    return context


def _probe_session(exporter: Exporter) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        # One session for the exporter's life; a config reload keeps it (connections are
        # pooled per host, so a provider's new URL simply gets a connection of its own).
        session = exporter.session = create_probe_session()
        try:
            yield
        finally:
            # Runs after _background's cleanup (cleanup goes in reverse), so no probe is left.
            exporter.session = None
            await session.close()

    return context


def build_app(exporter: Exporter) -> web.Application:
    # Imported here: the management handlers import this module's helpers.
    from perfgen.exporter.management import add_management_routes

    app = web.Application()
    app[EXPORTER] = exporter
    app.router.add_get("/", handle_index)
    app.router.add_get("/probe", handle_probe)
    app.router.add_get("/debug/{id}", handle_debug)
    app.router.add_get("/sd", handle_sd)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/metrics/performance", handle_metrics)  # the spec's name for it
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/-/healthy", handle_healthy)
    add_management_routes(app)
    app.cleanup_ctx.append(_probe_session(exporter))
    app.cleanup_ctx.append(_background(exporter))
    return app


def create_app(
    config_path: str,
    *,
    run_probe: ProbeFunction | None = None,
    clock: Callable[[], float] = time.monotonic,
    log_format: str | None = None,
    log_stream: TextIO | None = None,
) -> web.Application:
    """The exporter app for one config file; raises ConfigError if the file is bad.

    `log_format` overrides `[performance.exporter] log_format` (the CLI flag); `clock`
    and `run_probe` exist for tests.
    """
    return build_app(
        Exporter(
            config_path,
            run_probe=run_probe,
            clock=clock,
            log_format=log_format,
            log_stream=log_stream,
        )
    )


def exporter_of(app: web.Application) -> Exporter:
    return app[EXPORTER]
