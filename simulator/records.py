"""Ground truth: what the simulator intended and when it actually wrote the bytes.

Times are `time.monotonic()` (CLOCK_MONOTONIC, system-wide on Linux), so a client in
another process on the same machine can compare them with its own timestamps.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    id: str
    provider: str
    model: str
    protocol: str
    stream: bool
    received: float
    ttft_seconds: float | None = None
    tokens_per_second: float | None = None
    fault: str | None = None
    status: int | None = None
    first_token_sent: float | None = None
    last_token_sent: float | None = None
    tokens_sent: int = 0  # streamed tokens only: hidden reasoning is generated, not sent
    reasoning_hidden: bool = False
    cached_tokens: int = 0
    finished: float | None = None
    client_disconnected: bool = False
    bytes_sent: int = 0  # counted by hostile modes only (simulator/hostile.py)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RequestLog:
    """A bounded ring of records; in-flight requests are visible and keep updating."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=capacity)

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)

    def clear(self) -> None:
        self._records.clear()

    def latest(
        self, limit: int, provider: str | None = None, model: str | None = None
    ) -> list[RequestRecord]:
        """The newest `limit` matching records, oldest first."""
        picked: list[RequestRecord] = []
        for record in reversed(self._records):
            if len(picked) >= limit:
                break
            if provider is not None and record.provider != provider:
                continue
            if model is not None and record.model != model:
                continue
            picked.append(record)
        picked.reverse()
        return picked
