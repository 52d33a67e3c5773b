"""The aiohttp application: every configured provider under `/<name>/`, admin under `/-/`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from perfgen.simulator.anthropic_wire import AnthropicWire
from perfgen.simulator.config import ConfigError, Profile, ProviderConfig, SimulatorConfig
from perfgen.simulator.hostile import respond_hostile
from perfgen.simulator.openai_wire import OpenAIWire
from perfgen.simulator.plan import RequestPlan, draw_plan
from perfgen.simulator.prompt_cache import PromptCache
from perfgen.simulator.records import RequestLog, RequestRecord
from perfgen.simulator.responder import client_gone, wait_until_gone, write_stream
from perfgen.simulator.responses_wire import ResponsesWire
from perfgen.simulator.state import ProfileBook
from perfgen.simulator.text import answer_tokens, reasoning_tokens
from perfgen.simulator.wire import BadRequest, ChatRequest, Wire

RECORDS_CAPACITY = 10_000
DEFAULT_REQUESTS_LIMIT = 100
_WIRES: dict[str, Wire] = {"openai": OpenAIWire(), "anthropic": AnthropicWire()}
_RESPONSES_WIRE = ResponsesWire()
_FAULT_STATUS = {"http_429": 429, "http_500": 500, "http_503": 503}
# Faults whose status and body each wire words its own way.
_FAULT_BODIES = ("http_529", "quota", "context_length")
_FAULT_MESSAGES = {
    429: "Rate limit reached for requests (simulated).",
    500: "The server had an error while processing your request (simulated).",
    503: "The server is overloaded or not ready yet (simulated).",
}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


@dataclass
class SimulatorState:
    config: SimulatorConfig
    seed: int | None
    book: ProfileBook
    log: RequestLog
    rng: random.Random
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    cache: PromptCache = field(default_factory=PromptCache)
    serial: int = 0

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial


STATE = web.AppKey("simulator_state", SimulatorState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(config: SimulatorConfig, seed: int | None = None) -> web.Application:
    """Build the simulator app; `seed` (else the file's `seed`) makes runs repeatable."""
    effective_seed = seed if seed is not None else config.seed
    state = SimulatorState(
        config=config,
        seed=effective_seed,
        book=ProfileBook(config),
        log=RequestLog(RECORDS_CAPACITY),
        rng=random.Random(effective_seed),
    )
    app = web.Application()
    app[STATE] = state
    for provider in config.providers:
        wire = _WIRES[provider.protocol]
        chat = _chat_handler(state, provider, wire)
        models = _models_handler(provider, wire)
        if provider.protocol == "openai":
            app.router.add_post(f"/{provider.name}/v1/chat/completions", chat)
            # For api_base_url = "http://host/P" clients that append /chat/completions.
            app.router.add_post(f"/{provider.name}/chat/completions", chat)
            responses = _chat_handler(state, provider, _RESPONSES_WIRE)
            app.router.add_post(f"/{provider.name}/v1/responses", responses)
            app.router.add_post(f"/{provider.name}/responses", responses)
        else:
            app.router.add_post(f"/{provider.name}/v1/messages", chat)
        app.router.add_get(f"/{provider.name}/v1/models", models)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/profiles", _get_profiles)
    app.router.add_patch("/-/profiles/{provider}/{model:.+}", _patch_profile)
    app.router.add_post("/-/reset", _reset)
    app.router.add_get("/-/requests", _get_requests)
    app.on_shutdown.append(_release_waiters)
    return app


async def _release_waiters(app: web.Application) -> None:
    # Hung and stalled handlers wait on this, so shutdown need not wait for clients.
    app[STATE].stopping.set()


def _error(
    wire: Wire, status: int, message: str, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {**_id_headers(wire, request_id), **(headers or {})}
    return web.json_response(wire.error_body(status, message), status=status, headers=all_headers)


def _id_headers(wire: Wire, request_id: str) -> dict[str, str]:
    native = "request-id" if wire.protocol == "anthropic" else "x-request-id"
    return {"x-sim-request-id": request_id, native: request_id}


def _authorized(provider: ProviderConfig, request: web.Request) -> bool:
    if provider.api_key is None:
        return True
    if request.headers.get("Authorization") == f"Bearer {provider.api_key}":
        return True
    return provider.protocol == "anthropic" and request.headers.get("x-api-key") == provider.api_key


def _models_handler(provider: ProviderConfig, wire: Wire) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not _authorized(provider, request):
            return _error(wire, 401, "Incorrect API key provided.", "sim-models")
        return web.json_response(wire.models_body(provider))

    return handle


def _chat_handler(state: SimulatorState, provider: ProviderConfig, wire: Wire) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        serial = state.next_serial()
        request_id = f"sim-{serial:08d}"
        if not _authorized(provider, request):
            message = (
                "invalid x-api-key"
                if wire.protocol == "anthropic"
                else "Incorrect API key provided."
            )
            return _error(wire, 401, message, request_id)
        try:
            chat = wire.parse(json.loads(await request.read()))
        except (ValueError, UnicodeDecodeError) as exc:
            # json.JSONDecodeError and BadRequest are both ValueErrors.
            detail = str(exc) if isinstance(exc, BadRequest) else "could not parse the JSON body"
            return _error(wire, 400, detail, request_id)
        model = provider.model(chat.model)
        if model is None:
            return _error(
                wire,
                404,
                f"The model `{chat.model}` does not exist or you do not have access to it.",
                request_id,
            )

        profile = state.book.current(provider.name, model.name)
        refused = _refused_parameter(profile, chat)
        if refused is not None:
            parameter, hint = refused
            body = wire.refusal_body(parameter, hint)
            return web.json_response(body, status=400, headers=_id_headers(wire, request_id))
        # All random draws happen here, synchronously, in arrival order.
        plan = draw_plan(profile, state.rng, chat.max_tokens)
        if profile.prompt_cache:
            cached = state.cache.lookup(provider.name, model.name, chat.prompt_text)
            if cached:
                plan = dataclasses.replace(
                    plan,
                    cached_tokens=min(cached, chat.prompt_tokens),
                    ttft_seconds=plan.ttft_seconds * profile.cache_ttft_factor,
                )
        record = RequestRecord(
            id=request_id,
            provider=provider.name,
            model=model.name,
            protocol=provider.protocol,
            stream=chat.stream,
            received=received,
            ttft_seconds=plan.ttft_seconds,
            tokens_per_second=plan.tokens_per_second,
            fault=plan.fault,
            reasoning_hidden=plan.reasoning_shape == "hidden" and plan.reasoning_tokens > 0,
            cached_tokens=plan.cached_tokens,
        )
        state.log.add(record)
        try:
            if profile.hostile:
                return await respond_hostile(
                    request,
                    chat,
                    provider.protocol,
                    profile.hostile,
                    profile.hostile_bytes,
                    record,
                    state.stopping,
                )
            return await _respond(request, state, wire, serial, chat, plan, record)
        except asyncio.CancelledError:
            # aiohttp cancels handlers of vanished clients when handler_cancellation is on.
            record.client_disconnected = True
            raise
        finally:
            record.finished = time.monotonic()

    return handle


def _refused_parameter(profile: Profile, chat: ChatRequest) -> tuple[str, str] | None:
    """(field, hint) of the first request field this model refuses, as real ones do."""
    accepted = profile.max_tokens_field
    if accepted != "any" and chat.cap_field is not None and chat.cap_field != accepted:
        return chat.cap_field, f" Use '{accepted}' instead."
    for name in profile.rejected_parameters:
        if name in chat.fields:
            return name, ""
    return None


async def _respond(
    request: web.Request,
    state: SimulatorState,
    wire: Wire,
    serial: int,
    chat: ChatRequest,
    plan: RequestPlan,
    record: RequestRecord,
) -> web.StreamResponse:
    headers = _id_headers(wire, record.id)
    if plan.fault in _FAULT_BODIES:
        status, body = wire.fault_body(plan.fault)
        record.status = status
        return web.json_response(body, status=status, headers=headers)
    fault_status = _FAULT_STATUS.get(plan.fault or "")
    if fault_status is not None:
        record.status = fault_status
        extra = {"Retry-After": str(plan.retry_after_seconds)} if fault_status == 429 else None
        return _error(wire, fault_status, _FAULT_MESSAGES[fault_status], record.id, extra)
    if plan.fault == "hang":
        await wait_until_gone(request, state.stopping)
        record.client_disconnected = client_gone(request)
        # Nobody is listening any more; this is only for aiohttp's bookkeeping.
        return web.Response(status=503, headers=headers)

    reasoning = reasoning_tokens(plan.reasoning_tokens)
    answer = answer_tokens(plan.answer_tokens, chat.reply_with)
    record.status = 200
    if chat.stream:
        response = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **headers})
        await response.prepare(request)
        encoder = wire.encoder(serial, chat, plan)
        await write_stream(
            request, response, encoder, plan, reasoning, answer, record, state.stopping
        )
        return response
    return await _respond_whole(request, state, wire, serial, chat, plan, record, reasoning, answer)


