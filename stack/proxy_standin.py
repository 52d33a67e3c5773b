"""A stand-in for terraphim-llm-proxy, for the demo and the tests. It is NOT the proxy.

The real proxy cannot be built here, so this small process behaves as it does where
perfgen touches it, and nowhere else:

- start-up: loads `--config` with the proxy's rules (generator/proxy_schema.py, the same
  check as `perfgen validate`, `$NAME` keys resolved from the environment) and exits 1
  on the same errors;
- `GET /health`; `GET /v0/management/config` in the proxy's shape, secrets redacted,
  with `[management]` auth (`X-Management-Key` or `Authorization: Bearer`; served only
  with `enabled = true`, auth off without `secret_key`);
- `POST /v0/management/config/reload` the real way: re-reads `./config.toml` of its
  working directory (not `--config`), shows it in GET config, and keeps routing with
  what it started with;
- `POST /v1/chat/completions` and `/v1/messages` (client key `proxy.api_key`): the
  scenario is `background` when the client's model contains `haiku` (and the route is
  set), else `default`; the request goes to the scenario's primary at the provider's
  endpoint (perfgen/endpoints.py), streaming passed through, with the header
  `x-standin-route: provider,model`;
- SIGHUP re-executes the process (same pid, the file loaded afresh, a moment with no
  listener): what `systemctl restart` does to the real one, including that it may not
  come back. The demo's `--restart-command` is `kill -HUP PID`.

What it does not do: fallbacks, format translation (an OpenAI client reaching an
Anthropic provider gets 502), long_context/web_search/image detection, rate limits.

    python -m perfgen.stack.proxy_standin --config FILE [--listen HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from perfgen.config import infer_protocol
from perfgen.endpoints import proxy_endpoint
from perfgen.generator.proxy_schema import REFUSES, ROUTE_KEYS, check_text
from perfgen.stack.processes import ManagedProcess, free_port, perfgen_env

REDACTED = "[REDACTED]"
READY_PREFIX = "proxy stand-in listening on "  # supervisors wait for this line
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding"}


class LoadError(RuntimeError):
    """The file would make the real proxy exit 1."""


@dataclass(frozen=True)
class Loaded:
    """One loaded file: the raw tables and the resolved keys."""

    document: Mapping[str, Any]
    proxy_key: str
    provider_keys: tuple[str, ...]  # per [[providers]] entry, in order

    @property
    def router(self) -> Mapping[str, Any]:
        return self.document.get("router", {})

    @property
    def providers(self) -> list[Mapping[str, Any]]:
        return list(self.document.get("providers", []))

    def provider(self, name: str) -> tuple[Mapping[str, Any], str] | None:
        """The first provider of that name wins, as in the proxy."""
        for table, key in zip(self.providers, self.provider_keys, strict=True):
            if table.get("name") == name:
                return table, key
        return None

    @property
    def management(self) -> Mapping[str, Any]:
        value = self.document.get("management", {})
        return value if isinstance(value, dict) else {}


def load(path: str | os.PathLike[str], env: Mapping[str, str]) -> Loaded:
    """Read a config as the proxy does at start; LoadError names every refusal."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from None
    refused = [f for f in check_text(text, env) if f.level == REFUSES]
    if refused:
        raise LoadError("; ".join(f"{path}: {f}" for f in refused))
    document = tomllib.loads(text)
    return Loaded(
        document,
        _expand(document["proxy"]["api_key"], env),
        tuple(_expand(p["api_key"], env) for p in document["providers"]),
    )


def _expand(value: str, env: Mapping[str, str]) -> str:
    # Only whole values starting with '$'; check_text already proved the variable is set.
    return env[value[1:]] if value.startswith("$") else value


def public_config(loaded: Loaded) -> dict[str, Any]:
    """GET /v0/management/config: the proxy's shape, secrets redacted, absent routes null."""
    proxy = loaded.document["proxy"]
    router = loaded.router
    return {
        "proxy": {
            "host": proxy["host"],
            "port": proxy["port"],
            "api_key": REDACTED,
            "timeout_ms": proxy.get("timeout_ms", 600000),
        },
        "router": {
            **{key: router.get(key) for key in ROUTE_KEYS},
            "long_context_threshold": router.get("long_context_threshold", 60000),
            "model_mappings": router.get("model_mappings", []),
            "model_exclusions": router.get("model_exclusions", []),
            "strategy": router.get("strategy", "fill_first"),
        },
        "providers": [
            {
                "name": p["name"],
                "api_base_url": p["api_base_url"],
                "api_key": REDACTED,
                "models": p["models"],
                "transformers": p.get("transformers", []),
            }
            for p in loaded.providers
        ],
        "security": loaded.document.get("security", {}),
    }


def primary(route: str) -> tuple[str, str] | None:
    """The proxy's primary: before the first '|', trimmed, split at ',' (else ':'), untrimmed."""
    head = route.split("|", 1)[0].strip()
    sep = "," if "," in head else ":"
    provider, found, model = head.partition(sep)
    return (provider, model) if found else None


def scenario_of(model: str, router: Mapping[str, Any]) -> str:
    if "haiku" in model and isinstance(router.get("background"), str):
        return "background"
    return "default"


