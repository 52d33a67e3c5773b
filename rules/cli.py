"""`perfgen rules ...`: render the Prometheus rules from the config's [performance] table."""

from __future__ import annotations

import click

from perfgen.config import ConfigError, load_config
from perfgen.rules.render import (
    DEFAULT_RUNBOOK_BASE_URL,
    DEFAULT_SCORE_DROP,
    RuleError,
    render_rules,
    render_warnings,
    write_rules,
)


@click.group()
def rules() -> None:
    """Prometheus recording and alerting rules rendered from [performance]."""


@rules.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The proxy's config.toml (its [performance] table is read).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for recording.yml and alerts.yml (created if missing).",
)
@click.option(
    "--runbook-base-url",
    default=DEFAULT_RUNBOOK_BASE_URL,
    show_default=True,
    help="Alerts link to <URL>#<alertname in lower case>.",
)
@click.option(
    "--score-drop",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DEFAULT_SCORE_DROP,
    show_default=True,
    help="PerfgenScoreDegraded fires when the score is this fraction under its baseline.",
)
def render(config_path: str, out_dir: str, runbook_base_url: str, score_drop: float) -> None:
    """Render DIR/recording.yml and DIR/alerts.yml.

    \b
    Window, thresholds, weights, scenarios and min_test_count come from [performance];
    alert `for:` durations derive from window and test_interval_minutes
    (docs/rules-and-alerts.md).
    Check the result with `promtool check rules DIR/*.yml`.
    """
    try:
        performance = load_config(config_path).performance
    except ConfigError as exc:
        # ClickException exits 1: a bad config is an error, not a usage mistake.
        raise click.ClickException(str(exc)) from None
    try:
        files = render_rules(performance, runbook_base_url=runbook_base_url, score_drop=score_drop)
        warnings = render_warnings(performance)
    except RuleError as exc:
        raise click.ClickException(f"{config_path}: {exc}") from None
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    try:
        written = write_rules(files, out_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot write rules to {out_dir}: {exc}") from None
    for path in written:
        click.echo(str(path))