async def _respond_whole(
    request: web.Request,
    state: SimulatorState,
    wire: Wire,
    serial: int,
    chat: ChatRequest,
    plan: RequestPlan,
    record: RequestRecord,
    reasoning: list[str],
    answer: list[str],
) -> web.StreamResponse:
    """A non-streamed answer, sent when its last token would have been generated."""
    headers = {"Content-Type": "application/json", **_id_headers(wire, record.id)}
    if plan.fault == "stall":
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        await wait_until_gone(request, state.stopping)
        record.client_disconnected = client_gone(request)
        return response
    tokens = plan.total_tokens
    done_at = record.received + plan.ttft_seconds
    if tokens > 1:
        done_at += (tokens - 1) / plan.tokens_per_second
    delay = done_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    if plan.fault == "malformed":
        body = b'{"id":"chatcmpl-trunc","choices":[{"message":{"content":"trunc'
    elif plan.fault == "error_event":
        body = _compact(wire.error_event_body())
    else:
        body = _compact(wire.complete_body(serial, chat, plan, reasoning, answer))
    response = web.StreamResponse(status=200, headers=headers)
    response.content_length = len(body)
    try:
        await response.prepare(request)
        await response.write(body)
    except ConnectionError:
        record.client_disconnected = True
        return response
    sent = time.monotonic()
    if tokens:
        record.first_token_sent = record.last_token_sent = sent
        record.tokens_sent = tokens
    await response.write_eof()
    return response


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="simulator is healthy\n")


