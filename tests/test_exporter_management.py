"""The management API (/performance/*, /health/performance) against the real simulator.

The p95 estimate, a probe held in flight and a slot shortage use a scripted run_probe,
so their figures and timing are exact; time-dependent rules use the injected clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import ClientResponse
from prometheus_client.parser import text_string_to_metric_families
from test_exporter_app import (
    ANTH_KEY,
    SIM_KEY,
    SIMULATOR,
    FakeClock,
    Setup,
    exporter_toml,
    metric,
)

from perfgen.config import Module, Target
from perfgen.exporter.app import create_app, exporter_of
from perfgen.exporter.management import histogram_quantile
from perfgen.exporter.metrics import TTFT_BUCKETS
from perfgen.exporter.result import COUNTED_FAILURE_REASONS, ProbeResult, RequestResult
from perfgen.simulator.config import parse_simulator_config
from perfgen.simulator.server import create_app as create_simulator

pytestmark = pytest.mark.asyncio

TOKEN = "mgmt-token-0123456789-abcdef"
TOKEN_ENV = "PERFGEN_TEST_MGMT_TOKEN"
TOKEN_LINE = f'management_token = "${TOKEN_ENV}"\n'
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The hand computation of test_p95_estimate_matches_a_hand_computation.
TTFTS = (0.08, 0.2, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9, 1.2, 1.8)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("PERFGEN_TEST_SIM_KEY", SIM_KEY)
    monkeypatch.setenv("PERFGEN_TEST_ANTH_KEY", ANTH_KEY)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


async def build(
    aiohttp_client,
    tmp_path: Path,
    *,
    token: bool = True,
    run_probe=None,
    extra: str = "",
    **toml: Any,
) -> Setup:
    sim = await aiohttp_client(create_simulator(parse_simulator_config(SIMULATOR)))
    config = tmp_path / "config.toml"
    config.write_text(
        exporter_toml(
            sim.server.port, log_format="json", extra=(TOKEN_LINE if token else "") + extra, **toml
        )
    )
    clock, logs = FakeClock(), io.StringIO()
    app = create_app(str(config), clock=clock, log_stream=logs, run_probe=run_probe)
    client = await aiohttp_client(app)
    return Setup(sim, client, config, clock, logs, sim.server.port)


@pytest_asyncio.fixture
async def setup(aiohttp_client, tmp_path, env) -> Setup:
    return await build(aiohttp_client, tmp_path)


async def call(
    setup: Setup,
    method: str,
    path: str,
    *,
    auth: bool = True,
    headers: dict[str, str] | None = None,
    **params: str,
) -> tuple[ClientResponse, Any]:
    """One request; the decoded JSON body (or text) is also kept in setup.bodies."""
    all_headers = {**(AUTH if auth else {}), **(headers or {})}
    response = await setup.client.request(method, path, params=params, headers=all_headers)
    text = await response.text()
    setup.bodies.append(text + json.dumps(dict(response.headers)))
    try:
        return response, json.loads(text)
    except ValueError:
        return response, text


def audit_lines(setup: Setup) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in setup.logs.getvalue().splitlines()]
    return [r for r in records if r["msg"] == "management audit"]


def entries(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["target"], e["module"]): e for e in body["metrics"]}


def scripted(ttfts: tuple[float, ...] = (0.2,), failures: int = 0):
    """A run_probe that returns fixed figures without any network."""

    async def run_probe(
        config, target: Target, module: Module, *, timeout: float, session=None
    ) -> ProbeResult:
        requests = [
            RequestResult(
                success=True,
                ttft_seconds=t,
                first_content_seconds=t,
                duration_seconds=t + 1.0,
                output_tokens=11,
                input_tokens=20,
                tokens_per_second=10.0 * (1 + i % 2),
                token_count_source="usage",
            )
            for i, t in enumerate(ttfts)
        ] + [RequestResult(success=False, failure_reason="timeout", output_tokens=0)] * failures
        return ProbeResult(
            target.provider, target.model, module.name, time.time(), 2.0, tuple(requests)
        )

    return run_probe


class Gate:
    """A run_probe that holds every probe until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[str] = []

    async def __call__(
        self, config, target: Target, module: Module, *, timeout: float, session=None
    ) -> ProbeResult:
        self.calls.append(target.name)
        self.started.set()
        await self.release.wait()
        return await scripted()(config, target, module, timeout=timeout)


