"""run_probe against a scripted in-process server (and the real simulator, when present).

The scripted server sends its first token 100 ms after it receives a request and then
50 tokens/s on absolute deadlines, and records when it really wrote each token; the
probe's TTFT and decode span must match those writes to within what the shared event loop
was measurably held up during the test (tests/loop_lag.py), never the nominal script.
Each failure reason has a scenario of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from loop_lag import LoopLag

from perfgen.config import (
    Config,
    Module,
    Performance,
    Provider,
    Secret,
    Target,
    parse_config,
)
from perfgen.exporter.metrics import render_single_probe
from perfgen.exporter.probe import create_session, run_probe
from perfgen.exporter.result import FAILURE_REASONS, ProbeResult
from perfgen.exporter.scheduler import spent_tokens

pytestmark = pytest.mark.asyncio

KEY = "sk-test-SECRET-0123456789abcdef"
# Short: the assertions compare with the server's own writes, so the script's length buys
# no precision, only test time.
TTFT = 0.1
TPS = 50.0
TOKENS = 21
PROMPT_TOKENS = 37


@dataclass(frozen=True)
class Script:
    """What the scripted server does with a request for one scenario."""

    ttft: float = TTFT
    tps: float = TPS
    tokens: int = TOKENS
    reasoning: int = 0
    usage: bool = True
    status: int | None = None
    hang: bool = False
    empty: bool = False
    # After this many tokens: "stall", "malformed", "error" or "cut" (close, no terminator).
    fault_after: int = 0
    fault: str | None = None
    answer: str = "word "
    json_body: bool = False  # ignore stream=true, as some servers do


FAST = {"ttft": 0.01, "tps": 1000.0, "tokens": 5}
SCRIPTS: dict[str, Script] = {
    "ok": Script(),
    "nousage": Script(usage=False),
    "reasoning": Script(reasoning=10, tokens=11),
    "fast": Script(**FAST),
    "http429": Script(status=429),
    "http503": Script(status=503),
    "http401": Script(status=401),
    "http404": Script(status=404),
    "redirect": Script(status=307),
    "hang": Script(hang=True),
    "stall": Script(**FAST, fault="stall", fault_after=3),
    "malformed": Script(**FAST, fault="malformed", fault_after=2),
    "error": Script(**FAST, fault="error", fault_after=2),
    "cut": Script(**FAST, fault="cut", fault_after=3),
    "empty": Script(**FAST, empty=True),
    "answer": Script(**FAST, answer="nope "),
    "json": Script(json_body=True),
}


class OpenAIEncoder:
    def preamble(self) -> bytes:
        return (
            b': keep-alive\n\ndata: {"choices":[{"index":0,"delta":{"role":"assistant",'
            b'"content":""},"finish_reason":null}],"usage":null}\n\n'
        )

    def token(self, text: str, reasoning: bool) -> bytes:
        delta = {"reasoning_content": text} if reasoning else {"content": text}
        return _data(
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}], "usage": None}
        )

    def finish(self, script: Script, produced: int) -> bytes:
        out = _data(
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}
        )
        if script.usage:
            out += _data(
                {
                    "choices": [],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": produced,
                        "completion_tokens_details": {"reasoning_tokens": script.reasoning},
                    },
                }
            )
        return out + b"data: [DONE]\n\n"

    def error(self, message: str) -> bytes:
        return _data({"error": {"message": message, "type": "server_error"}})

    def malformed(self) -> bytes:
        return b'data: {"choices":[{"index":0,"delta":{"content":"tru\n\n'


class AnthropicEncoder:
    def preamble(self) -> bytes:
        start = {
            "type": "message_start",
            "message": {"usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}},
        }
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        return (
            _event("message_start", start)
            + _event("content_block_start", block)
            + b'event: ping\ndata: {"type": "ping"}\n\n'
        )

    def token(self, text: str, reasoning: bool) -> bytes:
        delta = (
            {"type": "thinking_delta", "thinking": text}
            if reasoning
            else {"type": "text_delta", "text": text}
        )
        return _event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def finish(self, script: Script, produced: int) -> bytes:
        usage = {"output_tokens": produced if script.usage else None}
        return (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
            )
            + _event("message_stop", {"type": "message_stop"})
        )

    def error(self, message: str) -> bytes:
        return _event(
            "error", {"type": "error", "error": {"type": "api_error", "message": message}}
        )

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"t\n\n'


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + _data(obj)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stop = asyncio.Event()
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{scenario}/v1/chat/completions", self._openai)
        app.router.add_post("/{scenario}/v1/messages", self._anthropic)
        return app

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, OpenAIEncoder())

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, AnthropicEncoder())

    async def _handle(self, request: web.Request, encoder: Any) -> web.StreamResponse:
        received = time.perf_counter()
        script = SCRIPTS[request.match_info["scenario"]]
        body = await request.json()
        # Ground truth: when this handler really wrote its first and last token.
        writes: list[float] = []
        self.requests.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "received": received,
                "writes": writes,
            }
        )
        # Misbehaving servers echo keys; the probe must scrub them from what it reports.
        echo = request.headers.get("Authorization") or request.headers.get("x-api-key", "")
        if script.status == 307:
            raise web.HTTPTemporaryRedirect(location="/elsewhere")
        if script.status:
            headers = {"Retry-After": "7"} if script.status == 429 else {}
            return web.json_response(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {echo}",
                        "type": "invalid_request_error",
                    }
                },
                status=script.status,
                headers=headers,
            )
        if script.json_body:
            return web.json_response({"choices": [{"message": {"content": "hello"}}]})
        if script.hang:
            await self.stop.wait()
            return web.Response(status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(encoder.preamble())
        first = received + script.ttft
        steps = [(True, "think ")] * script.reasoning + [(False, script.answer)] * (
            0 if script.empty else script.tokens
        )
        for index, (reasoning, text) in enumerate(steps):
            if script.fault and index == script.fault_after:
                return await self._fault(response, encoder, script, echo)
            await _sleep_until(first + index / script.tps)
            writes.append(time.perf_counter())
            await response.write(encoder.token(text, reasoning))
        await _sleep_until(first)
        await response.write(encoder.finish(script, len(steps)))
        await response.write_eof()
        return response

    async def _fault(
        self, response: web.StreamResponse, encoder: Any, script: Script, echo: str
    ) -> web.StreamResponse:
        if script.fault == "stall":
            await self.stop.wait()
        elif script.fault == "malformed":
            await response.write(encoder.malformed())
        elif script.fault == "error":
            await response.write(encoder.error(f"internal failure, key {echo}"))
        return response  # "cut": aiohttp ends the body cleanly, without a terminator


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    runner = web.AppRunner(scripted.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    scripted.base = f"http://127.0.0.1:{port}"
    yield scripted
    scripted.stop.set()
    await runner.cleanup()


def make_config(base: str, key: str = KEY) -> Config:
    providers: dict[str, Provider] = {}
    for scenario in SCRIPTS:
        providers[f"o-{scenario}"] = Provider(
            f"o-{scenario}", f"{base}/{scenario}/v1", Secret(key), ("m",), "openai"
        )
        providers[f"a-{scenario}"] = Provider(
            f"a-{scenario}", f"{base}/{scenario}", Secret(key), ("m",), "anthropic"
        )
    return Config(path="<test>", providers=providers, performance=Performance(), router={})


MODULE = Module(
    "test", ("Say something.", "Say more.", "Say less."), max_tokens=64, timeout_seconds=5.0
)


async def probe(
    server: ScriptedServer, name: str, module: Module = MODULE, **kwargs: Any
) -> ProbeResult:
    return await run_probe(make_config(server.base), Target(name, "m"), module, **kwargs)


@pytest_asyncio.fixture
async def lag() -> AsyncIterator[LoopLag]:
    """How late the test's event loop (probe and server alike) ran, while the test ran."""
    async with LoopLag() as watching:
        yield watching


