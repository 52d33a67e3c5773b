"""Run one module against one target: stream the requests, time them, return a ProbeResult.

Timing (definitions in docs/exporter.md, "What is measured"):

* t0 is taken when aiohttp is about to write the request headers (a trace hook), so
  connection setup is not charged to the model. A session made without that hook
  (not by create_session) falls back to "just before session.post()", and the log says so.
* Each read is timestamped with time.perf_counter() the moment it returns, before any
  parsing; every event decoded from that read carries the read's timestamp.
* TTFT: first event carrying a token of any kind; first_content: first visible answer
  token; duration: last token-bearing event.
* Connection set-up (DNS, TCP, TLS) is timed by its own trace hooks and reported as
  connect_seconds, apart from TTFT.
* After the protocol's terminator, a stream that has not reported usage is read on to
  the body's end, bounded in time and bytes (`_read_trailer`): some servers send usage
  after `data: [DONE]`. Nothing read there moves a timestamp.

A misbehaving provider never raises out of run_probe: every request ends as a
RequestResult, failed ones with a result.FAILURE_REASONS word and a one-line detail
from which every configured API key value has been removed. With a shared session
(the exporter's), a request that went out on a kept-alive connection the provider had
just closed is sent once more on another connection, with its own t0 (`_post`).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from perfgen.config import (
    Config,
    ExporterSettings,
    Module,
    Provider,
    Target,
    redact,
    redact_urls,
    secret_values,
)
from perfgen.exporter import accounting
from perfgen.exporter.bounded import BoundedParts
from perfgen.exporter.failures import http_failure
from perfgen.exporter.prompts import build_prompt, next_prompt_index
from perfgen.exporter.protocols import (
    CONTENT,
    END,
    TOKEN,
    StreamFacts,
    StreamFailure,
    WireProtocol,
    WireRequest,
    get_protocol,
)
from perfgen.exporter.protocols.base import (
    DETAIL_LIMIT,
    loggable_url,
    shorten,
)
from perfgen.exporter.result import ProbeResult, RequestResult, decode_rate
from perfgen.exporter.sse import Event, SSEDecoder, SSELimitExceeded
from perfgen.exporter.tokens import estimate_tokens

# Deadlines come from asyncio.timeout_at; aiohttp's own timeouts would race with it.
NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
_ERROR_BODY_LIMIT = 4096
# Decoded per event-loop turn, at most (see _read): ~200 typical events, 1-2 ms of work.
_SLICE_BYTES = 16 << 10
# A stream that delivered bytes this recently when the deadline hit was slow, not stalled.
_STALL_SECONDS = 1.0
# A key is sent as an HTTP header: only printable ASCII (and space) can go there as
# written. aiohttp refuses control characters with an error that quotes the header, and
# sends anything else as UTF-8 bytes, which no provider would take for the key either.
_UNSENDABLE = re.compile(r"[^\x20-\x7e]")
# How a kept-alive connection that the provider closed as our request went out fails:
# before any response, so the request never reached the model (aiohttp retries this
# itself only for idempotent methods, and a probe is a POST).
_STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# After the terminator: how long and how much more to read for a late usage report.
_TRAILER_SECONDS = 0.5
_TRAILER_BYTES = 64 * 1024


class _Timing:
    """Filled in by the trace hooks for one request (passed as trace_request_ctx)."""

    __slots__ = ("connect_started", "connected", "reused", "t0")

    def __init__(self) -> None:
        self.connect_started: float | None = None
        self.connected: float | None = None
        self.reused = False  # a kept-alive connection from the session's pool
        self.t0: float | None = None


async def _on_connection_create(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    timing = context.trace_request_ctx
    if isinstance(timing, _Timing):
        timing.connect_started = time.perf_counter()


async def _on_connection_ready(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    timing = context.trace_request_ctx
    if isinstance(timing, _Timing):
        timing.connected = time.perf_counter()


async def _on_connection_reused(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    timing = context.trace_request_ctx
    if isinstance(timing, _Timing):
        timing.connected = time.perf_counter()
        timing.reused = True


async def _on_headers_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: object
) -> None:
    timing = context.trace_request_ctx
    if isinstance(timing, _Timing) and timing.t0 is None:
        timing.t0 = time.perf_counter()


TRACE = aiohttp.TraceConfig()
TRACE.on_connection_create_start.append(_on_connection_create)
TRACE.on_connection_create_end.append(_on_connection_ready)
TRACE.on_connection_reuseconn.append(_on_connection_reused)
TRACE.on_request_headers_sent.append(_on_headers_sent)


def create_session(**kwargs: Any) -> aiohttp.ClientSession:
    """A ClientSession fit for probing: the t0 trace hook, no aiohttp timeouts, and no
    decompression: a probe asks for identity, and inflating what a provider sends anyway
    would let 261 kB of gzip become 256 MB in memory (a compressed answer fails instead)."""
    kwargs.setdefault("timeout", NO_TIMEOUT)
    kwargs.setdefault("auto_decompress", False)
    return aiohttp.ClientSession(trace_configs=[TRACE], **kwargs)


class _Log:
    """The probe's human-readable lines, with every secret value removed on the way in."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets: list[str] = []
        self.lines: list[str] = []
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)
            # Longest first, so a key that contains another is removed whole.
            self._secrets.sort(key=len, reverse=True)

    def clean(self, text: str) -> str:
        return redact(text, lambda: self._secrets)

    def __call__(self, text: str) -> None:
        self.lines.append(self.clean(text))