# ------------------------------------------------------------------ GET /performance/metrics


async def test_metrics_json_per_target_and_module(setup: Setup):
    fast = await setup.probe("sim:fast")
    await setup.probe("sim:broken")
    response, body = await call(setup, "GET", "/performance/metrics", auth=False)
    assert response.status == 200 and response.content_type == "application/json"
    assert "estimated" in body["note"] and body["since"] <= body["generated_at"]
    found = entries(body)
    assert set(found) == {("sim:fast", "latency"), ("sim:broken", "latency")}
    good = found[("sim:fast", "latency")]
    assert (good["provider"], good["model"]) == ("sim", "fast")
    assert good["test_count"] == 1 and good["success_rate"] == 1 and good["error_rate"] == 0
    assert 0 < good["avg_latency_ms"] < 5000 and good["latency_samples"] == 1
    assert good["p95_latency_ms"] >= good["avg_latency_ms"] or good["p95_latency_ms"] > 0
    assert good["throughput_tokens_per_sec"] > 0 and good["output_tokens"] == 6
    assert good["last_tested"] == metric(fast, "llm_probe_timestamp_seconds")
    assert good["last_success"] is True and good["last_failure_reason"] is None
    assert set(good["failures_by_reason"]) == set(COUNTED_FAILURE_REASONS)
    assert not any(good["failures_by_reason"].values())
    bad = found[("sim:broken", "latency")]
    assert bad["success_rate"] == 0 and bad["error_rate"] == 1
    assert bad["failures_by_reason"]["http_5xx"] == 1
    assert bad["avg_latency_ms"] is None and bad["p95_latency_ms"] is None
    assert bad["throughput_tokens_per_sec"] is None
    assert bad["last_success"] is False and bad["last_failure_reason"] == "http_5xx"


async def test_metrics_filters(setup: Setup):
    await setup.probe("sim:fast")
    await setup.probe("sim:fast", "health")
    await setup.probe("anthropic:claude-sim")
    _, body = await call(
        setup, "GET", "/performance/metrics", auth=False, provider="sim", model="fast"
    )
    assert set(entries(body)) == {("sim:fast", "latency"), ("sim:fast", "health")}
    _, body = await call(setup, "GET", "/performance/metrics", auth=False, module="latency")
    assert set(entries(body)) == {("sim:fast", "latency"), ("anthropic:claude-sim", "latency")}
    _, body = await call(setup, "GET", "/performance/metrics", auth=False, model="nope")
    assert body["metrics"] == []


async def test_p95_estimate_matches_a_hand_computation(aiohttp_client, tmp_path, env):
    setup = await build(aiohttp_client, tmp_path, run_probe=scripted(TTFTS, failures=2))
    await setup.probe("sim:fast")
    _, body = await call(setup, "GET", "/performance/metrics", auth=False)
    (entry,) = body["metrics"]
    # Cumulative TTFT buckets: le 0.1 -> 1, 0.25 -> 3, 0.5 -> 5, 0.75 -> 7, 1.0 -> 8,
    # 1.5 -> 9, 2.0 -> 10. p95: rank 0.95 x 10 = 9.5 lies in (1.5, 2.0], which holds one
    # sample above the 9 below it: 1.5 + 0.5 x (9.5 - 9) / 1 = 1.75 s. p99: rank 9.9 ->
    # 1.5 + 0.5 x 0.9 = 1.95 s. The mean is the plain average, 6.38 / 10 = 0.638 s.
    assert entry["p95_latency_ms"] == pytest.approx(1750.0)
    assert entry["p99_latency_ms"] == pytest.approx(1950.0)
    assert entry["avg_latency_ms"] == pytest.approx(638.0)
    assert entry["latency_samples"] == 10
    assert entry["throughput_tokens_per_sec"] == pytest.approx(15.0)  # 10, 20, 10, ...
    assert entry["test_count"] == 12  # the two timeouts are requests too
    assert entry["success_rate"] == pytest.approx(10 / 12)
    assert entry["error_rate"] == pytest.approx(2 / 12)
    assert entry["failures_by_reason"]["timeout"] == 2


