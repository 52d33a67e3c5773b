"""What each provider and model family accepts in a probe request: the capability table.

Providers disagree on the request parameters they take: OpenAI's reasoning models refuse
`max_tokens` (HTTP 400, "use max_completion_tokens"), DeepSeek honours only `max_tokens`,
Mistral refuses `max_completion_tokens` (HTTP 422) and unknown fields such as
`stream_options`. The table below says, per protocol, provider name and model family,
which output-cap field to send, whether to ask for stream usage, and which reasoning
effort a module asking for the "lowest" one gets. `[performance.providers.NAME]` (and its
`models."GLOB"` sub-tables) override any field; see docs/exporter.md.

Sampling parameters (temperature) are never part of it: a probe sends none unless the
module sets one, since reasoning models refuse anything but their default.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Reasoning efforts OpenAI-style APIs know of; a value outside it is a typo.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# A module's `reasoning_effort = "lowest"`: the family's lowest effort (see lowest_effort).
LOWEST = "lowest"
# Anthropic refuses extended thinking with a smaller budget.
MIN_THINKING_BUDGET = 1024


@dataclass(frozen=True)
class Capabilities:
    """The request shape one provider+model gets."""

    max_tokens_field: str = "max_tokens"
    # OpenAI chat completions: ask for usage in the stream (`stream_options.include_usage`).
    stream_options: bool = True
    # Sent on every probe of the model (OpenAI-style `reasoning_effort`, Responses
    # `reasoning.effort`); None: the provider's default, nothing sent.
    reasoning_effort: str | None = None
    # What a module's `reasoning_effort = "lowest"` becomes; None: the family takes no
    # effort parameter, so the module's wish is not sent.
    lowest_effort: str | None = None
    # Anthropic extended thinking (`thinking: {type: enabled, budget_tokens: N}`); None: off.
    thinking_budget_tokens: int | None = None


CAPABILITY_FIELDS = tuple(f.name for f in fields(Capabilities))


@dataclass(frozen=True)
class _Rule:
    protocol: str  # "*" for any
    provider: str  # glob over the provider's name
    model: str  # glob over the model name (lower-cased)
    changes: Mapping[str, Any]


# First match wins within each protocol; later, more general rules are the fallbacks.
# Each family is named as the provider documents it (model ids, lower-cased).
_REASONING_OPENAI = {"max_tokens_field": "max_completion_tokens", "lowest_effort": "low"}
TABLE: tuple[_Rule, ...] = (
    # OpenAI's reasoning families: max_tokens is refused; gpt-5 knows a "minimal" effort.
    _Rule("openai", "*", "gpt-5*", {**_REASONING_OPENAI, "lowest_effort": "minimal"}),
    _Rule("openai", "*", "o[0-9]*", _REASONING_OPENAI),
    _Rule("openai", "*", "*/o[0-9]*", _REASONING_OPENAI),  # openrouter-style "openai/o3"
    _Rule("openai", "*", "*/gpt-5*", {**_REASONING_OPENAI, "lowest_effort": "minimal"}),
    # OpenAI itself takes max_completion_tokens on every current model.
    _Rule("openai", "openai*", "*", {"max_tokens_field": "max_completion_tokens"}),
    _Rule("openai", "azure*", "*", {"max_tokens_field": "max_completion_tokens"}),
    # DeepSeek ignores max_completion_tokens; the reasoner has no effort knob.
    _Rule("openai", "deepseek*", "*", {"max_tokens_field": "max_tokens"}),
    # Mistral's API refuses unknown fields (422): no max_completion_tokens, no
    # stream_options (it reports usage in the last chunk unasked).
    _Rule("openai", "mistral*", "*", {"max_tokens_field": "max_tokens", "stream_options": False}),
    # Open-weight reasoning families behind OpenAI-compatible servers (Groq, vLLM, ...).
    _Rule("openai", "*", "*gpt-oss*", {"lowest_effort": "low"}),
    _Rule("openai", "*", "gemini-2.5*", {"lowest_effort": "low"}),
    _Rule("openai", "*", "*", {}),
    _Rule("openai-responses", "*", "gpt-5*", {"lowest_effort": "minimal"}),
    _Rule("openai-responses", "*", "o[0-9]*", {"lowest_effort": "low"}),
    _Rule("openai-responses", "*", "*gpt-oss*", {"lowest_effort": "low"}),
    _Rule("openai-responses", "*", "*", {}),
    _Rule("anthropic", "*", "*", {"stream_options": False}),
)
# Defaults per protocol, before the table's changes.
_PROTOCOL_BASE = {
    "openai": Capabilities(),
    "openai-responses": Capabilities(max_tokens_field="max_output_tokens", stream_options=False),
    "anthropic": Capabilities(stream_options=False),
}


@lru_cache(maxsize=4096)  # every probe request asks; the table never changes
def table_capabilities(protocol: str, provider: str, model: str) -> Capabilities:
    """What the built-in table says for this protocol, provider name and model."""
    base = _PROTOCOL_BASE.get(protocol, Capabilities())
    name, lowered = provider.lower(), model.lower()
    for rule in TABLE:
        if rule.protocol not in ("*", protocol):
            continue
        if fnmatch.fnmatchcase(name, rule.provider) and fnmatch.fnmatchcase(lowered, rule.model):
            return replace(base, **rule.changes)
    return base


def resolve(
    protocol: str,
    provider: str,
    model: str,
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = (),
) -> Capabilities:
    """The table's entry with the configured overrides applied, in file order.

    `overrides` pairs a model glob ("*" for the provider-wide keys) with the keys set
    there; every matching pair applies, so a model's own table wins over the provider's.
    """
    capabilities = table_capabilities(protocol, provider, model)
    for pattern, changes in overrides:
        if fnmatch.fnmatchcase(model, pattern):
            capabilities = replace(capabilities, **changes)
    return capabilities


def effort_for(capabilities: Capabilities, module_effort: str | None) -> str | None:
    """The reasoning effort to send: the module's wish when the family takes one, else
    the configured effort; None sends nothing."""
    if module_effort is not None and capabilities.lowest_effort is not None:
        return capabilities.lowest_effort if module_effort == LOWEST else module_effort
    return capabilities.reasoning_effort
