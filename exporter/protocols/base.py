"""The one interface every wire format implements, and what its streams report.

Like blackbox_exporter's probers, each protocol has the same shape: build a request,
then turn each SSE event of the response into facts. Facts are returned as bit flags
and kept as plain counters on the stream object, so the per-event path allocates
nothing beyond the JSON the event carries. Timing is the caller's business.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from perfgen.config import Module, Provider
from perfgen.exporter.sse import Event

# Bit flags returned by StreamFacts.feed().
TOKEN = 1  # the event carries a generated token of any kind (answer, reasoning, tool call)
CONTENT = 2  # ... and it is visible answer content (text or tool-call), not reasoning
END = 4  # the protocol's terminator: nothing meaningful can follow

DETAIL_LIMIT = 200  # what a failure detail shows, in logs and on the debug page
# Protocol code cuts text only this short: the probe removes secrets from the whole text
# and only then shortens it to DETAIL_LIMIT (a cut at 200 first could keep a key's start).
_RAW_LIMIT = 4096


class StreamFailure(Exception):
    """The stream itself says the request failed: `reason` is a result.FAILURE_REASONS word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class WireRequest:
    url: str
    body: bytes
    # Headers hold the API key: keep them out of repr() so a stray log line cannot leak it.
    headers: dict[str, str] = field(repr=False)
    output_cap: int = 0  # the output-token cap the body carries, as sent


class StreamFacts(ABC):
    """What one response stream has said so far. Subclasses implement feed()."""

    __slots__ = (
        "token_events",
        "reasoning_events",
        "content_parts",
        "reasoning_parts",
        "tool_parts",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cached_input_tokens",
        "finished",
        "truncated",
        "hidden_reasoning",
    )

    def __init__(self) -> None:
        self.token_events = 0  # events that carried at least one token
        self.reasoning_events = 0  # ... of which carried reasoning
        self.content_parts: list[str] = []  # the visible answer, for validation
        # Streamed reasoning and tool-call text: with content_parts, what a token
        # estimate counts when the server reports no usage.
        self.reasoning_parts: list[str] = []
        self.tool_parts: list[str] = []
        # The server's own counts; None until it reports them.
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.cached_input_tokens: int | None = None  # prompt tokens served from its cache
        # The server said the answer is complete (terminator, finish/stop reason).
        self.finished = False
        # ... because the output cap ran out (finish_reason "length", "max_tokens", ...).
        self.truncated = False
        # The stream showed reasoning without its text (a thinking block with only a
        # signature, an encrypted reasoning item): counted, not streamed.
        self.hidden_reasoning = False

    @abstractmethod
    def feed(self, event: Event) -> int:
        """Digest one event; returns TOKEN/CONTENT/END flags, raises StreamFailure."""

    @property
    def content_text(self) -> str:
        return "".join(self.content_parts)

    @property
    def wants_trailer(self) -> bool:
        """After the terminator, read on to the body's end (bounded): usage may follow."""
        return False

    def set_output_tokens(self, count: object) -> None:
        """A server's cumulative output count; a later 0 (the zero an empty trailing
        chunk may carry) never replaces a real count."""
        if isinstance(count, int) and not isinstance(count, bool):
            if count > 0 or self.output_tokens is None:
                self.output_tokens = count


class WireProtocol(Protocol):
    name: str

    def endpoint(self, api_base_url: str) -> str:
        """The streaming endpoint URL for a provider's configured api_base_url."""
        ...

    def build_request(
        self,
        provider: Provider,
        model: str,
        module: Module,
        prompt: str,
        max_tokens: int,
        api_key: str,
    ) -> WireRequest: ...

    def new_stream(self) -> StreamFacts: ...


# Every probe request asks for an uncompressed event stream: a compressing server
# buffers the stream, which would distort every timing.
STREAM_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
    "Accept-Encoding": "identity",
}


def streaming_request(
    url: str,
    model: str,
    module: Module,
    prompt: str,
    max_tokens: int,
    auth_headers: dict[str, str],
    *,
    max_tokens_field: str = "max_tokens",
    input_field: str = "messages",
    **extra_body: Any,
) -> WireRequest:
    """The part every wire format shares: one user message, streamed, no compression.

    `auth_headers` carry the key (and any version header); the output cap goes under
    `max_tokens_field` (the capability table's choice); `extra_body` adds
    protocol-specific fields. No sampling parameter unless the module sets one.
    """
    body: dict[str, Any] = {"model": model}
    if input_field == "messages":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body[input_field] = prompt
    body[max_tokens_field] = max_tokens
    if module.temperature is not None:
        body["temperature"] = module.temperature
    body["stream"] = True
    body.update(extra_body)
    return WireRequest(url, encode_body(body), {**auth_headers, **STREAM_HEADERS}, max_tokens)