def cumulative(values: tuple[float, ...]) -> list[tuple[float, float]]:
    bounds = (*TTFT_BUCKETS, float("inf"))
    return [(bound, float(sum(1 for v in values if v <= bound))) for bound in bounds]


async def test_histogram_quantile_edges():
    assert histogram_quantile(0.95, cumulative(())) is None
    assert histogram_quantile(0.95, []) is None
    assert histogram_quantile(0.95, [(1.0, 3.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.5, cumulative((100.0,))) == 60.0  # the highest finite bound
    assert histogram_quantile(0.5, cumulative((0.01, 0.01))) == pytest.approx(0.025)
    # Unordered input is sorted first, as Prometheus does.
    assert histogram_quantile(0.95, list(reversed(cumulative(TTFTS)))) == pytest.approx(1.75)


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
async def test_histogram_quantile_agrees_with_promtool(tmp_path, q):
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    buckets = cumulative(TTFTS)
    series = [
        {
            "series": 'llm_ttft_seconds_bucket{le="%s"}'
            % ("+Inf" if b == float("inf") else repr(b)),
            "values": f"{int(c)} {int(c)}",
        }
        for b, c in buckets
    ]
    test = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f"histogram_quantile({q}, llm_ttft_seconds_bucket)",
                        "eval_time": "1m",
                        "exp_samples": [{"labels": "{}", "value": histogram_quantile(q, buckets)}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "quantile_test.yml"
    path.write_text(yaml.safe_dump(test))
    checked = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ------------------------------------------------------------------ POST /performance/test


async def test_post_runs_a_probe_now_and_feeds_the_store(setup: Setup):
    await setup.probe("sim:fast")
    response, body = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert response.status == 200, body
    assert response.headers["X-Perfgen-Test-Outcome"] == "fresh"
    assert body["target"] == "sim:fast" and body["module"] == "latency"
    assert body["success"] is True and body["output_tokens"] == 6
    assert len(body["requests"]) == 1
    # The interval did not stop it ...
    assert await setup.upstream_hits("sim", "fast") == 2
    # ... and the next scrape reports it as the (cached) last result.
    scrape = await setup.probe("sim:fast")
    assert metric(scrape, "llm_probe_cached") == 1
    assert metric(scrape, "llm_probe_timestamp_seconds") == body["started_at"]
    assert metric(scrape, "llm_requests_total") == 2
    _, metrics = await call(setup, "GET", "/performance/metrics", auth=False)
    assert entries(metrics)[("sim:fast", "latency")]["test_count"] == 2
    # A manual test is not a scrape.
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_scrapes_total", module="latency", outcome="fresh") == 1
    assert metric(own, "perfgen_exporter_scrapes_total", module="latency", outcome="cached") == 1
    assert metric(own, "perfgen_exporter_budget_output_tokens_used") == 12


async def test_post_failed_probe_is_200_with_the_failure(setup: Setup):
    response, body = await call(
        setup, "POST", "/performance/test", target="sim:broken", module="latency"
    )
    assert response.status == 200
    assert body["success"] is False and body["failure_reason"] == "http_5xx"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"module": "latency"}, "missing parameter: target"),
        ({"target": "sim:fast"}, "missing parameter: module"),
        ({"target": "sim:fast", "module": "nope"}, "unknown module 'nope'"),
        ({"target": "sim:not-a-model", "module": "latency"}, "unknown target"),
        ({"target": "http://169.254.169.254/latest", "module": "latency"}, "unknown target"),
        ({"target": "justaword", "module": "latency"}, "bad target"),
    ],
)
async def test_post_bad_parameters_are_400(setup: Setup, params, reason):
    response, body = await call(setup, "POST", "/performance/test", **params)
    assert response.status == 400
    assert reason in body["error"] and body["reason"] == "bad_request"
    assert await setup.upstream_hits("sim", "fast") == 0
    assert audit_lines(setup)[-1]["outcome"] == "bad_request"


