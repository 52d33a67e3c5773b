"""Issue 10's wire shapes, as recorded-format transcripts: reasoning in all five shapes,
usage wherever providers put it, cached prompt tokens, the Responses API, and the
request each capability-table entry produces."""

from __future__ import annotations

import json

import pytest

from perfgen.config import BUILTIN_MODULES, Module, Provider, Secret
from perfgen.exporter import accounting
from perfgen.exporter.protocols import CONTENT, END, TOKEN, StreamFailure, get_protocol
from perfgen.exporter.protocols.base import StreamFacts, error_reason
from perfgen.exporter.sse import Event, SSEDecoder


def _chunk(delta: dict | None = None, finish: str | None = None, **extra: object) -> str:
    body: dict = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    body["choices"] = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    )
    body.update(extra)
    return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"


def _replay(protocol: str, text: str) -> tuple[StreamFacts, list[int]]:
    facts = get_protocol(protocol).new_stream()
    flags = [facts.feed(event) for event in SSEDecoder().feed(text.encode())]
    return facts, flags


USAGE = {"prompt_tokens": 9, "completion_tokens": 14, "total_tokens": 23}

# Together / Fireworks / llama.cpp: reasoning inline in content, tags split across deltas.
THINK_STREAM = (
    _chunk({"role": "assistant", "content": ""})
    + "".join(
        _chunk({"content": t})
        for t in ["\n<th", "ink>", "Let", " me", " see</", "think>", "\n\nO", "K."]
    )
    + _chunk({}, "stop")
    + _chunk(None, usage=USAGE)
    + "data: [DONE]\n\n"
)


def test_inline_think_block_is_reasoning_split_anywhere():
    facts, flags = _replay("openai", THINK_STREAM)
    # "\n<th" may still become "<think>": a token of some kind, not yet content.
    assert flags == [0] + [TOKEN] * 6 + [TOKEN | CONTENT] * 2 + [0, 0, END]
    assert facts.content_text.strip() == "OK."
    assert "".join(facts.reasoning_parts) == "Let me see"
    assert facts.reasoning_events == 5


def test_think_tag_in_the_same_delta_as_the_answer():
    facts, flags = _replay(
        "openai", _chunk({"content": "<think>hmm</think>Yes"}) + _chunk({}, "stop")
    )
    assert flags == [TOKEN | CONTENT, 0]
    assert facts.content_text == "Yes" and facts.reasoning_parts == ["hmm"]


def test_content_that_is_not_a_think_block_stays_content():
    facts, flags = _replay("openai", _chunk({"content": "<"}) + _chunk({"content": "b>hi"}))
    assert flags == [TOKEN, TOKEN | CONTENT]
    assert facts.content_text == "<b>hi"
    # Later "<think>" text is answer text: only the start of content can open a block.
    facts, _ = _replay("openai", _chunk({"content": "A"}) + _chunk({"content": "<think>"}))
    assert facts.content_text == "A<think>"


def test_reasoning_field_and_reasoning_details_are_reasoning():
    details = [{"type": "reasoning.text", "text": "Plan", "format": "unknown", "index": 0}]
    text = (
        _chunk({"content": None, "reasoning": "Think"})
        + _chunk({"content": None, "reasoning_details": details})
        # OpenRouter sends both for one delta: one reasoning event, not two.
        + _chunk({"content": None, "reasoning": "x", "reasoning_details": details})
        + _chunk({"content": "Hi"})
    )
    facts, flags = _replay("openai", text)
    assert flags == [TOKEN, TOKEN, TOKEN, TOKEN | CONTENT]
    assert facts.reasoning_events == 3
    encrypted = [{"type": "reasoning.encrypted", "data": "gAAAA", "index": 0}]
    facts, flags = _replay("openai", _chunk({"content": None, "reasoning_details": encrypted}))
    assert flags == [0] and facts.hidden_reasoning


# OpenAI o-series / gpt-5 on chat completions: no reasoning in the stream, only in usage.
HIDDEN_STREAM = (
    _chunk({"role": "assistant", "content": ""})
    + "".join(_chunk({"content": t}) for t in ["O", "K"])
    + _chunk({}, "stop")
    + _chunk(
        None,
        usage={
            "prompt_tokens": 12,
            "completion_tokens": 194,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 192},
        },
    )
    + "data: [DONE]\n\n"
)


