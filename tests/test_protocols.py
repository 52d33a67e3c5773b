"""Wire formats: requests, endpoint URLs, and the facts recorded real-format streams yield."""

from __future__ import annotations

import json

import pytest

from perfgen.config import BUILTIN_MODULES, Provider, Secret
from perfgen.exporter.protocols import CONTENT, END, TOKEN, StreamFailure, get_protocol
from perfgen.exporter.protocols.base import StreamFacts, loggable_url
from perfgen.exporter.sse import Event, SSEDecoder


def _openai_chunk(delta: dict, finish: str | None = None, model: str = "gpt-4o-mini") -> str:
    chunk = {
        "id": "chatcmpl-AZ1",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": model,
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"


# api.openai.com, stream_options.include_usage = true: role chunk, content, finish, usage-only.
OPENAI_STREAM = (
    _openai_chunk({"role": "assistant", "content": "", "refusal": None})
    + "".join(_openai_chunk({"content": t}) for t in ["A", " hash", " map", " stores", "."])
    + _openai_chunk({}, "stop")
    + 'data: {"id":"chatcmpl-AZ1","object":"chat.completion.chunk","created":1730000000,'
    '"model":"gpt-4o-mini","system_fingerprint":"fp_0ba0d124f1","choices":[],"usage":'
    '{"prompt_tokens":14,"completion_tokens":5,"total_tokens":19,"prompt_tokens_details":'
    '{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,'
    '"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n'
    "data: [DONE]\n\n"
)

# DeepSeek reasoner: keep-alive comments while queued, reasoning_content, usage on the last
# content chunk.
DEEPSEEK_REASONER_STREAM = (
    ": keep-alive\n\n: keep-alive\n\n"
    + _openai_chunk(
        {"role": "assistant", "content": None, "reasoning_content": ""}, model="deepseek-reasoner"
    )
    + "".join(
        _openai_chunk({"content": None, "reasoning_content": t}, model="deepseek-reasoner")
        for t in ["Okay", ",", " the", " user"]
    )
    + "".join(
        _openai_chunk({"content": t, "reasoning_content": None}, model="deepseek-reasoner")
        for t in ["OK", "."]
    )
    + 'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner",'
    '"choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,'
    '"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":6,'
    '"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0},'
    '"completion_tokens_details":{"reasoning_tokens":4},"prompt_cache_hit_tokens":0,'
    '"prompt_cache_miss_tokens":11}}\n\n'
    "data: [DONE]\n\n"
)

# OpenRouter: processing comments, `reasoning` (not reasoning_content), CRLF line ends.
OPENROUTER_STREAM = (
    ": OPENROUTER PROCESSING\n\n"
    + _openai_chunk({"role": "assistant", "content": "", "reasoning": "Think"})
    + _openai_chunk({"role": "assistant", "content": "", "reasoning": "ing"})
    + _openai_chunk({"role": "assistant", "content": "Hi", "reasoning": None})
    + _openai_chunk({"role": "assistant", "content": ""}, "stop")
    + 'data: {"id":"gen-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    '"finish_reason":null}],"usage":{"prompt_tokens":8,"completion_tokens":3,'
    '"total_tokens":11}}\n\n'
    "data: [DONE]\n\n"
).replace("\n", "\r\n")

OPENAI_TOOL_STREAM = (
    _openai_chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    )
    + _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})
    + _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":1}'}}]})
    + _openai_chunk({}, "tool_calls")
    + "data: [DONE]\n\n"
)


def _anthropic_event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _anthropic_delta(index: int, delta: dict) -> str:
    return _anthropic_event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


ANTHROPIC_THINKING_STREAM = (
    _anthropic_event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-20250514",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 40,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 2,
                    "output_tokens": 1,
                    "service_tier": "standard",
                },
            },
        },
    )
    + _anthropic_event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
    )
    + 'event: ping\ndata: {"type": "ping"}\n\n'
    + "".join(
        _anthropic_delta(0, {"type": "thinking_delta", "thinking": t})
        for t in ["Let me", " think", "."]
    )
    + _anthropic_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9G"})
    + _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    + _anthropic_event(
        "content_block_start",
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    )
    + "".join(_anthropic_delta(1, {"type": "text_delta", "text": t}) for t in ["OK", ", done"])
    + _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 1})
    + _anthropic_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 57},
        },
    )
    + _anthropic_event("message_stop", {"type": "message_stop"})
)

ANTHROPIC_TOOL_STREAM = (
    _anthropic_event(
        "message_start",
        {"type": "message_start", "message": {"usage": {"input_tokens": 300, "output_tokens": 0}}},
    )
    + _anthropic_event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {},
            },
        },
    )
    + _anthropic_delta(0, {"type": "input_json_delta", "partial_json": ""})
    + _anthropic_delta(0, {"type": "input_json_delta", "partial_json": '{"city": 1}'})
    + _anthropic_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 12},
        },
    )
    + _anthropic_event("message_stop", {"type": "message_stop"})
)