async def test_post_is_rate_limited_per_target_and_module(setup: Setup):
    first, _ = await call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    assert first.status == 200
    setup.clock.advance(10)
    again, body = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert again.status == 429 and body["reason"] == "rate_limited"
    assert "backoff_initial_seconds" in body["error"]
    assert again.headers["Retry-After"] == "20"
    # Another module of the same target, or another target, is not held back.
    other, _ = await call(setup, "POST", "/performance/test", target="sim:fast", module="health")
    assert other.status == 200
    assert await setup.upstream_hits("sim", "fast") == 2
    setup.clock.advance(20)
    later, _ = await call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    assert later.status == 200
    assert await setup.upstream_hits("sim", "fast") == 3


async def test_post_respects_the_token_budget(aiohttp_client, tmp_path, env):
    # latency reserves max_tokens=16; 20 tokens an hour pays for one probe, not two.
    setup = await build(aiohttp_client, tmp_path, budget=20)
    ok, _ = await call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    assert ok.status == 200
    refused, body = await call(
        setup, "POST", "/performance/test", target="sim:other", module="latency"
    )
    assert refused.status == 429
    assert body["reason"] == "budget_exhausted" and "budget exhausted" in body["error"]
    assert (body["budget_used"], body["budget_limit"], body["probe_cost"]) == (6, 20, 16)
    assert await setup.upstream_hits("sim", "other") == 0
    assert audit_lines(setup)[-1]["outcome"] == "budget_exhausted"
    response, health = await call(setup, "GET", "/health/performance", auth=False)
    assert response.status == 503 and health["status"] == "unhealthy"
    assert any("budget exhausted" in problem for problem in health["problems"])
    setup.clock.advance(3601)
    again, _ = await call(setup, "POST", "/performance/test", target="sim:other", module="latency")
    assert again.status == 200
    assert (await call(setup, "GET", "/health/performance", auth=False))[0].status == 200


async def test_post_waits_out_a_providers_retry_after(setup: Setup):
    exporter = exporter_of(setup.client.server.app)
    limited = RequestResult(
        success=False, failure_reason="http_429", http_status=429, retry_after_seconds=120.0
    )
    result = ProbeResult("sim", "fast", "latency", time.time(), 0.1, (limited,))

    async def start(remaining: float) -> ProbeResult:
        return result

    await exporter.scheduler.probe(("sim", "fast", "latency"), start, timeout=5, cost=1)
    setup.clock.advance(60)
    response, body = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert response.status == 429 and body["reason"] == "provider_retry_after"
    assert response.headers["Retry-After"] == "60"
    setup.clock.advance(60)
    response, _ = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert response.status == 200


async def test_concurrent_posts_share_one_probe(aiohttp_client, tmp_path, env):
    gate = Gate()
    setup = await build(aiohttp_client, tmp_path, run_probe=gate)
    first = asyncio.create_task(
        call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    )
    await gate.started.wait()
    # Released only once the second POST has joined the running probe: counted where it
    # asks the scheduler, which it does in the same step as it starts waiting on the probe.
    scheduler = exporter_of(setup.client.server.app).scheduler
    asked = asyncio.Event()
    ask = scheduler.probe

    async def counted(*args, **kwargs):
        asked.set()
        return await ask(*args, **kwargs)

    scheduler.probe = counted  # type: ignore[method-assign]
    second = asyncio.create_task(
        call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    )
    await asyncio.wait_for(asked.wait(), 30)
    gate.release.set()
    responses = [response for response, _ in await asyncio.gather(first, second)]
    assert [r.status for r in responses] == [200, 200]
    assert sorted(r.headers["X-Perfgen-Test-Outcome"] for r in responses) == ["fresh", "shared"]
    assert gate.calls == ["sim:fast"]


