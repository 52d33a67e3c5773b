"""HTTP behaviour against raw aiohttp clients: faults, timing, ground truth, admin API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from loop_lag import LoopLag
from simulator_fixtures import (
    ANTHROPIC_HEADERS,
    ANTHROPIC_KEY,
    OPENAI_HEADERS,
    OPENAI_KEY,
    TimedStream,
    chat_body,
    make_config,
    records,
    timed_sse_lines,
    timed_stream,
)

from perfgen.simulator.config import SimulatorConfig
from perfgen.simulator.server import create_app

pytestmark = pytest.mark.asyncio

FAST: dict[str, Any] = {"ttft_ms": 10, "tokens_per_second": 1000, "output_tokens": 6}
Session = tuple[aiohttp.ClientSession, str]
EARLY = 1e-6  # seconds: float rounding of deadline sums, far below any real write's time
Start = Callable[..., Awaitable[Session]]


@pytest_asyncio.fixture
async def start_sim(aiohttp_server) -> AsyncIterator[Start]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(config: SimulatorConfig, seed: int | None = None) -> Session:
        server = await aiohttp_server(create_app(config, seed), host="127.0.0.1")
        session = aiohttp.ClientSession()
        sessions.append(session)
        return session, str(server.make_url("")).rstrip("/")

    yield start
    for session in sessions:
        await session.close()


def faulty(kind: str, **extra: Any) -> dict[str, Any]:
    return FAST | {"error_rate": 1.0, "faults": {kind: 1}} | extra


def content_lines(lines: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    return [
        (t, line) for t, line in lines if b'"content":"' in line and b'"content":""' not in line
    ]


def assert_kept_schedule(record: dict[str, Any], lag: LoopLag) -> None:
    """The simulator wrote the record's first and last token on its own deadlines.

    Never early: it sleeps until each absolute deadline (received + ttft + i / tps, from
    the record's own drawn ttft and rate; one token per chunk) and stamps the write after
    making it (EARLY only absorbs float rounding of the deadline sums). Late by no more
    than the loop that runs it was held up (`lag.bound`, measured during the test): any
    more would be the simulator's own scheduling error, such as drift from relative
    sleeps, which is what is tested.
    """
    first_due = record["received"] + record["ttft_seconds"]
    last_due = first_due + (record["tokens_sent"] - 1) / record["tokens_per_second"]
    assert -EARLY <= record["first_token_sent"] - first_due <= lag.bound, (record, lag)
    assert -EARLY <= record["last_token_sent"] - last_due <= lag.bound, (record, lag)


def assert_seen_as_sent(
    stream: TimedStream, record: dict[str, Any], first: float, last: float, lag: LoopLag
) -> None:
    """The client read the first and last token after the simulator wrote them, and no
    later than the loop allowed; its request was written before the simulator got it."""
    assert 0 <= record["received"] - stream.t0 <= lag.bound, (record, lag)
    assert 0 <= first - record["first_token_sent"] <= lag.bound, (record, lag)
    assert 0 <= last - record["last_token_sent"] <= lag.bound, (record, lag)


async def streams_with_records(
    session: aiohttp.ClientSession, base: str, streams: list[TimedStream]
) -> list[tuple[TimedStream, dict[str, Any]]]:
    truth = {record["id"]: record for record in await records(session, base)}
    assert len(truth) == len(streams)
    return [(stream, truth[stream.request_id]) for stream in streams if stream.request_id]


async def test_openai_stream_timing_matches_the_script(start_sim: Start) -> None:
    profile = {"ttft_ms": 300, "tokens_per_second": 50, "output_tokens": 26}
    session, base = await start_sim(make_config({"timed": profile}))
    url = f"{base}/oai/v1/chat/completions"
    async with LoopLag() as lag:  # three streams at once, on one loop with the simulator
        streams = await asyncio.gather(
            *(timed_stream(session, url, chat_body("timed"), OPENAI_HEADERS) for _ in range(3))
        )
    paired = await streams_with_records(session, base, list(streams))
    assert len(paired) == 3
    for stream, record in paired:
        assert stream.status == 200
        tokens = content_lines(stream.lines)
        assert len(tokens) == 26 == record["tokens_sent"]
        assert stream.lines[-2][1] == b"data: [DONE]\n"
        # The script as drawn for this request (no jitter configured): 300 ms, 50 tokens/s.
        assert (record["ttft_seconds"], record["tokens_per_second"]) == (0.3, 50)
        assert_kept_schedule(record, lag)
        assert_seen_as_sent(stream, record, tokens[0][0], tokens[-1][0], lag)


async def test_anthropic_raw_event_sequence_and_timing(start_sim: Start) -> None:
    profile = {"ttft_ms": 100, "tokens_per_second": 100, "output_tokens": 11}
    session, base = await start_sim(make_config(anthropic_models={"c": profile}))
    url = f"{base}/anth/v1/messages"
    body = chat_body("c", max_tokens=50)
    async with LoopLag() as lag:
        streams = await asyncio.gather(
            *(timed_stream(session, url, body, ANTHROPIC_HEADERS) for _ in range(3))
        )
    paired = await streams_with_records(session, base, list(streams))
    assert len(paired) == 3
    for stream, record in paired:
        assert stream.status == 200
        lines = stream.lines
        events = [line[7:].strip().decode() for _, line in lines if line.startswith(b"event: ")]
        assert events == (
            ["message_start", "content_block_start", "ping"]
            + ["content_block_delta"] * 11
            + ["content_block_stop", "message_delta", "message_stop"]
        )
        deltas = [t for t, line in lines if b'"text_delta"' in line]
        message_delta = next(line for _, line in lines if b'"message_delta"' in line)
        assert json.loads(message_delta[6:])["usage"] == {"output_tokens": 11}
        assert (record["ttft_seconds"], record["tokens_per_second"]) == (0.1, 100)
        assert_kept_schedule(record, lag)
        assert_seen_as_sent(stream, record, deltas[0], deltas[-1], lag)


async def test_multi_token_chunks(start_sim: Start) -> None:
    session, base = await start_sim(
        make_config({"m": FAST | {"output_tokens": 10, "tokens_per_chunk": 4}})
    )
    body = chat_body("m", stream_options={"include_usage": True})
    _, _, lines = await timed_sse_lines(
        session, f"{base}/oai/v1/chat/completions", body, OPENAI_HEADERS
    )
    pieces = [
        json.loads(line[6:])["choices"][0]["delta"]["content"] for _, line in content_lines(lines)
    ]
    assert [len(piece.split()) for piece in pieces] == [4, 4, 2]
    [record] = await records(session, base)
    assert record["tokens_sent"] == 10


@pytest.mark.parametrize(
    ("kind", "status"), [("http_429", 429), ("http_500", 500), ("http_503", 503)]
)
async def test_http_faults(start_sim: Start, kind: str, status: int) -> None:
    config = make_config({"m": faulty(kind, retry_after_seconds=7)}, {"m": faulty(kind)})
    session, base = await start_sim(config)
    async with session.post(
        f"{base}/oai/v1/chat/completions", json=chat_body("m"), headers=OPENAI_HEADERS
    ) as response:
        assert response.status == status
        assert (await response.json())["error"]["message"]
        assert response.headers.get("Retry-After") == ("7" if status == 429 else None)
        request_id = response.headers["x-sim-request-id"]
    async with session.post(
        f"{base}/anth/v1/messages", json=chat_body("m"), headers=ANTHROPIC_HEADERS
    ) as response:
        assert response.status == status
        assert (await response.json())["type"] == "error"
    first = (await records(session, base))[0]
    assert (first["id"], first["fault"], first["status"]) == (request_id, kind, status)


async def test_hang_sends_nothing_until_the_client_leaves(start_sim: Start) -> None:
    session, base = await start_sim(make_config({"m": faulty("hang")}))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            f"{base}/oai/v1/chat/completions",
            json=chat_body("m"),
            headers=OPENAI_HEADERS,
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pytest.fail("a hung request must not even send headers")
    assert time.monotonic() - started >= 0.3
    for _ in range(200):  # a condition polled for up to 10 s, not a wait that hopes
        [record] = await records(session, base)
        if record["client_disconnected"]:
            break
        await asyncio.sleep(0.05)
    assert record["fault"] == "hang" and record["client_disconnected"]
    assert record["first_token_sent"] is None


async def test_stall_sends_a_few_tokens_then_nothing(start_sim: Start) -> None:
    session, base = await start_sim(make_config({"m": faulty("stall")}))
    received: list[bytes] = []
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            f"{base}/oai/v1/chat/completions",
            json=chat_body("m"),
            headers=OPENAI_HEADERS,
            timeout=aiohttp.ClientTimeout(sock_read=0.3),
        ) as response:
            assert response.status == 200
            async for line in response.content:
                received.append(line)
    assert len(content_lines([(0.0, line) for line in received])) == 3
    assert b"data: [DONE]\n" not in received


async def test_malformed_breaks_both_sdks(start_sim: Start) -> None:
    _, base = await start_sim(make_config({"m": faulty("malformed")}, {"m": faulty("malformed")}))
    oai = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    with pytest.raises(json.JSONDecodeError):
        async for _ in await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    ant = anthropic.AsyncAnthropic(base_url=f"{base}/anth", api_key=ANTHROPIC_KEY, max_retries=0)
    with pytest.raises(json.JSONDecodeError):
        async for _ in await ant.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    await oai.close()
    await ant.close()


async def test_error_event_raises_in_both_sdks(start_sim: Start) -> None:
    _, base = await start_sim(
        make_config({"m": faulty("error_event")}, {"m": faulty("error_event")})
    )
    oai = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    seen = []
    with pytest.raises(openai.APIError, match="server had an error"):
        async for chunk in await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "the ", "quick ", "brown "]
    ant = anthropic.AsyncAnthropic(base_url=f"{base}/anth", api_key=ANTHROPIC_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        async for _ in await ant.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    await oai.close()
    await ant.close()


async def test_empty_stream_is_well_formed_without_tokens(start_sim: Start) -> None:
    session, base = await start_sim(make_config({"m": faulty("empty")}, {"m": faulty("empty")}))
    body = chat_body("m", stream_options={"include_usage": True})
    _, _, lines = await timed_sse_lines(
        session, f"{base}/oai/v1/chat/completions", body, OPENAI_HEADERS
    )
    datas = [line[6:].strip() for _, line in lines if line.startswith(b"data: ")]
    assert datas[-1] == b"[DONE]"
    chunks = [json.loads(data) for data in datas[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, "stop"]
    assert chunks[-1]["usage"]["completion_tokens"] == 0
    assert not content_lines(lines)
    _, _, lines = await timed_sse_lines(
        session, f"{base}/anth/v1/messages", body, ANTHROPIC_HEADERS
    )
    assert not [line for _, line in lines if b"content_block_delta" in line]
    assert lines[-2][1] == b'data: {"type":"message_stop"}\n'


async def test_request_errors(start_sim: Start) -> None:
    session, base = await start_sim(make_config({"m": FAST}, {"m": FAST}))
    url = f"{base}/oai/v1/chat/completions"
    async with session.post(url, data=b"{not json", headers=OPENAI_HEADERS) as response:
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "invalid_request_error"
    async with session.post(url, json={"model": "m"}, headers=OPENAI_HEADERS) as response:
        assert response.status == 400
    async with session.post(url, json=chat_body("m")) as response:
        assert response.status == 401
    async with session.post(
        f"{base}/anth/v1/messages",
        json=chat_body("m"),
        headers={"Authorization": f"Bearer {ANTHROPIC_KEY}"},
    ) as response:
        assert response.status == 200
    async with session.get(f"{base}/anth/v1/models", headers=ANTHROPIC_HEADERS) as response:
        assert [m["id"] for m in (await response.json())["data"]] == ["m"]
    async with session.get(f"{base}/-/healthy") as response:
        assert response.status == 200


async def test_patch_and_reset_change_behaviour(start_sim: Start) -> None:
    session, base = await start_sim(make_config({"m": FAST}))
    url = f"{base}/oai/v1/chat/completions"
    patch_url = f"{base}/-/profiles/oai/m"
    async with session.patch(patch_url, json={"error_rate": 1, "faults": {"http_503": 1}}) as r:
        assert r.status == 200
        assert (await r.json())["error_rate"] == 1
    async with session.post(url, json=chat_body("m"), headers=OPENAI_HEADERS) as response:
        assert response.status == 503
    async with session.get(f"{base}/-/profiles") as response:
        assert (await response.json())["oai"]["m"]["error_rate"] == 1
    async with session.patch(patch_url, json={"speed": 3}) as response:
        assert response.status == 400
        assert "speed" in (await response.json())["error"]
    async with session.patch(patch_url, json={"ttft_ms": -3}) as response:
        assert response.status == 400
    async with session.patch(f"{base}/-/profiles/oai/nope", json={"ttft_ms": 3}) as response:
        assert response.status == 404
    async with session.post(f"{base}/-/reset") as response:
        assert response.status == 200
    async with session.post(url, json=chat_body("m"), headers=OPENAI_HEADERS) as response:
        assert response.status == 200


async def test_phases_follow_the_server_clock(start_sim: Start) -> None:
    phases = [{"after_seconds": 0.4, "set": {"ttft_ms": 150}}]
    session, base = await start_sim(make_config({"m": FAST | {"phases": phases}}))
    url = f"{base}/oai/v1/chat/completions"
    async with LoopLag() as lag:
        await timed_sse_lines(session, url, chat_body("m"), OPENAI_HEADERS)
        await asyncio.sleep(0.45)
        await timed_sse_lines(session, url, chat_body("m"), OPENAI_HEADERS)
    before, after = await records(session, base)
    # Which profile a request got follows the simulator's clock at `received`.
    assert after["received"] - before["received"] >= 0.4
    assert (before["ttft_seconds"], after["ttft_seconds"]) == (0.01, 0.15)
    assert_kept_schedule(after, lag)
    async with session.post(f"{base}/-/reset") as response:
        assert response.status == 200
    async with session.get(f"{base}/-/profiles") as response:
        assert (await response.json())["oai"]["m"]["ttft_ms"] == 10


async def test_seeded_runs_are_deterministic(start_sim: Start) -> None:
    profile = FAST | {
        "ttft_sigma": 0.5,
        "tps_jitter": 0.3,
        "error_rate": 0.5,
        "faults": {"http_500": 1, "empty": 1},
    }

    async def run(seed: int) -> list[tuple[Any, ...]]:
        session, base = await start_sim(make_config({"m": profile}), seed)
        for _ in range(12):
            await timed_sse_lines(
                session, f"{base}/oai/v1/chat/completions", chat_body("m"), OPENAI_HEADERS
            )
        return [
            (r["ttft_seconds"], r["tokens_per_second"], r["fault"])
            for r in await records(session, base)
        ]

    first, again, other = await run(3), await run(3), await run(4)
    assert first == again
    assert first != other
    assert len({fault for *_, fault in first}) > 1


async def test_many_concurrent_streams_keep_their_schedule(start_sim: Start) -> None:
    # 200 streams on one event loop with their client: each token is late only by as much
    # as that loop was held up (by the 200 streams' own work or by a busy machine, which
    # LoopLag sees either way). How late that is on a quiet machine, with the simulator
    # on a core of its own, is a benchmark's question (bench/fidelity.py).
    profile = {"ttft_ms": 200, "tokens_per_second": 40, "output_tokens": 17}
    session, base = await start_sim(make_config({"m": profile}))
    url = f"{base}/oai/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client, LoopLag() as lag:

        async def one() -> int:
            async with client.post(url, json=chat_body("m"), headers=OPENAI_HEADERS) as response:
                return len([line async for line in response.content if b'"content":"' in line])

        counts = await asyncio.gather(*(one() for _ in range(200)))
    rows = await records(session, base, limit=200)
    assert set(counts) == {18}  # 17 tokens plus the role chunk with content ""
    assert len(rows) == 200
    for row in rows:
        assert row["tokens_sent"] == 17
        assert_kept_schedule(row, lag)