@dataclass
class _Probe:
    """Everything the streams of one probe share."""

    provider: Provider
    protocol: WireProtocol
    model: str
    module: Module
    api_key: str
    session: aiohttp.ClientSession
    deadline: float  # event-loop time
    timeout: float
    traced: bool
    log: _Log
    limits: ExporterSettings  # the byte caps on what one answer may make us hold


@dataclass
class _Stream:
    """What one request observed, in perf_counter seconds."""

    label: str
    prompt: str
    start: float = 0.0
    timing: _Timing = field(default_factory=_Timing)
    status: int | None = None
    content_type: str = ""
    headers_at: float | None = None
    last_bytes_at: float | None = None
    first_token: float | None = None
    first_content: float | None = None
    last_token: float | None = None
    events: int = 0
    received: int = 0
    decoder: SSEDecoder = field(default_factory=SSEDecoder)
    output_cap: int = 0  # the output cap the request carried

    @property
    def t0(self) -> float:
        return self.timing.t0 if self.timing.t0 is not None else self.start

    @property
    def connect_seconds(self) -> float | None:
        """DNS + TCP + TLS of the connection this request opened; None if it reused one."""
        timing = self.timing
        if timing.reused or timing.connect_started is None or timing.connected is None:
            return None
        return timing.connected - timing.connect_started