async def test_post_without_a_free_slot_is_503(aiohttp_client, tmp_path, env):
    gate = Gate()
    # max_concurrent_tests = 2 in the test config; a 0.2 s module waits 0.1 s for a slot.
    setup = await build(
        aiohttp_client,
        tmp_path,
        run_probe=gate,
        extra="[performance.modules.quick]\ntimeout_seconds = 0.2\n",
    )
    held = [asyncio.create_task(setup.probe(target)) for target in ("sim:fast", "sim:other")]
    while len(gate.calls) < 2:
        await asyncio.sleep(0.01)
    response, body = await call(
        setup, "POST", "/performance/test", target="sim:broken", module="quick"
    )
    assert response.status == 503 and body["reason"] == "no_slot"
    assert "max_concurrent_tests = 2" in body["error"]
    gate.release.set()
    await asyncio.gather(*held)
    assert gate.calls == ["sim:fast", "sim:other"]


async def test_post_when_probing_is_disabled_is_503(setup: Setup):
    setup.config.write_text(
        setup.config.read_text().replace(
            "test_interval_minutes = 10", "enabled = false\ntest_interval_minutes = 10"
        )
    )
    assert (await setup.client.post("/-/reload")).status == 200
    response, body = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert response.status == 503 and "disabled" in body["error"]
    assert await setup.upstream_hits("sim", "fast") == 0


# ------------------------------------------------------------------ authentication


async def test_without_a_configured_token_post_and_delete_are_403(aiohttp_client, tmp_path, env):
    setup = await build(aiohttp_client, tmp_path, token=False)
    for method, path in (("POST", "/performance/test"), ("DELETE", "/performance/metrics")):
        response, body = await call(setup, method, path, target="sim:fast", module="latency")
        assert response.status == 403
        assert body["error"] == (
            "management API disabled: set [performance.exporter] management_token"
        )
    assert await setup.upstream_hits("sim", "fast") == 0
    assert [line["outcome"] for line in audit_lines(setup)] == ["disabled", "disabled"]
    _, health = await call(setup, "GET", "/health/performance", auth=False)
    assert health["management_api"] == "disabled"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
async def test_missing_or_wrong_token_is_401(setup: Setup, headers):
    for method, path in (("POST", "/performance/test"), ("DELETE", "/performance/metrics")):
        response, body = await call(
            setup, method, path, auth=False, headers=headers, target="sim:fast", module="latency"
        )
        assert response.status == 401, body
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["reason"] == "unauthorized"
    assert await setup.upstream_hits("sim", "fast") == 0
    lines = audit_lines(setup)
    assert [(line["action"], line["outcome"], line["status"]) for line in lines] == [
        ("test", "unauthorized", 401),
        ("forget", "unauthorized", 401),
    ]
    assert all(line["level"] == "warning" for line in lines)


async def test_token_from_an_unset_or_short_variable_disables_the_api(setup: Setup, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV)
    response, body = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert response.status == 403 and TOKEN_ENV in body["error"]
    monkeypatch.setenv(TOKEN_ENV, "x7Q9z")
    response, body = await call(
        setup,
        "POST",
        "/performance/test",
        target="sim:fast",
        module="latency",
        headers={"Authorization": "Bearer x7Q9z"},
    )
    assert response.status == 403 and "shorter than 16" in body["error"]
    assert "x7Q9z" not in body["error"]
    # Read at request time: setting the variable turns the API on without a reload.
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    response, _ = await call(
        setup, "POST", "/performance/test", target="sim:fast", module="latency"
    )
    assert response.status == 200


async def test_the_token_never_appears_in_answers_or_logs(setup: Setup):
    await call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    await call(setup, "POST", "/performance/test", target=f"sim:{TOKEN}", module="latency")
    await call(setup, "POST", "/performance/test", target="sim:fast", module=TOKEN)
    await call(setup, "DELETE", "/performance/metrics", target=f"sim:{TOKEN}")
    await call(
        setup,
        "POST",
        "/performance/test",
        auth=False,
        headers={"Authorization": f"Bearer {TOKEN}-wrong"},
        target="sim:fast",
        module="latency",
    )
    for path in (
        "/performance/metrics",
        "/health/performance",
        "/metrics",
        "/",
        "/metrics/performance",
    ):
        await call(setup, "GET", path, auth=False)
    await call(setup, "GET", "/performance/history", auth=False, target=f"sim:{TOKEN}")
    everything = "\n".join(setup.bodies) + setup.logs.getvalue()
    assert "management audit" in everything and "<redacted>" in everything
    for secret in (TOKEN, SIM_KEY, ANTH_KEY):
        assert secret not in everything


