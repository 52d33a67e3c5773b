"""`perfgen generate`: the command line over generator/run.py.

The run itself (planning, writing, reload, explaining) lives in perfgen.generator.run;
this module only parses options and loops.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import tomllib
from pathlib import Path

import click

from perfgen.config import SCENARIOS, duration_seconds
from perfgen.generator.apply import (
    MODES,
    REASONS,
    Applier,
    ApplyError,
    RestartBudget,
    default_proxy_url,
    management_enabled,
    management_secret,
)
from perfgen.generator.metrics import GeneratorMetrics
from perfgen.generator.promql import PrometheusConnection
from perfgen.generator.query_cli import prometheus_options, region_option
from perfgen.generator.run import EXIT_ERROR, Runner
from perfgen.generator.timer import run_every
from perfgen.listen import display_host, parse_listen

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
    "--apply",
    "apply_mode",
    type=click.Choice(MODES),
    default="none",
    show_default=True,
    help="After writing, make the proxy use the routes and verify it: restart (runs "
    "--restart-command) or reload (changes nothing on the current proxy).",
)
@click.option(
    "--restart-command",
    metavar="CMD",
    help="With --apply restart: e.g. 'systemctl restart terraphim-llm-proxy' (split "
    "like a shell would, run without one).",
)
@click.option(
    "--restart-shell",
    is_flag=True,
    help="Run --restart-command through /bin/sh (pipes, variables).",
)
@click.option(
    "--proxy-url",
    metavar="URL",
    help="With --apply: the proxy's root URL for /health and /v0/management/config "
    "(default: http://HOST:PORT from [proxy]).",
)
@click.option(
    "--apply-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="With --apply: seconds for the command plus the proxy's comeback with the routes.",
)
@click.option(
    "--max-restarts-per-hour",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="With --apply restart: a route change beyond this waits for a later run "
    "(a restart drops every request in flight).",
)
@click.option(
    "--restart-state",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="With --apply restart: remember restart times here, so the bound also holds "
    "across one-shot runs (a timer, a CronJob).",
)
@click.option(
    "--reload-url",
    metavar="URL",
    help="Deprecated (POSTs /v0/management/config/reload, verifies nothing): use "
    "--apply restart or --apply reload with --proxy-url.",
)
@click.option(
    "--management-key-env",
    metavar="NAME",
    default="PERFGEN_MANAGEMENT_KEY",
    show_default=True,
    help="Env var holding the proxy's X-Management-Key, sent literally (with --apply: "
    "unset means [management] secret_key, as written).",
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
    help="With --every: serve the generator's /metrics here (port 0: a free port, "
    "printed on stderr as `generator listening on URL`).",
)
@click.option("--no-backup", is_flag=True, help="Do not keep FILE.bak.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the diff.")
@region_option
def generate(
    config_path: str,
    dry_run: bool,
    out: str | None,
    every: str | None,
    jitter: float,
    apply_mode: str,
    restart_command: str | None,
    restart_shell: bool,
    proxy_url: str | None,
    apply_timeout: float,
    max_restarts_per_hour: int,
    restart_state: str | None,
    reload_url: str | None,
    management_key_env: str,
    always_reload: bool,
    show_explain: bool,
    metrics_listen: str | None,
    no_backup: bool,
    quiet: bool,
    region: str | None,
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
        if apply_mode != "none":
            raise click.UsageError("--reload-url is the old form of --apply reload; give one")
        key = os.environ.get(management_key_env)
        if not key:
            _fail(f"--reload-url needs the management key in ${management_key_env}")
        click.echo(
            "perfgen generate: warning: --reload-url is deprecated: it verifies nothing, and "
            "on the current proxy a reload changes nothing in routing; use --apply restart "
            "(or --apply reload) with --proxy-url",
            err=True,
        )
    applier = None
    if apply_mode != "none":
        if dry_run:
            raise click.UsageError("--apply with --dry-run: nothing is written to apply")
        applier = _applier(
            config_path,
            apply_mode,
            restart_command,
            restart_shell,
            proxy_url,
            apply_timeout,
            max_restarts_per_hour,
            restart_state,
            os.environ.get(management_key_env),
        )
    elif restart_command or proxy_url:
        raise click.UsageError("--restart-command and --proxy-url need --apply")
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
            applier=applier,
            region=region,
        ),
        show_explain,
        quiet,
        looping=interval is not None,
    )
    if interval is None:
        sys.exit(run())
    metrics = GeneratorMetrics()
    metrics.init_scenarios(SCENARIOS)
    if applier is not None:
        metrics.init_apply(REASONS)
    run.metrics = metrics
    if metrics_listen:
        try:
            port = metrics.serve(metrics_listen)
        except OSError as exc:
            _fail(f"cannot serve metrics on {metrics_listen}: {exc.strerror or exc}")
        host, _ = parse_listen(metrics_listen)
        # No timestamp: supervisors (stack/demo.py) wait for a line starting like this.
        click.echo(f"generator listening on http://{display_host(host)}:{port}/metrics", err=True)
    run.log(f"running every {every} (jitter {jitter:.0%}); SIGTERM or SIGINT stops")
    run_every(interval, jitter, run, threading.Event())
    run.log("stopped")
    sys.exit(0)


def _applier(
    config_path: str,
    mode: str,
    restart_command: str | None,
    restart_shell: bool,
    proxy_url: str | None,
    timeout: float,
    max_restarts: int,
    restart_state: str | None,
    key: str | None,
) -> Applier:
    """The apply step's settings, checked once before the first run."""
    if mode == "restart" and not restart_command:
        raise click.UsageError("--apply restart needs --restart-command")
    if mode == "reload" and restart_command:
        raise click.UsageError("--restart-command is for --apply restart")
    try:
        text = Path(config_path).read_text(encoding="utf-8")
        enabled = management_enabled(text)
        secret = management_secret(text)
        url = proxy_url or default_proxy_url(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        _fail(f"{config_path}: cannot read for --apply: {exc}")
        raise  # unreachable: _fail exits
    if not enabled:
        _fail(
            f"{config_path}: management.enabled: --apply verifies through GET "
            "/v0/management/config, which the proxy serves only with [management] enabled = true"
        )
    if url is None:
        _fail(f"{config_path}: proxy.port: missing; give --proxy-url")
    command: list[str] | str | None = None
    if restart_command:
        try:
            command = restart_command if restart_shell else shlex.split(restart_command)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--restart-command") from None
    try:
        applier = Applier(
            mode,
            str(url),
            management_key=key or secret,
            restart_command=command,
            timeout=timeout,
            budget=RestartBudget(max_restarts, state=restart_state),
        )
    except ApplyError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return applier


def _fail(message: str) -> None:
    click.echo(f"perfgen generate: error: {message}", err=True)
    sys.exit(EXIT_ERROR)
