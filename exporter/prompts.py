"""Which prompt a probe sends: rotated per probe, padded for long-context modules.

Rotation keeps provider-side caches (exact-response caches, prefix caches) from
flattering a model that is asked the same question every minute. Every prompt starts
with a per-request nonce for the same reason: prefix caches (OpenAI, Anthropic, DeepSeek)
match from the first token, so a nonce anywhere else leaves the whole prefix before it
cacheable. Whatever is cached anyway is reported (`cached_input_tokens`).
"""

from __future__ import annotations

import secrets
import threading

from perfgen.config import Module

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and BPE tokenizers

_FILLER = (
    "The harbour office keeps a ledger of every ship that enters and leaves the port. "
    "Each entry lists the vessel, its cargo, the tide at arrival and the berth assigned. "
    "Inspectors compare the ledger with customs forms at the end of every week. "
    "Discrepancies are rare, and most are traced to a clerk copying a number twice. "
    "In winter the ledger grows thin, since storms keep the larger ships offshore. "
)
_HEADER = "Reference {nonce}. The notes below are background only; do not summarise them.\n\n"
_SHORT_HEADER = "Reference {nonce}.\n"

_counters: dict[tuple[str, str], int] = {}
_lock = threading.Lock()  # the CLI and tests may probe from more than one thread


def next_prompt_index(target: str, module: str) -> int:
    """A process-wide counter per target+module: 0, 1, 2, ... on successive probes."""
    key = (target, module)
    with _lock:
        index = _counters.get(key, 0)
        _counters[key] = index + 1
    return index


def build_prompt(module: Module, index: int, nonce: str | None = None) -> str:
    """Prompt number `index` (wrapping) of the module after a nonce, padded to about
    module.input_tokens."""
    prompt = module.prompts[index % len(module.prompts)]
    nonce = nonce or secrets.token_hex(4)
    if module.input_tokens <= 0:
        return _SHORT_HEADER.format(nonce=nonce) + prompt
    header = _HEADER.format(nonce=nonce)
    target_chars = module.input_tokens * CHARS_PER_TOKEN
    room = target_chars - len(header) - len(prompt) - 2
    if room <= 0:
        return _SHORT_HEADER.format(nonce=nonce) + prompt
    filler = _FILLER * (room // len(_FILLER) + 1)
    # Cut at a word boundary so the padding stays ordinary text for the tokenizer.
    cut = filler.rfind(" ", 0, room)
    return f"{header}{filler[: cut if cut > 0 else room]}\n\n{prompt}"