class Truth(NamedTuple):
    """When the server really wrote a request's tokens, from when it received it."""

    ttft: float  # first token written - request received
    span: float  # last token written - first token written


def assert_timing(result: ProbeResult, truth: Truth | None, lag: LoopLag) -> None:
    """The probe's TTFT and decode span are the server's, to within the loop's delays.

    TTFT: the probe's t0 (request written) comes before the server's `received`, and its
    first-token time after the server's write, each by at most `lag.bound` (both ends
    share this event loop; tests/loop_lag.py says why the bound holds); without the probe's
    trace hook t0 also includes connecting, one more bound. Decode span (duration - TTFT):
    both of its ends are read late by 0 to `lag.bound`, so it is off by at most that.
    """
    assert result.success, result.log
    if truth is None:
        return
    (request,) = result.requests
    assert request.ttft_seconds is not None and request.duration_seconds is not None
    untraced = any("t0 includes connection setup" in line for line in result.log)
    ttft_room = (3 if untraced else 2) * lag.bound
    assert 0 <= request.ttft_seconds - truth.ttft <= ttft_room, (request, truth, lag)
    span = request.duration_seconds - request.ttft_seconds
    assert abs(span - truth.span) <= lag.bound, (request, truth, lag)


async def timed(
    run: Callable[[], Awaitable[ProbeResult]],
    lag: LoopLag,
    truth_of: Callable[[], Any] = lambda: None,
) -> ProbeResult:
    """Run a timing probe once and check it against what the server really wrote."""
    result = await run()
    truth = truth_of()
    if inspect.isawaitable(truth):
        truth = await truth
    assert_timing(result, truth, lag)
    return result


