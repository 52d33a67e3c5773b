"""`perfgen query`: the current ranking of one scenario, for people and scripts.

Also home of the Prometheus connection options shared with `perfgen generate`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import click

from perfgen.config import (
    SCENARIOS,
    Config,
    ConfigError,
    Performance,
    Route,
    Target,
    duration_seconds,
    load_config,
    parse_chain,
)
from perfgen.generator.promql import Auth, PrometheusConnection, PromQLError
from perfgen.generator.ranking import MEETS, ModelStats, Policy, rank
from perfgen.generator.snapshot import Snapshot, fetch_snapshot, model_stats
from perfgen.timing import stale_after_seconds

# --------------------------------------------------------------------- shared options

_PROMETHEUS_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--prometheus",
        "prometheus_url",
        required=True,
        metavar="URL",
        envvar="PERFGEN_PROMETHEUS_URL",
        help="Prometheus (or compatible) root URL [env PERFGEN_PROMETHEUS_URL].",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=10.0,
        show_default=True,
        help="Seconds per HTTP request to Prometheus.",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=2,
        show_default=True,
        help="Extra attempts on connection errors, timeouts and HTTP 429/502/503/504, backing "
        "off exponentially from 0.5 s to at most 8 s (Retry-After honoured); PromQL errors "
        "(400/422) are not retried.",
    ),
    click.option("--bearer-token-env", metavar="NAME", help="Env var holding a bearer token."),
    click.option("--bearer-token-file", metavar="PATH", help="File holding a bearer token."),
    click.option("--basic-auth-user", metavar="USER", help="Basic-auth user name."),
    click.option(
        "--basic-auth-password-env", metavar="NAME", help="Env var holding the basic-auth password."
    ),
    click.option(
        "--basic-auth-password-file", metavar="PATH", help="File holding the basic-auth password."
    ),
    click.option(
        "--header",
        "headers",
        multiple=True,
        metavar="'NAME: VALUE'",
        help="Extra request header, repeatable (e.g. 'X-Scope-OrgID: team1'); "
        "a value '$VAR' is read from the environment.",
    ),
    click.option("--tls-insecure", is_flag=True, help="Do not verify Prometheus' TLS certificate."),
    click.option("--ca-file", metavar="PATH", help="CA bundle to verify Prometheus' TLS."),
]


def prometheus_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the Prometheus options; the command receives them as `connection`."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        connection = connection_from_options(
            {name: kwargs.pop(name) for name in _PROMETHEUS_PARAMS}
        )
        return command(connection=connection, **kwargs)

    for option in reversed(_PROMETHEUS_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


_PROMETHEUS_PARAMS = (
    "prometheus_url",
    "timeout",
    "retries",
    "bearer_token_env",
    "bearer_token_file",
    "basic_auth_user",
    "basic_auth_password_env",
    "basic_auth_password_file",
    "headers",
    "tls_insecure",
    "ca_file",
)


def connection_from_options(options: dict[str, Any]) -> PrometheusConnection:
    """The shared options' values as one typed connection."""
    auth = Auth(
        bearer_token_env=options.get("bearer_token_env"),
        bearer_token_file=options.get("bearer_token_file"),
        basic_user=options.get("basic_auth_user"),
        basic_password_env=options.get("basic_auth_password_env"),
        basic_password_file=options.get("basic_auth_password_file"),
    )
    verify: bool | str = True
    if options.get("tls_insecure"):
        verify = False
    elif options.get("ca_file"):
        verify = str(options["ca_file"])
    return PrometheusConnection(
        options["prometheus_url"],
        timeout=options.get("timeout", 10.0),
        retries=options.get("retries", 2),
        auth=auth,
        headers=tuple(options.get("headers") or ()),
        verify=verify,
    )


