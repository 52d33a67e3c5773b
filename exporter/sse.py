"""Incremental decoder for text/event-stream (the WHATWG "server-sent events" format).

Bytes go in as the socket delivers them, complete events come out. It knows nothing of
sockets, JSON or time, so the caller can timestamp a read before handing it over.

It sits on the probe's hot path: lines are cut with bytes.split (C speed), never by
walking bytes in Python, and a read that completes no line costs one list append.

It is also where a hostile provider is stopped: a line (the bytes before a newline) and an
event (its `data:` lines together) are capped, and SSELimitExceeded is raised as soon as
either grows past its cap, before the bytes are joined or decoded. What the decoder holds is
therefore at most one cap plus one read, however long the stream or its lines, and the work
per read is proportional to the read (one socket read, at most a few hundred kB), so one
provider's data cannot block the event loop for long.
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"
_DATA_PREFIX = b"data: "
# Real providers' lines and events are under a few kB (one JSON chunk); a whole
# non-streamed answer of a server that ignored stream=true fits too.
DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_EVENT_BYTES = 1 << 20


class SSELimitExceeded(Exception):
    """A line or an event grew past its cap; the message says which and how far."""


class Event(NamedTuple):
    """One dispatched event; `event` is None when the stream gave no `event:` line."""

    event: str | None
    data: str
    id: str | None = None


_new_tuple = tuple.__new__


class SSEDecoder:
    """Turn a byte stream into Events, however the stream is split into reads.

    `comments` counts `:` lines (keep-alives such as OpenRouter's `: OPENROUTER PROCESSING`)
    and `lines` counts every line, so a caller can tell a quiet stream from a dead one.
    """

    __slots__ = (
        "_pending",
        "_pending_size",
        "_data",
        "max_line",
        "max_event",
        "_event",
        "_last_id",
        "_skip_lf",
        "_at_start",
        "comments",
        "lines",
    )

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._pending: list[bytes] = []  # the start of a line whose end has not arrived
        self._pending_size = 0
        self._data: list[bytes] = []
        self.max_line = max_line_bytes
        self.max_event = max_event_bytes
        self._event: bytes | None = None
        self._last_id: str | None = None
        # A CR ending one read may be the first half of a CRLF ending in the next one.
        self._skip_lf = False
        self._at_start = True  # a UTF-8 BOM is only skipped at the very start
        self.comments = 0
        self.lines = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """Decode one read; returns the events it completed (often none or one)."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\n" not in chunk and b"\r" not in chunk:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size > self.max_line:
                self._line_too_long(self._pending_size)
            if self._at_start:
                self._strip_bom()
            return []
        if self._pending:
            # Checked before the join: a too-long line is never copied into one buffer.
            end = chunk.find(b"\n")
            cut = chunk.find(b"\r")
            head = min(end, cut) if end >= 0 and cut >= 0 else max(end, cut)
            if self._pending_size + head > self.max_line:
                self._line_too_long(self._pending_size + head)
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        if self._at_start:
            self._at_start = False
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        # Only a read longer than the cap can hold a line longer than it (checked in C).
        if len(chunk) > self.max_line and max(map(len, lines)) > self.max_line:
            self._line_too_long(max(map(len, lines)))
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
            self._pending_size = len(rest)
        return self._process(lines)

    def _line_too_long(self, size: int) -> None:
        self._pending.clear()  # nothing of it is kept once refused
        self._pending_size = 0
        raise SSELimitExceeded(
            f"SSE line over the {self.max_line}-byte cap (max_sse_line_bytes): "
            f"{size} bytes without a line break"
        )

    def flush(self) -> list[Event]:
        """End of stream: the unterminated last line and event, if any.

        The standard drops an event the stream did not finish with a blank line; servers
        that omit the final blank line after `data: [DONE]` are common enough that a
        probe is better served by seeing it (a truncated JSON payload still shows up
        as malformed to the protocol layer).
        """
        lines: list[bytes] = []
        if self._pending:
            lines.append(b"".join(self._pending))
            self._pending.clear()
            self._pending_size = 0
        lines.append(b"")
        return self._process(lines)

    def _strip_bom(self) -> None:
        # A BOM split across reads: decide only once three bytes (or a mismatch) are in.
        head = b"".join(self._pending)
        if len(head) < 3 and _BOM.startswith(head):
            return
        self._at_start = False
        if head.startswith(_BOM):
            self._pending[:] = [head[3:]] if len(head) > 3 else []

    def _process(self, lines: list[bytes]) -> list[Event]:
        events: list[Event] = []
        data = self._data
        self.lines += len(lines)
        for line in lines:
            if line.startswith(_DATA_PREFIX):
                data.append(line[6:])
                continue
            if not line:
                if data:
                    events.append(self._dispatch())
                else:
                    self._event = None
                continue
            if line[0] == 0x3A:  # ':'
                self.comments += 1
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value
            elif name == b"id" and b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
            # `retry` and unknown fields do not concern a probe.
        if data:
            # An event still open after this read: what it holds may not grow past the cap.
            # (An event begun and ended within one read is bounded by the read itself.)
            size = sum(map(len, data)) + len(data)
            if size > self.max_event:
                self._event_too_large(size)
        return events

    def _event_too_large(self, size: int) -> None:
        self._data.clear()
        raise SSELimitExceeded(
            f"SSE event over the {self.max_event}-byte cap (max_sse_event_bytes): "
            f"{size} bytes of data lines and counting"
        )

    def _dispatch(self) -> Event:
        data = self._data
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        data.clear()
        name = self._event
        self._event = None
        # tuple.__new__ skips NamedTuple's keyword-handling constructor: a third of the cost.
        return _new_tuple(
            Event,
            (
                name.decode("utf-8", "replace") if name else None,
                payload.decode("utf-8", "replace"),
                self._last_id,
            ),
        )
