"""One `perfgen generate` run, without the command line.

One run: read the config, take one snapshot of the recording rules, decide every
scenario's chain (ranking.py), edit the route strings (proxy_toml.py), prove that only
routes changed and that the proxy would accept the file (proxy_schema.py), then write
it atomically with a backup and optionally ask the proxy to reload.

Any failure before the write leaves the file byte-identical. Exit codes
(docs/CONTRACTS.md): 0 routes unchanged, 3 routes changed, 1 error, 2 usage error.

In-process use (the demo, tests):

    from perfgen.generator.run import generate_once
    from perfgen.generator.promql import PrometheusConnection
    result = generate_once("config.toml", PrometheusConnection("http://127.0.0.1:9090").client())
    result.exit_code, result.plan.changed_scenarios

With `out`, the routes to improve on are the ones last written there (its [router]),
not --config's: everything else still comes from --config.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import requests

from perfgen.config import (
    SCENARIOS,
    Config,
    ConfigError,
    duration_seconds,
    parse_chain,
    parse_config,
)
from perfgen.generator.apply import Applier, ApplyOutcome
from perfgen.generator.metrics import GeneratorMetrics
from perfgen.generator.promql import PromClient, PrometheusConnection, PromQLError
from perfgen.generator.proxy_schema import DROPS, NOTE, REFUSES, check_route, check_text
from perfgen.generator.proxy_toml import (
    TomlEditError,
    apply_routes,
    atomic_write,
    only_routes_changed,
    route_values,
    unified_diff,
)
from perfgen.generator.query_cli import stale_after
from perfgen.generator.ranking import Decision, decide, policy_for
from perfgen.generator.snapshot import Snapshot, fetch_snapshot, model_stats

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
    error: str | None = None  # set when the file was written but the reload/apply failed
    applied: ApplyOutcome | None = None  # what --apply did, when asked

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_ERROR
        return EXIT_CHANGED if self.plan.changed else EXIT_UNCHANGED


# --------------------------------------------------------------------- planning


def decide_all(config: Config, snap: Snapshot) -> list[Decision]:
    """One Decision per route key under [router], plus scenarios that have candidates."""
    performance = config.performance
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
        policy = policy_for(performance, scenario)
        decisions.append(decide(scenario, old_chain, candidates, stats, provider_models, policy))
    return decisions


def plan_routes(
    config_path: str | os.PathLike[str],
    client: PromClient,
    *,
    at: float | None = None,
    out: str | os.PathLike[str] | None = None,
    region: str | None = None,
) -> Plan:
    """Read, query and decide; raises GenerateError, ConfigError or PromQLError.

    `region`: rank from that region's series (label `region`); None: from every region,
    each figure folded to the worst region's (generator/snapshot.py, FOLD).

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
        region=region,
        noise=performance.generator.switch_confidence > 0,
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
    warnings = list(snap.warnings) + proxy_check(path, old_text, new_text)
    return Plan(
        path,
        old_text,
        new_text,
        decisions,
        warnings,
        snap.at,
        routes_path=routes_path,
        target_text=target_text,
    )


def proxy_check(path: str, old_text: str, new_text: str) -> list[str]:
    """Refuse a result the proxy would not start with, or one that adds a dropped route.

    Returns warnings for what the proxy silently drops but the current file already
    had (the operator's entries, not the generator's): those must not block a run.
    """
    findings = check_text(new_text)
    refused = [str(f) for f in findings if f.level == REFUSES]
    before = {str(f) for f in check_text(old_text) if f.level != NOTE}
    if refused:
        already = " (the current file already has them)" if before >= set(refused) else ""
        raise GenerateError(
            f"{path}: refusing to write a file the proxy would refuse to start with{already}: "
            + "; ".join(refused)
        )
    dropped = [str(f) for f in findings if f.level == DROPS]
    introduced = [text for text in dropped if text not in before]
    if introduced:
        raise GenerateError(
            f"{path}: refusing to write routes the proxy would silently drop at request "
            "time: " + "; ".join(introduced)
        )
    return [f"{path}: {text} (silently dropped at request time)" for text in dropped]


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
    applier: Applier | None = None,
    region: str | None = None,
) -> GenerateResult:
    """One complete run. Raises before writing; a failed reload or apply is `result.error`.

    With `applier`, the proxy is then brought to the file's routes and checked
    (generator/apply.py), also when this run changed nothing but the proxy's live
    routes still differ (a change that waited, or a failed apply being healed).
    """
    plan = plan_routes(config_path, client, at=at, out=out, region=region)
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
    if applier is not None:
        result.applied = applier.apply(plan.new_text, plan.changed)
        if result.applied.action == "failed":
            result.error = f"{result.applied.message} (the written file is valid)"
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


# --------------------------------------------------------------------- one run with output


class Runner:
    """One run with its output; returns the exit code and updates metrics if any."""

    def __init__(
        self,
        config_path: str,
        connection: PrometheusConnection,
        kwargs: dict[str, Any],
        show_explain: bool,
        quiet: bool,
        looping: bool,
    ) -> None:
        self.config_path, self.connection, self.kwargs = config_path, connection, kwargs
        self.show_explain, self.quiet, self.looping = show_explain, quiet, looping
        self.metrics: GeneratorMetrics | None = None

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z ") if self.looping else ""
        click.echo(f"{stamp}perfgen generate: {message}", err=True)

    def __call__(self) -> int:
        try:
            client = self.connection.client()
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
        applied = result.applied
        if applied is not None:
            for warning in applied.warnings:
                self.log(f"warning: {warning}")
        self.log(self._summary(result))
        if applied is not None and applied.action == "waiting":
            self.log(applied.message)
        if result.error:
            self.log(f"error: {result.error}")
        if self.metrics:
            if result.error:
                self.metrics.record_failure(time.time())
            else:
                changed = plan.changed_scenarios if result.written else []
                self.metrics.record_success(time.time(), plan.primaries(), changed)
            if applied is not None:
                self.metrics.record_apply(applied)
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
        if result.applied is not None and result.applied.action != "failed":
            text += f"; {result.applied.message}"
        return text