async def test_every_post_and_delete_is_audited(setup: Setup):
    await call(setup, "POST", "/performance/test", target="sim:fast", module="latency")
    await call(setup, "DELETE", "/performance/metrics", target="sim:fast")
    await call(setup, "DELETE", "/performance/metrics", target="sim:fast")
    test, forget, again = audit_lines(setup)
    assert {k: test[k] for k in ("action", "target", "module", "remote", "outcome", "status")} == {
        "action": "test",
        "target": "sim:fast",
        "module": "latency",
        "remote": "127.0.0.1",
        "outcome": "fresh",
        "status": 200,
    }
    assert (forget["action"], forget["outcome"], forget["status"]) == ("forget", "forgotten", 200)
    assert "module" not in forget  # not given: left out, like every unknown log value
    assert again["outcome"] == "nothing_to_forget"
    # GETs are not audited.
    await call(setup, "GET", "/performance/metrics", auth=False)
    assert len(audit_lines(setup)) == 3


# ------------------------------------------------------------------ history


async def test_history_is_newest_first_for_one_target(setup: Setup):
    await setup.probe("sim:fast")
    await setup.probe("sim:other")
    setup.clock.advance(600)
    await setup.probe("sim:fast")
    await setup.probe("sim:fast", "health")
    response, body = await call(setup, "GET", "/performance/history", auth=False, target="sim:fast")
    assert response.status == 200
    assert (body["target"], body["provider"], body["model"]) == ("sim:fast", "sim", "fast")
    probes = body["probes"]
    assert [(p["id"], p["module"]) for p in probes] == [
        (4, "health"),
        (3, "latency"),
        (1, "latency"),
    ]
    started = [p["started_at"] for p in probes]
    assert started == sorted(started, reverse=True)
    assert all(p["target"] == "sim:fast" and p["success"] for p in probes)
    assert probes[0]["debug"] == "/debug/4" and (await setup.get("/debug/4"))[0] == 200
    _, body = await call(
        setup,
        "GET",
        "/performance/history",
        auth=False,
        target="sim:fast",
        module="latency",
        limit="1",
    )
    assert [p["id"] for p in body["probes"]] == [3]
    _, body = await call(
        setup, "GET", "/performance/history", auth=False, target="ollama:qwen2.5-coder:latest"
    )
    assert body["probes"] == [] and body["model"] == "qwen2.5-coder:latest"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, "missing parameter: target"),
        ({"target": "justaword"}, "bad target"),
        ({"target": "sim:fast", "limit": "0"}, "limit must be"),
        ({"target": "sim:fast", "limit": "many"}, "limit must be"),
    ],
)
async def test_history_bad_parameters_are_400(setup: Setup, params, reason):
    response, body = await call(setup, "GET", "/performance/history", auth=False, **params)
    assert response.status == 400 and reason in body["error"]


# ------------------------------------------------------------------ DELETE


async def test_delete_forgets_one_target(setup: Setup):
    await setup.probe("sim:fast")
    await setup.probe("sim:fast", "health")
    await setup.probe("sim:other")
    response, body = await call(setup, "DELETE", "/performance/metrics", target="sim:fast")
    assert response.status == 200
    assert body == {
        "target": "sim:fast",
        "module": None,
        "forgotten": {"series": 2, "last_results": 2, "recent_probes": 2},
    }
    _, metrics = await call(setup, "GET", "/performance/metrics", auth=False)
    assert set(entries(metrics)) == {("sim:other", "latency")}
    _, history = await call(setup, "GET", "/performance/history", auth=False, target="sim:fast")
    assert history["probes"] == []
    # The schedule is kept: the next scrape pays nothing and has no verdict to report, and
    # the cumulative series restart from 0 (a counter reset for Prometheus).
    scrape = await setup.probe("sim:fast")
    assert metric(scrape, "llm_probe_success") is None
    assert metric(scrape, "llm_requests_total") == 0
    assert metric(scrape, "llm_ttft_seconds_count") == 0
    assert await setup.upstream_hits("sim", "fast") == 2
    other = await setup.probe("sim:other")
    assert metric(other, "llm_requests_total") == 1 and metric(other, "llm_probe_success") == 1
    # Later probes count again from zero.
    setup.clock.advance(600)
    assert metric(await setup.probe("sim:fast"), "llm_requests_total") == 1