def truth(server: ScriptedServer, index: int = -1) -> Truth:
    """What the scripted server actually wrote for request `index`."""
    request = server.requests[index]
    writes = request["writes"]
    return Truth(writes[0] - request["received"], writes[-1] - writes[0])


@pytest.mark.parametrize("protocol", ["o", "a"])
async def test_ttft_and_decode_rate_with_server_usage(server, protocol, lag):
    result = await timed(lambda: probe(server, f"{protocol}-ok"), lag, lambda: truth(server))
    request = result.requests[0]
    assert request.output_tokens == TOKENS
    assert request.token_count_source == "usage"
    assert request.input_tokens == PROMPT_TOKENS
    assert request.first_content_seconds == pytest.approx(request.ttft_seconds)
    served = server.requests[-1]
    last_write = served["writes"][-1] - served["received"]
    # As TTFT in assert_timing: t0 before `received`, the last read after the last write.
    assert 0 <= request.duration_seconds - last_write <= 2 * lag.bound, (request, lag)
    assert request.http_status == 200
    assert result.failure_reason is None
    assert any("POST" in line for line in result.log)


@pytest.mark.parametrize("protocol", ["o", "a"])
async def test_estimate_when_server_gives_no_usage(server, protocol, lag):
    result = await timed(lambda: probe(server, f"{protocol}-nousage"), lag, lambda: truth(server))
    assert result.token_count_source == "estimate"
    assert result.output_tokens == TOKENS  # one token per token-bearing event


@pytest.mark.parametrize("protocol", ["o", "a"])
async def test_reasoning_ends_ttft_but_not_first_content(server, protocol, lag):
    result = await timed(lambda: probe(server, f"{protocol}-reasoning"), lag, lambda: truth(server))
    request = result.requests[0]
    writes = server.requests[-1]["writes"]
    first_content = writes[10] - server.requests[-1]["received"]
    # As TTFT in assert_timing, for the first answer token (write 10, after 10 reasoning).
    assert 0 <= request.first_content_seconds - first_content <= 2 * lag.bound, (request, lag)
    assert request.reasoning_tokens == 10
    assert request.output_tokens == 21


