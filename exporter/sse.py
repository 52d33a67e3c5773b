"""Incremental decoder for text/event-stream (the WHATWG "server-sent events" format).

Bytes go in as the socket delivers them, complete events come out. It knows nothing of
sockets, JSON or time, so the caller can timestamp a read before handing it over.

It sits on the probe's hot path: lines are cut with bytes.split (C speed), never by
walking bytes in Python, and a read that completes no line costs one list append.
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"
_DATA_PREFIX = b"data: "


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
        "_data",
        "_event",
        "_last_id",
        "_skip_lf",
        "_at_start",
        "comments",
        "lines",
    )

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the start of a line whose end has not arrived
        self._data: list[bytes] = []
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
            if self._at_start:
                self._strip_bom()
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending.clear()
        if self._at_start:
            self._at_start = False
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
        return self._process(lines)

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
        return events

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
