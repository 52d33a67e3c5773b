"""Per-request random draws: what one request will experience, decided on arrival.

Every request makes the same four draws from the server's single `random.Random`, in
arrival order, whatever its profile says; so a seeded run repeats exactly even when a
PATCH or phase changes which of those draws matter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from perfgen.simulator.config import Profile


@dataclass(frozen=True, slots=True)
class RequestPlan:
    ttft_seconds: float
    tokens_per_second: float
    fault: str | None
    reasoning_tokens: int
    answer_tokens: int
    # True when max_tokens cut generation short (OpenAI "length", Anthropic "max_tokens").
    truncated: bool
    tokens_per_chunk: int
    include_usage: bool
    retry_after_seconds: int
    reasoning_shape: str = "reasoning_content"
    usage_position: str = "separate_chunk"
    cached_tokens: int = 0  # prompt tokens "served from cache" (set after the draw)

    @property
    def total_tokens(self) -> int:
        return self.reasoning_tokens + self.answer_tokens


def draw_plan(profile: Profile, rng: random.Random, max_tokens: int | None) -> RequestPlan:
    fault_draw = rng.random()
    kind_draw = rng.random()
    ttft_z = rng.gauss(0.0, 1.0)
    tps_draw = rng.random()

    fault = _pick_fault(profile, kind_draw) if fault_draw < profile.error_rate else None
    ttft = profile.ttft_ms / 1000.0 * math.exp(profile.ttft_sigma * ttft_z)
    tps = profile.tokens_per_second * (1.0 + profile.tps_jitter * (2.0 * tps_draw - 1.0))

    # The budget covers reasoning too, as OpenAI's max_completion_tokens does.
    budget = max_tokens if max_tokens is not None else math.inf
    reasoning = int(min(profile.reasoning_tokens, budget))
    answer = int(min(profile.output_tokens, budget - reasoning))
    truncated = profile.reasoning_tokens + profile.output_tokens > budget
    if fault == "empty":
        reasoning, answer, truncated = 0, 0, False
    return RequestPlan(
        ttft_seconds=ttft,
        tokens_per_second=tps,
        fault=fault,
        reasoning_tokens=reasoning,
        answer_tokens=answer,
        truncated=truncated,
        tokens_per_chunk=profile.tokens_per_chunk,
        include_usage=profile.include_usage,
        retry_after_seconds=profile.retry_after_seconds,
        reasoning_shape=profile.reasoning_shape,
        usage_position=profile.usage_position,
    )


def _pick_fault(profile: Profile, draw: float) -> str:
    total = sum(profile.faults.values())
    threshold = draw * total
    running = 0.0
    kind = ""
    for kind, weight in profile.faults.items():
        running += weight
        if threshold < running:
            return kind
    return kind
