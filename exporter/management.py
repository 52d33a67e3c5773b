"""The feature spec's management API, served by the exporter next to /probe.

Prometheus stays the source of history; these endpoints answer operators and scripts
with what this exporter process knows since it started:

    GET    /performance/metrics[?provider=&model=&module=]    PerformanceMetrics per target
    POST   /performance/test?target=P:M&module=NAME           a probe now       (bearer token)
    GET    /performance/history?target=P:M[&module=&limit=]   kept probes, newest first
    DELETE /performance/metrics?target=P:M[&module=NAME]      forget a target   (bearer token)
    GET    /health/performance                                200 healthy / 503 and why

(`/metrics/performance`, the spec's Prometheus endpoint, is `/metrics` under another name
and is registered in app.py.) Every answer comes from the `ExporterService`
(exporter/service.py) that app.py serves /probe from; this module does not import app.py.
Targets travel in the query string, `PROVIDER:MODEL` as for /probe, because model names
contain `/` and `:`.

POST and DELETE need `Authorization: Bearer TOKEN`, the token being the value of the
environment variable `[performance.exporter] management_token` names; without one they
answer 403. Every POST and DELETE, refused or not, is logged as one `management audit`
line (action, target, module, remote address, outcome, status), never with the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from perfgen.config import Target
from perfgen.exporter import logs
from perfgen.exporter.metrics import Key
from perfgen.exporter.service import (
    RECENT_PROBES,
    BadProbeRequest,
    ExporterService,
    RecentProbe,
    probe_cost,
    service_of,
)

# A shorter token can be guessed; the management API stays off rather than accept one.
MIN_TOKEN_LENGTH = 16
AUDIT_FIELD_LIMIT = 200  # characters of a query value an audit line keeps
OUTCOME_HEADER = "X-Perfgen-Test-Outcome"
ESTIMATE_NOTE = (
    "cumulative since the exporter started; p95_latency_ms and p99_latency_ms are "
    "estimated from the llm_ttft_seconds histogram buckets by linear interpolation, as "
    "Prometheus' histogram_quantile() does"
)


class Refusal(Exception):
    """A management request answered with an error: status, one-line reason, outcome."""

    def __init__(
        self,
        status: int,
        message: str,
        outcome: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.outcome = status, message, outcome
        self.headers = headers or {}
        self.extra = extra


def _json(
    exporter: ExporterService, data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Through the same last-line filter as every log line: no key or token leaves here.
    text = exporter.redact(json.dumps(data, indent=1, allow_nan=False))
    return web.Response(
        text=text + "\n", status=status, content_type="application/json", headers=headers
    )


def _refusal_response(exporter: ExporterService, refusal: Refusal) -> web.Response:
    return _json(
        exporter,
        {"error": refusal.message, "reason": refusal.outcome, **refusal.extra},
        refusal.status,
        refusal.headers,
    )


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# ---------------------------------------------------------------------- auth and audit


def token_problem(exporter: ExporterService) -> str | None:
    """Why POST/DELETE are disabled, or None when a usable token is configured."""
    secret = exporter.config.performance.exporter.management_token
    if secret is None:
        return "management API disabled: set [performance.exporter] management_token"
    try:
        token = secret.reveal()
    except KeyError:
        return (
            f"management API disabled: environment variable {secret.env_var} "
            "(performance.exporter.management_token) is not set"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"management API disabled: the token in ${secret.env_var} is shorter than "
            f"{MIN_TOKEN_LENGTH} characters"
        )
    return None


def _digest(text: str) -> bytes:
    # Hashing first makes the comparison take the same time whatever the lengths.
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def authorize(exporter: ExporterService, request: web.Request) -> None:
    """Raise a Refusal unless the request carries the management token."""
    problem = token_problem(exporter)
    if problem is not None:
        raise Refusal(403, problem, "disabled")
    secret = exporter.config.performance.exporter.management_token
    assert secret is not None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="perfgen management"'}
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise Refusal(
            401, "missing bearer token (Authorization: Bearer TOKEN)", "unauthorized", challenge
        )
    if not hmac.compare_digest(_digest(given), _digest(secret.reveal())):
        raise Refusal(401, "invalid bearer token", "unauthorized", challenge)


def _query_field(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    return value if len(value) <= AUDIT_FIELD_LIMIT else value[:AUDIT_FIELD_LIMIT] + "..."


def audit(
    exporter: ExporterService, request: web.Request, action: str, outcome: str, status: int | None
) -> None:
    """One structured line per POST/DELETE; the Authorization header is never logged."""
    refused = outcome in ("unauthorized", "disabled")
    logs.event(
        exporter.logger,
        logging.WARNING if refused else logging.INFO,
        "management audit",
        action=action,
        target=_query_field(request, "target"),
        module=_query_field(request, "module"),
        remote=request.remote,
        outcome=outcome,
        status=status,
    )


Action = Callable[[ExporterService, web.Request], Awaitable[tuple[web.Response, str]]]


def _audited(action: str, run: Action) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        exporter = service_of(request.app)
        try:
            authorize(exporter, request)
            response, outcome = await run(exporter, request)
        except Refusal as refusal:
            response, outcome = _refusal_response(exporter, refusal), refusal.outcome
        except asyncio.CancelledError:  # the client went away (a running probe goes on)
            audit(exporter, request, action, "cancelled", None)
            raise
        except Exception:  # a bug: still on the record, then aiohttp's 500
            audit(exporter, request, action, "error", None)
            raise
        audit(exporter, request, action, outcome, response.status)
        return response

    return handler


# ---------------------------------------------------------------------- estimates


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative (upper bound, count) buckets, as PromQL computes it.

    Linear interpolation inside the bucket holding rank q x count, the lowest bucket
    starting at 0; a rank in the +Inf bucket answers the highest finite bound. An
    estimate: it can be off by up to a bucket's width. None when there are no samples.
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    observations = ordered[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    # The first bucket reaching the rank; the +Inf bucket when no finite one does.
    index = next(
        (i for i, (_, count) in enumerate(ordered[:-1]) if count >= rank), len(ordered) - 1
    )
    if index == len(ordered) - 1:
        return ordered[-2][0]
    upper, count = ordered[index]
    if index == 0 and upper <= 0:
        return upper
    lower = 0.0
    if index > 0:
        lower, below = ordered[index - 1]
        count -= below
        rank -= below
    if count <= 0:
        return upper
    return lower + (upper - lower) * (rank / count)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def performance_metrics(exporter: ExporterService, key: Key) -> dict[str, Any]:
    """The spec's PerformanceMetrics of one target+module, from the exporter's own data."""
    provider, model, module = key
    totals = exporter.totals(key)
    failures = totals.failures
    requests = totals.requests
    failed = sum(failures.values())
    ttft = totals.histograms["llm_ttft_seconds"]
    decode = totals.histograms["llm_decode_tokens_per_second"]
    last = exporter.scheduler.last_result(key)
    return {
        "target": f"{provider}:{model}",
        "provider": provider,
        "model": model,
        "module": module,
        "avg_latency_ms": _ms(_ratio(ttft.total, ttft.count)),
        "p95_latency_ms": _ms(histogram_quantile(0.95, ttft.buckets)),
        "p99_latency_ms": _ms(histogram_quantile(0.99, ttft.buckets)),
        "latency_samples": ttft.count,
        "throughput_tokens_per_sec": _ratio(decode.total, decode.count),
        "throughput_samples": decode.count,
        "success_rate": _ratio(requests - failed, requests),
        "error_rate": _ratio(failed, requests),
        "test_count": requests,
        "failures_by_reason": failures,
        "output_tokens": totals.output_tokens,
        "last_tested": last.started_at if last else None,
        "last_success": last.success if last else None,
        "last_failure_reason": last.failure_reason if last else None,
    }


# ---------------------------------------------------------------------- handlers


def _target_param(request: web.Request) -> Target:
    text = request.query.get("target", "")
    if not text:
        raise Refusal(400, "missing parameter: target (PROVIDER:MODEL)", "bad_request")
    try:
        return Target.parse(text)
    except ValueError as exc:
        raise Refusal(400, f"bad target: {exc}", "bad_request") from None


async def handle_performance_metrics(request: web.Request) -> web.Response:
    exporter = service_of(request.app)
    wanted = {name: request.query.get(name) for name in ("provider", "model", "module")}
    entries = [
        performance_metrics(exporter, key)
        for key in exporter.keys()
        if all(
            value is None or value == part for value, part in zip(wanted.values(), key, strict=True)
        )
    ]
    return _json(
        exporter,
        {
            "since": exporter.started_at,
            "generated_at": time.time(),
            "note": ESTIMATE_NOTE,
            "metrics": entries,
        },
    )


async def _run_test(exporter: ExporterService, request: web.Request) -> tuple[web.Response, str]:
    config = exporter.config
    if not config.performance.enabled:
        raise Refusal(503, "probing is disabled ([performance] enabled = false)", "disabled")
    try:
        target, module, provider = exporter.resolve(dict(request.query))
    except BadProbeRequest as exc:
        raise Refusal(400, str(exc), "bad_request") from None
    key = (target.provider, target.model, module.name)
    gap = config.performance.exporter.backoff_initial_seconds
    wait = exporter.manual_test_wait(key)
    if wait > 0:
        raise Refusal(
            429,
            f"rate limited: one manual test of {target.name} module "
            f"{module.name} per {gap:g}s "
            "([performance.exporter] backoff_initial_seconds)",
            "rate_limited",
            _retry_after(wait),
            retry_after_seconds=wait,
        )
    provider_wait = exporter.scheduler.provider_wait(key)
    if provider_wait > 0:
        raise Refusal(
            429,
            f"the provider asked to wait (Retry-After) another {provider_wait:.0f}s",
            "provider_retry_after",
            _retry_after(provider_wait),
            retry_after_seconds=provider_wait,
        )
    try:
        answer = await exporter.test_now(target, module, provider)
    except Exception as exc:  # a bug in the probe engine must not take the exporter down
        logs.event(
            exporter.logger,
            logging.ERROR,
            "probe crashed",
            target=target.name,
            module=module.name,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise Refusal(500, f"probe crashed: {type(exc).__name__}: {exc}", "crashed") from None
    budget = exporter.scheduler.budget
    if answer.outcome == "budget_exhausted":
        cost = probe_cost(module)
        raise Refusal(
            429,
            f"output-token budget exhausted: {budget.used()} used + {budget.reserved} "
            f"reserved of {budget.limit} per hour; this probe may need {cost}",
            "budget_exhausted",
            budget_used=budget.used(),
            budget_reserved=budget.reserved,
            budget_limit=budget.limit,
            probe_cost=cost,
        )
    if answer.outcome == "no_slot" or answer.result is None:
        slots = config.performance.max_concurrent_tests
        raise Refusal(
            503,
            f"no probe slot (max_concurrent_tests = {slots}) freed within "
            "half the module's timeout; try again",
            "no_slot",
        )
    response = _json(exporter, answer.result.to_json(), headers={OUTCOME_HEADER: answer.outcome})
    return response, answer.outcome


async def _forget(exporter: ExporterService, request: web.Request) -> tuple[web.Response, str]:
    target = _target_param(request)
    module = request.query.get("module") or None
    if exporter.scheduler.busy(target.provider, target.model, module):
        raise Refusal(
            409, f"a probe of {target.name} is running; retry when it has finished", "conflict"
        )
    forgotten = exporter.forget(target, module)
    outcome = "forgotten" if any(forgotten.values()) else "nothing_to_forget"
    return _json(
        exporter, {"target": target.name, "module": module, "forgotten": forgotten}
    ), outcome


def _history_entry(probe: RecentProbe) -> dict[str, Any]:
    return {
        "id": probe.id,
        "debug": f"/debug/{probe.id}",
        "timeout_seconds": probe.timeout,
        **probe.result.to_json(),
    }


async def handle_history(request: web.Request) -> web.Response:
    exporter = service_of(request.app)
    try:
        target = _target_param(request)
        limit = RECENT_PROBES
        if "limit" in request.query:
            try:
                limit = int(request.query["limit"])
            except ValueError:
                limit = 0
            if not 1 <= limit <= RECENT_PROBES:
                raise Refusal(
                    400, f"limit must be an integer from 1 to {RECENT_PROBES}", "bad_request"
                )
    except Refusal as refusal:
        return _refusal_response(exporter, refusal)
    module = request.query.get("module") or None
    probes = [_history_entry(p) for p in exporter.history(target, module, limit)]
    return _json(
        exporter,
        {
            "target": target.name,
            "provider": target.provider,
            "model": target.model,
            "module": module,
            "kept": f"the last {RECENT_PROBES} probes of all targets",
            "probes": probes,
        },
    )


async def handle_health(request: web.Request) -> web.Response:
    exporter = service_of(request.app)
    performance, scheduler = exporter.config.performance, exporter.scheduler
    budget = scheduler.budget
    problems, warnings = [], []
    if not performance.enabled:
        problems.append("probing is disabled ([performance] enabled = false)")
    if budget.exhausted():
        problems.append(
            f"output-token budget exhausted: {budget.used()} used + "
            f"{budget.reserved} reserved of {budget.limit} per hour"
        )
    if not exporter.reload_successful:
        warnings.append("the last config reload failed; the previous config is running")
    body = {
        "status": "unhealthy" if problems else "healthy",
        "problems": problems,
        "warnings": warnings,
        "config": {
            "path": exporter.config.path,
            "loaded": True,
            "enabled": performance.enabled,
            "last_reload_successful": exporter.reload_successful,
            "last_reload_success_time": exporter.reload_success_time,
        },
        "targets": [target.name for target in performance.targets],
        "modules": list(performance.sd_modules),
        "probes_in_flight": scheduler.in_flight,
        "max_concurrent_tests": performance.max_concurrent_tests,
        "budget": {
            "used": budget.used(),
            "reserved": budget.reserved,
            "limit": budget.limit,
            "exhausted": budget.exhausted(),
        },
        "event_loop_lag_seconds": exporter.event_loop_lag,
        "last_probe_time": exporter.last_probe_at,
        "started_at": exporter.started_at,
        "management_api": "disabled" if token_problem(exporter) else "enabled",
    }
    return _json(exporter, body, 503 if problems else 200)


def add_management_routes(app: web.Application) -> None:
    app.router.add_get("/performance/metrics", handle_performance_metrics)
    app.router.add_delete("/performance/metrics", _audited("forget", _forget))
    app.router.add_post("/performance/test", _audited("test", _run_test))
    app.router.add_get("/performance/history", handle_history)
    app.router.add_get("/health/performance", handle_health)
