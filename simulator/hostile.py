"""Hostile providers: answers built to exhaust, fool or leak from whoever probes them.

Selected per model with `hostile = "MODE"` in the simulator config (or PATCHed onto a
profile); the exporter's hardening tests run the real exporter against these. Every mode
streams until it has sent `hostile_bytes` (or forever, for `endless` and `trickle`) and
stops as soon as the client goes away, so a client that gives up early costs little.

| mode | what is sent |
|---|---|
| `giant_line` | `data: ` and then `hostile_bytes` bytes without a line break |
| `giant_event` | one event of endless `data:` lines, never the blank line that ends it |
| `gzip_bomb` | `Content-Encoding: gzip` (though identity was asked), inflating to `hostile_bytes` |
| `absurd_usage` | a normal short answer whose usage says 10^12 output and -5 input tokens |
| `key_echo` | HTTP 400 echoing the request's URL and API key (across a 200-character cut) |
| `endless` | valid token events as fast as the client reads, never a terminator |
| `trickle` | a valid stream, one byte every 0.2 s |
"""

from __future__ import annotations

import asyncio
import json
import zlib
from functools import lru_cache

from aiohttp import web

from perfgen.simulator.config import HOSTILE_MODES
from perfgen.simulator.records import RequestRecord
from perfgen.simulator.responder import client_gone
from perfgen.simulator.wire import ChatRequest

__all__ = ["HOSTILE_MODES", "respond_hostile"]
_BLOCK = 1 << 20  # bytes per write: big enough to be fast, small enough to stop quickly
_TRICKLE_SECONDS = 0.2
# Where the echoed key sits in key_echo's message: it straddles a 200-character cut.
_ECHO_OFFSET = 140


async def respond_hostile(
    request: web.Request,
    chat: ChatRequest,
    protocol: str,
    mode: str,
    size: int,
    record: RequestRecord,
    stopping: asyncio.Event,
) -> web.StreamResponse:
    record.fault = f"hostile:{mode}"
    if mode == "key_echo":
        return _key_echo(request, protocol, record)
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    if mode == "gzip_bomb":
        headers["Content-Encoding"] = "gzip"
    response = web.StreamResponse(status=200, headers=headers)
    record.status = 200
    await response.prepare(request)
    try:
        if mode == "gzip_bomb":
            await _repeat(request, response, record, stopping, _gzip_block(), size // _BLOCK)
        elif mode == "giant_line":
            await _send(response, record, b"data: ")
            await _repeat(request, response, record, stopping, b"a" * _BLOCK, size // _BLOCK)
        elif mode == "giant_event":
            line = b"data: " + b"b" * 1000 + b"\n"
            block = line * (_BLOCK // len(line))
            await _repeat(request, response, record, stopping, block, size // len(block))
        elif mode == "absurd_usage":
            for part in _absurd_usage(protocol, chat.model):
                await _send(response, record, part)
        elif mode == "endless":
            block = _content(protocol, "tok ") * 1000
            await _repeat(request, response, record, stopping, block, None)
        elif mode == "trickle":
            await _trickle(request, response, record, stopping, protocol)
        else:
            raise ValueError(f"unknown hostile mode {mode!r}")
        await response.write_eof()
    except ConnectionError:
        record.client_disconnected = True
    return response


async def _send(response: web.StreamResponse, record: RequestRecord, data: bytes) -> None:
    await response.write(data)
    record.bytes_sent += len(data)


async def _repeat(
    request: web.Request,
    response: web.StreamResponse,
    record: RequestRecord,
    stopping: asyncio.Event,
    block: bytes,
    count: int | None,
) -> None:
    sent = 0
    while count is None or sent < count:
        if stopping.is_set() or client_gone(request):
            record.client_disconnected = client_gone(request)
            return
        await _send(response, record, block)
        sent += 1


async def _trickle(
    request: web.Request,
    response: web.StreamResponse,
    record: RequestRecord,
    stopping: asyncio.Event,
    protocol: str,
) -> None:
    stream = _content(protocol, "slow ") * 1000
    for index in range(len(stream)):
        if stopping.is_set() or client_gone(request):
            record.client_disconnected = client_gone(request)
            return
        await _send(response, record, stream[index : index + 1])
        await asyncio.sleep(_TRICKLE_SECONDS)


def _key_echo(request: web.Request, protocol: str, record: RequestRecord) -> web.Response:
    sent = request.headers.get("x-api-key") or request.headers.get("Authorization") or ""
    key = sent.removeprefix("Bearer ")
    # The request's URL too, query included: keys passed as `?key=` come back that way.
    head = f"request to {request.url} refused: "
    message = head + "x" * max(0, _ECHO_OFFSET - len(head)) + f" invalid key {key} " + "y" * 100
    record.status = 400
    if protocol == "anthropic":
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error"}}
    return web.json_response(body, status=400)


@lru_cache(maxsize=1)
def _gzip_block() -> bytes:
    # A gzip member inflating to one block of zeros (about 1 kB on the wire); members may
    # be concatenated, so N copies are a valid gzip body inflating to N blocks.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(bytes(_BLOCK)) + compressor.flush()


def _content(protocol: str, text: str) -> bytes:
    if protocol == "anthropic":
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
        delta["delta"]["text"] = text  # type: ignore[index]
        return b"event: content_block_delta\ndata: " + json.dumps(delta).encode() + b"\n\n"
    chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _absurd_usage(protocol: str, model: str) -> list[bytes]:
    answer = [_content(protocol, "OK ")] * 3
    if protocol == "anthropic":
        start = {
            "type": "message_start",
            "message": {"id": "msg_hostile", "model": model, "usage": {"input_tokens": -5}},
        }
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 10**12},
        }
        return [
            b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n",
            *answer,
            b"event: message_delta\ndata: " + json.dumps(delta).encode() + b"\n\n",
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ]
    usage = {"prompt_tokens": -5, "completion_tokens": 10**12, "total_tokens": 10**12}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return [
        *answer,
        b"data: " + json.dumps(end).encode() + b"\n\n",
        b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ]
