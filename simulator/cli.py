"""`perfgen simulate`: serve the simulated providers until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click
from aiohttp import web

from perfgen.listen import ListenError, display_host, parse_listen
from perfgen.simulator.config import ConfigError, load_simulator_config
from perfgen.simulator.server import create_app

READY_PREFIX = "simulator listening on "
# Hung and stalled streams are released on shutdown; this only bounds a stuck client.
_SHUTDOWN_TIMEOUT_SECONDS = 2.0


def _listen_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ListenError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


async def serve(app: web.Application, host: str, port: int) -> None:
    """Run `app` until a stop signal; prints the ready line with the bound port."""
    access_log = logging.getLogger("aiohttp.access")
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
        access_log=access_log if access_log.isEnabledFor(logging.INFO) else None,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        print(f"{READY_PREFIX}http://{display_host(host)}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Simulator TOML file (see simulator/example.toml).",
)
@click.option(
    "--listen",
    default="127.0.0.1:8700",
    show_default=True,
    callback=_listen_option,
    help="HOST:PORT to serve on; port 0 picks a free port (printed on the ready line).",
)
@click.option("--seed", type=int, default=None, help="Random seed; overrides the file's seed.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="info and debug also log every request (costly under load).",
)
def simulate(config_path: str, listen: tuple[str, int], seed: int | None, log_level: str) -> None:
    """Serve simulated OpenAI- and Anthropic-compatible providers.

    Each provider lives under /<name>/ (OpenAI: /<name>/v1/chat/completions, Anthropic:
    /<name>/v1/messages); ground truth and run-time control live under /-/.
    Prints "simulator listening on http://HOST:PORT" once ready.
    """
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        config = load_simulator_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    host, port = listen
    try:
        asyncio.run(serve(create_app(config, seed), host, port))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