async def test_requests_on_the_wire(server):
    await probe(server, "o-fast")
    await probe(server, "a-fast")
    openai, anthropic = server.requests
    assert openai["path"] == "/fast/v1/chat/completions"
    assert openai["headers"]["Authorization"] == f"Bearer {KEY}"
    assert openai["body"]["stream"] is True
    assert openai["body"]["stream_options"] == {"include_usage": True}
    assert openai["body"]["max_tokens"] == MODULE.max_tokens
    assert anthropic["path"] == "/fast/v1/messages"
    assert anthropic["headers"]["x-api-key"] == KEY
    assert anthropic["headers"]["anthropic-version"] == "2023-06-01"
    assert anthropic["body"]["stream"] is True
    assert anthropic["body"]["max_tokens"] == MODULE.max_tokens


async def test_concurrent_rounds_and_aggregate_rate(server, lag):
    module = replace(MODULE, runs=2, concurrency=3)
    result = await timed(lambda: probe(server, "o-ok", module, prompt_index=0), lag)
    assert len(result.requests) == 6
    # What the server was busy with, round by round: first request received to last token
    # written. The probe's round walls hold those and, per round, its own set-up and
    # wind-down (connect, write, the server's handler starting; the last read, the streams
    # ending): a handful of loop passes, each pair within lag.bound; 3 bounds allow six.
    rounds = [server.requests[:3], server.requests[3:]]
    served = [
        max(r["writes"][-1] for r in group) - min(r["received"] for r in group) for group in rounds
    ]
    produced = result.output_tokens
    assert produced == 6 * TOKENS
    aggregate = result.aggregate_tokens_per_second
    assert aggregate is not None
    assert produced / (sum(served) + 2 * 3 * lag.bound) <= aggregate <= produced / sum(served)
    # The whole probe: the server's busy time from first request to last token, plus the
    # two rounds' margins and the probe's own session closing (a pass or two more).
    whole = max(r["writes"][-1] for r in server.requests) - server.requests[0]["received"]
    assert whole <= result.elapsed_seconds <= whole + 2 * 3 * lag.bound + lag.bound, lag
    prompts = [r["body"]["messages"][0]["content"] for r in server.requests]
    # Parallel streams rotate too, each after its own nonce.
    assert [p.split("\n", 1)[1] for p in prompts[:3]] == list(MODULE.prompts)


async def test_prompts_rotate_between_probes(server):
    for _ in range(3):
        await probe(server, "o-fast")
    await probe(server, "o-fast", prompt_index=4)
    prompts = [r["body"]["messages"][0]["content"].split("\n", 1)[1] for r in server.requests]
    assert set(prompts[:3]) == set(MODULE.prompts)
    assert prompts[3] == MODULE.prompts[4 % 3]


async def test_input_tokens_pad_the_prompt(server):
    module = replace(MODULE, input_tokens=2000)
    await probe(server, "o-fast", module, prompt_index=0)
    await probe(server, "o-fast", module, prompt_index=0)
    first, second = (r["body"]["messages"][0]["content"] for r in server.requests)
    assert abs(len(first) - 8000) < 100
    assert first.endswith(MODULE.prompts[0])
    assert first != second  # a fresh nonce defeats prefix caching


FAILURES = [
    ("http429", "http_429"),
    ("http503", "http_5xx"),
    ("http401", "auth"),
    ("http404", "http_4xx"),
    ("redirect", "http_4xx"),
    ("hang", "timeout"),
    ("stall", "timeout"),
    ("malformed", "bad_stream"),
    ("cut", "bad_stream"),
    ("error", "error_event"),
    ("empty", "empty_response"),
    ("json", "empty_response"),
]


@pytest.mark.parametrize("protocol", ["o", "a"])
@pytest.mark.parametrize(("scenario", "reason"), FAILURES)
async def test_failure_reasons(server, protocol, scenario, reason):
    result = await probe(server, f"{protocol}-{scenario}", timeout=0.3)
    assert not result.success
    assert result.failure_reason == reason, result.log
    assert reason in FAILURE_REASONS
    assert result.failure_detail
    assert result.ttft_seconds is None  # failed requests feed no latency figure
    assert_no_secret(result)


async def test_retry_after_is_recorded(server):
    result = await probe(server, "o-http429")
    assert result.requests[0].retry_after_seconds == 7
    assert result.requests[0].http_status == 429


