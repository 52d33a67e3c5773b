"""What a probe found: the contract between the probe engine and everything that reports it.

Times are seconds (floats) from t0, the moment the request was written; an unknown
value is None. Definitions are in docs/exporter.md ("What is measured").
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# Short, stable words: they become the `reason` label, so the set must stay small.
FAILURE_REASONS = (
    "timeout",
    "connect",
    "http_429",
    "http_5xx",
    "http_4xx",
    "bad_stream",
    "error_event",
    "empty_response",
    "validation",
    "no_api_key",
    # The provider refused a request parameter: the operator's configuration (the
    # capability table), not the provider's health. The detail names the parameter.
    "unsupported_parameter",
    "overloaded",  # HTTP 529 / overloaded_error, also in-stream after HTTP 200
    "auth",  # HTTP 401 / 403: a wrong, revoked or unauthorised key
    "quota",  # insufficient_quota, out of credit
    "context_length",
    "content_filter",
    # The output cap ran out while the model was still reasoning: no visible answer.
    "reasoning_truncated",
)
# Reasons that are the exporter's own configuration, not the provider's health: a key that
# cannot be sent (the request never left), or a parameter the probe chose and the provider
# refused (the capability table's doing; the proxy's own requests do not carry it). They
# are not counted as requests (llm_requests_total, llm_request_failures_total), so they
# cannot lower a model's success ratio and move its routes; PerfgenProbeMisconfigured
# says why nothing is measured.
MISCONFIGURED_REASONS = frozenset({"no_api_key", "unsupported_parameter"})
# The reasons llm_request_failures_total carries (each pre-initialised to 0).
COUNTED_FAILURE_REASONS = tuple(r for r in FAILURE_REASONS if r not in MISCONFIGURED_REASONS)


@dataclass(frozen=True)
class RequestResult:
    """One streamed request (a probe makes runs x concurrency of them)."""

    success: bool
    failure_reason: str | None = None
    failure_detail: str | None = None  # one line for people; never contains a secret
    http_status: int | None = None
    ttft_seconds: float | None = None
    first_content_seconds: float | None = None
    duration_seconds: float | None = None
    output_tokens: int | None = None
    input_tokens: int | None = None
    reasoning_tokens: int | None = None
    tokens_per_second: float | None = None
    token_count_source: str | None = None  # "usage" | "estimate"
    retry_after_seconds: float | None = None
    # Usage counted reasoning that the stream did not show; the decode rate is then
    # the visible answer's tokens over the visible answer's stream.
    reasoning_hidden: bool = False
    decode_rate_basis: str | None = None  # "output" | "visible_answer"
    cached_input_tokens: int | None = None  # prompt tokens the provider served from cache
    # DNS + TCP + TLS of a new connection (None: a kept-alive one); never part of TTFT.
    connect_seconds: float | None = None

    @property
    def prompt_cache_hit(self) -> bool:
        """The provider served part of the prompt from its cache: a flattering TTFT."""
        return bool(self.cached_input_tokens)


def decode_rate(
    output_tokens: int | None, duration: float | None, ttft: float | None
) -> float | None:
    """tokens_per_second = (output_tokens - 1) / (duration - ttft); None when undefined."""
    if output_tokens is None or duration is None or ttft is None or output_tokens < 2:
        return None
    span = duration - ttft
    return (output_tokens - 1) / span if span > 0 else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class ProbeResult:
    """A whole probe: one module run against one target.

    The headline figures are medians over the successful requests; `requests` keeps
    each one so that concurrent probes can report their spread.
    """

    provider: str
    model: str
    module: str
    started_at: float  # unix time the probe began
    elapsed_seconds: float  # wall time of the whole probe
    requests: tuple[RequestResult, ...]
    aggregate_tokens_per_second: float | None = None  # all streams' tokens / wall time
    log: tuple[str, ...] = field(default=(), compare=False)

    @property
    def target(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def successes(self) -> list[RequestResult]:
        return [r for r in self.requests if r.success]

    @property
    def success(self) -> bool:
        return bool(self.requests) and all(r.success for r in self.requests)

    @property
    def failure_reason(self) -> str | None:
        """The most frequent reason among failed requests (ties: first seen)."""
        reasons = [r.failure_reason for r in self.requests if not r.success and r.failure_reason]
        return Counter(reasons).most_common(1)[0][0] if reasons else None

    @property
    def failure_detail(self) -> str | None:
        reason = self.failure_reason
        for request in self.requests:
            if request.failure_reason == reason:
                return request.failure_detail
        return None

    def _median_of(self, name: str) -> float | None:
        return _median([getattr(r, name) for r in self.successes if getattr(r, name) is not None])

    @property
    def ttft_seconds(self) -> float | None:
        return self._median_of("ttft_seconds")

    @property
    def first_content_seconds(self) -> float | None:
        return self._median_of("first_content_seconds")

    @property
    def duration_seconds(self) -> float | None:
        return self._median_of("duration_seconds")

    @property
    def tokens_per_second(self) -> float | None:
        return self._median_of("tokens_per_second")

    @property
    def output_tokens(self) -> int | None:
        counts = [r.output_tokens for r in self.successes if r.output_tokens is not None]
        return sum(counts) if counts else None

    @property
    def input_tokens(self) -> int | None:
        counts = [r.input_tokens for r in self.successes if r.input_tokens is not None]
        return sum(counts) if counts else None

    @property
    def reasoning_tokens(self) -> int | None:
        counts = [r.reasoning_tokens for r in self.successes if r.reasoning_tokens is not None]
        return sum(counts) if counts else None

    @property
    def reasoning_hidden(self) -> bool:
        return any(r.reasoning_hidden for r in self.successes)

    @property
    def decode_rate_basis(self) -> str | None:
        """How the decode rate was computed; "visible_answer" if any request needed it."""
        bases = {r.decode_rate_basis for r in self.successes if r.decode_rate_basis}
        if not bases:
            return None
        return "visible_answer" if "visible_answer" in bases else "output"

    @property
    def cached_input_tokens(self) -> int | None:
        counts = [r.cached_input_tokens for r in self.requests if r.cached_input_tokens is not None]
        return sum(counts) if counts else None

    @property
    def prompt_cache_hit(self) -> bool:
        return any(r.prompt_cache_hit for r in self.successes)

    @property
    def connect_seconds(self) -> float | None:
        return _median([r.connect_seconds for r in self.requests if r.connect_seconds is not None])

    @property
    def token_count_source(self) -> str | None:
        sources = {r.token_count_source for r in self.successes if r.token_count_source}
        if not sources:
            return None
        # One estimated stream makes the total an estimate.
        return "estimate" if "estimate" in sources else "usage"

    def spread(self, name: str) -> tuple[float, float] | None:
        """(min, max) of a per-request figure over successful requests."""
        values = [getattr(r, name) for r in self.successes if getattr(r, name) is not None]
        return (min(values), max(values)) if values else None

    def to_json(self) -> dict[str, Any]:
        """The object `perfgen probe --format json` prints (its keys are a documented contract)."""
        return {
            "target": self.target,
            "provider": self.provider,
            "model": self.model,
            "module": self.module,
            "success": self.success,
            "failure_reason": self.failure_reason,
            "failure_detail": self.failure_detail,
            "ttft_seconds": self.ttft_seconds,
            "first_content_seconds": self.first_content_seconds,
            "duration_seconds": self.duration_seconds,
            "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens,
            "tokens_per_second": self.tokens_per_second,
            "aggregate_tokens_per_second": self.aggregate_tokens_per_second,
            "token_count_source": self.token_count_source,
            "reasoning_tokens": self.reasoning_tokens,
            "reasoning_hidden": self.reasoning_hidden,
            "decode_rate_basis": self.decode_rate_basis,
            "cached_input_tokens": self.cached_input_tokens,
            "prompt_cache_hit": self.prompt_cache_hit,
            "connect_seconds": self.connect_seconds,
            # (min, max) over the successful requests: the spread of a concurrent probe.
            "spread": {
                name: list(spread) if (spread := self.spread(name)) else None
                for name in ("ttft_seconds", "tokens_per_second")
            },
            "started_at": self.started_at,
            "elapsed_seconds": self.elapsed_seconds,
            "requests": [
                {**asdict(r), "prompt_cache_hit": r.prompt_cache_hit} for r in self.requests
            ],
        }
