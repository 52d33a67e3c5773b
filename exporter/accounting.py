"""What a finished stream's facts amount to: token counts, hidden reasoning, rate basis.

Kept apart from the read loop (exporter/probe.py) so that nothing here runs per event.
"""

from __future__ import annotations

from collections.abc import Sequence

from perfgen.exporter.protocols import StreamFacts
from perfgen.exporter.tokens import estimate_tokens

# Usage counting more than twice the reasoning the stream showed means most of it was
# never streamed (a summary, or nothing): the estimate of streamed text is rough, but
# not that rough.
_HIDDEN_FACTOR = 2


def estimate_of(*texts: Sequence[str]) -> int:
    """The estimate of streamed text parts (0 for none). The probe keeps only so much of
    it (exporter/bounded.py: `dropped` counts the rest); what was dropped is taken to be
    like what was kept."""
    text = "".join("".join(parts) for parts in texts)
    if not text:
        return 0
    dropped = sum(getattr(parts, "dropped", 0) for parts in texts)
    tokens = estimate_tokens(text)
    return round(tokens * (len(text) + dropped) / len(text)) if dropped else tokens


def output_tokens(facts: StreamFacts) -> tuple[int, str]:
    """The server's count when it gave a believable one; else an estimate from the text
    that was streamed (exporter/tokens.py), never from the number of events."""
    if facts.output_tokens:
        return facts.output_tokens, "usage"
    if not facts.token_events:
        return 0, "estimate"
    counted = estimate_of(facts.reasoning_parts, facts.content_parts, facts.tool_parts)
    return max(counted, 1), "estimate"


def reasoning_tokens(facts: StreamFacts) -> int | None:
    """Reasoning tokens: the server's count, else an estimate of the streamed reasoning."""
    if facts.reasoning_tokens is not None:
        return facts.reasoning_tokens
    if facts.reasoning_parts:
        return estimate_of(facts.reasoning_parts) or None
    return None


def reasoning_hidden(facts: StreamFacts) -> bool:
    """The model reasoned, but (most of) its reasoning was not streamed."""
    if facts.reasoning_tokens:
        streamed = estimate_of(facts.reasoning_parts)
        return streamed * _HIDDEN_FACTOR < facts.reasoning_tokens
    return facts.hidden_reasoning and not facts.reasoning_events


def answer_tokens(facts: StreamFacts, output: int, source: str) -> int:
    """Tokens of the visible answer: usage minus its reasoning count where the server
    split them, else an estimate of the answer's text (Anthropic does not split)."""
    if source == "usage" and facts.reasoning_tokens is not None:
        return max(output - facts.reasoning_tokens, 0)
    return estimate_of(facts.content_parts, facts.tool_parts)