class StandIn:
    def __init__(self, config_path: str, env: Mapping[str, str]) -> None:
        self.env = env
        self.routing = load(config_path, env)  # what requests are routed by, until exit
        self.shown = self.routing  # what GET config shows; a reload replaces only this
        self.session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ management

    def _management_denied(self, request: web.Request) -> web.Response | None:
        management = self.routing.management
        if management.get("enabled") is not True:
            return web.json_response({"error": "management API disabled"}, status=404)
        secret = management.get("secret_key")
        if not secret:
            return None  # no secret: management auth is off
        bearer = request.headers.get("Authorization", "")
        given = request.headers.get("X-Management-Key") or (
            bearer[7:] if bearer.startswith("Bearer ") else None
        )
        # Literal comparison: the proxy never expands $NAME in secret_key.
        if given != secret:
            return web.json_response({"error": "invalid management key"}, status=401)
        return None

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "service": "proxy-standin"})

    async def get_config(self, request: web.Request) -> web.Response:
        return self._management_denied(request) or web.json_response(public_config(self.shown))

    async def reload(self, request: web.Request) -> web.Response:
        denied = self._management_denied(request)
        if denied:
            return denied
        try:
            self.shown = load(Path.cwd() / "config.toml", self.env)
        except LoadError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        # As in the proxy: the router keeps the configuration it started with.
        return web.json_response({"status": "reloaded"})

    # ------------------------------------------------------------------ traffic

    def _client_denied(self, request: web.Request) -> web.Response | None:
        bearer = request.headers.get("Authorization", "")
        given = request.headers.get("x-api-key") or (
            bearer[7:] if bearer.startswith("Bearer ") else None
        )
        if given != self.routing.proxy_key:
            return web.json_response({"error": "invalid API key"}, status=401)
        return None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        denied = self._client_denied(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        client_wire = "anthropic" if request.path == "/v1/messages" else "openai"
        router = self.routing.router
        scenario = scenario_of(str(body.get("model", "")), router)
        target = primary(router[scenario]) or primary(router["default"])
        found = self.routing.provider(target[0]) if target else None
        if target is None or found is None:
            return web.json_response({"error": f"no usable {scenario} route"}, status=502)
        table, key = found
        name, model = target
        wire = infer_protocol(name) or "openai"
        if wire != client_wire:
            return web.json_response(
                {"error": f"the stand-in does not translate {client_wire} to {wire} ({name})"},
                status=502,
            )
        url = proxy_endpoint(name, table["api_base_url"]) or (
            table["api_base_url"].rstrip("/") + "/v1/chat/completions"
        )
        if wire == "anthropic":
            headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        else:
            headers = {"Authorization": f"Bearer {key}"}
        assert self.session is not None
        try:
            upstream = await self.session.post(url, json={**body, "model": model}, headers=headers)
        except aiohttp.ClientError as exc:
            return web.json_response({"error": f"upstream {name}: {exc}"}, status=502)
        async with upstream:
            response = web.StreamResponse(status=upstream.status)
            for header, value in upstream.headers.items():
                if header.lower() not in _HOP_HEADERS:
                    response.headers[header] = value
            response.headers["x-standin-route"] = f"{name},{model}"
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)  # passed through as it arrives: streaming
            await response.write_eof()
        return response

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/v0/management/config", self.get_config)
        app.router.add_post("/v0/management/config/reload", self.reload)
        app.router.add_post("/v1/chat/completions", self.forward)
        app.router.add_post("/v1/messages", self.forward)
        return app


async def serve(standin: StandIn, host: str, port: int) -> bool:
    """Serve until SIGTERM/SIGINT (False) or SIGHUP (True: the caller re-executes)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[bool] = loop.create_future()

    def finish(restart: bool) -> None:
        if not stop.done():
            stop.set_result(restart)

    for signum, restart in ((signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGHUP, True)):
        loop.add_signal_handler(signum, finish, restart)
    timeout = standin.routing.document["proxy"].get("timeout_ms", 600000) / 1000
    standin.session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False
    )
    runner = web.AppRunner(standin.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"{READY_PREFIX}http://{_url_host(host)}:{port}", flush=True)
        return await stop
    finally:
        await runner.cleanup()
        await standin.session.close()


def start_standin(
    config: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "proxy-standin",
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run the stand-in on 127.0.0.1 with `workdir` as its working directory (where a
    reload looks for config.toml); ready once it listens. ProcessFailed if it refuses."""
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    chosen = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "perfgen.stack.proxy_standin",
        "--config",
        str(Path(config).resolve()),
        "--listen",
        f"127.0.0.1:{chosen}",
    ]
    process = ManagedProcess(
        name,
        argv,
        root / f"{name}.log",
        url=f"http://127.0.0.1:{chosen}",
        env=perfgen_env(env),
        cwd=root,
    )
    try:
        process.ready_line = process.wait_log_line(READY_PREFIX, timeout)
    except BaseException:
        process.stop(grace=2.0)
        raise
    return process


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfgen.stack.proxy_standin",
        description="A stand-in for terraphim-llm-proxy (demo and tests only).",
    )
    parser.add_argument("--config", required=True, metavar="FILE")
    parser.add_argument("--listen", metavar="HOST:PORT", help="default: [proxy] host and port")
    args = parser.parse_args(argv)
    own_args = list(sys.argv[1:] if argv is None else argv)
    try:
        standin = StandIn(args.config, os.environ)
    except LoadError as exc:
        print(f"proxy stand-in: refusing to start: {exc}", file=sys.stderr, flush=True)
        return 1
    proxy = standin.routing.document["proxy"]
    host, port = proxy["host"], int(proxy["port"])
    if args.listen:
        listen_host, _, listen_port = args.listen.rpartition(":")
        host, port = listen_host.strip("[]") or host, int(listen_port)
    try:
        restart = asyncio.run(serve(standin, host, port))
    except OSError as exc:
        print(f"proxy stand-in: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if restart:
        print("proxy stand-in: SIGHUP, restarting", flush=True)
        os.execv(sys.executable, [sys.executable, "-m", "perfgen.stack.proxy_standin", *own_args])
    return 0


if __name__ == "__main__":
    sys.exit(main())
