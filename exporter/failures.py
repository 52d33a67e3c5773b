"""Why a provider refused a request: the failure reason of a non-2xx answer.

HTTP status alone says too little: a 400 may be a parameter this model refuses (the
operator's configuration, fixed in the capability table), an over-long prompt or a
content filter; a 429 may be a rate limit or an empty account; Anthropic's overload is
HTTP 529. The body says which, in every provider's own words.
"""

from __future__ import annotations

import json
import re
from typing import Any

from perfgen.exporter.protocols.base import body_error_text, error_reason

# Words of an error message that say a parameter itself is refused.
_REFUSED = re.compile(
    r"unsupported|not supported|unrecognized|unknown|extra|not permitted|not allowed"
    r"|invalid|unexpected|not available|does not support|deprecated|below minimum",
    re.IGNORECASE,
)
# Names a message quotes: 'max_tokens', "max_tokens", `max_tokens`, or `max_tokens:` at the
# start (Anthropic: "max_tokens: Extra inputs are not permitted").
_QUOTED = re.compile(
    r"['\"`]([A-Za-z_][\w.]*)['\"`]|^([A-Za-z_][\w.]*):|argument[s]? supplied: (\w+)"
)
# Body fields that carry the prompt: refusing them is about the content, not a parameter.
_CONTENT_FIELDS = frozenset({"messages", "input", "model"})
# How to fix a refused parameter, by the parameter.
_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def http_failure(status: int, body: bytes, request_body: bytes, provider: str) -> tuple[str, str]:
    """(reason, detail) of a non-2xx response with this body to this request."""
    text = body_error_text(body)
    detail = f"HTTP {status}: {text}"
    payload = _json(body)
    words = error_reason(payload, default="") if payload is not None else error_reason(text, "")
    if status in (401, 403) and words != "quota":
        return "auth", f"{detail}; check the probe API key of provider {provider!r}"
    if status == 529 or words == "overloaded":
        return "overloaded", detail
    if words == "quota" or status == 402:
        return "quota", detail
    if status == 429:
        return "http_429", detail
    if status >= 500:
        return "http_5xx", detail
    if 300 <= status < 400:
        return "http_4xx", detail
    if words in ("context_length", "content_filter"):
        return words, detail
    parameter = refused_parameter(payload, text, _sent_fields(request_body))
    if parameter is not None:
        # The fix first: details are cut to one bounded line.
        return "unsupported_parameter", (
            f"HTTP {status}: the provider refuses parameter {parameter!r}; "
            f"{fix_hint(parameter, provider)} ({text})"
        )
    return "http_4xx", detail


def refused_parameter(payload: Any, text: str, sent: set[str]) -> str | None:
    """The request field an error body says is refused, if it names one we sent."""
    candidates: list[str] = []
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("param"), str):
        candidates.append(error["param"])  # OpenAI names it outright
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):  # FastAPI / Mistral 422: [{"loc": ["body", "x"], ...}]
        for item in detail:
            location = item.get("loc") if isinstance(item, dict) else None
            if isinstance(location, list) and location:
                candidates.append(".".join(str(p) for p in location if p != "body"))
    messages = [text]
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        messages.append(error["message"])  # "temperature: Extra inputs ..." from its start
    for message in messages:
        if _REFUSED.search(message):
            for match in _QUOTED.finditer(message):
                candidates.append(next(g for g in match.groups() if g))
    for name in candidates:
        if name in sent and name.split(".")[0] not in _CONTENT_FIELDS:
            return name
    return None


def fix_hint(parameter: str, provider: str) -> str:
    """One sentence on how to stop sending what the provider refuses."""
    where = f'[performance.providers.{provider}] (or its models."GLOB" table)'
    top = parameter.split(".")[0]
    if top in _CAP_FIELDS:
        others = " or ".join(f'"{f}"' for f in _CAP_FIELDS if f != top)
        return f"set max_tokens_field = {others} in {where}"
    if top == "stream_options":
        return f"set stream_options = false in {where}"
    if top in ("reasoning_effort", "reasoning"):
        return (
            f"set lowest_effort / reasoning_effort for this model in {where}, or drop the "
            "module's reasoning_effort"
        )
    if top == "thinking":
        return f"remove thinking_budget_tokens from {where}"
    if top == "temperature":
        return "remove temperature from the module: this model takes only its default"
    return 'see docs/exporter.md, "Unsupported parameters"'


def _sent_fields(request_body: bytes) -> set[str]:
    """Every field of the request, nested ones dotted (stream_options.include_usage)."""
    body = _json(request_body)
    fields: set[str] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            fields.add(key)
            if isinstance(value, dict):
                fields.update(f"{key}.{inner}" for inner in value)
    return fields


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