async def test_timeout_details_tell_hang_from_stall(server, lag):
    hang = await probe(server, "o-hang", timeout=0.2)
    stall = await probe(server, "o-stall", timeout=1.3)
    assert "no response headers" in hang.failure_detail
    assert "stalled" in stall.failure_detail
    # Never before the deadline; after it, the timer firing late, the cancelled request
    # unwinding and the probe's own session closing: a few passes, 3 bounds allow six.
    assert 0.2 <= hang.elapsed_seconds <= 0.2 + 3 * lag.bound, lag


async def test_module_timeout_is_the_default(server, lag):
    result = await probe(server, "o-hang", replace(MODULE, timeout_seconds=0.2))
    assert result.failure_reason == "timeout"
    assert 0.2 <= result.elapsed_seconds <= 0.2 + 3 * lag.bound, lag  # as in the test above


@pytest.mark.parametrize("protocol", ["o", "a"])
async def test_validation(server, protocol):
    module = replace(MODULE, expected_response=r"(?i)\bword\b")
    assert (await probe(server, f"{protocol}-fast", module)).success
    result = await probe(server, f"{protocol}-answer", module)
    assert result.failure_reason == "validation"
    assert "nope" in result.failure_detail


async def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = make_config(f"http://127.0.0.1:{port}")
    result = await run_probe(config, Target("o-ok", "m"), MODULE)
    assert result.failure_reason == "connect"
    assert_no_secret(result)


async def test_missing_key_env_var(monkeypatch):
    monkeypatch.delenv("PERFGEN_TEST_UNSET_KEY", raising=False)
    config = make_config("http://127.0.0.1:9", key="$PERFGEN_TEST_UNSET_KEY")
    result = await run_probe(config, Target("o-ok", "m"), MODULE)
    assert result.failure_reason == "no_api_key"
    assert "PERFGEN_TEST_UNSET_KEY" in result.failure_detail


async def test_no_time_left_sends_nothing(server):
    result = await probe(server, "o-ok", timeout=0)
    assert result.failure_reason == "timeout"
    assert "before the request was sent" in result.failure_detail
    assert server.requests == []


async def test_keep_alive_comments_are_counted_in_the_log(server):
    result = await probe(server, "o-fast")
    assert "1 comments" in result.log[-2]


async def test_json_instead_of_a_stream_is_named(server):
    result = await probe(server, "o-json")
    assert "not text/event-stream" in result.failure_detail


async def test_key_with_a_line_break_is_refused_without_quoting_it(monkeypatch):
    monkeypatch.setenv("PERFGEN_TEST_KEY", KEY + "\n")
    config = make_config("http://127.0.0.1:9", key="$PERFGEN_TEST_KEY")
    result = await run_probe(config, Target("o-ok", "m"), MODULE)
    assert result.failure_reason == "no_api_key"
    assert "$PERFGEN_TEST_KEY" in result.failure_detail
    assert_no_secret(result)


async def test_key_from_env_never_leaks(server, monkeypatch):
    monkeypatch.setenv("PERFGEN_TEST_KEY", KEY)
    config = make_config(server.base, key="$PERFGEN_TEST_KEY")
    for name in ("o-http401", "a-error", "o-malformed"):
        result = await run_probe(config, Target(name, "m"), MODULE)
        assert not result.success
        assert_no_secret(result)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_unknown_target_is_a_caller_bug(server):
    with pytest.raises(ValueError) as caught:
        await probe(server, "nope")
    assert KEY not in str(caught.value)


async def test_external_session_with_and_without_trace_hook(server, lag):
    async with create_session() as session:
        traced = await timed(
            lambda: probe(server, "o-ok", session=session), lag, lambda: truth(server)
        )
        assert not session.closed  # the caller's session is the caller's to close
    async with aiohttp.ClientSession() as session:
        plain = await timed(
            lambda: probe(server, "o-ok", session=session), lag, lambda: truth(server)
        )
    assert any("t0 includes connection setup" in line for line in plain.log)
    assert not any("t0 includes connection setup" in line for line in traced.log)