def test_hidden_reasoning_is_counted_and_the_answer_is_the_rate_basis():
    facts, _ = _replay("openai", HIDDEN_STREAM)
    assert (facts.reasoning_tokens, facts.reasoning_events) == (192, 0)
    assert facts.cached_input_tokens == 1024
    assert accounting.reasoning_hidden(facts)
    output, source = accounting.output_tokens(facts)
    assert (output, source) == (194, "usage")
    assert accounting.answer_tokens(facts, output, source) == 2
    # Streamed reasoning of about the counted size is not hidden.
    streamed, _ = _replay(
        "openai",
        "".join(_chunk({"reasoning_content": "word "}) for _ in range(10))
        + _chunk(
            None,
            usage={"completion_tokens": 12, "completion_tokens_details": {"reasoning_tokens": 10}},
        ),
    )
    assert not accounting.reasoning_hidden(streamed)


def test_usage_before_an_empty_trailing_chunk_survives_it():
    # xAI: usage in the second-to-last chunk, then an empty one (here with a zero count).
    text = (
        _chunk({"content": "Hi"})
        + _chunk({}, "stop", usage={"prompt_tokens": 5, "completion_tokens": 2})
        + _chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 0})
        + "data: [DONE]\n\n"
    )
    facts, _ = _replay("openai", text)
    assert facts.output_tokens == 2


def test_usage_after_done_is_still_taken():
    facts, flags = _replay(
        "openai", _chunk({"content": "Hi"}) + _chunk({}, "stop") + "data: [DONE]\n\n"
    )
    assert flags[-1] == END and facts.wants_trailer
    facts.feed(Event(None, json.dumps({"choices": [], "usage": USAGE})))
    assert facts.output_tokens == 14 and not facts.wants_trailer


def test_deepseek_cache_hit_tokens():
    facts, _ = _replay(
        "openai",
        _chunk(
            {"content": "Hi"},
            "stop",
            usage={
                "prompt_tokens": 80,
                "completion_tokens": 1,
                "prompt_cache_hit_tokens": 64,
                "prompt_cache_miss_tokens": 16,
            },
        ),
    )
    assert facts.cached_input_tokens == 64


def test_finish_reasons_length_and_content_filter():
    facts, _ = _replay("openai", _chunk({"content": "Hi"}, "length"))
    assert facts.truncated and facts.finished
    with pytest.raises(StreamFailure) as caught:
        _replay("openai", _chunk({"content": "Hi"}, "content_filter"))
    assert caught.value.reason == "content_filter"


def test_one_character_per_chunk_is_estimated_from_the_text():
    # mockllm: one character per chunk, no usage; counting events gave 57 for 11 tokens.
    answer = "Hello! How can I help you today? Ask me anything."
    facts, _ = _replay("openai", "".join(_chunk({"content": c}) for c in answer))
    output, source = accounting.output_tokens(facts)
    assert source == "estimate"
    assert output == 13  # cl100k_base: 12; words and marks: 13; events: 49


def _anthropic(*events: tuple[str, dict]) -> str:
    return "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events)


def _block(kind: str, delta: dict, index: int = 0) -> tuple[str, dict]:
    return kind, {"type": kind, "index": index, "delta": delta}


# Claude's newest models: a thinking block with only its signature, then the answer.
ANTHROPIC_HIDDEN = _anthropic(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 20,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 2048,
                    "output_tokens": 1,
                }
            },
        },
    ),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
    ),
    _block("content_block_delta", {"type": "signature_delta", "signature": "EqQB"}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ),
    _block("content_block_delta", {"type": "text_delta", "text": "OK"}, 1),
    _block("content_block_delta", {"type": "text_delta", "text": " then"}, 1),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 300},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)


def test_anthropic_signature_only_thinking_is_hidden_reasoning():
    facts, flags = _replay("anthropic", ANTHROPIC_HIDDEN)
    assert flags.count(TOKEN | CONTENT) == 2 and not any(f == TOKEN for f in flags)
    assert facts.hidden_reasoning and accounting.reasoning_hidden(facts)
    assert facts.cached_input_tokens == 2048 and facts.input_tokens == 2068
    output, source = accounting.output_tokens(facts)
    # Anthropic does not split thinking out of output_tokens: the answer is estimated.
    assert accounting.answer_tokens(facts, output, source) == 2