RECORDED = {
    "openai": OPENAI_STREAM,
    "deepseek_reasoner": DEEPSEEK_REASONER_STREAM,
    "openrouter_crlf": OPENROUTER_STREAM,
    "openai_tools": OPENAI_TOOL_STREAM,
    "anthropic_thinking": ANTHROPIC_THINKING_STREAM,
    "anthropic_tools": ANTHROPIC_TOOL_STREAM,
}


def _replay(protocol: str, text: str) -> tuple[StreamFacts, list[int]]:
    facts = get_protocol(protocol).new_stream()
    flags = [facts.feed(event) for event in SSEDecoder().feed(text.encode())]
    return facts, flags


def test_openai_stream_facts():
    facts, flags = _replay("openai", OPENAI_STREAM)
    # role-only chunk, finish chunk and usage-only chunk carry no token
    assert flags == [0] + [TOKEN | CONTENT] * 5 + [0, 0, END]
    assert facts.token_events == 5
    assert facts.content_text == "A hash map stores."
    assert (facts.input_tokens, facts.output_tokens, facts.reasoning_tokens) == (14, 5, 0)
    assert facts.finished


def test_reasoning_content_is_a_token_but_not_content():
    facts, flags = _replay("openai", DEEPSEEK_REASONER_STREAM)
    assert flags == [0, TOKEN, TOKEN, TOKEN, TOKEN, TOKEN | CONTENT, TOKEN | CONTENT, 0, END]
    assert facts.reasoning_events == 4
    assert facts.content_text == "OK."
    assert (facts.output_tokens, facts.reasoning_tokens) == (6, 4)


def test_openrouter_reasoning_field_and_usage_after_finish():
    facts, flags = _replay("openai", OPENROUTER_STREAM)
    assert flags == [TOKEN, TOKEN, TOKEN | CONTENT, 0, 0, END]
    assert (facts.input_tokens, facts.output_tokens) == (8, 3)


def test_openai_tool_call_arguments_are_tokens():
    facts, flags = _replay("openai", OPENAI_TOOL_STREAM)
    assert flags == [TOKEN | CONTENT] * 3 + [0, END]
    assert facts.output_tokens is None  # no usage: the probe must estimate
    assert facts.finished


def test_anthropic_thinking_stream():
    facts, flags = _replay("anthropic", ANTHROPIC_THINKING_STREAM)
    # message_start, block start, ping, 3 thinking, signature, stop, start, 2 text, stop,
    # message_delta, message_stop
    assert flags == [
        0,
        0,
        0,
        TOKEN,
        TOKEN,
        TOKEN,
        0,
        0,
        0,
        TOKEN | CONTENT,
        TOKEN | CONTENT,
        0,
        0,
        END,
    ]
    assert facts.reasoning_events == 3
    assert facts.content_text == "OK, done"
    # input = input + cache writes + cache reads; message_start's output 1 is a placeholder
    assert (facts.input_tokens, facts.output_tokens) == (42, 57)


def test_anthropic_placeholder_output_is_not_usage():
    text = ANTHROPIC_THINKING_STREAM.replace('"output_tokens":57', '"output_tokens":null')
    facts, _ = _replay("anthropic", text)
    assert facts.output_tokens is None
    assert facts.input_tokens == 42


def test_anthropic_tool_use():
    facts, flags = _replay("anthropic", ANTHROPIC_TOOL_STREAM)
    assert flags == [0, TOKEN | CONTENT, 0, TOKEN | CONTENT, 0, END]
    assert (facts.input_tokens, facts.output_tokens) == (300, 12)


def test_anthropic_without_event_lines_uses_payload_type():
    text = "".join(
        line + "\n"
        for line in ANTHROPIC_THINKING_STREAM.split("\n")
        if not line.startswith("event:")
    )
    facts, flags = _replay("anthropic", text)
    assert flags[-1] == END and facts.output_tokens == 57


