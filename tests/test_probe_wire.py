"""run_probe against the simulator speaking issue 10's wire shapes.

Ground truth is the simulator's own record of each request (`/-/requests`: when it
received it, when it wrote its first and last streamed token, how many it streamed).
Simulator and probe share this process's event loop, so a probe's reading can trail the
simulator's write only by as long as that loop was held up, which `lag` (tests/loop_lag.py)
measures while the test runs: each timing check is one run against that bound, no retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from loop_lag import LoopLag

from perfgen.config import BUILTIN_MODULES, Config, Module, Performance, Provider, Secret, Target
from perfgen.exporter.metrics import render_single_probe
from perfgen.exporter.probe import run_probe
from perfgen.exporter.result import ProbeResult
from perfgen.simulator.config import parse_simulator_config
from perfgen.simulator.server import create_app

pytestmark = pytest.mark.asyncio

KEY = "sk-wire-test-0123456789"
TPS = 50.0
TOKENS = 21
MODULE = Module("test", ("Say something.",), max_tokens=256, timeout_seconds=10.0)
FAULTS = ("http_529", "quota", "context_length", "content_filter")
MODELS: dict[str, dict[str, Any]] = {
    "ok": {},
    "gpt-5-mini": {
        "max_tokens_field": "max_completion_tokens",
        "reasoning_tokens": 20,
        "reasoning_shape": "hidden",
    },
    "strict": {"rejected_parameters": ["temperature"]},
    "hidden": {"reasoning_tokens": 20, "reasoning_shape": "hidden"},
    "think": {"reasoning_tokens": 10, "output_tokens": 11, "reasoning_shape": "think_tags"},
    "reasoning": {"reasoning_tokens": 10, "output_tokens": 11, "reasoning_shape": "reasoning"},
    "details": {
        "reasoning_tokens": 10,
        "output_tokens": 11,
        "reasoning_shape": "reasoning_details",
    },
    "after_done": {"usage_position": "after_done"},
    "before_empty": {"usage_position": "before_empty_chunk"},
    "finish_chunk": {"usage_position": "finish_chunk"},
    "deep": {"reasoning_tokens": 200, "reasoning_shape": "hidden", "tokens_per_second": 2000},
    "deep-streamed": {"reasoning_tokens": 200, "tokens_per_second": 2000},
    "gpt-5-nano": {
        "reasoning_tokens": 64,
        "reasoning_shape": "hidden",
        "output_tokens": 2,
        "tokens_per_second": 1000,
    },
    "cache": {"prompt_cache": True, "ttft_ms": 300, "output_tokens": 3},
    **{f"f-{fault}": {"error_rate": 1.0, "faults": {fault: 1.0}} for fault in FAULTS},
}


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[str]:
    models = [
        {"name": name, "ttft_ms": 100, "tokens_per_second": TPS, "output_tokens": TOKENS, **p}
        for name, p in MODELS.items()
    ]
    data = {
        "providers": [
            {"name": "simo", "protocol": "openai", "api_key": KEY, "models": models},
            {"name": "sima", "protocol": "anthropic", "api_key": KEY, "models": models},
        ]
    }
    app = create_app(parse_simulator_config(data, "<test>"), 1)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def config(base: str, **overrides: Any) -> Config:
    """simo (chat completions), sima (Anthropic), simr (Responses API on simo's routes)."""
    caps = (("*", overrides),) if overrides else ()
    names = tuple(MODELS)

    def provider(name: str, url: str, protocol: str) -> Provider:
        return Provider(name, url, Secret(KEY), names, protocol, capability_overrides=caps)

    return Config(
        path="<test>",
        performance=Performance(),
        router={},
        providers={
            "simo": provider("simo", f"{base}/simo/v1", "openai"),
            "sima": provider("sima", f"{base}/sima", "anthropic"),
            "simr": provider("simr", f"{base}/simo/v1", "openai-responses"),
        },
    )


SIM_NAME = {"simo": "simo", "sima": "sima", "simr": "simo"}


async def record(base: str, provider: str, model: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        params = {"limit": "1", "provider": SIM_NAME[provider], "model": model}
        async with session.get(f"{base}/-/requests", params=params) as response:
            return (await response.json())["requests"][0]


@pytest_asyncio.fixture
async def lag() -> AsyncIterator[LoopLag]:
    async with LoopLag() as watching:
        yield watching


async def measured(
    run: Callable[[], Awaitable[ProbeResult]], base: str, provider: str, model: str
) -> tuple[ProbeResult, dict[str, Any]]:
    """One probe and the simulator's record of its request."""
    result = await run()
    return result, await record(base, provider, model)


def assert_ttft(result: ProbeResult, truth: dict[str, Any], lag: LoopLag) -> None:
    """The probe's t0 (request written) precedes the simulator's `received`, and its first
    token is read after the simulator's write: each gap at most `lag.bound`."""
    ttft = truth["first_token_sent"] - truth["received"]
    assert result.ttft_seconds is not None
    assert 0 <= result.ttft_seconds - ttft <= 2 * lag.bound, (result.ttft_seconds, ttft, lag)


def assert_visible_span(result: ProbeResult, truth: dict[str, Any], lag: LoopLag) -> None:
    """The decode rate is the streamed tokens' own: the span it implies for them matches
    the simulator's first-to-last write (both ends read 0 to lag.bound late). A rate over
    all output, hidden reasoning included, would imply about twice the span."""
    assert result.tokens_per_second
    span = (truth["tokens_sent"] - 1) / result.tokens_per_second
    written = truth["last_token_sent"] - truth["first_token_sent"]
    assert abs(span - written) <= lag.bound, (span, written, lag)


async def probe(base: str, provider: str, model: str, module: Module = MODULE, **over: Any):
    return await run_probe(config(base, **over), Target(provider, model), module)


PROVIDERS = ["simo", "sima", "simr"]


async def test_a_gpt5_style_model_that_refuses_max_tokens_probes_successfully(simulator):
    result = await probe(simulator, "simo", "gpt-5-mini")
    assert result.success, result.log
    assert any("max_completion_tokens 256" in line for line in result.log)
    # The same model told to send max_tokens: the operator's configuration, named.
    refused = await probe(simulator, "simo", "gpt-5-mini", max_tokens_field="max_tokens")
    assert refused.failure_reason == "unsupported_parameter", refused.log
    assert "refuses parameter 'max_tokens'" in refused.failure_detail
    assert 'max_tokens_field = "max_completion_tokens"' in refused.failure_detail


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refused_parameter_fails_naming_it(simulator, provider):
    module = replace(MODULE, temperature=0.3)
    result = await probe(simulator, provider, "strict", module)
    assert result.failure_reason == "unsupported_parameter", result.log
    assert "'temperature'" in result.failure_detail
    assert (await probe(simulator, provider, "strict")).success  # none sent by default


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hidden_reasoning_reports_the_visible_decode_rate(simulator, provider, lag):
    result, truth = await measured(
        lambda: probe(simulator, provider, "hidden"), simulator, provider, "hidden"
    )
    assert result.success, result.log
    assert truth["reasoning_hidden"] and truth["tokens_sent"] == TOKENS
    assert_visible_span(result, truth, lag)
    request = result.requests[0]
    assert request.reasoning_hidden and request.decode_rate_basis == "visible_answer"
    assert request.output_tokens == TOKENS + 20  # usage counts the hidden reasoning
    # Anthropic's usage does not split thinking out of output_tokens.
    assert request.reasoning_tokens == (None if provider == "sima" else 20)
    data = result.to_json()
    assert data["reasoning_hidden"] is True and data["decode_rate_basis"] == "visible_answer"
    text = render_single_probe(result)
    assert 'llm_probe_reasoning_hidden{model="hidden",module="test",' in text
    assert "llm_reasoning_hidden_requests_total{" in text


async def test_think_tags_end_ttft_at_the_first_reasoning_token(simulator, lag):
    result, truth = await measured(
        lambda: probe(simulator, "simo", "think"), simulator, "simo", "think"
    )
    assert result.success, result.log
    assert_ttft(result, truth, lag)  # the simulator's first write is "<think>..."
    assert_thinks(result, truth, lag)
    request = result.requests[0]
    assert request.reasoning_tokens == 10 and not request.reasoning_hidden
    assert request.decode_rate_basis == "output"


def assert_thinks(result: ProbeResult, truth: dict[str, Any], lag: LoopLag) -> None:
    """The answer began 10 tokens after the first reasoning token.

    The simulator records only its first and last write; the 11th token is known by its
    deadline (received + the drawn ttft + 10 / the drawn rate), written 0 to lag.bound
    after it and read 0 to lag.bound after that, while the probe's first-token read
    trails the recorded first write by 0 to lag.bound.
    """
    assert result.first_content_seconds is not None and result.ttft_seconds is not None
    due = truth["received"] + truth["ttft_seconds"] + 10 / truth["tokens_per_second"]
    expected = due - truth["first_token_sent"]
    thinking = result.first_content_seconds - result.ttft_seconds
    assert -lag.bound <= thinking - expected <= 2 * lag.bound, (thinking, expected, lag)


@pytest.mark.parametrize("model", ["reasoning", "details"])
async def test_other_reasoning_shapes_are_reasoning(simulator, model, lag):
    result, truth = await measured(
        lambda: probe(simulator, "simo", model), simulator, "simo", model
    )
    assert result.success, result.log
    assert_thinks(result, truth, lag)
    request = result.requests[0]
    assert request.reasoning_tokens == 10 and not request.reasoning_hidden


@pytest.mark.parametrize("model", ["after_done", "before_empty", "finish_chunk"])
async def test_usage_is_found_wherever_it_comes(simulator, model):
    result = await probe(simulator, "simo", model)
    assert result.success, result.log
    assert result.token_count_source == "usage" and result.output_tokens == TOKENS


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("model", ["deep", "deep-streamed"])
async def test_a_cap_that_runs_out_during_reasoning_says_so(simulator, provider, model):
    result = await probe(simulator, provider, model, replace(MODULE, max_tokens=24))
    assert result.failure_reason == "reasoning_truncated", result.log
    assert "ran out during reasoning" in result.failure_detail
    assert result.requests[0].output_tokens == 24  # paid for, and counted


async def test_health_defaults_work_for_a_reasoning_model(simulator):
    health = BUILTIN_MODULES["health"]
    result = await probe(simulator, "simo", "gpt-5-nano", health)
    assert result.success, result.log
    # The old default of 8 output tokens ends inside the 64 reasoning tokens.
    old = await probe(simulator, "simo", "gpt-5-nano", replace(health, max_tokens=8))
    assert old.failure_reason == "reasoning_truncated"


async def test_the_nonce_at_the_start_defeats_a_prefix_cache(simulator, monkeypatch, lag):
    module = replace(MODULE, input_tokens=400)
    first = await probe(simulator, "simo", "cache", module)
    second = await probe(simulator, "simo", "cache", module)
    for result in (first, second):
        assert result.success and not result.requests[0].prompt_cache_hit, result.log
        assert result.requests[0].cached_input_tokens == 0
    # The same prompt twice (a fixed nonce) is served from the cache, and reported.
    monkeypatch.setattr("perfgen.exporter.prompts.secrets.token_hex", lambda n: "feedf00d")
    await probe(simulator, "sima", "cache", module)
    cached = await probe(simulator, "sima", "cache", module)
    request = cached.requests[0]
    truth = await record(simulator, "sima", "cache")
    assert truth["cached_tokens"] > 300 and request.cached_input_tokens == truth["cached_tokens"]
    assert request.prompt_cache_hit and cached.to_json()["prompt_cache_hit"] is True
    assert truth["ttft_seconds"] < 0.3  # the simulator drew a cache hit's shorter TTFT
    assert_ttft(cached, truth, lag)  # and the probe saw that one
    text = render_single_probe(cached)
    assert (
        f'llm_cached_input_tokens_total{{model="cache",module="test",provider="sima"}} '
        f"{float(truth['cached_tokens'])}" in text
    )
    assert 'llm_probe_prompt_cache_hit{model="cache",module="test",provider="sima"} 1.0' in text


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_failure_reasons_users_ask_for(simulator, provider, fault):
    result = await probe(simulator, provider, f"f-{fault}")
    expected = "overloaded" if fault == "http_529" else fault
    assert result.failure_reason == expected, result.log
    assert KEY not in json.dumps(result.to_json()) + "".join(result.log)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timing_connect_time_and_json_fields(simulator, provider, lag):
    result, truth = await measured(
        lambda: probe(simulator, provider, "ok"), simulator, provider, "ok"
    )
    assert result.success, result.log
    assert_ttft(result, truth, lag)
    assert_visible_span(result, truth, lag)
    data = result.to_json()
    for key in ("reasoning_tokens", "reasoning_hidden", "cached_input_tokens", "connect_seconds"):
        assert key in data
    # A fresh session opens a connection: timed on its own, before t0.
    assert data["connect_seconds"] is not None and 0 <= data["connect_seconds"] < 1
    assert data["token_count_source"] == "usage" and data["output_tokens"] == TOKENS
    assert "llm_probe_connect_seconds{" in render_single_probe(result)


async def test_reading_after_the_terminator_is_bounded():
    """A server that keeps the body open after [DONE] without usage costs the probe at
    most the trailer bound, never a timeout; what it sends late (usage) is still taken."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for text in ("Hello", " there"):
            chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        stop = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(stop)}\n\ndata: [DONE]\n\n".encode())
        if request.match_info["kind"] == "late":
            usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
            await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await release.wait()  # never closes on its own
        return response

    app = web.Application()
    app.router.add_post("/{kind}/v1/chat/completions", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        providers = {
            kind: Provider(kind, f"{base}/{kind}/v1", Secret(KEY), ("m",), "openai")
            for kind in ("open", "late")
        }
        cfg = Config(path="<test>", performance=Performance(), router={}, providers=providers)
        open_ended = await run_probe(cfg, Target("open", "m"), MODULE)
        late = await run_probe(cfg, Target("late", "m"), MODULE)
    finally:
        release.set()
        await runner.cleanup()
    assert open_ended.success, open_ended.log
    assert open_ended.token_count_source == "estimate" and open_ended.output_tokens == 2
    # 0.5 s trailer bound plus set-up; the module's 10 s timeout is far away.
    assert open_ended.elapsed_seconds < 1.5
    assert any("no usage within 0.5s" in line for line in open_ended.log)
    assert late.success and late.token_count_source == "usage", late.log
    assert late.elapsed_seconds < 0.5  # usage came: no waiting for the body's end