def test_anthropic_refusal_and_max_tokens():
    def stop(reason: str) -> str:
        return _anthropic(
            _block("content_block_delta", {"type": "text_delta", "text": "Hi"}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason}}),
        )

    facts, _ = _replay("anthropic", stop("max_tokens"))
    assert facts.truncated
    with pytest.raises(StreamFailure) as caught:
        _replay("anthropic", stop("refusal"))
    assert caught.value.reason == "content_filter"


def _responses(*events: dict) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def _lifecycle(kind: str, **response: object) -> dict:
    return {"type": kind, "response": {"id": "resp_1", "object": "response", **response}}


RESPONSES_USAGE = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 90,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 120,
}
# gpt-5 on /v1/responses with a reasoning summary: the summary is not the reasoning.
RESPONSES_STREAM = _responses(
    _lifecycle("response.created", status="in_progress"),
    _lifecycle("response.in_progress", status="in_progress"),
    {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {"id": "rs_1", "type": "reasoning", "summary": []},
    },
    {
        "type": "response.reasoning_summary_text.delta",
        "item_id": "rs_1",
        "output_index": 0,
        "summary_index": 0,
        "delta": "Checking",
    },
    {
        "type": "response.output_item.done",
        "output_index": 0,
        "item": {"id": "rs_1", "type": "reasoning", "summary": []},
    },
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
    },
    {
        "type": "response.content_part.added",
        "item_id": "msg_1",
        "output_index": 1,
        "content_index": 0,
        "part": {"type": "output_text", "text": ""},
    },
    *(
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "delta": t,
        }
        for t in ["Hash", " maps", " hash", "."]
    ),
    {
        "type": "response.output_text.done",
        "item_id": "msg_1",
        "output_index": 1,
        "content_index": 0,
        "text": "Hash maps hash.",
    },
    _lifecycle("response.completed", status="completed", usage=RESPONSES_USAGE),
)


def test_responses_stream_facts():
    facts, flags = _replay("openai-responses", RESPONSES_STREAM)
    assert flags[:3] == [0, 0, 0]
    assert flags[3] == TOKEN  # the summary is reasoning: it ends TTFT
    assert flags.count(TOKEN | CONTENT) == 4 and flags[-1] == END
    assert facts.content_text == "Hash maps hash."
    assert (facts.input_tokens, facts.output_tokens, facts.reasoning_tokens) == (30, 90, 64)
    assert facts.finished and not facts.truncated
    # One word of summary for 64 reasoning tokens: the reasoning was not streamed.
    assert accounting.reasoning_hidden(facts)
    assert accounting.answer_tokens(facts, 90, "usage") == 26


def test_responses_incomplete_failed_and_error():
    incomplete = _responses(
        _lifecycle(
            "response.incomplete",
            status="incomplete",
            incomplete_details={"reason": "max_output_tokens"},
            usage=RESPONSES_USAGE,
        )
    )
    facts, flags = _replay("openai-responses", incomplete)
    assert flags == [END] and facts.truncated and facts.output_tokens == 90
    filtered = _responses(
        _lifecycle(
            "response.incomplete",
            status="incomplete",
            incomplete_details={"reason": "content_filter"},
        )
    )
    failed = _responses(
        _lifecycle(
            "response.failed",
            status="failed",
            error={"code": "server_error", "message": "The model is overloaded"},
        )
    )
    error = _responses(
        {
            "type": "error",
            "code": "insufficient_quota",
            "message": "You exceeded your current quota",
            "param": None,
        }
    )
    for text, reason in ((filtered, "content_filter"), (failed, "overloaded"), (error, "quota")):
        with pytest.raises(StreamFailure) as caught:
            _replay("openai-responses", text)
        assert caught.value.reason == reason, text


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "overloaded",
        ),
        ({"error": {"code": "context_length_exceeded", "message": "too long"}}, "context_length"),
        (
            {"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum"}},
            "context_length",
        ),
        ({"error": {"code": "content_filter", "message": "filtered"}}, "content_filter"),
        ({"error": {"type": "server_error", "message": "boom"}}, "error_event"),
    ],
)
def test_in_stream_error_reasons(payload, reason):
    assert error_reason(payload) == reason


# --------------------------------------------------------------------- requests


def _request(protocol: str, provider: str, model: str, module: Module | None = None, **over):
    overrides = (("*", over),) if over else ()
    entry = Provider(
        provider,
        "https://example.org/v1",
        Secret("sk-x"),
        (model,),
        protocol,
        capability_overrides=overrides,
    )
    request = get_protocol(protocol).build_request(
        entry, model, module or BUILTIN_MODULES["latency"], "Hi", 16, "sk-x"
    )
    return request, json.loads(request.body)


