"""The exporter app end to end: real run_probe against the real simulator, on 127.0.0.1.

Time-dependent behaviour (interval, backoff, budget hour) uses an injected clock, so
nothing here sleeps to wait for cost control.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from perfgen.exporter.app import create_app, exporter_of
from perfgen.exporter.result import FAILURE_REASONS
from perfgen.simulator.config import parse_simulator_config
from perfgen.simulator.server import create_app as create_simulator

pytestmark = pytest.mark.asyncio

SIM_KEY = "sk-sim-0123456789-very-secret"
ANTH_KEY = "sk-ant-9876543210-also-secret"
LITERAL_KEY = "literal-inline-key-4242"

SIMULATOR = {
    "seed": 7,
    "providers": [
        {
            "name": "sim",
            "protocol": "openai",
            "api_key": SIM_KEY,
            "models": [
                {"name": "fast", "ttft_ms": 20, "tokens_per_second": 400, "output_tokens": 6},
                {"name": "other", "ttft_ms": 20, "tokens_per_second": 400, "output_tokens": 6},
                {"name": "broken", "error_rate": 1.0, "faults": {"http_500": 1.0}},
                {"name": "hang", "error_rate": 1.0, "faults": {"hang": 1.0}},
            ],
        },
        {
            "name": "anth",
            "protocol": "anthropic",
            "api_key": ANTH_KEY,
            "models": [
                {"name": "claude-sim", "ttft_ms": 20, "tokens_per_second": 400, "output_tokens": 6},
            ],
        },
        {"name": "open", "protocol": "openai", "models": [{"name": "m", "ttft_ms": 10}]},
    ],
}


def exporter_toml(
    port: int,
    *,
    extra: str = "",
    budget: int = 0,
    log_format: str = "logfmt",
    test_models: str = '"sim:fast", "anthropic:claude-sim"',
) -> str:
    return f"""
[router]
default = "sim,fast"

[[providers]]
name = "sim"
api_base_url = "http://127.0.0.1:{port}/sim/v1"
api_key = "$PERFGEN_TEST_SIM_KEY"
models = ["fast", "other", "broken", "hang"]

[[providers]]
name = "anthropic"
api_base_url = "http://127.0.0.1:{port}/anth"
api_key = "$PERFGEN_TEST_ANTH_KEY"
models = ["claude-sim"]

[[providers]]
name = "open"
api_base_url = "http://127.0.0.1:{port}/open/v1"
api_key = "{LITERAL_KEY}"
models = ["m"]

[performance]
test_interval_minutes = 10
max_concurrent_tests = 2
test_timeout_seconds = 20

[performance.test_models]
models = [{test_models}]
modules = ["latency", "health"]

[performance.budget]
max_output_tokens_per_hour = {budget}

[performance.exporter]
backoff_initial_seconds = 30
scrape_timeout_offset_seconds = 0.5
log_format = "{log_format}"
{extra}
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Setup:
    """One simulator + one exporter, with handles the tests need."""

    def __init__(
        self,
        sim: TestClient,
        client: TestClient,
        config: Path,
        clock: FakeClock,
        logs: io.StringIO,
        port: int,
    ) -> None:
        self.sim, self.client, self.config, self.clock = sim, client, config, clock
        self.logs, self.port = logs, port
        self.bodies: list[str] = []

    async def get(self, path: str, **kwargs: object) -> tuple[int, str]:
        response = await self.client.get(path, **kwargs)
        body = await response.text()
        self.bodies.append(body)
        return response.status, body

    async def probe(self, target: str, module: str = "latency", **params: str) -> str:
        status, body = await self.get(
            "/probe", params={"target": target, "module": module, **params}
        )
        assert status == 200, body
        return body

    async def upstream_hits(self, provider: str, model: str) -> int:
        response = await self.sim.get("/-/requests", params={"provider": provider, "model": model})
        return len((await response.json())["requests"])


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("PERFGEN_TEST_SIM_KEY", SIM_KEY)
    monkeypatch.setenv("PERFGEN_TEST_ANTH_KEY", ANTH_KEY)


async def make_setup(aiohttp_client, tmp_path: Path, **toml: object) -> Setup:
    sim = await aiohttp_client(create_simulator(parse_simulator_config(SIMULATOR)))
    port = sim.server.port
    config = tmp_path / "config.toml"
    config.write_text(exporter_toml(port, **toml))  # type: ignore[arg-type]
    clock, logs = FakeClock(), io.StringIO()
    app = create_app(str(config), clock=clock, log_stream=logs)
    client = await aiohttp_client(app)
    return Setup(sim, client, config, clock, logs, port)


