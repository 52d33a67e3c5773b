"""OpenAI Responses API streaming (`POST /v1/responses`), as newer OpenAI clients and
several gateways speak it.

Typed events, each with an `event:` line and the same name as the payload's `type`:
`response.created`, `response.output_item.added`, `response.reasoning_summary_text.delta`
(a summary of the reasoning), `response.reasoning_text.delta` (raw reasoning, open-weight
models), `response.output_text.delta` (the answer), `response.refusal.delta`,
`response.function_call_arguments.delta`, ... There is no `[DONE]`: the stream ends with
`response.completed`, `response.incomplete` (`incomplete_details.reason`:
`max_output_tokens` or `content_filter`) or `response.failed`, and usage (with
`input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`) comes
only with that last event.

Endpoint rule, as for chat completions: a path ending in `/responses` is used as is, a
bare host gets `/v1/responses`, any other path gets `/responses` appended.
"""

from __future__ import annotations

from typing import Any

from perfgen.capabilities import effort_for
from perfgen.config import Module, Provider
from perfgen.exporter.protocols.base import (
    CONTENT,
    END,
    TOKEN,
    StreamFacts,
    StreamFailure,
    WireRequest,
    event_error,
    parse_json,
    shorten,
    stream_error,
    streaming_request,
    suffix_endpoint,
)
from perfgen.exporter.sse import Event

_SUFFIX = "/responses"
# OpenAI refuses a smaller max_output_tokens (HTTP 400 "integer below minimum value").
MIN_OUTPUT_TOKENS = 16
_ANSWER_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_DELTAS = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)
_TOOL_DELTAS = frozenset(
    {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}
)


class ResponsesStream(StreamFacts):
    __slots__ = ()

    def feed(self, event: Event) -> int:
        data = event.data
        if event.event == "error":
            raise event_error(data)
        if not data or data.isspace():
            return 0
        payload = parse_json(data)
        try:
            return self._event(payload, payload.get("type") or event.event)
        except (AttributeError, TypeError) as exc:
            raise StreamFailure(
                "bad_stream", f"unexpected event shape ({exc}): {shorten(data)}"
            ) from None

    def _event(self, payload: dict[str, Any], kind: str | None) -> int:
        if kind in _ANSWER_DELTAS:
            delta = payload.get("delta")
            if delta:
                self.content_parts.append(delta)
                return self._token(TOKEN | CONTENT)
            return 0
        if kind in _REASONING_DELTAS:
            delta = payload.get("delta")
            if delta:
                self.reasoning_parts.append(delta)
                self.reasoning_events += 1
                return self._token(TOKEN)
            return 0
        if kind in _TOOL_DELTAS:
            delta = payload.get("delta")
            if delta:
                self.tool_parts.append(delta)
                return self._token(TOKEN | CONTENT)
            return 0
        if kind == "response.output_item.done":
            item = payload.get("item") or {}
            if item.get("type") == "reasoning" and not self.reasoning_events:
                self.hidden_reasoning = True  # a reasoning item, nothing of it streamed
            return 0
        if kind == "response.completed":
            self._end(payload.get("response") or {})
            return END
        if kind == "response.incomplete":
            response = payload.get("response") or {}
            self._end(response)
            reason = (response.get("incomplete_details") or {}).get("reason")
            if reason == "content_filter":
                raise StreamFailure("content_filter", "response.incomplete: content_filter")
            if reason == "max_output_tokens":
                self.truncated = True
            return END
        if kind == "response.failed":
            response = payload.get("response") or {}
            self._usage(response.get("usage"))
            error = response.get("error") or {"message": "response.failed without an error"}
            raise stream_error({"error": error})
        if kind == "error":
            raise stream_error(payload)
        return 0  # created, in_progress, *.added, *.done and event types newer than this

    def _token(self, flags: int) -> int:
        self.token_events += 1
        return flags

    def _end(self, response: dict[str, Any]) -> None:
        self.finished = True
        self._usage(response.get("usage"))

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.set_output_tokens(usage.get("output_tokens"))
        prompt = usage.get("input_tokens")
        if isinstance(prompt, int):
            self.input_tokens = prompt
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
        if isinstance(cached, int):
            self.cached_input_tokens = cached
        reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
        if isinstance(reasoning, int):
            self.reasoning_tokens = reasoning


class ResponsesProtocol:
    name = "openai-responses"

    def endpoint(self, api_base_url: str) -> str:
        return suffix_endpoint(api_base_url, _SUFFIX)

    def build_request(
        self,
        provider: Provider,
        model: str,
        module: Module,
        prompt: str,
        max_tokens: int,
        api_key: str,
    ) -> WireRequest:
        capabilities = provider.capabilities(model)
        extra: dict[str, Any] = {"store": False}  # a probe's answer is nobody's to keep
        effort = effort_for(capabilities, module.reasoning_effort)
        if effort is not None:
            extra["reasoning"] = {"effort": effort}
        return streaming_request(
            self.endpoint(provider.api_base_url),
            model,
            module,
            prompt,
            max(max_tokens, MIN_OUTPUT_TOKENS),
            {"Authorization": f"Bearer {api_key}"},
            max_tokens_field=capabilities.max_tokens_field,
            input_field="input",
            **extra,
        )

    def new_stream(self) -> ResponsesStream:
        return ResponsesStream()


PROTOCOL = ResponsesProtocol()
