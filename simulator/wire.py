"""What the server needs from a wire format, and the request facts both formats share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from perfgen.simulator.config import ProviderConfig
from perfgen.simulator.plan import RequestPlan

# How many tokens a `stall`, `malformed` or `error_event` stream sends before misbehaving.
FAULT_AFTER_TOKENS = 3


class BadRequest(ValueError):
    """The request body is not something the real API would accept (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    stream: bool
    max_tokens: int | None
    # OpenAI reports stream usage only on request; Anthropic always does.
    wants_usage: bool
    prompt_tokens: int
    reply_with: str | None
    # Which cap field the body used, its top-level fields, and the prompt's text (for
    # the capability checks and the prefix cache).
    cap_field: str | None = None
    fields: frozenset[str] = frozenset()
    prompt_text: str = ""


class StreamEncoder(Protocol):
    """Bytes of one response stream, each method one write."""

    def preamble(self) -> bytes: ...

    def reasoning(self, tokens: list[str]) -> bytes: ...

    def answer(self, tokens: list[str]) -> bytes: ...

    def finish(self) -> bytes: ...

    def malformed(self) -> bytes: ...

    def error_event(self) -> bytes: ...


class Wire(Protocol):
    protocol: str

    def parse(self, body: Any) -> ChatRequest: ...

    def error_body(self, status: int, message: str) -> dict[str, Any]: ...

    def models_body(self, provider: ProviderConfig) -> dict[str, Any]: ...

    def encoder(self, serial: int, request: ChatRequest, plan: RequestPlan) -> StreamEncoder: ...

    def complete_body(
        self,
        serial: int,
        request: ChatRequest,
        plan: RequestPlan,
        reasoning: list[str],
        answer: list[str],
    ) -> dict[str, Any]: ...

    def error_event_body(self) -> dict[str, Any]: ...

    def refusal_body(self, parameter: str, hint: str) -> dict[str, Any]:
        """HTTP 400 body refusing one request field, as this API words it."""
        ...

    def fault_body(self, fault: str) -> tuple[int, dict[str, Any]]:
        """Status and body of an HTTP fault (http_529, quota, context_length)."""
        ...


def optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest(f"{key} must be a positive integer")
    return value