# Scenario, probe timeout, tokens the scripted server sent before the fault, and whether
# the server counted them (only the complete "answer" stream carries usage).
PARTIAL_TOKENS = [
    ("stall", 0.3, 3, "estimate"),
    ("cut", 5.0, 3, "estimate"),
    ("malformed", 5.0, 2, "estimate"),
    ("error", 5.0, 2, "estimate"),
    ("answer", 5.0, 5, "usage"),
]


@pytest.mark.parametrize("protocol", ["o", "a"])
@pytest.mark.parametrize(("scenario", "timeout", "tokens", "source"), PARTIAL_TOKENS)
async def test_failed_requests_keep_the_tokens_they_received(
    server, protocol, scenario, timeout, tokens, source
):
    module = replace(MODULE, expected_response=r"(?i)\bword\b")
    result = await probe(server, f"{protocol}-{scenario}", module, timeout=timeout)
    assert not result.success, result.log
    request = result.requests[0]
    assert request.output_tokens == tokens, result.log
    assert request.token_count_source == source
    # Paid for, so the budget and the token counter see them ...
    assert spent_tokens(result) == tokens
    text = render_single_probe(result)
    labels = f'model="m",module="test",provider="{protocol}-{scenario}"'
    assert f"llm_output_tokens_total{{{labels}}} {float(tokens)}" in text
    # ... but a failed request is still no latency sample.
    assert request.ttft_seconds is None and request.tokens_per_second is None
    assert f"llm_ttft_seconds_count{{{labels}}} 0.0" in text
    assert "llm_probe_output_tokens{" not in text  # the gauge is of successful requests
    assert f"{tokens} output tokens received" in result.log[-2]


@pytest.mark.parametrize(
    "bad",
    [
        "\u043a\u043b\u044e\u0447",  # Cyrillic look-alikes: not latin-1 at all
        "\u00a0",  # a no-break space pasted along: latin-1, but aiohttp would send UTF-8
        "\udcff",  # an undecodable byte of the environment (surrogate escape)
        "\x7f",
    ],
)
async def test_unsendable_key_is_no_api_key_naming_the_variable(server, monkeypatch, bad):
    key = KEY + bad + "tail"
    monkeypatch.setenv("PERFGEN_TEST_KEY", key)
    config = make_config(server.base, key="$PERFGEN_TEST_KEY")
    result = await run_probe(config, Target("o-fast", "m"), MODULE)
    assert result.failure_reason == "no_api_key"
    assert "$PERFGEN_TEST_KEY" in result.failure_detail
    assert server.requests == []  # nothing was sent
    assert_no_secret(result)
    assert key not in json.dumps(result.to_json(), ensure_ascii=False)
    assert "\n".join(result.log).count("no_api_key") == 1


async def test_unsendable_literal_key_names_where_it_is_configured(server):
    config = parse_config(f"""
[[providers]]
name = "o-fast"
api_base_url = "{server.base}/fast/v1"
api_key = "{KEY}"
models = ["m"]

[performance.providers.o-fast]
probe_api_key = "{KEY}\u00e9"
""")
    result = await run_probe(config, Target("o-fast", "m"), MODULE)
    assert result.failure_reason == "no_api_key"
    assert "[performance.providers.o-fast] probe_api_key" in result.failure_detail
    assert server.requests == []
    assert_no_secret(result)