async def test_delete_one_module_and_validation(setup: Setup):
    await setup.probe("sim:fast")
    await setup.probe("sim:fast", "health")
    response, body = await call(
        setup, "DELETE", "/performance/metrics", target="sim:fast", module="health"
    )
    assert response.status == 200 and body["forgotten"]["series"] == 1
    _, metrics = await call(setup, "GET", "/performance/metrics", auth=False)
    assert set(entries(metrics)) == {("sim:fast", "latency")}
    response, body = await call(setup, "DELETE", "/performance/metrics")
    assert response.status == 400 and "missing parameter: target" in body["error"]
    response, body = await call(setup, "DELETE", "/performance/metrics", target="nocolon")
    assert response.status == 400 and "bad target" in body["error"]


async def test_delete_while_a_probe_is_in_flight_is_409(aiohttp_client, tmp_path, env):
    gate = Gate()
    setup = await build(aiohttp_client, tmp_path, run_probe=gate)
    scrape = asyncio.create_task(setup.probe("sim:fast"))
    await gate.started.wait()
    response, body = await call(setup, "DELETE", "/performance/metrics", target="sim:fast")
    assert response.status == 409 and body["reason"] == "conflict"
    gate.release.set()
    await scrape
    response, body = await call(setup, "DELETE", "/performance/metrics", target="sim:fast")
    assert response.status == 200 and body["forgotten"]["series"] == 1


# ------------------------------------------------------------------ health and alias


async def test_health_performance(setup: Setup):
    response, body = await call(setup, "GET", "/health/performance", auth=False)
    assert response.status == 200 and body["status"] == "healthy"
    assert body["problems"] == [] and body["warnings"] == []
    assert body["config"]["loaded"] is True and body["config"]["last_reload_successful"]
    assert body["targets"] == ["sim:fast", "anthropic:claude-sim"]
    assert body["probes_in_flight"] == 0 and body["max_concurrent_tests"] == 2
    assert body["budget"] == {"used": 0, "reserved": 0, "limit": 0, "exhausted": False}
    assert body["last_probe_time"] is None and body["management_api"] == "enabled"
    assert body["event_loop_lag_seconds"] >= 0
    before = time.time()
    await setup.probe("sim:fast")
    _, body = await call(setup, "GET", "/health/performance", auth=False)
    assert body["last_probe_time"] >= before and body["budget"]["used"] == 6
    # A failed reload is a warning: the running config still works.
    setup.config.write_text(setup.config.read_text() + "unknown_knob = 1\n")
    assert (await setup.client.post("/-/reload")).status == 500
    response, body = await call(setup, "GET", "/health/performance", auth=False)
    assert response.status == 200 and body["config"]["last_reload_successful"] is False
    assert body["warnings"]


async def test_health_is_503_when_probing_is_disabled(setup: Setup):
    setup.config.write_text(
        setup.config.read_text().replace(
            "test_interval_minutes = 10", "enabled = false\ntest_interval_minutes = 10"
        )
    )
    assert (await setup.client.post("/-/reload")).status == 200
    response, body = await call(setup, "GET", "/health/performance", auth=False)
    assert response.status == 503 and body["status"] == "unhealthy"
    assert body["problems"] == ["probing is disabled ([performance] enabled = false)"]


async def test_metrics_performance_is_metrics(setup: Setup):
    await setup.probe("sim:fast")
    plain = await setup.client.get("/metrics")
    alias = await setup.client.get("/metrics/performance")
    assert alias.status == 200
    assert alias.headers["Content-Type"] == plain.headers["Content-Type"]
    names = [
        {f.name for f in text_string_to_metric_families(await r.text())} for r in (plain, alias)
    ]
    assert names[0] == names[1] and "perfgen_exporter_targets" in names[1]
