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

from perfgen.exporter.sse import Event

from perfgen.config import Module, Provider

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


class StreamFacts(ABC):
    """What one response stream has said so far. Subclasses implement feed()."""

    __slots__ = (
        "token_events",
        "reasoning_events",
        "content_parts",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "finished",
    )

    def __init__(self) -> None:
        self.token_events = 0  # events that carried at least one token
        self.reasoning_events = 0  # ... of which carried reasoning
        self.content_parts: list[str] = []  # the visible answer, for validation
        # The server's own counts; None until it reports them.
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        # The server said the answer is complete (terminator, finish/stop reason).
        self.finished = False

    @abstractmethod
    def feed(self, event: Event) -> int:
        """Digest one event; returns TOKEN/CONTENT/END flags, raises StreamFailure."""

    @property
    def content_text(self) -> str:
        return "".join(self.content_parts)


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
    **extra_body: Any,
) -> WireRequest:
    """The part every wire format shares: one user message, streamed, no compression.

    `auth_headers` carry the key (and any version header); `extra_body` adds
    protocol-specific fields to the JSON body.
    """
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": module.temperature,
        "stream": True,
        **extra_body,
    }
    return WireRequest(url, encode_body(body), {**auth_headers, **STREAM_HEADERS})


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