def loggable_url(url: str) -> str:
    """`url` fit for logs and pages: without user info, query and fragment.

    Keys hide in all three (`https://user:KEY@host`, `?key=KEY`); scheme, host, port and
    path stay, and a removed query leaves `?...` so that its presence is still visible.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")) + ("?..." if parts.query else "")


def replace_path(url: str, path: str) -> str:
    """`url` with its path replaced; scheme, host, port and query are kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def suffix_endpoint(api_base_url: str, suffix: str) -> str:
    """The OpenAI SDK rule: a path already ending in `suffix` is used as is, a bare host
    gets `/v1` + suffix, any other path (it names the API version) gets `suffix`."""
    path = url_path(api_base_url)
    if path.endswith(suffix):
        return replace_path(api_base_url, path)
    if not path:
        return replace_path(api_base_url, "/v1" + suffix)
    return replace_path(api_base_url, path + suffix)


def url_path(url: str) -> str:
    """The path of `url` without trailing slashes ('' for a bare host)."""
    return urlsplit(url).path.rstrip("/")


def encode_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def parse_json(data: str) -> dict[str, Any]:
    """An event's JSON object; anything else means the stream is broken."""
    try:
        value = json.loads(data)
    except ValueError:
        raise StreamFailure("bad_stream", f"malformed JSON in event: {shorten(data)}") from None
    if not isinstance(value, dict):
        raise StreamFailure("bad_stream", f"event is not a JSON object: {shorten(data)}")
    return value


def error_text(payload: Any) -> str:
    """One line from an error object in any of the common shapes (OpenAI, Anthropic, FastAPI)."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail")
            kind = inner.get("type") or inner.get("code")
            if message and kind:
                return shorten(f"{kind}: {message}")
            if message or kind:
                return shorten(str(message or kind))
        elif isinstance(inner, str):
            return shorten(inner)
        detail = payload.get("detail") or payload.get("message")
        if detail:
            return shorten(str(detail))
    return shorten(json.dumps(payload) if not isinstance(payload, str) else payload)


def error_reason(payload: Any, default: str = "error_event") -> str:
    """The failure reason an error object names, whatever shape it comes in.

    Used for in-stream errors and for HTTP error bodies alike: an Anthropic
    `overloaded_error` after HTTP 200 is the same news as an HTTP 529.
    """
    text = _error_words(payload)
    for reason, words in _REASON_WORDS:
        if any(word in text for word in words):
            return reason
    return default


# Codes and phrases each provider uses (OpenAI codes, Anthropic types, DeepSeek,
# Mistral, vLLM and llama.cpp messages), lower-cased; first match wins.
_REASON_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("overloaded", ("overloaded",)),
    ("quota", ("insufficient_quota", "exceeded your current quota", "billing", "credit balance")),
    (
        "context_length",
        (
            "context_length",
            "context length",
            "context window",
            "prompt is too long",
            "too many tokens",
            "maximum context",
        ),
    ),
    ("content_filter", ("content_filter", "content_policy", "content management policy")),
)


def _error_words(payload: Any) -> str:
    """The code, type and message of an error object, lower-cased, for matching."""
    parts: list[str] = []
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict):
            for key in ("type", "code", "message", "status"):
                value = inner.get(key)
                if isinstance(value, str):
                    parts.append(value)
        elif isinstance(inner, str):
            parts.append(inner)
        for key in ("type", "code", "message", "detail"):
            value = payload.get(key)
            if isinstance(value, str):
                parts.append(value)
    elif isinstance(payload, str):
        parts.append(payload)
    return " ".join(parts).lower()


def stream_error(payload: Any) -> StreamFailure:
    """The StreamFailure of an in-stream error object."""
    return StreamFailure(error_reason(payload), error_text(payload))


def event_error(data: str) -> StreamFailure:
    """The StreamFailure of an SSE `error` event's data."""
    try:
        payload = json.loads(data)
    except ValueError:
        return StreamFailure("error_event", shorten(data) or "error event without data")
    return stream_error(payload)


def event_error_text(data: str) -> str:
    """One line from the data of an SSE `error` event."""
    try:
        return error_text(json.loads(data))
    except ValueError:
        return shorten(data) or "error event without data"


def body_error_text(body: bytes) -> str:
    """A readable line from a non-2xx response body (JSON error object or plain text)."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "empty body"
    try:
        return error_text(json.loads(text))
    except ValueError:
        return shorten(text)


def shorten(text: str, limit: int = _RAW_LIMIT) -> str:
    """One line, bounded: details end up in logs and on the exporter's debug page.

    The default keeps enough for redaction to see a key whole; the probe cuts a redacted
    detail to DETAIL_LIMIT.
    """
    line = " ".join(text[: limit * 4].split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