@pytest.mark.parametrize(
    ("provider", "model", "field", "stream_options"),
    [
        ("openai", "gpt-5-mini", "max_completion_tokens", True),
        ("openai", "gpt-4o-mini", "max_completion_tokens", True),
        ("openrouter", "openai/o3-mini", "max_completion_tokens", True),
        ("myproxy", "o4-mini", "max_completion_tokens", True),
        ("deepseek", "deepseek-reasoner", "max_tokens", True),
        ("mistral", "mistral-large-latest", "max_tokens", False),
        ("groq", "llama-3.3-70b-versatile", "max_tokens", True),
        ("ollama", "qwen2.5-coder:latest", "max_tokens", True),
    ],
)
def test_capability_table_shapes_the_openai_request(provider, model, field, stream_options):
    _, body = _request("openai", provider, model)
    caps = {"max_tokens", "max_completion_tokens", "max_output_tokens"}
    assert [k for k in body if k in caps] == [field]
    assert body[field] == 16
    assert ("stream_options" in body) is stream_options
    assert "temperature" not in body and "top_p" not in body


def test_health_asks_reasoning_families_for_their_lowest_effort():
    health = BUILTIN_MODULES["health"]
    assert _request("openai", "openai", "gpt-5-mini", health)[1]["reasoning_effort"] == "minimal"
    assert _request("openai", "openai", "o3", health)[1]["reasoning_effort"] == "low"
    assert _request("openai", "groq", "openai/gpt-oss-20b", health)[1]["reasoning_effort"] == "low"
    # A family without an effort knob gets none: it would refuse the field.
    assert "reasoning_effort" not in _request("openai", "groq", "llama-3.1-8b", health)[1]
    assert "reasoning_effort" not in _request("openai", "openai", "gpt-5-mini")[1]
    _, body = _request("openai-responses", "openai", "gpt-5", health)
    assert body["reasoning"] == {"effort": "minimal"}


def test_overrides_change_the_request():
    _, body = _request(
        "openai",
        "vllm",
        "m",
        max_tokens_field="max_completion_tokens",
        stream_options=False,
        reasoning_effort="high",
    )
    assert body["max_completion_tokens"] == 16 and "max_tokens" not in body
    assert "stream_options" not in body and body["reasoning_effort"] == "high"
    module = Module("t", ("x",), max_tokens=16, timeout_seconds=5, temperature=0.2)
    assert _request("openai", "vllm", "m", module)[1]["temperature"] == 0.2


def test_model_glob_overrides_win_over_the_provider_wide_keys():
    entry = Provider(
        "openai",
        "https://api.openai.com/v1",
        Secret("k"),
        ("gpt-4o", "legacy-1"),
        "openai",
        capability_overrides=(
            ("*", {"stream_options": False}),
            ("legacy-*", {"max_tokens_field": "max_tokens"}),
        ),
    )
    legacy, modern = entry.capabilities("legacy-1"), entry.capabilities("gpt-4o")
    assert legacy.max_tokens_field == "max_tokens" and not legacy.stream_options
    assert modern.max_tokens_field == "max_completion_tokens" and not modern.stream_options


def test_responses_request():
    request, body = _request("openai-responses", "openai", "gpt-5-mini")
    assert request.url == "https://example.org/v1/responses"
    assert body["input"] == "Hi" and "messages" not in body
    assert body["max_output_tokens"] == 16 and body["stream"] is True
    assert body["store"] is False and "stream_options" not in body
    assert request.headers["Authorization"] == "Bearer sk-x"
    # OpenAI refuses max_output_tokens below 16.
    entry = Provider("openai", "https://api.openai.com", Secret("k"), ("m",), "openai-responses")
    small = get_protocol("openai-responses").build_request(
        entry, "m", BUILTIN_MODULES["latency"], "Hi", 8, "k"
    )
    assert small.url == "https://api.openai.com/v1/responses"
    assert json.loads(small.body)["max_output_tokens"] == 16


def test_anthropic_thinking_budget_adds_to_the_cap():
    _, body = _request("anthropic", "anthropic", "claude-sonnet-4-5", thinking_budget_tokens=2048)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 16 + 2048
    _, plain = _request("anthropic", "anthropic", "claude-sonnet-4-5")
    assert "thinking" not in plain and "stream_options" not in plain