async def _get_profiles(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].book.snapshot())


async def _patch_profile(request: web.Request) -> web.Response:
    state = request.app[STATE]
    provider, model = request.match_info["provider"], request.match_info["model"]
    try:
        changes = json.loads(await request.read())
    except ValueError:
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    if not isinstance(changes, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    try:
        profile = state.book.patch(provider, model, changes)
    except KeyError:
        return web.json_response({"error": f"unknown model {provider}/{model}"}, status=404)
    except ConfigError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(profile.to_json())


async def _reset(request: web.Request) -> web.Response:
    """Back to the file's profiles, phase clock at zero, and the seed's first draw."""
    state = request.app[STATE]
    state.book.reset()
    state.cache.clear()
    state.rng.seed(state.seed)
    return web.json_response({"reset": True})


async def _get_requests(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw_limit = request.query.get("limit", str(DEFAULT_REQUESTS_LIMIT))
    try:
        limit = int(raw_limit)
        if limit < 1:
            raise ValueError
    except ValueError:
        return web.json_response({"error": "limit must be a positive integer"}, status=400)
    records = state.log.latest(
        limit, provider=request.query.get("provider"), model=request.query.get("model")
    )
    return web.json_response(
        {"now": time.monotonic(), "requests": [record.to_json() for record in records]}
    )