async def run_probe(
    config: Config,
    target: Target,
    module: Module,
    *,
    timeout: float | None = None,
    session: aiohttp.ClientSession | None = None,
    prompt_index: int | None = None,
) -> ProbeResult:
    """Run `module.runs` rounds of `module.concurrency` parallel streams against `target`.

    `timeout` bounds the whole probe (default module.timeout_seconds). Raises ValueError
    only for a target that names no configured provider and model (a caller's bug).
    """
    provider = config.provider_for(target)
    if provider is None:
        raise ValueError(f"target {target.name!r} names no configured provider and model")
    protocol = get_protocol(provider.protocol)
    started_at = time.time()
    begin = time.perf_counter()
    log = _Log(secret_values(config))
    limit = module.timeout_seconds if timeout is None else timeout
    log(
        f"probe {target.name} module={module.name} protocol={protocol.name} "
        f"runs={module.runs} concurrency={module.concurrency} timeout={limit:.3g}s"
    )

    try:
        api_key = provider.key_for_probing.reveal()
    except KeyError as exc:
        detail = log.clean(str(exc.args[0]))
        log(f"failed: no_api_key: {detail}")
        failed = RequestResult(success=False, failure_reason="no_api_key", failure_detail=detail)
        return _result(target, module, started_at, begin, [failed], None, log)
    log.add_secret(api_key)  # a probe-only key from a [performance.providers] override
    if _UNSENDABLE.search(api_key):
        # Say where the key is and why it cannot be sent, never what it is.
        detail = (
            f"the probe API key ({_key_origin(provider)}) cannot be sent in an HTTP "
            "header: it holds a line break, a control character or a non-ASCII character"
        )
        log(f"failed: no_api_key: {detail}")
        failed = RequestResult(success=False, failure_reason="no_api_key", failure_detail=detail)
        return _result(target, module, started_at, begin, [failed], None, log)

    own_session = session is None
    if session is None:
        session = create_session()
    probe = _Probe(
        provider=provider,
        protocol=protocol,
        model=target.model,
        module=module,
        api_key=api_key,
        session=session,
        deadline=asyncio.get_running_loop().time() + max(limit, 0.0),
        timeout=limit,
        traced=TRACE in getattr(session, "trace_configs", ()),
        log=log,
        limits=config.performance.exporter,
    )
    if not probe.traced:
        log("note: session lacks the probe trace hook; t0 includes connection setup")
    base = prompt_index if prompt_index is not None else next_prompt_index(target.name, module.name)
    results: list[RequestResult] = []
    busy = 0.0  # wall time spent in rounds, for the aggregate rate
    try:
        for run in range(module.runs):
            labels = [
                f"run {run + 1}/{module.runs} stream {s + 1}/{module.concurrency}"
                for s in range(module.concurrency)
            ]
            if asyncio.get_running_loop().time() >= probe.deadline:
                results.extend(_unsent(probe, label) for label in labels)
                break
            first = run * module.concurrency
            round_start = time.perf_counter()
            results.extend(
                await asyncio.gather(
                    *(
                        _run_stream(probe, label, build_prompt(module, base + first + s))
                        for s, label in enumerate(labels)
                    )
                )
            )
            busy += time.perf_counter() - round_start
    finally:
        if own_session:
            await session.close()

    produced = sum(r.output_tokens or 0 for r in results if r.success)
    aggregate = produced / busy if produced and busy > 0 else None
    return _result(target, module, started_at, begin, results, aggregate, log)


def _result(
    target: Target,
    module: Module,
    started_at: float,
    begin: float,
    requests: list[RequestResult],
    aggregate: float | None,
    log: _Log,
) -> ProbeResult:
    elapsed = time.perf_counter() - begin
    ok = sum(1 for r in requests if r.success)
    log(
        f"probe done: {ok}/{len(requests)} requests succeeded in {elapsed:.3f}s"
        + (f", aggregate {aggregate:.1f} tokens/s" if aggregate else "")
    )
    return ProbeResult(
        provider=target.provider,
        model=target.model,
        module=module.name,
        started_at=started_at,
        elapsed_seconds=elapsed,
        requests=tuple(requests),
        aggregate_tokens_per_second=aggregate,
        log=tuple(log.lines),
    )


def _unsent(probe: _Probe, label: str) -> RequestResult:
    detail = f"probe deadline ({probe.timeout:.3g}s) reached before the request was sent"
    probe.log(f"{label}: failed: timeout: {detail}")
    return RequestResult(success=False, failure_reason="timeout", failure_detail=detail)