def region_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--region NAME`, shared by `generate` and `query` (docs/scale-out.md)."""
    return click.option(
        "--region",
        metavar="NAME",
        help="Rank from this region's series only (label region=NAME); default: every "
        "region, each model judged by its worst region.",
    )(command)


def stale_after(performance: Performance) -> str:
    """The PromQL range for staleness: the one derivation the rules use too."""
    return f"{stale_after_seconds(performance):.0f}s"


# --------------------------------------------------------------------- ranking rows

COLUMNS = (
    "rank",
    "provider",
    "model",
    "score",
    "ttft_p95_seconds",
    "ttft_mean_seconds",
    "decode_tokens_per_second",
    "success_ratio",
    "success_upper_bound",
    "samples",
    "meets_thresholds",
    "reason",
)


@dataclass(frozen=True)
class Row:
    rank: int
    stats: ModelStats
    group: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "rank": self.rank,
            "provider": s.route.provider,
            "model": s.route.model,
            "score": _json_num(s.score),
            "ttft_p95_seconds": _json_num(s.ttft_p95_seconds),
            "ttft_mean_seconds": _json_num(s.ttft_mean_seconds),
            "decode_tokens_per_second": _json_num(s.decode_tokens_per_second),
            "success_ratio": _json_num(s.success_ratio),
            "success_upper_bound": _json_num(s.success_upper_bound),
            "samples": _json_num(s.samples),
            "meets_thresholds": s.meets_thresholds,
            "reason": "" if self.group == MEETS else self.reason,
        }


def rank_rows(
    snap: Snapshot,
    scenario: str,
    policy: Policy,
    extra: Sequence[Route] = (),
    only: Collection[Route] | None = None,
    chain: Sequence[Route] = (),
) -> list[Row]:
    """Models with data (plus `extra`; only those in `only` if given), ranked by
    `ranking.rank`: the order the generator chooses for `chain`, without hysteresis.

    `extra` (the scenario's candidates and chain) comes first so that models without
    fresh data are listed in the generator's order: `chain`'s, then the candidates'.
    """
    routes = list(dict.fromkeys([*extra, *(Route(p, m) for p, m in snap.keys())]))
    if only is not None:
        routes = [r for r in routes if r in only]
    stats = {route: model_stats(snap, scenario, route) for route in routes}
    ranked = rank(routes, stats, policy, chain)
    return [Row(i + 1, stats[item.route], item.group, item.reason) for i, item in enumerate(ranked)]


def render(
    rows: Sequence[Row],
    fmt: str,
    scenario: str,
    window: str,
    at: float,
    *,
    region: str | None = None,
) -> str:
    if fmt == "json":
        payload = {
            "scenario": scenario,
            "window": window,
            "region": region,
            "evaluated_at": round(at, 3),
            "models": [row.as_dict() for row in rows],
        }
        return json.dumps(payload, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            data = row.as_dict()
            writer.writerow({k: _csv_cell(v) for k, v in data.items()})
        return out.getvalue()
    return _table(rows, scenario, window, region)


def _table(rows: Sequence[Row], scenario: str, window: str, region: str | None = None) -> str:
    # The bound's column only where the rules record it (success_rate_confidence set):
    # a column of dashes would tell a reader of the table nothing.
    bounded = any(row.stats.success_upper_bound is not None for row in rows)
    header = (
        "RANK",
        "PROVIDER",
        "MODEL",
        "SCORE",
        "P95 TTFT s",
        "MEAN TTFT s",
        "DECODE tok/s",
        "SUCCESS",
        *(("SUCCESS UPPER",) if bounded else ()),
        "SAMPLES",
        "MEETS",
        "REASON",
    )
    lines = [header]
    for row in rows:
        s = row.stats
        lines.append(
            (
                str(row.rank),
                s.route.provider,
                s.route.model,
                _fmt(s.score, ".3f"),
                _fmt(s.ttft_p95_seconds, ".3f"),
                _fmt(s.ttft_mean_seconds, ".3f"),
                _fmt(s.decode_tokens_per_second, ".1f"),
                _fmt(s.success_ratio, ".3f"),
                *((_fmt(s.success_upper_bound, ".3f"),) if bounded else ()),
                _fmt(s.samples, ".0f"),
                {True: "yes", False: "no", None: "-"}[s.meets_thresholds],
                "" if row.group == MEETS else row.reason,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = set(range(len(header) - 2)) - {1, 2}
    text = [f"scenario {scenario}, window {window}" + (f", region {region}" if region else "")]
    for line in lines:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        text.append("  ".join(cells).rstrip())
    if not rows:
        text.append("(no model has data in this window)")
    return "\n".join(text) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _json_num(value: float | None) -> float | None:
    # JSON has no NaN/Infinity; +Inf (a p95 past the last bucket) is written as null.
    return value if value is not None and math.isfinite(value) else None


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# --------------------------------------------------------------------- command


@click.command()
@prometheus_options
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Proxy config.toml: window, thresholds, min_test_count and the "
    "scenario's chain come from its [performance] and [router].",
)
@click.option(
    "--scenario",
    default="default",
    show_default=True,
    type=click.Choice(SCENARIOS),
    help="Routing scenario to rank for.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people; json/csv are stable for scripts.",
)
@click.option(
    "--window",
    metavar="DURATION",
    help="Recording-rule window (default: [performance] window, else 1h).",
)
@click.option(
    "--cost",
    is_flag=True,
    help="Instead of the ranking: what the --config's probing costs per day (estimated from "
    "intervals, max_tokens and [performance.prices]; measured from the exporter's counter).",
)
@region_option
def query(
    config_path: str | None,
    scenario: str,
    fmt: str,
    window: str | None,
    cost: bool,
    region: str | None,
    connection: PrometheusConnection,
) -> None:
    """Print the ranking of one routing scenario from the recording rules.

    Models that meet the thresholds come first, best score first; then those that
    fail them; then those without fresh data or with too few samples. With --config,
    only the config's [[providers]] models are listed (plus the scenario's chain), and
    reasons name the thresholds missed; without it every model with data is listed,
    with the default min_test_count (5) and probe interval (60 min).
    """
    config: Config | None = None
    if cost:
        _print_cost(config_path, connection)
        return
    try:
        if config_path:
            config = load_config(config_path)
        performance = config.performance if config else Performance()
        window = window or (performance.window if config else "1h")
        duration_seconds(window)
        client = connection.client()
        stale = stale_after(performance)
        snap = fetch_snapshot(
            client,
            window,
            hold_seconds=0,
            stale_after=stale,
            stale_after_seconds=duration_seconds(stale),
            region=region,
        )
    except (ConfigError, PromQLError, ValueError) as exc:
        click.echo(f"perfgen query: error: {exc}", err=True)
        sys.exit(1)
    for warning in snap.warnings:
        click.echo(f"perfgen query: warning: {warning}", err=True)
    policy = Policy(
        min_samples=performance.min_test_count,
        thresholds=performance.scenario_thresholds(scenario) if config else None,
    )
    extra: list[Route] = []
    chain: list[Route] = []
    only: set[Route] | None = None
    if config:
        # The models this proxy could route to; other Prometheus data is someone else's.
        only = {Route(p.name, m) for p in config.providers.values() for m in p.models}
        own = config.performance.scenarios.get(scenario)
        route = config.router.get(scenario)
        if isinstance(route, str):
            try:
                chain = parse_chain(route)
            except ValueError:
                pass  # a malformed route is generate's problem to report
        extra = [*(own.candidates if own and own.candidates else ()), *chain]
    rows = rank_rows(snap, scenario, policy, extra, only, chain)
    click.echo(render(rows, fmt, scenario, window, snap.at, region=region), nl=False)


def _print_cost(config_path: str | None, connection: PrometheusConnection) -> None:
    """`perfgen query --cost`: the estimate from the config, and the measured last day."""
    from perfgen.exporter.spend import MEASURED_QUERY, render_estimate

    if not config_path:
        click.echo("perfgen query: error: --cost needs --config", err=True)
        sys.exit(1)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"perfgen query: error: {exc}", err=True)
        sys.exit(1)
    measured: dict[Target, float] | None = None
    try:
        samples = connection.client().instant(MEASURED_QUERY)
        measured = {
            Target(s.labels.get("provider", ""), s.labels.get("model", "")): s.value
            for s in samples
        }
    except (PromQLError, ValueError) as exc:
        click.echo(f"perfgen query: warning: no measured cost: {exc}", err=True)
    click.echo(render_estimate(config.performance, measured), nl=False)