@pytest_asyncio.fixture
async def setup(aiohttp_client, tmp_path, env) -> Setup:
    return await make_setup(aiohttp_client, tmp_path)


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def promtool_check(text: str) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ------------------------------------------------------------------ /probe


async def test_successful_probe_openai(setup: Setup):
    response = await setup.client.get("/probe", params={"target": "sim:fast", "module": "latency"})
    body = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    labels = {"provider": "sim", "model": "fast", "module": "latency"}
    assert metric(body, "llm_probe_success", **labels) == 1
    assert metric(body, "llm_probe_cached", **labels) == 0
    assert 0 < metric(body, "llm_probe_ttft_seconds", **labels) < 5
    assert metric(body, "llm_probe_output_tokens", **labels) == 6
    assert metric(body, "llm_ttft_seconds_count", **labels) == 1
    assert metric(body, "llm_requests_total", **labels) == 1
    assert metric(body, "llm_request_failures_total", reason="timeout") == 0
    promtool_check(body)


async def test_successful_probe_anthropic_health_module(setup: Setup):
    body = await setup.probe("anthropic:claude-sim", "health")
    assert metric(body, "llm_probe_success", provider="anthropic", module="health") == 1


async def test_failed_probe_is_200_with_success_0_and_exporter_keeps_serving(setup: Setup):
    body = await setup.probe("sim:broken")
    assert metric(body, "llm_probe_success") == 0
    assert metric(body, "llm_probe_failed", reason="http_5xx") == 1
    assert metric(body, "llm_request_failures_total", reason="http_5xx") == 1
    assert metric(body, "llm_ttft_seconds_count") == 0
    assert metric(body, "llm_probe_ttft_seconds") is None
    promtool_check(body)
    assert (await setup.get("/-/healthy"))[0] == 200
    assert metric(await setup.probe("sim:fast"), "llm_probe_success") == 1


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"module": "latency"}, "missing parameter: target"),
        ({"target": "sim:fast"}, "missing parameter: module"),
        ({"target": "sim:fast", "module": "nope"}, "unknown module 'nope'"),
        ({"target": "nobody:fast", "module": "latency"}, "unknown target"),
        ({"target": "sim:not-a-model", "module": "latency"}, "unknown target"),
        ({"target": "http://169.254.169.254/latest", "module": "latency"}, "unknown target"),
        ({"target": "justaword", "module": "latency"}, "bad target"),
    ],
)
async def test_bad_requests_are_400_with_one_line(setup: Setup, params, reason):
    status, body = await setup.get("/probe", params=params)
    assert status == 400
    assert reason in body and body.count("\n") == 1
    assert await setup.upstream_hits("sim", "fast") == 0


async def test_second_scrape_within_interval_is_cached(setup: Setup):
    first = await setup.probe("sim:fast")
    setup.clock.advance(9 * 60)
    second = await setup.probe("sim:fast")
    assert metric(second, "llm_probe_cached") == 1
    assert metric(second, "llm_probe_success") == 1
    assert metric(second, "llm_probe_timestamp_seconds") == metric(
        first, "llm_probe_timestamp_seconds"
    )
    assert metric(second, "llm_requests_total") == 1
    assert await setup.upstream_hits("sim", "fast") == 1
    setup.clock.advance(60)
    third = await setup.probe("sim:fast")
    assert metric(third, "llm_probe_cached") == 0
    assert metric(third, "llm_requests_total") == 2
    assert await setup.upstream_hits("sim", "fast") == 2
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_scrapes_total", module="latency", outcome="cached") == 1
    assert metric(own, "perfgen_exporter_scrapes_total", module="latency", outcome="fresh") == 2


async def test_budget_exhaustion(aiohttp_client, tmp_path, env):
    # latency reserves max_tokens=16; 20 tokens an hour pays for one probe, not two.
    setup = await make_setup(aiohttp_client, tmp_path, budget=20)
    assert metric(await setup.probe("sim:fast"), "llm_probe_success") == 1
    refused = await setup.probe("sim:other")
    assert metric(refused, "llm_probe_success") is None  # nothing measured: no verdict
    assert metric(refused, "llm_requests_total") == 0
    promtool_check(refused)
    assert await setup.upstream_hits("sim", "other") == 0
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_budget_exhausted") == 1
    assert metric(own, "perfgen_exporter_budget_output_tokens_used") == 6
    assert metric(own, "perfgen_exporter_budget_output_tokens_limit") == 20
    assert (
        metric(own, "perfgen_exporter_scrapes_total", module="latency", outcome="budget_exhausted")
        == 1
    )
    # An hour later the budget is back.
    setup.clock.advance(3601)
    assert metric(await setup.probe("sim:other"), "llm_probe_success") == 1
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_budget_exhausted") == 0
    assert "budget_exhausted" in setup.logs.getvalue()


