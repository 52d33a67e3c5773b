"""The incremental SSE decoder: same events however the bytes are split into reads."""

from __future__ import annotations

import pytest
from test_protocols import RECORDED

from perfgen.exporter.sse import Event, SSEDecoder


def _decode(*reads: bytes, flush: bool = False) -> tuple[list[Event], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[Event] = []
    for read in reads:
        events.extend(decoder.feed(read))
    if flush:
        events.extend(decoder.flush())
    return events, decoder


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_split_at_every_offset_gives_identical_events(name):
    raw = RECORDED[name].encode()
    whole, _ = _decode(raw)
    assert whole and all(event.data for event in whole)
    for offset in range(len(raw) + 1):
        events, _ = _decode(raw[:offset], raw[offset:])
        assert events == whole, f"split at byte {offset}"


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_byte_by_byte_gives_identical_events(name):
    raw = RECORDED[name].encode()
    whole, _ = _decode(raw)
    events, _ = _decode(*(raw[i : i + 1] for i in range(len(raw))))
    assert events == whole


@pytest.mark.parametrize("ending", ["\r\n", "\r", "\n"])
def test_line_endings(ending):
    raw = RECORDED["anthropic_thinking"].replace("\n", ending).encode()
    expected, _ = _decode(RECORDED["anthropic_thinking"].encode())
    for offset in range(len(raw) + 1):
        events, _ = _decode(raw[:offset], raw[offset:])
        assert events == expected, f"{ending!r} split at byte {offset}"


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    events, _ = _decode(b"data: a\r", b"\ndata: b\r\n\r\n")
    assert events == [Event(None, "a\nb")]


def test_cr_only_event_dispatches_without_waiting_for_more_bytes():
    events, _ = _decode(b"data: a\r\r")
    assert events == [Event(None, "a")]


def test_multi_line_data_is_joined_with_newlines():
    events, _ = _decode(b"data: first\ndata:second\ndata\ndata:  two spaces\n\n")
    assert events == [Event(None, "first\nsecond\n\n two spaces")]


def test_comments_are_counted_and_ignored():
    events, decoder = _decode(b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: x\n\n:\n")
    assert events == [Event(None, "x")]
    assert decoder.comments == 3


def test_event_name_id_and_unknown_fields():
    events, _ = _decode(
        b"event: message_start\nid: 7\nretry: 100\nfoo: bar\ndata: {}\n\n"
        b"data: after\n\n"
        b"id: 8\0\nevent:ping\ndata:{}\n\n"
    )
    assert events == [
        Event("message_start", "{}", "7"),
        Event(None, "after", "7"),
        Event("ping", "{}", "7"),
    ]


def test_event_without_data_is_not_dispatched():
    events, _ = _decode(b"event: ping\n\ndata: x\n\n")
    assert events == [Event(None, "x")]


def test_bom_is_skipped_at_start_only():
    raw = b"\xef\xbb\xbfdata: a\n\ndata: \xef\xbb\xbfb\n\n"
    expected = [Event(None, "a"), Event(None, "\ufeffb")]
    for offset in range(len(raw) + 1):
        events, _ = _decode(raw[:offset], raw[offset:])
        assert events == expected, f"split at byte {offset}"
    events, _ = _decode(*(raw[i : i + 1] for i in range(len(raw))))
    assert events == expected


def test_invalid_utf8_is_replaced_not_raised():
    events, _ = _decode(b"data: \xff\n\n")
    assert events == [Event(None, "\ufffd")]


def test_flush_dispatches_an_unterminated_last_event():
    events, _ = _decode(b"data: a\n\ndata: [DONE]", flush=True)
    assert events == [Event(None, "a"), Event(None, "[DONE]")]
    events, _ = _decode(b"data: a\n\n", flush=True)
    assert events == [Event(None, "a")]


def test_empty_reads_change_nothing():
    events, _ = _decode(b"", b"data: a\r", b"", b"\n\n", b"")
    assert events == [Event(None, "a")]


def test_many_reads_without_a_line_end():
    parts = [b"data: "] + [b"x"] * 1000 + [b"\n\n"]
    events, _ = _decode(*parts)
    assert events == [Event(None, "x" * 1000)]
