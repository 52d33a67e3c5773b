"""Anthropic Messages streaming (Anthropic, and the Anthropic-compatible MiniMax, Kimi, z.ai).

Endpoint rule (the proxy's own): append `/v1/messages`, or only `/messages` when the base
already ends in `/v1`; a base already ending in `/v1/messages` is used as is.

Usage: `message_start` carries the input token counts and a provisional output count
(0 or 1 before anything is generated), so output tokens come only from `message_delta`,
whose count is cumulative. A compatible server that sends `output_tokens: null` there
has not counted, and the probe estimates instead. Cached prompt tokens are
`cache_read_input_tokens`.

Thinking: `thinking_delta` text is reasoning. The newest models stream a thinking block
with only a `signature_delta` (no text) by default, and `redacted_thinking` blocks carry
none either: that reasoning happened but was not streamed (`hidden_reasoning`), and
Anthropic's usage does not split it out of `output_tokens`.
"""

from __future__ import annotations

from typing import Any

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
    replace_path,
    shorten,
    stream_error,
    streaming_request,
    url_path,
)
from perfgen.exporter.sse import Event

API_VERSION = "2023-06-01"


class AnthropicStream(StreamFacts):
    __slots__ = ("_thinking_text",)

    def __init__(self) -> None:
        super().__init__()
        self._thinking_text = False  # the open thinking block streamed text

    def feed(self, event: Event) -> int:
        name = event.event
        if name == "ping":
            return 0
        data = event.data
        if name == "error":
            raise event_error(data)
        message = parse_json(data)
        try:
            return self._message(message, name)
        except (AttributeError, TypeError) as exc:
            raise StreamFailure(
                "bad_stream", f"unexpected event shape ({exc}): {shorten(data)}"
            ) from None

    def _message(self, message: dict[str, Any], name: str | None) -> int:
        # Compatible servers sometimes omit `event:` lines; the payload's type is authoritative.
        kind = message.get("type") or name
        if kind == "content_block_delta":
            return self._delta(message.get("delta") or {})
        if kind == "message_delta":
            reason = (message.get("delta") or {}).get("stop_reason")
            if reason:
                self._stop(reason)
            usage = message.get("usage")
            if usage:
                self._usage(usage, output=True)
            return 0
        if kind == "message_start":
            usage = (message.get("message") or {}).get("usage")
            if usage:
                self._usage(usage, output=False)
            return 0
        if kind == "content_block_start":
            return self._block_start(message.get("content_block") or {})
        if kind == "message_stop":
            self.finished = True
            return END
        if kind == "error":
            raise stream_error(message)
        return 0  # ping, content_block_stop, and event types newer than this code

    def _stop(self, reason: str) -> None:
        self.finished = True
        if reason == "max_tokens":
            self.truncated = True
        elif reason == "refusal":
            raise StreamFailure("content_filter", "the model refused (stop_reason refusal)")

    def _delta(self, delta: dict[str, Any]) -> int:
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if text:
                self.content_parts.append(text)
                return self._token(TOKEN | CONTENT)
        elif kind == "thinking_delta":
            thinking = delta.get("thinking")
            if thinking:
                self.reasoning_parts.append(thinking)
                self.reasoning_events += 1
                self._thinking_text = True
                return self._token(TOKEN)
        elif kind == "input_json_delta":
            partial = delta.get("partial_json")
            if partial:
                self.tool_parts.append(partial)
                return self._token(TOKEN | CONTENT)
        elif kind == "signature_delta" and not self._thinking_text:
            # The block's signature without its text: thought, but not streamed.
            self.hidden_reasoning = True
        # signature_delta and citations_delta carry no generated token.
        return 0

    def _block_start(self, block: dict[str, Any]) -> int:
        kind = block.get("type")
        # Blocks normally start empty; a tool call's name, though, is already generated.
        if kind == "text" and block.get("text"):
            self.content_parts.append(block["text"])
            return self._token(TOKEN | CONTENT)
        if kind == "tool_use" and block.get("name"):
            return self._token(TOKEN | CONTENT)
        if kind == "thinking":
            self._thinking_text = False
            if block.get("thinking"):
                self.reasoning_parts.append(block["thinking"])
                self.reasoning_events += 1
                self._thinking_text = True
                return self._token(TOKEN)
        elif kind == "redacted_thinking":
            # Encrypted reasoning, delivered whole after the fact: no token stream to time.
            self.hidden_reasoning = True
        return 0

    def _token(self, flags: int) -> int:
        self.token_events += 1
        return flags

    def _usage(self, usage: dict[str, Any], *, output: bool) -> None:
        # The prompt is input + cache writes + cache reads: Anthropic splits them.
        parts = [
            usage.get(key)
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        ]
        if isinstance(parts[0], int):
            self.input_tokens = sum(p for p in parts if isinstance(p, int))
        if isinstance(parts[2], int):
            self.cached_input_tokens = parts[2]
        if output:
            self.set_output_tokens(usage.get("output_tokens"))


class AnthropicProtocol:
    name = "anthropic"

    def endpoint(self, api_base_url: str) -> str:
        path = url_path(api_base_url)
        if path.endswith("/v1/messages"):
            return replace_path(api_base_url, path)
        if path.endswith("/v1"):
            return replace_path(api_base_url, path + "/messages")
        return replace_path(api_base_url, path + "/v1/messages")

    def build_request(
        self,
        provider: Provider,
        model: str,
        module: Module,
        prompt: str,
        max_tokens: int,
        api_key: str,
    ) -> WireRequest:
        extra: dict[str, Any] = {}
        budget = provider.capabilities(model).thinking_budget_tokens
        if budget is not None:
            # The cap covers thinking too and must exceed its budget: the module's cap
            # stays what the answer may use.
            extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
            max_tokens += budget
        return streaming_request(
            provider.endpoint or self.endpoint(provider.api_base_url),
            model,
            module,
            prompt,
            max_tokens,
            {"x-api-key": api_key, "anthropic-version": API_VERSION},
            **extra,
        )

    def new_stream(self) -> AnthropicStream:
        return AnthropicStream()


PROTOCOL = AnthropicProtocol()
