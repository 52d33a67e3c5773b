"""Deterministic generated text and the prompt facts the simulator needs.

Each token is one short word plus a space, so a client that counts whitespace-separated
words gets the exact token count back, and two runs produce byte-identical streams.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "then",
    "runs", "far", "away", "into", "green", "hills", "where", "small", "birds", "sing",
    "softly", "under", "blue", "sky", "while", "rivers", "flow", "past", "old", "stone",
)  # fmt: skip
THINKING_WORDS = (
    "first", "consider", "what", "is", "asked", "then", "check", "each", "step", "so",
    "the", "answer", "holds", "given", "this", "reasoning",
)  # fmt: skip

_REPLY_WITH = re.compile(r"^\s*Reply with:\s?(.*?)\s*$", re.MULTILINE)
# Vocabulary words need no escaping; caching their JSON form keeps the per-token path
# free of json.dumps for all but user-supplied "Reply with" words.
_JSON_CACHE: dict[str, str] = {}


def json_string(text: str) -> str:
    """`text` as a JSON string literal, cached for the small fixed vocabulary."""
    cached = _JSON_CACHE.get(text)
    if cached is None:
        cached = json.dumps(text, ensure_ascii=False)
        if len(_JSON_CACHE) < 4096:
            _JSON_CACHE[text] = cached
    return cached


def answer_tokens(count: int, reply_with: str | None) -> list[str]:
    """`count` answer tokens; they start with the words of `reply_with` when given."""
    lead = reply_with.split() if reply_with else []
    tokens = [word + " " for word in lead[:count]]
    for index in range(count - len(tokens)):
        tokens.append(WORDS[index % len(WORDS)] + " ")
    return tokens


def reasoning_tokens(count: int) -> list[str]:
    return [THINKING_WORDS[index % len(THINKING_WORDS)] + " " for index in range(count)]


def content_text(content: Any) -> str:
    """The text of a message `content`: a string, or a list of OpenAI/Anthropic text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return "\n".join(text for text in parts if isinstance(text, str))
    return ""


def reply_with(messages: Iterable[Any]) -> str | None:
    """The text after `Reply with:` in the last user message, if it has such a line."""
    last_user = None
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            last_user = message
    if last_user is None:
        return None
    match = _REPLY_WITH.search(content_text(last_user.get("content")))
    if match is None or not match.group(1):
        return None
    return match.group(1)


def prompt_tokens(texts: Iterable[str]) -> int:
    """Prompt size estimate: about four characters per token, at least one token."""
    return max(1, round(sum(len(text) for text in texts) / 4))