async def _run_stream(probe: _Probe, label: str, prompt: str) -> RequestResult:
    request = probe.protocol.build_request(
        probe.provider,
        probe.model,
        probe.module,
        prompt,
        probe.module.max_tokens,
        probe.api_key,
    )
    capabilities = probe.provider.capabilities(probe.model)
    probe.log(
        f"{label}: POST {loggable_url(request.url)} ({len(prompt)}-char prompt, "
        f"{capabilities.max_tokens_field} {probe.module.max_tokens})"
    )
    settings = probe.limits
    stream = _Stream(
        label,
        prompt,
        decoder=SSEDecoder(settings.max_sse_line_bytes, settings.max_sse_event_bytes),
        output_cap=request.output_cap,
    )
    facts = probe.protocol.new_stream()
    # The streamed text serves validation and, when no usage comes, the token estimate
    # (exporter/accounting.py extrapolates past what was dropped): only so much of it.
    facts.content_parts = BoundedParts(settings.max_answer_bytes)
    facts.reasoning_parts = BoundedParts(settings.max_answer_bytes)
    facts.tool_parts = BoundedParts(settings.max_answer_bytes)
    try:
        async with asyncio.timeout_at(probe.deadline):
            async with await _post(probe, request, stream) as response:
                stream.headers_at = time.perf_counter()
                stream.status = response.status
                stream.content_type = response.headers.get("Content-Type", "")
                _log_headers(probe, stream, response)
                if not 200 <= response.status < 300:
                    return await _http_failure(probe, stream, response, request)
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    return _fail(
                        probe,
                        stream,
                        "bad_stream",
                        f"answer is Content-Encoding: {shorten(encoding)} although the probe "
                        "asked for identity; not decoded (a compressed stream is also a "
                        "buffered one, which would bend every timing)",
                    )
                rest = await _read(response.content, facts.feed, stream)
                if rest is not None and facts.wants_trailer:
                    await _read_trailer(probe, response.content, facts, stream, rest)
    except TimeoutError:
        if stream.status is not None and not 200 <= stream.status < 300:
            # The status is the news; the error body was merely slow.
            return _fail(
                probe,
                stream,
                _http_reason(stream.status),
                f"HTTP {stream.status}; no error body before the probe timeout",
            )
        return _fail(
            probe,
            stream,
            "timeout",
            _timeout_detail(probe, stream, facts.token_events),
            facts=facts,
        )
    except StreamFailure as exc:
        return _fail(probe, stream, exc.reason, exc.detail, facts=facts)
    except SSELimitExceeded as exc:
        return _fail(probe, stream, "bad_stream", str(exc), facts=facts)
    except aiohttp.ClientConnectorError as exc:
        return _fail(
            probe, stream, "connect", f"cannot connect: {_exception_text(exc, request.url)}"
        )
    except (aiohttp.ClientError, OSError) as exc:
        if stream.headers_at is None:
            return _fail(
                probe,
                stream,
                "connect",
                f"connection failed before a response: {_exception_text(exc, request.url)}",
            )
        return _fail(
            probe,
            stream,
            "bad_stream",
            f"stream broken after {facts.token_events} token events: "
            f"{_exception_text(exc, request.url)}",
            facts=facts,
        )
    except ValueError as exc:
        if stream.headers_at is not None:
            raise  # a bug in the engine, not something the provider did
        # aiohttp refuses to send what it cannot (credentials in the URL next to an
        # Authorization header, a header it cannot encode): configuration, not a crash.
        return _fail(
            probe,
            stream,
            "connect",
            f"cannot send the request: {_exception_text(exc, request.url)}",
        )
    return _finish(probe, stream, facts)


async def _post(probe: _Probe, request: WireRequest, stream: _Stream) -> aiohttp.ClientResponse:
    """POST the request; once more if it went out on a kept-alive connection that the
    provider had just closed (its idle timeout and our request crossed), so that reusing
    connections never shows up as a provider's `connect` failure."""
    retried = False
    while True:
        stream.start = time.perf_counter()
        try:
            return await probe.session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=NO_TIMEOUT,
                allow_redirects=False,
                trace_request_ctx=stream.timing,
            )
        except _STALE_CONNECTION as exc:
            if retried or not stream.timing.reused:
                raise
            retried = True
            probe.log(
                f"{stream.label}: the provider closed a kept-alive connection as the "
                f"request went out ({_exception_text(exc, request.url)}); sending it again"
            )
            stream.timing = _Timing()  # the retry's t0 is its own headers-sent time


async def _read(
    content: aiohttp.StreamReader, on_event: Callable[[Event], int], stream: _Stream
) -> list[Event] | None:
    """The hot loop: timestamp each read as it returns, then decode it.

    Returns None at the body's end, or the events decoded after the protocol's
    terminator (usually none) when that came first.

    Reads are at most _SLICE_BYTES: a provider flooding us fills aiohttp's buffer faster
    than we decode, and decoding all of it in one go would hold the event loop (and every
    other probe's timestamps, and /-/healthy) for as long as that takes. After a full
    slice, the loop gets a turn before the next one. Real streams read far less per turn,
    so their reads and timestamps are unchanged.
    """
    decoder = stream.decoder
    feed = decoder.feed
    read = content.read
    perf_counter = time.perf_counter
    while True:
        chunk = await read(_SLICE_BYTES)
        now = perf_counter()
        if chunk:
            stream.received += len(chunk)
            stream.last_bytes_at = now
            events = feed(chunk)
        else:
            events = decoder.flush()
        for event in events:
            stream.events += 1
            flags = on_event(event)
            if flags:
                if flags & TOKEN:
                    if stream.first_token is None:
                        stream.first_token = now
                    if flags & CONTENT and stream.first_content is None:
                        stream.first_content = now
                    stream.last_token = now
                if flags & END:
                    return _after(events, event)
        if not chunk:
            return None
        if len(chunk) == _SLICE_BYTES:
            await asyncio.sleep(0)  # more may be buffered: let other callbacks in first


