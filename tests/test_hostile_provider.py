"""The probe against the simulator's hostile providers (simulator/hostile.py), on loopback.

Each case is an attack that used to get through: a line without end, a gzip bomb, usage
counts that cannot be true, a key echoed back near the cut of a shortened message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from perfgen.config import (
    BUILTIN_MODULES,
    Config,
    ExporterSettings,
    Performance,
    Provider,
    Secret,
    Target,
)
from perfgen.exporter.probe import create_session, retry_after_seconds, run_probe
from perfgen.simulator.config import parse_simulator_config
from perfgen.simulator.server import create_app

KEY = "sk-hostile-echo-0123456789abcdef"
MODES = ("giant_line", "giant_event", "gzip_bomb", "absurd_usage", "key_echo", "endless", "trickle")
BIG = 64 << 20  # far over every cap, small enough to generate quickly if a cap failed
MODULE = replace(BUILTIN_MODULES["latency"], timeout_seconds=3.0)


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[str]:
    models: list[dict[str, Any]] = [
        {"name": mode, "hostile": mode, "hostile_bytes": BIG} for mode in MODES
    ]
    config = parse_simulator_config(
        {
            "providers": [
                {"name": "ho", "protocol": "openai", "models": models},
                {"name": "ha", "protocol": "anthropic", "models": models},
            ]
        }
    )
    runner = web.AppRunner(create_app(config), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def config_for(base: str, **limits: int) -> Config:
    return Config(
        path="<test>",
        performance=Performance(exporter=ExporterSettings(**limits)),
        router={},
        providers={
            "ho": Provider("ho", f"{base}/ho/v1", Secret(KEY), MODES, "openai"),
            "ha": Provider("ha", f"{base}/ha", Secret(KEY), MODES, "anthropic"),
        },
    )


async def last_record(base: str, provider: str, model: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{base}/-/requests", params={"limit": "1", "provider": provider, "model": model}
        ) as response:
            return (await response.json())["requests"][0]


async def probe(base: str, provider: str, mode: str, **limits: int):  # type: ignore[no-untyped-def]
    config = config_for(base, **limits)
    async with create_session() as session:
        return await run_probe(config, Target(provider, mode), MODULE, session=session)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["ho", "ha"])
async def test_a_line_without_end_fails_at_the_cap(simulator: str, provider: str) -> None:
    result = await probe(simulator, provider, "giant_line")
    request = result.requests[0]
    assert request.failure_reason == "bad_stream"
    assert request.failure_detail.startswith(
        "SSE line over the 1048576-byte cap (max_sse_line_bytes)"
    )
    # The probe hung up at the cap: the rest of the 64 MB was never sent. Slack: the
    # socket buffers on both sides and aiohttp's read-ahead, a few MB on loopback.
    sent = (await last_record(simulator, provider, "giant_line"))["bytes_sent"]
    assert sent < 16 << 20


@pytest.mark.asyncio
async def test_the_line_cap_is_configurable(simulator: str) -> None:
    result = await probe(simulator, "ho", "giant_line", max_sse_line_bytes=4096)
    assert "over the 4096-byte cap" in (result.requests[0].failure_detail or "")


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["ho", "ha"])
async def test_an_event_without_end_fails_at_the_cap(simulator: str, provider: str) -> None:
    result = await probe(simulator, provider, "giant_event", max_sse_event_bytes=1 << 16)
    request = result.requests[0]
    assert request.failure_reason == "bad_stream"
    assert (request.failure_detail or "").startswith(
        "SSE event over the 65536-byte cap (max_sse_event_bytes)"
    )


@pytest.mark.asyncio
async def test_a_gzip_answer_is_not_inflated(simulator: str) -> None:
    result = await probe(simulator, "ho", "gzip_bomb")
    request = result.requests[0]
    assert request.failure_reason == "bad_stream"
    assert (request.failure_detail or "").startswith(
        "answer is Content-Encoding: gzip although the probe asked for identity"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["ho", "ha"])
async def test_absurd_usage_is_ignored_for_the_estimate(simulator: str, provider: str) -> None:
    result = await probe(simulator, provider, "absurd_usage")
    request = result.requests[0]
    assert request.success, request.failure_detail
    assert request.token_count_source == "estimate"
    assert request.output_tokens == 3  # the three token events actually streamed
    assert request.input_tokens is not None and request.input_tokens > 0
    assert any("usage ignored: output_tokens=1000000000000 is implausible" in x for x in result.log)


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["ho", "ha"])
async def test_an_echoed_key_is_removed_before_the_cut(simulator: str, provider: str) -> None:
    result = await probe(simulator, provider, "key_echo")
    request = result.requests[0]
    assert request.failure_reason == "http_4xx"
    detail = request.failure_detail or ""
    # The key sits across character 200 of the message: no part of it may survive.
    assert len(detail) <= 200 and detail.endswith("...")
    for text in (detail, *result.log):
        for start in range(len(KEY) - 6):
            assert KEY[start : start + 6] not in text, text


@pytest.mark.asyncio
@pytest.mark.slow  # each waits out a 3 s probe timeout
@pytest.mark.parametrize("mode", ["endless", "trickle"])
async def test_streams_without_end_stop_at_the_probe_timeout(simulator: str, mode: str) -> None:
    result = await probe(simulator, "ho", mode)
    request = result.requests[0]
    assert request.failure_reason in ("timeout", "bad_stream")
    assert result.elapsed_seconds < MODULE.timeout_seconds + 1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1e400", None), ("nan", None), ("inf", None), ("-5", 0.0), ("7", 7.0)],
)
def test_retry_after_is_a_finite_number_or_nothing(value: str, expected: float | None) -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Retry-After": value}))
    assert retry_after_seconds(headers) == expected


@pytest.mark.asyncio
async def test_an_echoed_url_loses_its_query(simulator: str) -> None:
    config = config_for(simulator)
    secret = "sk-in-the-query-0123456789"
    provider = replace(config.providers["ho"], api_base_url=f"{simulator}/ho/v1?key={secret}")
    config = replace(config, providers={"ho": provider})
    async with create_session() as session:
        result = await run_probe(config, Target("ho", "key_echo"), MODULE, session=session)
    detail = result.requests[0].failure_detail or ""
    assert "/ho/v1/chat/completions?... refused" in detail
    for text in (detail, *result.log):
        assert secret not in text and "sk-in-the" not in text, text


def test_the_simulator_refuses_an_unknown_hostile_mode() -> None:
    from perfgen.simulator.config import ConfigError

    with pytest.raises(ConfigError, match=r"sim.toml: providers\[0\]\.models\[0\]\.hostile: "):
        parse_simulator_config(
            {"providers": [{"name": "p", "models": [{"name": "m", "hostile": "nice"}]}]},
            "sim.toml",
        )