async def test_probe_api_key_override_is_the_key_sent(server, monkeypatch):
    probe_key = "sk-probe-only-4242-abcdef"
    monkeypatch.setenv("PERFGEN_TEST_PROD_KEY", KEY)
    monkeypatch.setenv("PERFGEN_TEST_PROBE_KEY", probe_key)
    config = parse_config(f"""
[[providers]]
name = "o-fast"
api_base_url = "{server.base}/fast/v1"
api_key = "$PERFGEN_TEST_PROD_KEY"
models = ["m"]

[[providers]]
name = "a-http401"
api_base_url = "{server.base}/http401"
api_key = "$PERFGEN_TEST_PROD_KEY"
models = ["m"]

[performance.providers.o-fast]
probe_api_key = "$PERFGEN_TEST_PROBE_KEY"

[performance.providers.a-http401]
protocol = "anthropic"
probe_api_key = "$PERFGEN_TEST_PROBE_KEY"
""")
    ok = await run_probe(config, Target("o-fast", "m"), MODULE)
    assert ok.success, ok.log
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {probe_key}"
    # The scripted 401 echoes the key it got; the probe must scrub it.
    refused = await run_probe(config, Target("a-http401", "m"), MODULE)
    assert refused.failure_reason == "auth"
    assert server.requests[-1]["headers"]["x-api-key"] == probe_key
    assert "<redacted>" in refused.failure_detail
    for result in (ok, refused):
        text = json.dumps(result.to_json()) + "\n".join(result.log) + repr(result)
        assert probe_key not in text and probe_key[:-4] not in text
        assert_no_secret(result)


async def test_secrets_in_the_base_url_never_reach_the_result(server):
    def provider(name: str, protocol: str, path: str) -> Provider:
        return Provider(
            name,
            f"http://user:pw-IN-URL-1234@{server.base[7:]}/{path}?api_key=QUERY-SECRET-5678#frag",
            Secret(KEY),
            ("m",),
            protocol,
        )

    config = Config(
        path="<test>",
        performance=Performance(),
        router={},
        providers={
            "o": provider("o", "openai", "fast/v1"),
            "a": provider("a", "anthropic", "fast"),
        },
    )
    # aiohttp cannot send URL credentials next to an Authorization header: a config
    # error (connect), not a crash.
    refused = await run_probe(config, Target("o", "m"), MODULE)
    assert refused.failure_reason == "connect", refused.log
    assert "cannot send the request" in refused.failure_detail
    # x-api-key leaves Authorization to the URL's credentials: the request goes out.
    sent = await run_probe(config, Target("a", "m"), MODULE)
    assert sent.success, sent.log
    assert server.requests[-1]["path"] == "/fast/v1/messages"
    assert f"POST {server.base}/fast/v1/messages?... " in "\n".join(sent.log)
    # An invalid port: aiohttp quotes the whole URL in its error.
    config = Config(
        path="<test>",
        performance=Performance(),
        router={},
        providers={
            "o": Provider(
                "o",
                "http://127.0.0.1:99999/v1?api_key=QUERY-SECRET-5678",
                Secret(KEY),
                ("m",),
                "openai",
            )
        },
    )
    invalid = await run_probe(config, Target("o", "m"), MODULE)
    assert invalid.failure_reason == "connect"
    assert "http://127.0.0.1:99999/v1/chat/completions?..." in invalid.failure_detail
    for result in (refused, sent, invalid):
        text = json.dumps(result.to_json()) + "\n".join(result.log)
        for secret in ("pw-IN-URL-1234", "QUERY-SECRET-5678", "frag"):
            assert secret not in text


def assert_no_secret(result: ProbeResult) -> None:
    text = json.dumps(result.to_json()) + "\n".join(result.log) + repr(result)
    assert KEY not in text
    assert KEY[:-4] not in text


# ----------------------------------------------------------------- the real simulator


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[str]:
    server_module = pytest.importorskip("perfgen.simulator.server")
    config_module = pytest.importorskip("perfgen.simulator.config")

    def model(name: str, **profile: Any) -> dict[str, Any]:
        return {
            "name": name,
            "ttft_ms": 1000 * TTFT,
            "tokens_per_second": 50,
            "output_tokens": TOKENS,
            **profile,
        }

    faults = ("http_429", "http_500", "hang", "stall", "malformed", "error_event", "empty")
    models = [
        model("ok"),
        model("nousage", include_usage=False),
        model("think", reasoning_tokens=10, output_tokens=11),
        *(model(f"f-{f}", error_rate=1.0, faults={f: 1.0}) for f in faults),
    ]
    data = {
        "providers": [
            {"name": "simo", "protocol": "openai", "api_key": KEY, "models": models},
            {"name": "sima", "protocol": "anthropic", "api_key": KEY, "models": models},
        ]
    }
    app = server_module.create_app(config_module.parse_simulator_config(data, "<test>"), 1)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def simulator_config(base: str, key: str = KEY) -> Config:
    names = [
        "ok",
        "nousage",
        "think",
        *(
            f"f-{f}"
            for f in ("http_429", "http_500", "hang", "stall", "malformed", "error_event", "empty")
        ),
    ]
    return Config(
        path="<test>",
        performance=Performance(),
        router={},
        providers={
            "simo": Provider("simo", f"{base}/simo/v1", Secret(key), tuple(names), "openai"),
            "sima": Provider("sima", f"{base}/sima", Secret(key), tuple(names), "anthropic"),
        },
    )


