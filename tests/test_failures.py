"""Non-2xx answers get the reason their body names, in each provider's own words."""

from __future__ import annotations

import json

import pytest

from perfgen.exporter.failures import http_failure
from perfgen.exporter.result import FAILURE_REASONS
from perfgen.exporter.tokens import estimate_tokens

SENT = json.dumps(
    {
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 16,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


OPENAI_REFUSES_MAX_TOKENS = _body(
    {
        "error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    }
)


@pytest.mark.parametrize(
    ("status", "body", "reason", "named"),
    [
        (400, OPENAI_REFUSES_MAX_TOKENS, "unsupported_parameter", "max_tokens"),
        # Mistral (FastAPI) refuses unknown fields with 422 and a location list.
        (
            422,
            _body(
                {
                    "object": "error",
                    "message": {
                        "detail": [
                            {
                                "type": "extra_forbidden",
                                "loc": ["body", "stream_options"],
                                "msg": "Extra inputs are not permitted",
                            }
                        ]
                    },
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", "stream_options"],
                            "msg": "Extra inputs are not permitted",
                        }
                    ],
                }
            ),
            "unsupported_parameter",
            "stream_options",
        ),
        # Anthropic words it "<field>: Extra inputs are not permitted".
        (
            400,
            _body(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "temperature: Extra inputs are not permitted",
                    },
                }
            ),
            "unsupported_parameter",
            "temperature",
        ),
        # vLLM / Azure: "Unrecognized request argument supplied: X".
        (
            400,
            _body({"error": {"message": "Unrecognized request argument supplied: temperature"}}),
            "unsupported_parameter",
            "temperature",
        ),
        (401, _body({"error": {"message": "Incorrect API key provided"}}), "auth", None),
        (403, b"Forbidden", "auth", None),
        (
            529,
            _body(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            ),
            "overloaded",
            None,
        ),
        (
            503,
            _body({"error": {"message": "The engine is currently overloaded"}}),
            "overloaded",
            None,
        ),
        (
            429,
            _body(
                {
                    "error": {
                        "type": "insufficient_quota",
                        "code": "insufficient_quota",
                        "message": "You exceeded your current quota",
                    }
                }
            ),
            "quota",
            None,
        ),
        (429, _body({"error": {"message": "Rate limit reached"}}), "http_429", None),
        (
            400,
            _body(
                {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                }
            ),
            "context_length",
            None,
        ),
        (
            400,
            _body({"error": {"message": "The response was filtered", "code": "content_filter"}}),
            "content_filter",
            None,
        ),
        # A parameter we never sent is not ours to fix: plain http_4xx.
        (
            400,
            _body({"error": {"message": "Unsupported parameter: 'tools'", "param": "tools"}}),
            "http_4xx",
            None,
        ),
        (404, _body({"error": {"message": "The model `x` does not exist"}}), "http_4xx", None),
        (500, b"oops", "http_5xx", None),
    ],
)
def test_http_failure_reasons(status, body, reason, named):
    got, detail = http_failure(status, body, SENT, "openai")
    assert got == reason, detail
    assert got in FAILURE_REASONS
    assert detail.startswith(f"HTTP {status}")
    if named:
        assert f"refuses parameter '{named}'" in detail
        assert "[performance.providers.openai]" in detail or "module" in detail


def test_the_fix_for_a_refused_cap_field_names_the_alternatives():
    _, detail = http_failure(400, OPENAI_REFUSES_MAX_TOKENS, SENT, "openai")
    assert 'max_tokens_field = "max_completion_tokens" or "max_output_tokens"' in detail


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello! How can I assist you today?", 9),  # cl100k_base: 9
        ("The quick brown fox jumps over the lazy dog.", 10),  # cl100k_base: 10
        ("internationalization", 3),  # cl100k_base: 3
        ("1234567", 3),  # numbers go in groups of three digits
        ("你好，我能帮你什么？", 10),  # one per CJK character and mark (cl100k_base: 11)
        ("こんにちは世界", 7),
        ("", 1),
    ],
)
def test_token_estimate_from_text(text, tokens):
    assert estimate_tokens(text) == tokens