def _after(events: list[Event], last: Event) -> list[Event]:
    """The events of one read that follow `last` (by identity: events may be equal)."""
    for index, event in enumerate(events):
        if event is last:
            return events[index + 1 :]
    return []


async def _read_trailer(
    probe: _Probe,
    content: aiohttp.StreamReader,
    facts: StreamFacts,
    stream: _Stream,
    pending: list[Event],
) -> None:
    """After the terminator, until the body ends or usage comes: what the server adds.

    Bounded (_TRAILER_SECONDS, _TRAILER_BYTES, and well inside the probe deadline) and
    timing-neutral: the answer is complete, only its counts may still arrive. Whatever
    goes wrong here leaves the answer as it was.
    """
    loop = asyncio.get_running_loop()
    until = min(loop.time() + _TRAILER_SECONDS, probe.deadline - 0.05)
    budget = _TRAILER_BYTES
    events = pending
    try:
        async with asyncio.timeout_at(until):
            while True:
                for event in events:
                    stream.events += 1
                    facts.feed(event)
                if not facts.wants_trailer or budget <= 0:
                    return
                chunk = await content.read(min(budget, _SLICE_BYTES))
                if not chunk:
                    for event in stream.decoder.flush():
                        facts.feed(event)
                    return
                budget -= len(chunk)
                stream.received += len(chunk)
                events = stream.decoder.feed(chunk)
    except TimeoutError:
        probe.log(f"{stream.label}: no usage within {_TRAILER_SECONDS:g}s after the terminator")
    except (StreamFailure, SSELimitExceeded, aiohttp.ClientError, OSError) as exc:
        probe.log(f"{stream.label}: after the terminator: {type(exc).__name__}: {exc}")


def _finish(probe: _Probe, stream: _Stream, facts: StreamFacts) -> RequestResult:
    module = probe.module
    _drop_implausible_usage(probe, stream, facts)
    tokens = facts.token_events
    summary = (
        f"{stream.events} events, {tokens} token events, "
        f"{stream.decoder.comments} comments, {stream.received} bytes"
    )
    if "event-stream" not in stream.content_type:
        # A server that ignored stream=true answers with one JSON body: say so plainly.
        summary += f" of {stream.content_type or 'no content type'}, not text/event-stream"
    if not facts.finished:
        if tokens:
            return _fail(
                probe,
                stream,
                "bad_stream",
                f"stream ended without its terminator after {summary}",
                facts=facts,
            )
        return _fail(
            probe, stream, "empty_response", f"stream ended without a token: {summary}", facts=facts
        )
    if facts.truncated and stream.first_content is None:
        return _fail(probe, stream, "reasoning_truncated", _cap_detail(probe, facts), facts=facts)
    if not tokens or stream.first_token is None or stream.last_token is None:
        return _fail(
            probe, stream, "empty_response", f"no token in the response: {summary}", facts=facts
        )
    answer = facts.content_text
    if module.expected_response and not _pattern(module.expected_response).search(answer):
        parts = facts.content_parts
        kept = (
            f" (only its first {len(answer)} characters were kept, max_answer_bytes)"
            if isinstance(parts, BoundedParts) and parts.truncated
            else ""
        )
        return _fail(
            probe,
            stream,
            "validation",
            f"answer does not match {module.expected_response!r}{kept}: {answer!r}",
            facts=facts,
        )

    output, source = accounting.output_tokens(facts)
    t0 = stream.t0
    ttft = stream.first_token - t0
    first_content = stream.first_content - t0 if stream.first_content is not None else None
    duration = stream.last_token - t0
    hidden = accounting.reasoning_hidden(facts)
    if hidden:
        # All output over the visible stream would credit the model with the reasoning
        # it did before streaming anything: count the answer over the answer's stream.
        basis = "visible_answer"
        rate = decode_rate(accounting.answer_tokens(facts, output, source), duration, first_content)
    else:
        basis = "output"
        rate = decode_rate(output, duration, ttft)
    reasoning = accounting.reasoning_tokens(facts)
    content_text = "none" if first_content is None else f"{first_content:.3f}s"
    rate_text = "n/a" if rate is None else f"{rate:.1f}"
    notes = ""
    if hidden:
        notes += f", reasoning not streamed ({reasoning or 'uncounted'} tokens): rate of the answer"
    if facts.cached_input_tokens:
        notes += f", {facts.cached_input_tokens} prompt tokens from the provider's cache"
    probe.log(
        f"{stream.label}: ok: ttft {ttft:.3f}s, first content {content_text}, "
        f"duration {duration:.3f}s, {output} output tokens ({source}), "
        f"{rate_text} tokens/s{notes}; {summary}"
    )
    return RequestResult(
        success=True,
        http_status=stream.status,
        ttft_seconds=ttft,
        first_content_seconds=first_content,
        duration_seconds=duration,
        output_tokens=output,
        input_tokens=facts.input_tokens if facts.input_tokens else estimate_tokens(stream.prompt),
        reasoning_tokens=reasoning,
        tokens_per_second=rate,
        token_count_source=source,
        reasoning_hidden=hidden,
        decode_rate_basis=basis if rate is not None else None,
        cached_input_tokens=facts.cached_input_tokens,
        connect_seconds=stream.connect_seconds,
    )


