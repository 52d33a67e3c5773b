"""The decoder's caps: a line or an event past its cap is refused before it is buffered whole."""

from __future__ import annotations

import pytest

from perfgen.exporter.bounded import BoundedParts
from perfgen.exporter.sse import SSEDecoder, SSELimitExceeded


def test_a_line_split_over_many_reads_is_refused_at_the_cap() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    decoder.feed(b"data: " + b"a" * 500)
    with pytest.raises(SSELimitExceeded, match="SSE line over the 1000-byte cap"):
        for _ in range(100):
            decoder.feed(b"a" * 100)
    assert decoder._pending_size == 0 and not decoder._pending  # nothing of it kept


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_a_too_long_line_completed_in_the_next_read_is_refused(end: bytes) -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    decoder.feed(b"data: " + b"a" * 900)
    with pytest.raises(SSELimitExceeded):
        decoder.feed(b"b" * 200 + end + b"\n")


def test_a_too_long_line_inside_one_read_is_refused() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(SSELimitExceeded):
        decoder.feed(b"data: x\n\ndata: " + b"a" * 2000 + b"\n\n")


def test_a_long_tail_without_end_is_refused() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(SSELimitExceeded):
        decoder.feed(b"data: x\n\n" + b"a" * 2000)


def test_lines_at_the_cap_pass() -> None:
    decoder = SSEDecoder(max_line_bytes=1000, max_event_bytes=1000)
    line = b"data: " + b"a" * 994
    events = decoder.feed(line[:500]) + decoder.feed(line[500:] + b"\n\n")
    assert [len(e.data) for e in events] == [994]


@pytest.mark.parametrize("prefix", [b"data: ", b"data:"])
def test_an_event_of_many_data_lines_is_refused_at_the_cap(prefix: bytes) -> None:
    decoder = SSEDecoder(max_line_bytes=1000, max_event_bytes=10_000)
    with pytest.raises(SSELimitExceeded, match="SSE event over the 10000-byte cap"):
        for _ in range(200):
            decoder.feed(prefix + b"b" * 100 + b"\n")
    # The decoder dropped the event: a later one decodes normally.
    assert [e.data for e in decoder.feed(b"\ndata: ok\n\n")] == ["ok"]


def test_many_small_events_never_reach_the_event_cap() -> None:
    decoder = SSEDecoder(max_line_bytes=1000, max_event_bytes=1000)
    events = decoder.feed(b"data: " + b"c" * 900 + b"\n\n" * 1) * 1
    for _ in range(100):
        events += decoder.feed(b"data: " + b"c" * 900 + b"\n\n")
    assert len(events) == 101


def test_bounded_parts_keeps_only_its_limit() -> None:
    parts = BoundedParts(10)
    for text in ("hello ", "world ", "and more"):
        parts.append(text)
    assert "".join(parts) == "hello worl"
    assert parts.truncated and parts.dropped == 10
    none = BoundedParts(0)
    none.append("anything")
    assert list(none) == [] and none.dropped == 8