async def simulator_record(base: str, provider: str, model: str) -> dict[str, Any]:
    """The simulator's own record of its last request to a model (GET /-/requests)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{base}/-/requests", params={"limit": "1", "provider": provider, "model": model}
        ) as r:
            return (await r.json())["requests"][0]


async def simulator_truth(base: str, provider: str, model: str) -> Truth:
    """When the simulator wrote its last request's first and last token (its records).

    It stamps a write just after making it, the scripted server just before; the probe's
    reads still come after either, in a later callback of the same loop.
    """
    record = await simulator_record(base, provider, model)
    first, last = record["first_token_sent"], record["last_token_sent"]
    return Truth(first - record["received"], last - first)


@pytest.mark.parametrize("provider", ["simo", "sima"])
async def test_simulator_timing_and_token_source(simulator, provider, lag):
    config = simulator_config(simulator)
    ok = await timed(
        lambda: run_probe(config, Target(provider, "ok"), MODULE),
        lag,
        lambda: simulator_truth(simulator, provider, "ok"),
    )
    assert ok.token_count_source == "usage" and ok.output_tokens == TOKENS
    estimated = await timed(
        lambda: run_probe(config, Target(provider, "nousage"), MODULE),
        lag,
        lambda: simulator_truth(simulator, provider, "nousage"),
    )
    assert estimated.token_count_source == "estimate" and estimated.output_tokens == TOKENS
    think = await timed(
        lambda: run_probe(config, Target(provider, "think"), MODULE),
        lag,
        lambda: simulator_truth(simulator, provider, "think"),
    )
    # The first answer token follows 10 reasoning tokens. The simulator records only its
    # first and last write, so this one is known by its deadline (received + the drawn
    # ttft + 10 / the drawn rate): written 0 to lag.bound after it, read 0 to lag.bound
    # after that, while the probe's first-token read is 0 to lag.bound after the recorded
    # first write.
    record = await simulator_record(simulator, provider, "think")
    content_due = record["received"] + record["ttft_seconds"] + 10 / record["tokens_per_second"]
    expected = content_due - record["first_token_sent"]
    gap = think.first_content_seconds - think.ttft_seconds
    assert -lag.bound <= gap - expected <= 2 * lag.bound, (gap, expected, lag)


@pytest.mark.parametrize("provider", ["simo", "sima"])
@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("f-http_429", "http_429"),
        ("f-http_500", "http_5xx"),
        ("f-hang", "timeout"),
        ("f-stall", "timeout"),
        ("f-malformed", "bad_stream"),
        ("f-error_event", "error_event"),
        ("f-empty", "empty_response"),
    ],
)
async def test_simulator_failures(simulator, provider, model, reason):
    if provider == "sima" and reason == "error_event":
        reason = "overloaded"  # the simulator's Anthropic in-stream error is overloaded_error
    result = await run_probe(
        simulator_config(simulator), Target(provider, model), MODULE, timeout=0.5
    )
    assert result.failure_reason == reason, result.log
    assert_no_secret(result)


async def test_simulator_wrong_key(simulator):
    config = simulator_config(simulator, key="sk-wrong-key-123456")
    result = await run_probe(config, Target("simo", "ok"), MODULE)
    assert result.failure_reason == "auth"
    assert result.requests[0].http_status == 401
    assert "sk-wrong-key-123456" not in json.dumps(result.to_json()) + "".join(result.log)
