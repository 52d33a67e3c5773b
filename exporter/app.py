"""The exporter's HTTP face, modelled on blackbox_exporter.

`/probe?target=PROVIDER:MODEL&module=NAME` answers one scrape (through cost control),
`/sd` lists the targets for Prometheus http_sd, `/metrics` is the exporter's own health,
`/-/reload` and `/-/healthy` are the management endpoints, `/` and `/debug/{id}` are for
people. The spec's management API (`/performance/*`, `/health/performance`) is in
exporter/management.py. Both are HTTP layers over one `ExporterService`
(exporter/service.py), which holds the state; the probe itself, the metrics and the cost
rules live in their own modules.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TextIO
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import generate_latest

from perfgen.config import Module, Provider
from perfgen.exporter import logs
from perfgen.exporter.management import add_management_routes
from perfgen.exporter.metrics import render_probe
from perfgen.exporter.protocols.base import loggable_url
from perfgen.exporter.scheduler import Answer
from perfgen.exporter.service import (
    RECENT_PROBES,
    SERVICE,
    BadProbeRequest,
    ExporterService,
    ProbeFunction,
    service_of,
)

# Prometheus 2.x parses this; the client library's default names a newer format version.
EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


# ---------------------------------------------------------------------- helpers


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body if body.endswith("\n") else body + "\n", status=status, content_type="text/plain"
    )


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
    exporter: ExporterService,
    answer: Answer,
    metrics: bytes,
    module: Module,
    provider: Provider,
    timeout: float | None,
    key: tuple[str, str, str] | None = None,
) -> str:
    """The `?debug=true` page: what was decided, what the probe logged, what it returned."""
    result = answer.result
    recent = exporter.recent_for(result)
    lines = [f"Scrape outcome: {answer.outcome} (llm_probe_cached {int(answer.cached)})"]
    if key is None and result is not None:
        key = (result.provider, result.model, result.module)
    if key is not None:
        lines.append(exporter.scheduler.schedule_note(key))
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
    exporter = service_of(request.app)
    config = exporter.config
    if not config.performance.enabled:
        return _text("probing is disabled ([performance] enabled = false)", 503)
    try:
        target, module, provider = exporter.resolve(dict(request.query))
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
        return _text(debug_text(exporter, answer, body, module, provider, timeout, key))
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


async def handle_debug(request: web.Request) -> web.Response:
    exporter = service_of(request.app)
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
    performance = service_of(request.app).config.performance
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
    body = generate_latest(service_of(request.app).registry)
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


async def handle_reload(request: web.Request) -> web.Response:
    exporter = service_of(request.app)
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


def landing_page(exporter: ExporterService) -> str:
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
    return web.Response(text=landing_page(service_of(request.app)), content_type="text/html")


# ---------------------------------------------------------------------- app


def _lifetime(exporter: ExporterService) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with exporter.lifetime():
            yield

    return context


def build_app(exporter: ExporterService) -> web.Application:
    app = web.Application()
    app[SERVICE] = exporter
    app.router.add_get("/", handle_index)
    app.router.add_get("/probe", handle_probe)
    app.router.add_get("/debug/{id}", handle_debug)
    app.router.add_get("/sd", handle_sd)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/metrics/performance", handle_metrics)  # the spec's name for it
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/-/healthy", handle_healthy)
    add_management_routes(app)
    app.cleanup_ctx.append(_lifetime(exporter))
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
        ExporterService(
            config_path,
            run_probe=run_probe,
            clock=clock,
            log_format=log_format,
            log_stream=log_stream,
        )
    )


def exporter_of(app: web.Application) -> ExporterService:
    return service_of(app)