def _cap_detail(probe: _Probe, facts: StreamFacts) -> str:
    reasoning = accounting.reasoning_tokens(facts)
    field = probe.provider.capabilities(probe.model).max_tokens_field
    spent = f"{reasoning} reasoning tokens" if reasoning else "reasoning"
    return (
        f"the output cap ({field} {probe.module.max_tokens}) ran out during reasoning: "
        f"{spent} and no visible answer; raise the module's max_tokens or set its "
        'reasoning_effort = "lowest"'
    )


# Servers may count an end-of-sequence token or two beyond max_tokens; more is not a count.
_USAGE_SLACK_TOKENS = 8
# The prompt as sent is wrapped in a chat template (role markers, BOS): a few hundred tokens
# at most beyond one token per byte of the prompt itself.
_PROMPT_OVERHEAD_TOKENS = 4096


def _drop_implausible_usage(probe: _Probe, stream: _Stream, facts: StreamFacts) -> None:
    """Forget counts the provider reported that cannot be true, saying so in the log.

    The request capped the output (the cap as sent: an Anthropic thinking budget and the
    Responses minimum raise it); a count outside that (negative, absurd) would bend the
    decode rate and the budget, so the estimate from the streamed text stands in for it.
    """
    # Not bounded by the bytes streamed: hidden reasoning is counted without being sent.
    output_cap = max(probe.module.max_tokens, stream.output_cap) + _USAGE_SLACK_TOKENS
    checks = (
        ("output_tokens", output_cap),
        ("reasoning_tokens", output_cap),
        ("input_tokens", len(stream.prompt.encode()) + _PROMPT_OVERHEAD_TOKENS),
        ("cached_input_tokens", len(stream.prompt.encode()) + _PROMPT_OVERHEAD_TOKENS),
    )
    for name, cap in checks:
        value = getattr(facts, name)
        if value is not None and not 0 <= value <= cap:
            setattr(facts, name, None)
            probe.log(
                f"{stream.label}: usage ignored: {name}={shorten(str(value))} is implausible "
                f"(allowed 0-{cap}: the output cap as sent, or the prompt's size)"
            )


def _fail(
    probe: _Probe,
    stream: _Stream,
    reason: str,
    detail: str,
    retry_after: float | None = None,
    facts: StreamFacts | None = None,
) -> RequestResult:
    """A failed request: no timings, but the tokens it already received (they were paid
    for, and the budget and llm_output_tokens_total count them)."""
    # Redacted whole, then shortened: a cut first could leave a key's start at the end.
    detail = shorten(redact_urls(probe.log.clean(detail)), DETAIL_LIMIT)
    output: int | None = None
    source: str | None = None
    input_tokens: int | None = None
    cached: int | None = None
    received = ""
    if facts is not None:
        cached = facts.cached_input_tokens
        _drop_implausible_usage(probe, stream, facts)
        output, source = accounting.output_tokens(facts)
        if not output:
            output, source = None, None
        else:
            received = f" ({output} output tokens received, {source})"
        input_tokens = facts.input_tokens or None  # only a count the server gave
    probe.log(f"{stream.label}: failed: {reason}: {detail}{received}")
    return RequestResult(
        success=False,
        failure_reason=reason,
        failure_detail=detail,
        http_status=stream.status,
        output_tokens=output,
        input_tokens=input_tokens,
        token_count_source=source,
        retry_after_seconds=retry_after,
        cached_input_tokens=cached,
        connect_seconds=stream.connect_seconds,
    )


