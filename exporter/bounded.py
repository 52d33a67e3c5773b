"""The answer text a probe keeps: only what `expected_response` needs, never the whole stream.

A probe validates the visible answer against a regex; without one it needs none of the
text. Protocols append each content delta to `StreamFacts.content_parts`; the probe swaps
that list for a BoundedParts, so a provider that streams gigabytes of "content" costs the
probe at most `limit` characters, whatever the protocol code does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import SupportsIndex


class BoundedParts(list[str]):
    """A list of text parts that stops keeping text once `limit` characters are held.

    Characters, not bytes: the text is already decoded, and a character is at least one
    byte on the wire, so the cap in bytes of `[performance.exporter] max_answer_bytes` is
    never exceeded in what is kept from the stream. `dropped` counts what was not kept.
    """

    __slots__ = ("limit", "kept", "dropped")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.kept = 0
        self.dropped = 0

    def append(self, part: str) -> None:
        room = self.limit - self.kept
        if room <= 0:
            self.dropped += len(part)
            return
        if len(part) > room:
            self.dropped += len(part) - room
            part = part[:room]
        self.kept += len(part)
        super().append(part)

    def extend(self, parts: Iterable[str]) -> None:
        for part in parts:
            self.append(part)

    def insert(self, index: SupportsIndex, part: str) -> None:
        raise TypeError("BoundedParts only appends")

    @property
    def truncated(self) -> bool:
        return self.dropped > 0
