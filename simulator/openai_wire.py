"""OpenAI chat-completions wire format, byte for byte as api.openai.com streams it.

Compact JSON, key order as OpenAI sends it, `"usage":null` on every chunk when usage was
requested, a role-only first chunk, `data: [DONE]` at the end. Every chunk of a response
shares one pre-encoded head, so a token costs a few string concatenations.

Per model (the profile): reasoning as `reasoning_content`, `reasoning`,
`reasoning_details`, inline `<think>` tags or not at all (`hidden`: counted in usage
only, as OpenAI's reasoning models do), and usage in its own chunk, on the finish chunk,
before an empty trailing chunk (xAI) or after `data: [DONE]` (llama.cpp).
"""

from __future__ import annotations

import json
import time
from typing import Any

from perfgen.simulator.config import ProviderConfig
from perfgen.simulator.plan import RequestPlan
from perfgen.simulator.text import content_text, json_string, prompt_tokens, reply_with
from perfgen.simulator.wire import BadRequest, ChatRequest, optional_int

_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class OpenAIStream:
    def __init__(self, serial: int, request: ChatRequest, plan: RequestPlan) -> None:
        self._plan = plan
        self._request = request
        self._with_usage = request.wants_usage and plan.include_usage
        self._id = f"chatcmpl-sim{serial:08d}"
        self._created = int(time.time())
        self._envelope = (
            f'{{"id":"{self._id}","object":"chat.completion.chunk","created":{self._created},'
            f'"model":{json_string(request.model)},"system_fingerprint":"fp_simulator",'
        )
        self._head = "data: " + self._envelope + '"choices":[{"index":0,"delta":'
        self._tail = '},"logprobs":null,"finish_reason":null}]' + (
            ',"usage":null}\n\n' if self._with_usage else "}\n\n"
        )
        self._shape = plan.reasoning_shape
        self._in_think = False

    def preamble(self) -> bytes:
        delta = '{"role":"assistant","content":"","refusal":null'
        return (self._head + delta + self._tail).encode()

    def reasoning(self, tokens: list[str]) -> bytes:
        shape = self._shape
        if shape == "hidden":
            return b""  # generated, counted in usage, never streamed
        raw = "".join(tokens)
        if shape == "think_tags":
            if not self._in_think:
                self._in_think = True
                raw = "<think>" + raw
            return (self._head + '{"content":' + json_string(raw) + self._tail).encode()
        text = json_string(raw)
        if shape == "reasoning_details":
            details = f'[{{"type":"reasoning.text","text":{text},"format":"unknown","index":0}}]'
            return (
                self._head + '{"content":null,"reasoning_details":' + details + self._tail
            ).encode()
        field = "reasoning" if shape == "reasoning" else "reasoning_content"
        return (self._head + '{"content":null,"' + field + '":' + text + self._tail).encode()

    def answer(self, tokens: list[str]) -> bytes:
        raw = "".join(tokens)
        if self._in_think:
            self._in_think = False
            raw = "</think>\n\n" + raw
        return (self._head + '{"content":' + json_string(raw) + self._tail).encode()

    def finish(self) -> bytes:
        plan = self._plan
        if plan.fault == "content_filter":
            reason = "content_filter"
        else:
            reason = "length" if plan.truncated else "stop"
        position = plan.usage_position
        usage = _compact(usage_json(self._request, plan)) if self._with_usage else None
        if usage is not None and position == "finish_chunk":
            usage_field = f',"usage":{usage}'
        else:
            usage_field = ',"usage":null' if self._with_usage else ""
        out = f'{self._head}{{}},"logprobs":null,"finish_reason":"{reason}"}}]{usage_field}}}\n\n'
        usage_chunk = (
            f'data: {self._envelope}"choices":[],"usage":{usage}}}\n\n' if usage is not None else ""
        )
        if position == "after_done":
            return (out + "data: [DONE]\n\n" + usage_chunk).encode()
        if position in ("separate_chunk", "before_empty_chunk"):
            out += usage_chunk
        if position == "before_empty_chunk":
            out += f'data: {self._envelope}"choices":[]}}\n\n'
        return (out + "data: [DONE]\n\n").encode()

    def malformed(self) -> bytes:
        return (self._head + '{"content":"trunc\n\n').encode()

    def error_event(self) -> bytes:
        return ("data: " + _compact(error_event_json()) + "\n\n").encode()


class OpenAIWire:
    protocol = "openai"

    def parse(self, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        cap_field = "max_completion_tokens" if "max_completion_tokens" in body else None
        max_tokens = optional_int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = optional_int(body, "max_tokens")
            cap_field = "max_tokens" if "max_tokens" in body else cap_field
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        return ChatRequest(
            model=model,
            stream=body.get("stream") is True,
            max_tokens=max_tokens,
            wants_usage=wants_usage,
            prompt_tokens=prompt_tokens(texts),
            reply_with=reply_with(messages),
            cap_field=cap_field,
            fields=frozenset(body),
            prompt_text="\n".join(texts),
        )

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind, code = _ERRORS.get(status, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def refusal_body(self, parameter: str, hint: str) -> dict[str, Any]:
        return refusal_json(parameter, hint)

    def fault_body(self, fault: str) -> tuple[int, dict[str, Any]]:
        return fault_json(fault)

    def error_event_body(self) -> dict[str, Any]:
        return error_event_json()

    def models_body(self, provider: ProviderConfig) -> dict[str, Any]:
        data = [
            {"id": m.name, "object": "model", "created": 1700000000, "owned_by": provider.name}
            for m in provider.models
        ]
        return {"object": "list", "data": data}

    def encoder(self, serial: int, request: ChatRequest, plan: RequestPlan) -> OpenAIStream:
        return OpenAIStream(serial, request, plan)

    def complete_body(
        self,
        serial: int,
        request: ChatRequest,
        plan: RequestPlan,
        reasoning: list[str],
        answer: list[str],
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(answer)}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        message["refusal"] = None
        body: dict[str, Any] = {
            "id": f"chatcmpl-sim{serial:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "length" if plan.truncated else "stop",
                }
            ],
        }
        if plan.include_usage:
            body["usage"] = usage_json(request, plan)
        body["system_fingerprint"] = "fp_simulator"
        return body


def usage_json(request: ChatRequest, plan: RequestPlan) -> dict[str, Any]:
    completion = plan.total_tokens
    return {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": request.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
    }


def refusal_json(parameter: str, hint: str) -> dict[str, Any]:
    """OpenAI's refusal of a parameter the model does not take (HTTP 400)."""
    return {
        "error": {
            "message": f"Unsupported parameter: '{parameter}' is not supported with this "
            f"model.{hint}",
            "type": "invalid_request_error",
            "param": parameter,
            "code": "unsupported_parameter",
        }
    }


# fault -> (status, message, type, code), as api.openai.com words them.
_FAULTS: dict[str, tuple[int, str, str, str | None]] = {
    "http_529": (529, "The server is overloaded (simulated).", "overloaded_error", None),
    "quota": (
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    ),
    "context_length": (
        400,
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9000 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
}


def fault_json(fault: str) -> tuple[int, dict[str, Any]]:
    status, message, kind, code = _FAULTS[fault]
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_event_json() -> dict[str, Any]:
    return {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