def _key_origin(provider: Provider) -> str:
    """Where the probe key of `provider` comes from, for messages (never its value)."""
    secret = provider.key_for_probing
    if secret.env_var:
        return f"${secret.env_var}"
    if provider.probe_api_key is not None:
        return f"[performance.providers.{provider.name}] probe_api_key"
    return f"[[providers]] {provider.name} api_key"


def _log_headers(probe: _Probe, stream: _Stream, response: aiohttp.ClientResponse) -> None:
    after = (stream.headers_at or stream.t0) - stream.t0
    line = (
        f"{stream.label}: HTTP {response.status} {stream.content_type or '-'}, "
        f"headers after {after:.3f}s"
    )
    if stream.timing.t0 is not None:
        # Connection setup (DNS, TCP, TLS, pool wait) happens before t0: shown, not charged.
        line += f", request written {stream.timing.t0 - stream.start:.3f}s after start"
    probe.log(line)


async def _http_failure(
    probe: _Probe, stream: _Stream, response: aiohttp.ClientResponse, request: WireRequest
) -> RequestResult:
    status = response.status
    retry_after = retry_after_seconds(response.headers)
    if 300 <= status < 400:
        # Redirects are not followed: they would hide a wrong api_base_url and skew t0.
        where = loggable_url(response.headers.get("Location", "?"))
        reason, detail = "http_4xx", f"HTTP {status} redirect to {where}; fix api_base_url"
    else:
        body = await _read_some(response.content)
        reason, detail = http_failure(status, body, request.body, probe.provider.name)
    if retry_after is not None:
        detail += f" (Retry-After {retry_after:g}s)"
    return _fail(probe, stream, reason, detail, retry_after)


def _http_reason(status: int) -> str:
    # 3xx lands in http_4xx with the 4xx: a client-side configuration problem.
    return "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"


async def _read_some(content: aiohttp.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < _ERROR_BODY_LIMIT:
        part = await content.read(_ERROR_BODY_LIMIT - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def retry_after_seconds(headers: CIMultiDictProxy[str]) -> float | None:
    """Seconds a server asks us to wait: Retry-After (seconds or HTTP date) or retry-after-ms."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return _finite_wait(float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            when = None
        if when is not None and when.tzinfo is not None:
            return _finite_wait(when.timestamp() - time.time())
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return _finite_wait(float(millis) / 1000.0)
        except ValueError:
            pass
    return None


def _finite_wait(seconds: float) -> float | None:
    """A wait fit for arithmetic: `nan` and `1e400` (inf) mean nothing usable; negative is 0.

    The scheduler caps it at the test interval; here it only has to be a real number.
    """
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _timeout_detail(probe: _Probe, stream: _Stream, tokens: int) -> str:
    now = time.perf_counter()
    limit = f"{probe.timeout:.3g}s"
    if stream.headers_at is None:
        if probe.traced and stream.timing.connected is None:
            return f"not connected within the {limit} probe timeout"
        return f"no response headers within the {limit} probe timeout"
    if stream.last_bytes_at is None:
        return f"no body bytes within the {limit} probe timeout (HTTP {stream.status})"
    quiet = now - stream.last_bytes_at
    if quiet >= _STALL_SECONDS:
        return (
            f"stream stalled: no bytes for {quiet:.1f}s after {tokens} token events "
            f"(probe timeout {limit})"
        )
    return f"stream still running at the {limit} probe timeout after {tokens} token events"


def _exception_text(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    # aiohttp quotes an invalid URL whole, query (and the key that may be in it) included.
    text = text.replace(url, loggable_url(url))
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


@lru_cache(maxsize=64)
def _pattern(expression: str) -> re.Pattern[str]:
    return re.compile(expression)
