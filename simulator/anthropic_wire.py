"""Anthropic Messages wire format, with the real event sequence and `event:` lines.

message_start, content_block_start, ping, content_block_delta..., content_block_stop,
message_delta, message_stop. Reasoning models open a `thinking` block (index 0) closed by
a `signature_delta`, then the answer's text block (index 1).

`include_usage = false`: Anthropic always sends usage, so the closest a compatible
provider can get to "no usage" is the one count that makes exact counting possible:
`message_start` keeps its conventional provisional `output_tokens: 1` (the SDK requires
the field), and `message_delta.usage.output_tokens` is `null` (non-stream: `usage` has
no `output_tokens`). A client must then estimate, which is the point.

`reasoning_shape = "hidden"`: the thinking block opens and closes with its
`signature_delta` but streams no `thinking_delta`, as Anthropic's newest models do by
default; its tokens are still in `output_tokens`.
"""

from __future__ import annotations

import json
from typing import Any

from perfgen.simulator.config import ProviderConfig
from perfgen.simulator.plan import RequestPlan
from perfgen.simulator.text import content_text, json_string, prompt_tokens, reply_with
from perfgen.simulator.wire import BadRequest, ChatRequest, optional_int

_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}
_SIGNATURE = "c2ltdWxhdG9yLXNpZ25hdHVyZQ=="
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


class AnthropicStream:
    def __init__(self, serial: int, request: ChatRequest, plan: RequestPlan) -> None:
        self._serial = serial
        self._request = request
        self._plan = plan
        self._block = 0
        self._thinking = plan.reasoning_tokens > 0
        self._text_head = (
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            '"delta":{"type":"text_delta","text":'
        )
        self._thinking_head = (
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            '"delta":{"type":"thinking_delta","thinking":'
        )

    def preamble(self) -> bytes:
        message: dict[str, Any] = {
            "id": f"msg_sim{self._serial:08d}",
            "type": "message",
            "role": "assistant",
            "model": self._request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**_input_usage(self._request, self._plan), "output_tokens": 1},
        }
        start = _event("message_start", _compact({"type": "message_start", "message": message}))
        block = (
            {"type": "thinking", "thinking": "", "signature": ""}
            if self._thinking
            else {"type": "text", "text": ""}
        )
        return (start + self._block_start(block)).encode() + _PING

    def reasoning(self, tokens: list[str]) -> bytes:
        if self._plan.reasoning_shape == "hidden":
            return b""
        return (self._thinking_head + json_string("".join(tokens)) + "}}\n\n").encode()

    def answer(self, tokens: list[str]) -> bytes:
        prefix = ""
        if self._thinking:
            # The first answer token closes the thinking block and opens the text block.
            prefix = self._end_thinking() + self._block_stop()
            self._block = 1
            prefix += self._block_start({"type": "text", "text": ""})
            self._text_head = self._text_head.replace('"index":0', '"index":1')
        return (prefix + self._text_head + json_string("".join(tokens)) + "}}\n\n").encode()

    def finish(self) -> bytes:
        if self._plan.fault == "content_filter":
            reason = "refusal"
        else:
            reason = "max_tokens" if self._plan.truncated else "end_turn"
        # No answer token came (the cap ran out while thinking): the block still ends.
        prefix = self._end_thinking() if self._thinking else ""
        output = self._plan.total_tokens if self._plan.include_usage else None
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": output},
        }
        return (
            prefix
            + self._block_stop()
            + _event("message_delta", _compact(delta))
            + _event("message_stop", '{"type":"message_stop"}')
        ).encode()

    def malformed(self) -> bytes:
        return (self._text_head + '"trunc\n\n').encode()

    def error_event(self) -> bytes:
        return _event("error", _compact(error_event_json())).encode()

    def _end_thinking(self) -> str:
        """The thinking block's closing signature (all a hidden thinking block shows)."""
        self._thinking = False
        signature = {"type": "signature_delta", "signature": _SIGNATURE}
        return _event(
            "content_block_delta",
            _compact({"type": "content_block_delta", "index": 0, "delta": signature}),
        )

    def _block_start(self, block: dict[str, Any]) -> str:
        data = {"type": "content_block_start", "index": self._block, "content_block": block}
        return _event("content_block_start", _compact(data))

    def _block_stop(self) -> str:
        data = f'{{"type":"content_block_stop","index":{self._block}}}'
        return _event("content_block_stop", data)


class AnthropicWire:
    protocol = "anthropic"

    def parse(self, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: at least one message is required")
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        texts.append(content_text(body.get("system")))
        return ChatRequest(
            model=model,
            stream=body.get("stream") is True,
            max_tokens=optional_int(body, "max_tokens"),
            wants_usage=True,
            prompt_tokens=prompt_tokens(texts),
            reply_with=reply_with(messages),
            cap_field="max_tokens" if "max_tokens" in body else None,
            fields=frozenset(body),
            prompt_text="\n".join(texts),
        )

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = _ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def refusal_body(self, parameter: str, hint: str) -> dict[str, Any]:
        message = f"{parameter}: Extra inputs are not permitted"
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}

    def fault_body(self, fault: str) -> tuple[int, dict[str, Any]]:
        status, kind, message = _FAULTS[fault]
        return status, {"type": "error", "error": {"type": kind, "message": message}}

    def error_event_body(self) -> dict[str, Any]:
        return error_event_json()

    def models_body(self, provider: ProviderConfig) -> dict[str, Any]:
        data = [
            {
                "type": "model",
                "id": m.name,
                "display_name": m.name,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for m in provider.models
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def encoder(self, serial: int, request: ChatRequest, plan: RequestPlan) -> AnthropicStream:
        return AnthropicStream(serial, request, plan)

    def complete_body(
        self,
        serial: int,
        request: ChatRequest,
        plan: RequestPlan,
        reasoning: list[str],
        answer: list[str],
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reasoning:
            content.append(
                {"type": "thinking", "thinking": "".join(reasoning), "signature": _SIGNATURE}
            )
        content.append({"type": "text", "text": "".join(answer)})
        usage: dict[str, Any] = _input_usage(request, plan)
        if plan.include_usage:
            usage["output_tokens"] = plan.total_tokens
        return {
            "id": f"msg_sim{serial:08d}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": "max_tokens" if plan.truncated else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }


# fault -> (status, error type, message), as api.anthropic.com words them.
_FAULTS: dict[str, tuple[int, str, str]] = {
    "http_529": (529, "overloaded_error", "Overloaded"),
    "quota": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API.",
    ),
    "context_length": (
        400,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ),
}


def _input_usage(request: ChatRequest, plan: RequestPlan) -> dict[str, Any]:
    # Anthropic splits the prompt: uncached input, cache writes, cache reads.
    return {
        "input_tokens": request.prompt_tokens - plan.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": plan.cached_tokens,
    }


def error_event_json() -> dict[str, Any]:
    return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
