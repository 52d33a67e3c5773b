"""A provider-side prefix cache, as OpenAI, Anthropic and DeepSeek run one.

A prompt that starts like a recent prompt to the same model has that shared prefix
"cached": the response reports those tokens (`cached_tokens`, `cache_read_input_tokens`)
and its first token comes sooner. As with the real caches, only a long shared prefix
counts (real providers: 1024 tokens; here MIN_TOKENS, so tests stay small), and a
nonce at the start of each prompt defeats it while one at the end does not.
"""

from __future__ import annotations

import os
from collections import deque

MIN_TOKENS = 16
CHARS_PER_TOKEN = 4  # the simulator's prompt-size rule (text.prompt_tokens)
_RECENT = 32  # prompts remembered per model


class PromptCache:
    def __init__(self) -> None:
        self._recent: dict[tuple[str, str], deque[str]] = {}

    def lookup(self, provider: str, model: str, prompt: str) -> int:
        """Cached tokens of `prompt` (0 below MIN_TOKENS); remembers it for later ones."""
        recent = self._recent.setdefault((provider, model), deque(maxlen=_RECENT))
        shared = max((len(os.path.commonprefix([prompt, seen])) for seen in recent), default=0)
        recent.append(prompt)
        tokens = shared // CHARS_PER_TOKEN
        return tokens if tokens >= MIN_TOKENS else 0

    def clear(self) -> None:
        self._recent.clear()