async def test_failed_target_is_retried_on_backoff(setup: Setup):
    await setup.probe("sim:broken")
    setup.clock.advance(10)
    held = await setup.probe("sim:broken")
    assert metric(held, "llm_probe_cached") == 1 and metric(held, "llm_probe_success") == 0
    assert await setup.upstream_hits("sim", "broken") == 1
    setup.clock.advance(20)
    await setup.probe("sim:broken")
    assert await setup.upstream_hits("sim", "broken") == 2
    setup.clock.advance(30)  # the second failure doubled the wait to 60 s
    await setup.probe("sim:broken")
    assert await setup.upstream_hits("sim", "broken") == 2
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_scrapes_total", module="latency", outcome="backoff") == 2


async def test_scrape_timeout_header_bounds_the_probe(setup: Setup):
    status, body = await setup.get(
        "/probe",
        params={"target": "sim:hang", "module": "latency", "debug": "true"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
    )
    assert status == 200
    assert "Probe timeout: 1s" in body
    assert (
        'llm_probe_failed{model="hang",module="latency",provider="sim",reason="timeout"} 1.0'
        in body
    )
    duration = re.search(r"llm_probe_duration_seconds\{[^}]*\} (\S+)", body)
    assert duration and float(duration.group(1)) < 1.5
    status, body = await setup.get(
        "/probe",
        params={"target": "sim:fast", "module": "latency"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.4"},
    )
    assert status == 400 and "scrape_timeout_offset_seconds" in body


# ------------------------------------------------------------------ other endpoints


async def test_service_discovery(setup: Setup):
    response = await setup.client.get("/sd")
    groups = await response.json()
    assert response.status == 200
    assert {(g["labels"]["__param_target"], g["labels"]["__param_module"]) for g in groups} == {
        ("sim:fast", "latency"),
        ("sim:fast", "health"),
        ("anthropic:claude-sim", "latency"),
        ("anthropic:claude-sim", "health"),
    }
    first = groups[0]
    assert first == {
        "targets": ["sim:fast"],
        "labels": {
            "__param_target": "sim:fast",
            "__param_module": "latency",
            "provider": "sim",
            "model": "fast",
            "module": "latency",
        },
    }


async def test_own_metrics(setup: Setup):
    await setup.probe("sim:fast")
    status, body = await setup.get("/metrics")
    assert status == 200
    for name in (
        "perfgen_exporter_config_last_reload_successful",
        "perfgen_exporter_config_last_reload_success_timestamp_seconds",
        "perfgen_exporter_probes_in_flight",
        "perfgen_exporter_budget_output_tokens_used",
        "perfgen_exporter_budget_output_tokens_limit",
        "perfgen_exporter_budget_exhausted",
        "perfgen_exporter_event_loop_lag_seconds",
        "perfgen_exporter_targets",
        "process_cpu_seconds_total",
    ):
        assert metric(body, name) is not None, name
    assert metric(body, "perfgen_exporter_targets") == 2
    assert metric(body, "perfgen_exporter_probes_in_flight") == 0
    for outcome in ("fresh", "cached", "budget_exhausted", "backoff"):
        assert (
            metric(body, "perfgen_exporter_scrapes_total", module="health", outcome=outcome)
            is not None
        )
    promtool_check(body)


async def test_reload_good_and_bad(setup: Setup):
    setup.config.write_text(exporter_toml(setup.port, test_models='"sim:fast", "sim:other"'))
    response = await setup.client.post("/-/reload")
    assert response.status == 200
    sd = await (await setup.client.get("/sd")).json()
    assert {g["targets"][0] for g in sd} == {"sim:fast", "sim:other"}
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_config_last_reload_successful") == 1

    setup.config.write_text(exporter_toml(setup.port, extra="unknown_knob = 1"))
    response = await setup.client.post("/-/reload")
    text = await response.text()
    assert response.status == 500
    assert "performance.exporter.unknown_knob" in text and str(setup.config) in text
    sd = await (await setup.client.get("/sd")).json()
    assert {g["targets"][0] for g in sd} == {"sim:fast", "sim:other"}  # old config kept
    _, own = await setup.get("/metrics")
    assert metric(own, "perfgen_exporter_config_last_reload_successful") == 0
    log = setup.logs.getvalue()
    assert "config reload failed" in log and "key=performance.exporter.unknown_knob" in log
    # The kept config still probes.
    assert metric(await setup.probe("sim:fast"), "llm_probe_success") == 1


async def test_reload_switches_log_format(setup: Setup):
    setup.config.write_text(exporter_toml(setup.port, log_format="json"))
    assert (await setup.client.post("/-/reload")).status == 200
    await setup.probe("sim:fast")
    last = setup.logs.getvalue().strip().splitlines()[-1]
    record = json.loads(last)
    assert record["msg"] == "probe finished" and record["target"] == "sim:fast"
    assert record["module"] == "latency" and record["success"] is True


async def test_debug_view_and_landing_page(setup: Setup):
    status, body = await setup.get(
        "/probe", params={"target": "sim:fast", "module": "latency", "debug": "true"}
    )
    assert status == 200
    assert "Scrape outcome: fresh" in body
    assert "Logs for the probe:" in body and "POST http://127.0.0.1" in body
    assert "llm_probe_success{" in body
    assert "max_tokens = 16" in body
    assert "api_key = $PERFGEN_TEST_SIM_KEY" in body
    stored = re.search(r"Stored as: (/debug/\d+)", body)
    assert stored
    status, page = await setup.get("/")
    assert status == 200 and "<html>" in page
    assert stored.group(1) in page and "sim:fast" in page
    status, again = await setup.get(stored.group(1))
    assert status == 200 and "Logs for the probe:" in again
    assert (await setup.get("/debug/99999"))[0] == 404
    # Literal keys are shown as <redacted>.
    _, literal = await setup.get(
        "/probe", params={"target": "open:m", "module": "latency", "debug": "true"}
    )
    assert "api_key = <redacted>" in literal


async def test_api_keys_never_appear_anywhere(setup: Setup):
    for target in ("sim:fast", "sim:broken", "anthropic:claude-sim", "open:m"):
        await setup.get("/probe", params={"target": target, "module": "latency", "debug": "true"})
        await setup.get("/probe", params={"target": target, "module": "health"})
    await setup.get("/probe", params={"target": f"sim:{SIM_KEY}", "module": "latency"})
    await setup.get("/probe", params={"target": "sim:fast", "module": ANTH_KEY})
    for path in ("/", "/sd", "/metrics", "/debug/1", "/debug/2", "/-/healthy"):
        await setup.get(path)
    setup.config.write_text(exporter_toml(setup.port, extra=f'bad = "{SIM_KEY}"'))
    response = await setup.client.post("/-/reload")
    setup.bodies.append(await response.text())
    everything = "\n".join(setup.bodies) + setup.logs.getvalue()
    assert "probe finished" in setup.logs.getvalue()
    for secret in (SIM_KEY, ANTH_KEY, LITERAL_KEY):
        assert secret not in everything


async def test_probe_engine_crash_is_500_and_logged(aiohttp_client, tmp_path, env):
    sim = await aiohttp_client(create_simulator(parse_simulator_config(SIMULATOR)))
    config = tmp_path / "config.toml"
    config.write_text(exporter_toml(sim.server.port))
    logs = io.StringIO()

    async def crash(*args: object, **kwargs: object):
        raise RuntimeError(f"engine bug with {SIM_KEY}")

    client = await aiohttp_client(create_app(str(config), run_probe=crash, log_stream=logs))
    response = await client.get("/probe", params={"target": "sim:fast", "module": "latency"})
    text = await response.text()
    assert response.status == 500 and "RuntimeError" in text
    assert SIM_KEY not in text and SIM_KEY not in logs.getvalue()
    assert (await client.get("/-/healthy")).status == 200
    assert exporter_of(client.server.app).scheduler.in_flight == 0


async def test_concurrent_scrapes_share_one_upstream_request(setup: Setup):
    bodies = await asyncio.gather(*(setup.probe("sim:fast") for _ in range(4)))
    assert await setup.upstream_hits("sim", "fast") == 1
    assert sorted(metric(b, "llm_probe_cached") for b in bodies) == [0, 1, 1, 1]
    assert {metric(b, "llm_probe_timestamp_seconds") for b in bodies} != {None}
    assert len({metric(b, "llm_probe_timestamp_seconds") for b in bodies}) == 1


async def test_disabled_performance_stops_probing(setup: Setup):
    setup.config.write_text(
        exporter_toml(setup.port).replace(
            "test_interval_minutes = 10", "enabled = false\ntest_interval_minutes = 10"
        )
    )
    assert (await setup.client.post("/-/reload")).status == 200
    status, body = await setup.get("/probe", params={"target": "sim:fast", "module": "latency"})
    assert status == 503 and "disabled" in body
    assert await (await setup.client.get("/sd")).json() == []
    assert await setup.upstream_hits("sim", "fast") == 0


# ------------------------------------------------------------------ faults, keys, URLs

FAULTS = [
    ("http_429", "http_429"),
    ("http_500", "http_5xx"),
    ("http_503", "overloaded"),  # "The server is overloaded ...", as OpenAI words it
    ("hang", "timeout"),
    ("stall", "timeout"),
    ("malformed", "bad_stream"),
    ("error_event", "error_event"),
    ("empty", "empty_response"),
]


def fault_setup_toml(port: int, *, extra: str = "") -> str:
    models = ", ".join(f'"f-{kind}"' for kind, _ in FAULTS)
    return f"""
[[providers]]
name = "sim"
api_base_url = "http://127.0.0.1:{port}/sim/v1"
api_key = "$PERFGEN_TEST_SIM_KEY"
models = ["fast", {models}]

[[providers]]
name = "wrongkey"
api_base_url = "http://127.0.0.1:{port}/sim/v1"
api_key = "sk-this-is-not-the-key-999"
models = ["fast"]

[performance]
test_interval_minutes = 10

[performance.exporter]
scrape_timeout_offset_seconds = 0.5
{extra}
"""


async def fault_setup(aiohttp_client, tmp_path: Path, extra: str = "") -> Setup:
    fast = {"ttft_ms": 20, "tokens_per_second": 400, "output_tokens": 6}
    simulator = {
        "seed": 7,
        "providers": [
            {
                "name": "sim",
                "protocol": "openai",
                "api_key": SIM_KEY,
                "models": [
                    {"name": "fast", **fast},
                    *(
                        {"name": f"f-{kind}", **fast, "error_rate": 1.0, "faults": {kind: 1.0}}
                        for kind, _ in FAULTS
                    ),
                ],
            }
        ],
    }
    sim = await aiohttp_client(create_simulator(parse_simulator_config(simulator)))
    config = tmp_path / "config.toml"
    config.write_text(fault_setup_toml(sim.server.port, extra=extra))
    clock, logs = FakeClock(), io.StringIO()
    client = await aiohttp_client(create_app(str(config), clock=clock, log_stream=logs))
    return Setup(sim, client, config, clock, logs, sim.server.port)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        *((f"sim:f-{kind}", reason) for kind, reason in FAULTS),
        ("wrongkey:fast", "auth"),
    ],
)
async def test_every_simulator_fault_is_a_200_with_its_reason(
    aiohttp_client, tmp_path, env, target, reason
):
    setup = await fault_setup(aiohttp_client, tmp_path)
    # Prometheus' scrape timeout 1.5 s - 0.5 s offset: hang and stall end after 1 s.
    response = await setup.client.get(
        "/probe",
        params={"target": target, "module": "latency"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
    )
    body = await response.text()
    assert response.status == 200, body
    assert metric(body, "llm_probe_success") == 0
    assert metric(body, "llm_probe_failed", reason=reason) == 1, body
    assert sum(metric(body, "llm_probe_failed", reason=r) for r in FAILURE_REASONS) == 1
    assert metric(body, "llm_request_failures_total", reason=reason) == 1
    assert metric(body, "llm_ttft_seconds_count") == 0
    status, own = await setup.get("/metrics")
    assert status == 200 and metric(own, "perfgen_exporter_probes_in_flight") == 0
    assert metric(await setup.probe("sim:fast"), "llm_probe_success") == 1
    everything = body + own + setup.logs.getvalue()
    assert SIM_KEY not in everything and "sk-this-is-not-the-key-999" not in everything


async def test_probe_api_key_override_is_used_and_never_shown(
    aiohttp_client, tmp_path, env, monkeypatch
):
    # The proxy's key is wrong for the simulator; only the probe key opens it.
    monkeypatch.setenv("PERFGEN_TEST_PROBE_KEY", SIM_KEY)
    setup = await fault_setup(
        aiohttp_client,
        tmp_path,
        extra="""
[performance.providers.wrongkey]
probe_api_key = "$PERFGEN_TEST_PROBE_KEY"
""",
    )
    status, body = await setup.get(
        "/probe", params={"target": "wrongkey:fast", "module": "latency", "debug": "true"}
    )
    assert status == 200
    assert 'llm_probe_success{model="fast",module="latency",provider="wrongkey"} 1.0' in body
    assert "probe_api_key = $PERFGEN_TEST_PROBE_KEY" in body
    assert SIM_KEY not in body + setup.logs.getvalue()


async def test_unsendable_key_is_no_api_key_not_a_crash(aiohttp_client, tmp_path, env, monkeypatch):
    monkeypatch.setenv("PERFGEN_TEST_SIM_KEY", SIM_KEY + "\u2019")
    setup = await fault_setup(aiohttp_client, tmp_path)
    status, body = await setup.get(
        "/probe", params={"target": "sim:fast", "module": "latency", "debug": "true"}
    )
    assert status == 200, body
    assert 'reason="no_api_key"} 1.0' in body
    assert "$PERFGEN_TEST_SIM_KEY" in body
    # Not sent, so not counted against the model.
    assert 'llm_requests_total{model="fast",module="latency",provider="sim"} 0.0' in body
    assert await setup.upstream_hits("sim", "fast") == 0
    assert SIM_KEY not in body + setup.logs.getvalue()


async def test_debug_view_hides_a_key_in_the_base_url_query(aiohttp_client, tmp_path, env):
    secret = "query-secret-4711-abcdef"
    setup = await make_setup(aiohttp_client, tmp_path)
    setup.config.write_text(
        exporter_toml(
            setup.port,
            extra=f"""
[performance.providers.sim]
api_base_url = "http://127.0.0.1:{setup.port}/sim/v1?api_key={secret}#frag-x"
""",
        )
    )
    assert (await setup.client.post("/-/reload")).status == 200
    status, body = await setup.get(
        "/probe", params={"target": "sim:fast", "module": "latency", "debug": "true"}
    )
    assert status == 200
    assert 'llm_probe_success{model="fast",module="latency",provider="sim"} 1.0' in body
    assert f"api_base_url = 'http://127.0.0.1:{setup.port}/sim/v1?...'" in body
    assert f"POST http://127.0.0.1:{setup.port}/sim/v1/chat/completions?..." in body
    for hidden in (secret, "frag-x"):
        assert hidden not in body + setup.logs.getvalue()


# ------------------------------------------------------------------ adaptive probing


async def test_probe_interval_metrics_fixed(setup: Setup):
    await setup.probe("sim:fast")
    _, body = await setup.get("/metrics")
    labels = {"provider": "sim", "model": "fast", "module": "latency"}
    assert metric(body, "perfgen_exporter_probe_interval_seconds", **labels) == 600
    assert metric(body, "perfgen_exporter_probe_interval_reason", reason="fixed", **labels) == 1
    promtool_check(body)


async def test_adaptive_interval_shows_in_metrics_and_debug(aiohttp_client, tmp_path, env):
    extra = "[performance.adaptive]\nenabled = true\nmin_interval_minutes = 2\n"
    setup = await make_setup(aiohttp_client, tmp_path, extra=extra)
    await setup.probe("sim:fast")
    labels = {"provider": "sim", "model": "fast", "module": "latency"}
    _, body = await setup.get("/metrics")
    assert metric(body, "perfgen_exporter_probe_interval_seconds", **labels) == 120
    assert metric(body, "perfgen_exporter_probe_interval_reason", reason="little_data", **labels)
    assert metric(body, "perfgen_exporter_probe_interval_reason", reason="fixed", **labels) == 0
    # One result is below min_test_count: the next probe comes after the minimum, not 10 min.
    setup.clock.advance(60)
    debug = await setup.probe("sim:fast", debug="true")
    assert "Scrape outcome: cached" in debug
    assert "Schedule: interval 120s (little_data: 1 results in the window" in debug
    assert "next paid probe due in 60s" in debug
    setup.clock.advance(61)
    debug = await setup.probe("sim:fast", debug="true")
    assert "Scrape outcome: fresh" in debug
    assert await setup.upstream_hits("sim", "fast") == 2