@pytest.mark.parametrize(
    ("protocol", "event", "reason"),
    [
        ("openai", Event(None, '{"choices":[{"delta":{"content":"tru'), "bad_stream"),
        ("openai", Event(None, "[1, 2]"), "bad_stream"),
        ("openai", Event(None, '{"choices":[{"delta":"oops"}]}'), "bad_stream"),
        (
            "openai",
            Event(None, '{"error":{"message":"The server had an error","type":"server_error"}}'),
            "error_event",
        ),
        ("openai", Event("error", '{"message":"overloaded"}'), "overloaded"),
        ("openai", Event("error", '{"message":"upstream went away"}'), "error_event"),
        ("anthropic", Event("content_block_delta", "{not json"), "bad_stream"),
        (
            "anthropic",
            Event(
                "error",
                '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            ),
            "overloaded",
        ),
        (
            "anthropic",
            Event(None, '{"type":"error","error":{"type":"api_error","message":"boom"}}'),
            "error_event",
        ),
    ],
)
def test_failures(protocol, event, reason):
    with pytest.raises(StreamFailure) as caught:
        get_protocol(protocol).new_stream().feed(event)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_error_event_detail_is_readable():
    with pytest.raises(StreamFailure) as caught:
        get_protocol("anthropic").new_stream().feed(
            Event(
                "error",
                '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            )
        )
    assert caught.value.detail == "overloaded_error: Overloaded"


@pytest.mark.parametrize(
    "data",
    [
        "",
        " ",
        "{}",
        '{"choices":[]}',
        '{"choices":[{"delta":{"role":"assistant"}}]}',
        '{"choices":[{"delta":{"content":""}}]}',
    ],
)
def test_openai_non_token_events(data):
    assert get_protocol("openai").new_stream().feed(Event(None, data)) == 0


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1/chat/completions"),
        ("https://api.deepseek.com", "https://api.deepseek.com/v1/chat/completions"),
        ("https://api.deepseek.com/", "https://api.deepseek.com/v1/chat/completions"),
        ("https://api.deepseek.com/chat/completions", "https://api.deepseek.com/chat/completions"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
        ("https://openrouter.ai/api/v1/", "https://openrouter.ai/api/v1/chat/completions"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434/v1/chat/completions"),
        ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1/chat/completions"),
        ("http://127.0.0.1:8700/fastai/v1", "http://127.0.0.1:8700/fastai/v1/chat/completions"),
        (
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
        (
            "https://x.example/openai/v1?api-version=2024",
            "https://x.example/openai/v1/chat/completions?api-version=2024",
        ),
    ],
)
def test_openai_endpoint(base, url):
    assert get_protocol("openai").endpoint(base) == url


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/v1/", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/messages"),
        ("https://api.z.ai/api/anthropic", "https://api.z.ai/api/anthropic/v1/messages"),
        ("http://127.0.0.1:8700/claudeish", "http://127.0.0.1:8700/claudeish/v1/messages"),
    ],
)
def test_anthropic_endpoint(base, url):
    assert get_protocol("anthropic").endpoint(base) == url


def _provider(protocol: str, base: str) -> Provider:
    return Provider("p", base, Secret("sk-secret-value"), ("m",), protocol)


def test_openai_request():
    module = BUILTIN_MODULES["latency"]
    request = get_protocol("openai").build_request(
        _provider("openai", "https://api.groq.com/openai/v1"),
        "llama",
        module,
        "Hi",
        16,
        "sk-secret-value",
    )
    body = json.loads(request.body)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 16
    assert body["model"] == "llama"
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert request.headers["Authorization"] == "Bearer sk-secret-value"
    assert "sk-secret-value" not in repr(request)


def test_anthropic_request():
    module = BUILTIN_MODULES["latency"]
    request = get_protocol("anthropic").build_request(
        _provider("anthropic", "https://api.anthropic.com"),
        "claude",
        module,
        "Hi",
        16,
        "sk-secret-value",
    )
    body = json.loads(request.body)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert body["stream"] is True and body["max_tokens"] == 16
    assert request.headers["x-api-key"] == "sk-secret-value"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in request.headers
    assert "sk-secret-value" not in repr(request)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_both_protocols_stream_one_message_uncompressed(protocol):
    module = BUILTIN_MODULES["throughput"]
    request = get_protocol(protocol).build_request(
        _provider(protocol, "https://example.org/v1"), "m", module, "Hi", 7, "sk-secret-value"
    )
    body = json.loads(request.body)
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    # No sampling parameter unless the module sets one: reasoning models refuse them.
    assert "temperature" not in body and body["max_tokens"] == 7
    assert body["stream"] is True
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1"),
        ("https://user:pw@host.example:8443/v1?key=abc#frag", "https://host.example:8443/v1?..."),
        ("https://host.example/v1beta/openai?key=abc", "https://host.example/v1beta/openai?..."),
        ("http://[::1]:11434/v1#x", "http://[::1]:11434/v1"),
        ("http://[::1/v1?key=abc", "<unparsable URL>"),
    ],
)
def test_loggable_url_drops_user_info_query_and_fragment(url, shown):
    assert loggable_url(url) == shown


def test_unknown_protocol():
    with pytest.raises(KeyError, match="gemini"):
        get_protocol("gemini")
