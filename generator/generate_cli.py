"""`perfgen generate`: the command line over generator/run.py.

The run itself (planning, writing, reload, explaining) lives in perfgen.generator.run;
this module only parses options and loops.
"""

from __future__ import annotations

import os
import sys
import threading

import click
from perfgen.generator.metrics import GeneratorMetrics, parse_listen
from perfgen.generator.promql import PrometheusConnection
from perfgen.generator.query_cli import prometheus_options
from perfgen.generator.run import EXIT_ERROR, Runner
from perfgen.generator.timer import run_every

from perfgen.config import SCENARIOS, duration_seconds

# --------------------------------------------------------------------- command


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="The proxy's config.toml (its [router] is rewritten in place).",
)
@prometheus_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the unified diff, write nothing; exit 3 if routes would change.",
)
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write the result to FILE instead of --config (a complete config; FILE.bak is kept "
    "when FILE existed). When FILE exists, the run starts from the routes written there "
    "(those --config still allows), so the exit code, the diff and hysteresis are about the "
    "routes in use.",
)
@click.option(
    "--every",
    metavar="DURATION",
    help="Run now and then every DURATION (30s, 5m, 1h), +- --jitter, re-reading the config "
    "each run, until SIGTERM/SIGINT; a signal lets the current run finish, then exits 0.",
)
@click.option(
    "--jitter",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="With --every: spread each wait by +- this fraction.",
)
@click.option(
    "--reload-url",
    metavar="URL",
    help="Proxy URL to POST /v0/management/config/reload after a change.",
)
@click.option(
    "--management-key-env",
    metavar="NAME",
    default="PERFGEN_MANAGEMENT_KEY",
    show_default=True,
    help="Env var holding the proxy's X-Management-Key.",
)
@click.option(
    "--always-reload",
    is_flag=True,
    help="Reload even when routes are unchanged (heals a missed reload).",
)
@click.option(
    "--explain",
    "show_explain",
    is_flag=True,
    help="Print per scenario the old and new chain, each model's group, score and reason "
    "(thresholds missed, stale, too few samples, excluded, cut by max_chain) and the "
    "hysteresis decisions with their numbers.",
)
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="With --every: serve the generator's /metrics here.",
)
@click.option("--no-backup", is_flag=True, help="Do not keep FILE.bak.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the diff.")
def generate(
    config_path: str,
    dry_run: bool,
    out: str | None,
    every: str | None,
    jitter: float,
    reload_url: str | None,
    management_key_env: str,
    always_reload: bool,
    show_explain: bool,
    metrics_listen: str | None,
    no_backup: bool,
    quiet: bool,
    connection: PrometheusConnection,
) -> None:
    """Rewrite the proxy's [router] routes from Prometheus' recording rules.

    \b
    Exit codes: 0 routes unchanged, 3 routes changed (written, or would be
    with --dry-run), 1 error (the file is left as it was), 2 usage error.
    """
    interval = None
    if every is not None:
        try:
            interval = duration_seconds(every)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--every") from None
        if interval <= 0:
            raise click.BadParameter("must be more than 0s", param_hint="--every")
    if metrics_listen is not None:
        if interval is None:
            raise click.UsageError(
                "--metrics-listen needs --every (a one-shot run reports through its exit code)"
            )
        try:
            parse_listen(metrics_listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics-listen") from None
    key = None
    if reload_url:
        key = os.environ.get(management_key_env)
        if not key:
            _fail(f"--reload-url needs the management key in ${management_key_env}")
    run = Runner(
        config_path,
        connection,
        dict(
            out=out,
            dry_run=dry_run,
            reload_url=reload_url,
            management_key=key,
            always_reload=always_reload,
            backup=not no_backup,
        ),
        show_explain,
        quiet,
        looping=interval is not None,
    )
    if interval is None:
        sys.exit(run())
    metrics = GeneratorMetrics()
    metrics.init_scenarios(SCENARIOS)
    run.metrics = metrics
    if metrics_listen:
        try:
            metrics.serve(metrics_listen)
        except OSError as exc:
            _fail(f"cannot serve metrics on {metrics_listen}: {exc.strerror or exc}")
        host, port = parse_listen(metrics_listen)
        # No timestamp: supervisors (stack/demo.py) wait for a line starting like this.
        click.echo(f"generator listening on http://{host}:{port}/metrics", err=True)
    run.log(f"running every {every} (jitter {jitter:.0%}); SIGTERM or SIGINT stops")
    run_every(interval, jitter, run, threading.Event())
    run.log("stopped")
    sys.exit(0)


def _fail(message: str) -> None:
    click.echo(f"perfgen generate: error: {message}", err=True)
    sys.exit(EXIT_ERROR)
