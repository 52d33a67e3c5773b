"""The official SDKs parse the simulator's streams: it is a faithful peer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anthropic
import openai
import pytest
from simulator_fixtures import ANTHROPIC_KEY, OPENAI_KEY, make_config

from perfgen.simulator.config import SimulatorConfig
from perfgen.simulator.server import create_app
from perfgen.simulator.text import WORDS

# pytest-aiohttp runs on pytest-asyncio, which is in strict mode here.
pytestmark = pytest.mark.asyncio

Start = Callable[..., Awaitable[str]]
FAST = {"ttft_ms": 20, "tokens_per_second": 1000}


@pytest.fixture
def start_sim(aiohttp_server) -> Start:
    async def start(config: SimulatorConfig, seed: int | None = None) -> str:
        server = await aiohttp_server(create_app(config, seed), host="127.0.0.1")
        return str(server.make_url("")).rstrip("/")

    return start


def expected_words(count: int) -> str:
    return "".join(WORDS[i % len(WORDS)] + " " for i in range(count))


async def test_openai_stream_reassembles_with_usage(start_sim: Start) -> None:
    base = await start_sim(make_config({"chat": {**FAST, "output_tokens": 12}}))
    client = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    stream = await client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Hi there.\nReply with: pong 42"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    await client.close()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "pong 42 " + expected_words(10)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == len("Hi there.\nReply with: pong 42") // 4
    assert chunks[-1].usage.total_tokens == 12 + chunks[-1].usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


async def test_openai_usage_only_when_asked_and_allowed(start_sim: Start) -> None:
    config = make_config(
        {"chat": FAST | {"output_tokens": 5}, "quiet": FAST | {"include_usage": False}}
    )
    base = await start_sim(config)
    client = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    messages = [{"role": "user", "content": "hello"}]
    not_asked = [
        c
        async for c in await client.chat.completions.create(
            model="chat", messages=messages, stream=True
        )
    ]
    assert all(c.usage is None and c.choices for c in not_asked)
    disallowed = [
        c
        async for c in await client.chat.completions.create(
            model="quiet", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    ]
    assert all(c.usage is None and c.choices for c in disallowed)
    whole = await client.chat.completions.create(model="quiet", messages=messages)
    assert whole.usage is None
    await client.close()


async def test_openai_reasoning_content_comes_first_and_max_tokens_cuts(start_sim: Start) -> None:
    base = await start_sim(
        make_config({"think": FAST | {"reasoning_tokens": 6, "output_tokens": 8}})
    )
    client = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    stream = await client.chat.completions.create(
        model="think",
        messages=[{"role": "user", "content": "why?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    kinds = []
    async for chunk in stream:
        if chunk.choices and getattr(chunk.choices[0].delta, "reasoning_content", None):
            kinds.append("reasoning")
        elif chunk.choices and chunk.choices[0].delta.content:
            kinds.append("content")
        elif chunk.usage is not None:
            usage = chunk.usage
    assert kinds == ["reasoning"] * 6 + ["content"] * 8
    assert usage.completion_tokens == 14
    assert usage.completion_tokens_details.reasoning_tokens == 6

    cut = await client.chat.completions.create(
        model="think", messages=[{"role": "user", "content": "why?"}], max_completion_tokens=9
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == expected_words(3)
    assert cut.usage.completion_tokens == 9
    await client.close()


async def test_anthropic_stream_helper_reassembles_text_and_usage(start_sim: Start) -> None:
    base = await start_sim(make_config(anthropic_models={"claude": FAST | {"output_tokens": 10}}))
    client = anthropic.AsyncAnthropic(base_url=f"{base}/anth", api_key=ANTHROPIC_KEY, max_retries=0)
    async with client.messages.stream(
        model="claude",
        max_tokens=100,
        system="Be terse.",
        messages=[{"role": "user", "content": "Reply with: ok"}],
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()
    assert text == "ok " + expected_words(9)
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 10
    assert message.usage.input_tokens == round(len("Reply with: okBe terse.") / 4)

    whole = await client.messages.create(
        model="claude", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert whole.stop_reason == "max_tokens"
    assert whole.content[0].text == expected_words(4)
    assert whole.usage.output_tokens == 4
    await client.close()


async def test_anthropic_thinking_block_precedes_text(start_sim: Start) -> None:
    config = make_config(
        anthropic_models={"thinker": FAST | {"reasoning_tokens": 4, "output_tokens": 3}}
    )
    base = await start_sim(config)
    client = anthropic.AsyncAnthropic(base_url=f"{base}/anth", api_key=ANTHROPIC_KEY, max_retries=0)
    stream = await client.messages.create(
        model="thinker", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    events = [event async for event in stream]
    await client.close()
    types = [e.type for e in events]
    # The SDK swallows the `ping` event; the raw byte order is checked elsewhere.
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-2:] == ["message_delta", "message_stop"]
    deltas = [(e.index, e.delta.type) for e in events if e.type == "content_block_delta"]
    assert (
        deltas == [(0, "thinking_delta")] * 4 + [(0, "signature_delta")] + [(1, "text_delta")] * 3
    )
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    assert events[-2].usage.output_tokens == 7


async def test_anthropic_without_usage_hides_the_output_count(start_sim: Start) -> None:
    config = make_config(
        anthropic_models={"quiet": FAST | {"output_tokens": 5, "include_usage": False}}
    )
    base = await start_sim(config)
    client = anthropic.AsyncAnthropic(base_url=f"{base}/anth", api_key=ANTHROPIC_KEY, max_retries=0)
    async with client.messages.stream(
        model="quiet", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()
    assert text == expected_words(5)
    assert message.usage.output_tokens is None
    await client.close()


async def test_wrong_key_is_401_in_each_format(start_sim: Start) -> None:
    base = await start_sim(make_config({"chat": FAST}, {"claude": FAST}))
    oai = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as oai_error:
        await oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    assert oai_error.value.code == "invalid_api_key"
    ant = anthropic.AsyncAnthropic(base_url=f"{base}/anth", api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ant_error:
        await ant.messages.create(
            model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert ant_error.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        await anthropic.AsyncAnthropic(
            base_url=f"{base}/anth", api_key=ANTHROPIC_KEY, max_retries=0
        ).messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        await openai.AsyncOpenAI(
            base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0
        ).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    models = await openai.AsyncOpenAI(
        base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0
    ).models.list()
    assert [m.id for m in models.data] == ["chat"]
    await oai.close()
    await ant.close()


async def test_openai_responses_stream_with_the_official_sdk(start_sim: Start) -> None:
    """`responses.stream` accumulates the simulator's Responses events into a final
    response: item ids, indexes and sequence numbers are as the SDK checks them."""
    config = make_config(
        {
            "chat": {**FAST, "output_tokens": 6},
            "think": {**FAST, "output_tokens": 4, "reasoning_tokens": 5},
            "hidden": {
                **FAST,
                "output_tokens": 4,
                "reasoning_tokens": 5,
                "reasoning_shape": "hidden",
            },
        }
    )
    base = await start_sim(config)
    client = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    finals = {}
    kinds = {}
    for model in ("chat", "think", "hidden"):
        async with client.responses.stream(
            model=model, input="Hi.\nReply with: pong 42", max_output_tokens=64
        ) as stream:
            kinds[model] = [event.type async for event in stream]
            finals[model] = await stream.get_final_response()
    await client.close()
    assert finals["chat"].output_text == "pong 42 " + expected_words(4)
    assert finals["chat"].status == "completed"
    assert finals["chat"].usage.output_tokens == 6
    assert kinds["chat"][0] == "response.created" and kinds["chat"][-1] == "response.completed"
    assert kinds["chat"].count("response.output_text.delta") == 6
    # Reasoning models: a reasoning item first, its summary streamed unless hidden.
    assert finals["think"].output[0].type == "reasoning"
    assert finals["think"].usage.output_tokens_details.reasoning_tokens == 5
    assert kinds["think"].count("response.reasoning_summary_text.delta") == 5
    assert finals["hidden"].output[0].type == "reasoning"
    assert "response.reasoning_summary_text.delta" not in kinds["hidden"]
    assert finals["hidden"].usage.output_tokens == 9
    assert finals["hidden"].output_text == "pong 42 " + expected_words(2)


async def test_openai_sdk_sees_a_refused_cap_field_as_bad_request(start_sim: Start) -> None:
    config = make_config({"gpt-5-mini": {**FAST, "max_tokens_field": "max_completion_tokens"}})
    base = await start_sim(config)
    client = openai.AsyncOpenAI(base_url=f"{base}/oai/v1", api_key=OPENAI_KEY, max_retries=0)
    messages = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-5-mini", messages=messages, max_tokens=8)
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "max_tokens"
    ok = await client.chat.completions.create(
        model="gpt-5-mini", messages=messages, max_completion_tokens=8
    )
    await client.close()
    assert ok.choices[0].finish_reason == "length"
