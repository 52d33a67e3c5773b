"""`perfgen exporter` (serve /probe and friends) and `perfgen probe` (one probe, now).

Exit codes follow the project's contract: 0 success, 1 error (bad config, failed
probe, cannot listen), 2 usage error (bad --listen, unknown target or module).
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys

import click
from aiohttp import web

from perfgen.config import ConfigError, load_config, redact, secret_values
from perfgen.exporter import logs
from perfgen.exporter.logs import LOG_FORMATS
from perfgen.listen import ListenError, display_host, parse_listen

DEFAULT_LISTEN = "127.0.0.1:9470"
# Cyclic-GC thresholds of the exporter process (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 100)


def tune_gc() -> None:
    """Make cyclic-GC pauses rare in a long-running exporter (docs/benchmarks.md, item 3).

    A collection runs inside whichever callback allocated last and blocks the event loop,
    delaying every token that arrives meanwhile. Gen 0 is collected after every 700 net
    new container objects: each probe builds hundreds that live as long as its stream
    (request, response, protocol, trace context, its _Stream and decoder) and the hot
    loop allocates per chunk (decoded events, JSON dicts), so at 200 streams the default
    ran ~17 collections a second, the longest 10-18 ms, each rescanning every young object.
    Reference counting frees those objects when their stream ends anyway; a 20 000
    threshold only makes the collections rare (bench: 51 per 3 s -> 0-1; the one left
    scans more, so it is rarer, not shorter). gc.freeze() first moves everything
    start-up built (modules, config, metric families, the app) to the permanent
    generation, which the older generations' collections then never rescan. The collector
    stays on: real cycles are still freed, just less often. python_gc_collections_total
    on /metrics shows the effect. Not in the library: it is a process-wide setting.
    """
    gc.collect()  # garbage frozen now would never be freed
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


SOMAXCONN = "/proc/sys/net/core/somaxconn"
# Linux's somaxconn default since 5.4; where the file cannot be read (not Linux, a sandbox),
# asking for it costs nothing: the kernel clamps a listen() backlog to its own limit.
FALLBACK_BACKLOG = 4096


def listen_backlog(path: str = SOMAXCONN) -> int:
    """The accept queue to ask for: as deep as the kernel allows.

    aiohttp's default of 128 refused connections when Prometheus servers in HA scraped
    hundreds of targets at once (2 x 400 scrapes: up to 108 refused); the queue only holds
    connections that wait for accept(), so a deep one costs memory only when it is used.
    """
    try:
        with open(path, encoding="ascii") as handle:
            value = int(handle.read().strip())
    except (OSError, ValueError):
        return FALLBACK_BACKLOG
    return value if value > 0 else FALLBACK_BACKLOG


async def _serve(app: web.Application, host: str, port: int) -> None:
    from perfgen.exporter.app import exporter_of

    exporter = exporter_of(app)
    # Our own signal handling: SIGHUP must reload, not stop, and SIGTERM must clean up.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        logger=logs.server_logger(exporter.logger, exporter.secrets),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=listen_backlog())
        try:
            await site.start()
        except OSError as exc:
            message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            raise click.ClickException(message) from None
        bound_port = next((a[1] for a in runner.addresses if isinstance(a, tuple)), port)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, exporter.reload)
        click.echo(f"exporter listening on http://{display_host(host)}:{bound_port}")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await runner.cleanup()


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The proxy's config.toml ([[providers]] and [performance]).",
)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="HOST:PORT to serve on.")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="Overrides [performance.exporter] log_format.",
)
def exporter(config_path: str, listen: str, log_format: str | None) -> None:
    """Serve /probe, /sd, /metrics and the management API until SIGTERM or SIGINT.

    SIGHUP or POST /-/reload re-reads the config; a bad config is refused and the
    running one kept.
    """
    from perfgen.exporter.app import create_app, exporter_of

    try:
        host, port = parse_listen(listen)
    except ListenError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    try:
        app = create_app(config_path, log_format=log_format)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    exporter_of(app).log_config_warnings()
    tune_gc()
    asyncio.run(_serve(app, host, port))


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The proxy's config.toml ([[providers]] and [performance]).",
)
@click.option("--target", required=True, help="PROVIDER:MODEL, a configured model.")
@click.option("--module", "module_name", required=True, help="Probe module, e.g. latency.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the metrics /probe would return; json: the result.",
)
def probe(config_path: str, target: str, module_name: str, output_format: str) -> None:
    """Run one probe now, without cost control, and print its result.

    Exit 0 if the probe succeeded, 1 if it failed (the result is printed either way)
    or the config is bad, 2 if the target or module is unknown.
    """
    from perfgen.exporter.metrics import render_single_probe
    from perfgen.exporter.probe import run_probe
    from perfgen.exporter.service import BadProbeRequest, resolve

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _warn(config.warnings)
    try:
        resolved_target, module, _ = resolve(config, {"target": target, "module": module_name})
    except BadProbeRequest as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    def secrets() -> list[str]:
        return secret_values(config)

    result = asyncio.run(run_probe(config, resolved_target, module, timeout=module.timeout_seconds))
    if output_format == "json":
        text = json.dumps(result.to_json(), indent=2) + "\n"
    else:
        text = render_single_probe(result)
    click.echo(redact(text, secrets), nl=False)
    if not result.success:
        detail = f": {result.failure_detail}" if result.failure_detail else ""
        click.echo(redact(f"probe failed: {result.failure_reason}{detail}", secrets), err=True)
        sys.exit(1)
