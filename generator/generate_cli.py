"""`perfgen generate`: rewrite the proxy's [router] routes from Prometheus data.

One run: read the config, take one snapshot of the recording rules, decide every
scenario's chain (ranking.py), edit the route strings (proxy_toml.py), prove that only
routes changed and that the proxy would accept the file (proxy_schema.py), then write
it atomically with a backup and optionally ask the proxy to reload.

Any failure before the write leaves the file byte-identical. Exit codes
(docs/CONTRACTS.md): 0 routes unchanged, 3 routes changed, 1 error, 2 usage error.

In-process use (the demo, tests):

    from perfgen.generator.generate_cli import generate_once
    from perfgen.generator.promql import PromClient
    result = generate_once("config.toml", PromClient("http://127.0.0.1:9090"))
    result.exit_code, result.plan.changed_scenarios

With `out`, the routes to improve on are the ones last written there (its [router]),
not --config's: everything else still comes from --config.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import requests
from perfgen.generator.metrics import GeneratorMetrics
from perfgen.generator.promql import PromClient, PromQLError
from perfgen.generator.proxy_schema import check_route, validate_text
from perfgen.generator.proxy_toml import (
    TomlEditError,
    apply_routes,
    atomic_write,
    only_routes_changed,
    route_values,
    unified_diff,
)
from perfgen.generator.query_cli import make_client, prometheus_options, stale_after
from perfgen.generator.ranking import Decision, Policy, decide
from perfgen.generator.snapshot import Snapshot, fetch_snapshot, model_stats
from perfgen.generator.timer import run_every

from perfgen.config import (
    SCENARIOS,
    Config,
    ConfigError,
    duration_seconds,
    parse_chain,
    parse_config,
)
from perfgen.listen import display_host, parse_listen

EXIT_UNCHANGED, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGED = 0, 1, 2, 3
RELOAD_PATH = "/v0/management/config/reload"


class GenerateError(RuntimeError):
    """A run that must not (or could not) produce a new file."""


@dataclass
class Plan:
    """What one run decided, before anything is written.

    `old_text` is --config's text with the routes the plan started from: --config's
    own, or with --out those last written to the output file. `new_text` is the file
    to write; `target_text` what the file to write held when the run started (None:
    absent), so a concurrent edit is noticed.
    """

    config_path: str
    old_text: str
    new_text: str
    decisions: list[Decision]
    warnings: list[str] = field(default_factory=list)
    evaluated_at: float = 0.0
    routes_path: str | None = None  # where the old routes came from, when not config_path
    target_text: str | None = None

    @property
    def changed_scenarios(self) -> list[str]:
        return [d.scenario for d in self.decisions if d.changed]

    @property
    def changed(self) -> bool:
        return bool(self.changed_scenarios)

    def diff(self, path: str | None = None) -> str:
        return unified_diff(
            self.old_text, self.new_text, path or self.routes_path or self.config_path
        )

    def primaries(self) -> dict[str, Any]:
        chains = {d.scenario: (d.old_chain if d.untouched else d.new_chain) for d in self.decisions}
        return {scenario: chain[0] for scenario, chain in chains.items() if chain}


@dataclass
class GenerateResult:
    plan: Plan
    written: str | None = None  # the path written, None when nothing was written
    backup: str | None = None  # the previous file's copy, when one was made
    reloaded: bool = False
    error: str | None = None  # set when the file was written but the reload failed

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_ERROR
        return EXIT_CHANGED if self.plan.changed else EXIT_UNCHANGED


# --------------------------------------------------------------------- planning


def decide_all(config: Config, snap: Snapshot) -> list[Decision]:
    """One Decision per route key under [router], plus scenarios that have candidates."""
    performance = config.performance
    settings = performance.generator
    provider_models = {name: p.models for name, p in config.providers.items()}
    decisions: list[Decision] = []
    for scenario in SCENARIOS:
        own = performance.scenarios.get(scenario)
        candidates = list(own.candidates) if own else []
        current = config.router.get(scenario)
        if current is None and not candidates:
            continue  # never add a scenario the operator did not ask for
        if current is not None and not isinstance(current, str):
            raise GenerateError(f"{config.path}: router.{scenario}: must be a string route")
        try:
            old_chain = parse_chain(current) if current else []
        except ValueError as exc:
            raise GenerateError(f"{config.path}: router.{scenario}: {exc}") from None
        routes = list(dict.fromkeys(candidates or old_chain))
        stats = {route: model_stats(snap, scenario, route) for route in routes}
        policy = Policy(
            min_samples=performance.min_test_count,
            max_chain=settings.max_chain,
            margin=settings.hysteresis_margin,
            hold=settings.hysteresis_for,
            thresholds=performance.scenario_thresholds(scenario),
        )
        decisions.append(decide(scenario, old_chain, candidates, stats, provider_models, policy))
    return decisions


def plan_routes(
    config_path: str | os.PathLike[str],
    client: PromClient,
    *,
    at: float | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Plan:
    """Read, query and decide; raises GenerateError, ConfigError or PromQLError.

    With `out` (the file the result goes to), the plan starts from the routes last
    written there, so an unchanged ranking is "unchanged" and hysteresis defends the
    primary actually in use; providers and [performance] still come from --config.
    """
    path = str(config_path)
    source_text = _read(path)
    config = parse_config(source_text, path)
    old_text, routes_path = source_text, None
    target_text: str | None = source_text
    if out is not None and os.path.realpath(out) != os.path.realpath(path):
        target_text = _read_or_none(Path(out))
        written = _written_routes(config, target_text)
        if written:
            try:
                old_text = apply_routes(source_text, written)
            except TomlEditError as exc:
                raise GenerateError(f"{path}: {exc}") from None
            config = parse_config(old_text, path)
            routes_path = str(out)
    performance = config.performance
    if not performance.enabled:
        return Plan(
            path,
            old_text,
            old_text,
            [],
            ["[performance] enabled = false: routes left as they are"],
            routes_path=routes_path,
            target_text=target_text,
        )
    stale = stale_after(performance)
    snap = fetch_snapshot(
        client,
        performance.window,
        hold_seconds=duration_seconds(performance.generator.hysteresis_for),
        stale_after=stale,
        stale_after_seconds=duration_seconds(stale),
        at=at,
    )
    decisions = decide_all(config, snap)
    routes = {d.scenario: d.chain_text for d in decisions if d.changed}
    try:
        new_text = apply_routes(old_text, routes) if routes else old_text
    except TomlEditError as exc:
        raise GenerateError(f"{path}: {exc}") from None
    # Against --config itself: the output differs from it in route values only.
    problems = only_routes_changed(source_text, new_text)
    if problems:  # a tomlkit surprise; never write such a file
        raise GenerateError(
            f"{path}: refusing to write, the edit changed more than routes: " + "; ".join(problems)
        )
    errors = validate_text(new_text)
    if errors:
        before = set(validate_text(old_text))
        already = " (the current file already breaks them)" if before >= set(errors) else ""
        raise GenerateError(
            f"{path}: the result would break the proxy's rules{already}: " + "; ".join(errors)
        )
    return Plan(
        path,
        old_text,
        new_text,
        decisions,
        list(snap.warnings),
        snap.at,
        routes_path=routes_path,
        target_text=target_text,
    )


def _written_routes(config: Config, text: str | None) -> dict[str, str]:
    """The routes of a previous output to start from (none: absent or not TOML).

    Only routes --config still asks for (its [router] keys, or scenarios with
    candidates) and that are valid against its [[providers]]: a route to a provider
    removed since is dropped, and --config's own route stands in.
    """
    if text is None:
        return {}
    try:
        written = route_values(text)
    except tomllib.TOMLDecodeError:
        return {}  # not ours to read; it is replaced by a complete config
    providers = {name: set(p.models) for name, p in config.providers.items()}
    wanted = set(config.router) | {
        name for name, own in config.performance.scenarios.items() if own.candidates
    }
    usable: dict[str, str] = {}
    for key, value in written.items():
        errors: list[str] = []
        check_route(f"router.{key}", value, providers, errors)
        if key in wanted and not errors:
            usable[key] = value
    return usable


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GenerateError(f"cannot read {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------- writing + reload


def generate_once(
    config_path: str | os.PathLike[str],
    client: PromClient,
    *,
    out: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    reload_url: str | None = None,
    management_key: str | None = None,
    always_reload: bool = False,
    backup: bool = True,
    at: float | None = None,
) -> GenerateResult:
    """One complete run. Raises before writing; a failed reload is `result.error`."""
    plan = plan_routes(config_path, client, at=at, out=out)
    result = GenerateResult(plan)
    if dry_run:
        return result
    target = Path(out) if out is not None else Path(config_path)
    current = _read_or_none(target)
    if current != plan.target_text:
        # Someone edited the file while we were querying; their edit wins this round.
        raise GenerateError(f"{target} changed while generating; nothing written")
    if current != plan.new_text:
        backup_path = atomic_write(target, plan.new_text, backup=backup)
        result.written = str(target)
        result.backup = str(backup_path) if backup_path else None
    if reload_url and (plan.changed or always_reload):
        try:
            reload_proxy(reload_url, management_key)
            result.reloaded = True
        except GenerateError as exc:
            result.error = str(exc)
    return result


def reload_proxy(url: str, key: str | None, timeout: float = 10.0) -> None:
    """POST the proxy's config-reload endpoint; raises GenerateError on any failure."""
    if urlparse(url).path in ("", "/"):
        url = url.rstrip("/") + RELOAD_PATH
    headers = {"X-Management-Key": key} if key else {}
    try:
        response = requests.post(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        text = str(exc).replace(key, "<redacted>") if key else str(exc)
        raise GenerateError(f"proxy reload at {url} failed: {text[:300]}") from None
    if not 200 <= response.status_code < 300:
        body = response.text[:200].strip()
        if key:
            body = body.replace(key, "<redacted>")
        raise GenerateError(
            f"proxy reload at {url} answered HTTP {response.status_code}: "
            f"{body} (the written file is valid; the proxy still runs the "
            "old routes)"
        )


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------- explaining


def explain(plan: Plan) -> str:
    """Per scenario: the chain, each model's place and why, hysteresis decisions."""
    lines: list[str] = []
    for decision in plan.decisions:
        old = "|".join(map(str, decision.old_chain)) or "(not set)"
        if decision.untouched:
            state = "untouched"
        elif decision.changed:
            state = "changed"
        else:
            state = "unchanged"
        lines.append(f"scenario {decision.scenario}: {state}")
        lines.append(f"  was: {old}")
        if decision.changed:
            lines.append(f"  now: {decision.chain_text}")
        position = 0
        for entry in decision.entries:
            if entry.kept and entry.group != "excluded" and not decision.untouched:
                position += 1
                mark = f"{position}."
            else:
                mark = "-"
            score = "" if entry.score is None else f" score={entry.score:.3f}"
            lines.append(f"  {mark:>3} {entry.route} [{entry.group}]{score}: {entry.reason}")
        lines.extend(f"  note: {note}" for note in decision.notes)
    lines.extend(f"warning: {warning}" for warning in plan.warnings)
    return "\n".join(lines) + "\n"


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
@click.option("--dry-run", is_flag=True, help="Print the diff, write nothing.")
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write the result here instead of --config.",
)
@click.option(
    "--every",
    metavar="DURATION",
    help="Run forever, every DURATION (e.g. 5m), until SIGTERM/SIGINT.",
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
    help="Print per scenario why the chain is what it is.",
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
    **options: Any,
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
    run = _Runner(
        config_path,
        options,
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
        click.echo(f"generator listening on http://{display_host(host)}:{port}/metrics", err=True)
    run.log(f"running every {every} (jitter {jitter:.0%}); SIGTERM or SIGINT stops")
    run_every(interval, jitter, run, threading.Event())
    run.log("stopped")
    sys.exit(0)


class _Runner:
    """One run with its output; returns the exit code and updates metrics if any."""

    def __init__(
        self,
        config_path: str,
        options: dict[str, Any],
        kwargs: dict[str, Any],
        show_explain: bool,
        quiet: bool,
        looping: bool,
    ) -> None:
        self.config_path, self.options, self.kwargs = config_path, options, kwargs
        self.show_explain, self.quiet, self.looping = show_explain, quiet, looping
        self.metrics: GeneratorMetrics | None = None

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z ") if self.looping else ""
        click.echo(f"{stamp}perfgen generate: {message}", err=True)

    def __call__(self) -> int:
        try:
            client = make_client(self.options)
            result = generate_once(self.config_path, client, **self.kwargs)
        except (GenerateError, ConfigError, PromQLError, ValueError, OSError) as exc:
            return self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not end a --every loop
            return self._failed(f"internal error {type(exc).__name__}: {exc}")
        plan = result.plan
        if self.show_explain:
            click.echo(explain(plan), nl=False)
        for warning in plan.warnings:
            self.log(f"warning: {warning}")
        if plan.changed and not self.quiet:
            click.echo(plan.diff(), nl=False)
        self.log(self._summary(result))
        if result.error:
            self.log(f"error: {result.error}")
        if self.metrics:
            if result.error:
                self.metrics.record_failure(time.time())
            else:
                changed = plan.changed_scenarios if result.written else []
                self.metrics.record_success(time.time(), plan.primaries(), changed)
        return result.exit_code

    def _failed(self, message: str) -> int:
        self.log(f"error: {message} (the config file is unchanged)")
        if self.metrics:
            self.metrics.record_failure(time.time())
        return EXIT_ERROR

    def _summary(self, result: GenerateResult) -> str:
        plan = result.plan
        if not plan.changed:
            text = "routes unchanged"
        else:
            text = "routes changed: " + ", ".join(plan.changed_scenarios)
        if self.kwargs["dry_run"]:
            return f"{text} (dry run, nothing written)"
        if result.written:
            backup = f" (backup {result.backup})" if result.backup else ""
            text += f"; wrote {result.written}{backup}"
        if result.reloaded:
            text += "; proxy reloaded"
        return text


def _fail(message: str) -> None:
    click.echo(f"perfgen generate: error: {message}", err=True)
    sys.exit(EXIT_ERROR)
