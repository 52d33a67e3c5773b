"""Build perfgen's Grafana dashboards with grafana-foundation-sdk.

Dashboards are code: this module describes them with Grafana's own dashboards-as-code
SDK (grafana-foundation-sdk, the build for Grafana 10.4 that docker-compose.yml runs),
through the house-style helpers in panels.py and board.py, writes
`grafana/dashboards/*.json`, and a test fails when the committed JSON differs from what
this file builds. Edit here, then run

    python -m perfgen.grafana.build            # rewrite grafana/dashboards/*.json
    python -m perfgen.grafana.build --check    # exit 1 when the committed JSON is stale

Metric, recording-rule and job names come from docs/CONTRACTS.md. Where a recording rule
exists the panels use it (one definition of "p95 TTFT" for alerts, ranking and humans);
raw metrics appear only where no rule exists (per-probe gauges, failures by reason,
histograms for heatmaps) and then always with `$__rate_interval`, so that a rate never
spans fewer than two scrapes whatever the zoom. Every series selector filters on
`region=~"$region"` (series()), which matches series with and without a region label.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import dashboard as model

from .board import (
    REGION_MATCHER,
    SCHEMA_VERSION,
    TAG,
    WINDOWS,
    Item,
    dashboard,
    datasource_variable,
    prometheus_annotation,
    query_variable,
    region_variable,
    render,
    window_variable,
)
from .panels import (
    UP_DOWN,
    YES_NO,
    heatmap,
    override,
    row,
    stat,
    state_timeline,
    table,
    target,
    thresholds,
    timeseries,
    value_map,
)

__all__ = ["DASHBOARDS", "DASHBOARDS_DIR", "SCHEMA_VERSION", "TAG", "WINDOWS", "build_all"]

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

UID_OVERVIEW = "perfgen-overview"
UID_MODEL = "perfgen-model"
UID_EXPORTER = "perfgen-exporter"

# Jobs (docs/CONTRACTS.md).
PROBE_JOB = "llm_probe"
EXPORTER_JOB = "perfgen_exporter"
GENERATOR_JOB = "perfgen_generator"

TOKENS_PER_SECOND = "suffix: tok/s"
SCORE_STEPS = [(None, "red"), (0.5, "orange"), (0.75, "green")]
RATIO_STEPS = [(None, "red"), (0.9, "orange"), (0.95, "green")]


# A budget's limit, drawn as a red dashed line over what was used.
LIMIT_LINE = override(
    "limit",
    custom__lineStyle={"fill": "dash", "dash": [10, 10]},
    color={"mode": "fixed", "fixedColor": "red"},
)


def rule(level: str, metric: str, operation: str) -> str:
    """A recording rule name for the window chosen in the dashboard, e.g. `..:p95_$window`."""
    return f"{level}:{metric}:{operation}_$window"


def series(name: str, *matchers: str) -> str:
    """A selector of `name` in the chosen region(s), e.g. `up{region=~"$region", job="x"}`."""
    return f"{name}{{{', '.join((REGION_MATCHER, *matchers))}}}"


SCORE = rule("provider_model", "llm_performance_score", "ratio")
MEETS = rule("provider_model", "llm_meets_thresholds", "bool")
COMPONENT = rule("provider_model", "llm_score_component", "ratio")
TTFT = {q: rule("provider_model", "llm_ttft_seconds", q) for q in ("p50", "p95", "p99")}
TTFT_MEAN = rule("provider_model", "llm_ttft_seconds", "mean")
TTFT_P95_MODULE = rule("provider_model_module", "llm_ttft_seconds", "p95")
FIRST_CONTENT_P95 = rule("provider_model", "llm_first_content_seconds", "p95")
DURATION_P95 = rule("provider_model", "llm_request_duration_seconds", "p95")
DECODE_MEAN = rule("provider_model", "llm_decode_tokens_per_second", "mean")
SAMPLES = rule("provider_model", "llm_requests", "increase")
SUCCESS = rule("provider_model", "llm_request_success", "ratio")
# Recorded only when [performance] success_rate_confidence is set.
SUCCESS_BOUND = rule("provider_model", "llm_request_success", "wilson_upper")

SCENARIO = 'scenario="$scenario"'
MODEL = ('provider="$provider"', 'model="$model"')
MODULE = (*MODEL, 'module="$module"')
PROBE = f'job="{PROBE_JOB}"'
EXPORTER = f'job="{EXPORTER_JOB}"'
GENERATOR = f'job="{GENERATOR_JOB}"'
FIRING = ('alertname=~"Perfgen.+"', 'alertstate="firing"')
# Region is a target label, so every target's `up` carries it: the variable lists the
# regions the exporter is scraped in, whether or not a probe has succeeded there.
REGION_SOURCE = f'up{{job=~"{PROBE_JOB}|{EXPORTER_JOB}"}}'
# Legends end with the region, which renders empty where there is none.
PER_MODEL = "{{provider}}/{{model}} {{region}}"


def scenario_variable() -> sdk.QueryVariable:
    return query_variable(
        "scenario",
        "Scenario",
        f"label_values({series(SCORE)}, scenario)",
        default="default",
        description="Routing scenario whose weights and thresholds the score uses; "
        "`default` carries the global [performance] weights.",
    )


# The counter, not primary_info: a route change replaces one info series by another,
# and changes() of either is 0. The 2m range at a 60s step sees every increment.
def route_changes() -> sdk.AnnotationQuery:
    return prometheus_annotation(
        "Route changes",
        f"changes({series('perfgen_generator_route_changes_total', GENERATOR)}[2m]) > 0",
        title="Primary route changed: {{scenario}}",
        text="see Primary route per scenario",
        color="purple",
    )


def firing_alerts() -> sdk.AnnotationQuery:
    return prometheus_annotation(
        "Perfgen alerts",
        series("ALERTS", *FIRING),
        title="{{alertname}}",
        text="{{provider}} {{model}} {{region}}",
        color="red",
    )


# --------------------------------------------------------------------------- dashboards


def drill_down_link(column: str) -> sdk.DashboardFieldConfigSourceOverrides:
    """Clicking a model in a table opens its drill-down with the same window and time.

    A data link is plain data in the SDK for Grafana 10.4 (an override's `links` value
    has no model there), so it is written as Grafana's documented {title, url} pair.
    """
    url = (
        f"/d/{UID_MODEL}/perfgen-model?${{__url_time_range}}&${{datasource:queryparam}}"
        "&${region:queryparam}&${window:queryparam}&${scenario:queryparam}"
        "&var-provider=${__data.fields.provider}&var-model=${__data.fields.model}"
    )
    return override(column, links=[{"title": "Drill down: ${__data.fields.model}", "url": url}])


def overview() -> model.Dashboard:
    by_model = "max by (provider, model, region)"
    ranking = table(
        "Ranking ($scenario, $window)",
        [
            target(f"{by_model} ({series(SCORE, SCENARIO)})", instant=True, table=True),
            target(f"{by_model} ({series(MEETS, SCENARIO)})", instant=True, table=True),
            target(f"{by_model} ({series(TTFT['p95'])})", instant=True, table=True),
            target(f"{by_model} ({series(DECODE_MEAN)})", instant=True, table=True),
            target(f"{by_model} ({series(SUCCESS)})", instant=True, table=True),
            target(f"{by_model} ({series(SAMPLES)})", instant=True, table=True),
        ],
        description="Every probed model (per region, where the exporter is scraped in "
        "several), best score first. The generator ranks exactly this among the models "
        "that meet the thresholds and have at least min_test_count samples. Click a "
        "model to drill down.",
        columns=[
            "provider",
            "model",
            "region",
            "Score",
            "Meets thresholds",
            "p95 TTFT",
            "Decode rate",
            "Success ratio",
            "Samples",
        ],
        renames={
            "Value #A": "Score",
            "Value #B": "Meets thresholds",
            "Value #C": "p95 TTFT",
            "Value #D": "Decode rate",
            "Value #E": "Success ratio",
            "Value #F": "Samples",
        },
        sort_by="Score",
        width=24,
        height=9,
        overrides=[
            override(
                "Score",
                decimals=3,
                min=0,
                max=1,
                thresholds=thresholds(SCORE_STEPS),
                custom__cellOptions={"type": "color-background", "mode": "gradient"},
            ),
            override(
                "Meets thresholds", mappings=YES_NO, custom__cellOptions={"type": "color-text"}
            ),
            override("p95 TTFT", unit="s", decimals=2),
            override("Decode rate", unit=TOKENS_PER_SECOND, decimals=1),
            override(
                "Success ratio",
                unit="percentunit",
                decimals=1,
                thresholds=thresholds(RATIO_STEPS),
                custom__cellOptions={"type": "color-text"},
            ),
            override("Samples", decimals=0),
            drill_down_link("model"),
        ],
    )
    primary = series("perfgen_generator_primary_info", GENERATOR)
    panels = [
        stat(
            "Models ranked",
            f"count(group by (provider, model) ({series(SCORE, SCENARIO)})) or vector(0)",
            description="Models with a score in this scenario (enough fresh data) in any "
            "chosen region.",
            width=6,
        ),
        stat(
            "Meeting thresholds",
            f"sum(max by (provider, model) ({series(MEETS, SCENARIO)})) or vector(0)",
            description="Models within the latency, throughput and success thresholds "
            "(in at least one chosen region); only these are eligible as primary.",
            steps=[(None, "red"), (1, "green")],
            width=6,
        ),
        stat(
            "Firing perfgen alerts",
            f"count({series('ALERTS', *FIRING)}) or vector(0)",
            description="Alerts from rules/rendered/alerts.yml firing now; details in "
            "Alertmanager.",
            steps=[(None, "green"), (1, "red")],
            width=6,
        ),
        stat(
            "Probe budget used",
            f"sum({series('perfgen_exporter_budget_output_tokens_used')})"
            f" / sum({series('perfgen_exporter_budget_output_tokens_limit')} > 0)",
            description="Output tokens spent on probes this hour against "
            "max_output_tokens_per_hour. No data: the budget is unlimited.",
            unit="percentunit",
            decimals=0,
            steps=[(None, "green"), (0.8, "orange"), (1, "red")],
            width=6,
        ),
        ranking,
        timeseries(
            "Performance score ($scenario)",
            [target(series(SCORE, SCENARIO), PER_MODEL)],
            description="Composite score in [0, 1] from the weighted latency, throughput "
            "and reliability components over the window.",
            unit="none",
            minimum=0,
            maximum=1,
            decimals=3,
        ),
        state_timeline(
            "Primary route per scenario",
            [
                target(
                    f"max by (scenario, provider, model, region) ({primary})",
                    "{{scenario}}: {{provider}},{{model}} {{region}}",
                )
            ],
            description="Which model the generator made primary for each scenario, over "
            "time. A bar ends where the route changed.",
            mappings=value_map({"1": ("primary", "green")}),
        ),
        timeseries(
            "Time to first token p50 / p95 / p99",
            [target(series(TTFT[q]), f"{q} {PER_MODEL}") for q in TTFT],
            description="Percentiles over the window, from the exporter's TTFT histograms "
            "(successful requests only).",
            unit="s",
        ),
        timeseries(
            "Decode rate (mean)",
            [target(series(DECODE_MEAN), PER_MODEL)],
            description="Mean tokens per second after the first token, over the window.",
            unit=TOKENS_PER_SECOND,
        ),
        timeseries(
            "Failed requests by reason",
            [
                target(
                    f"sum by (reason) (increase({series('llm_request_failures_total')}"
                    "[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            description="Failed probe requests per interval, all models. Drill down for "
            "one model's failures.",
            unit="short",
            stacked=True,
            bars=True,
            calcs=("sum", "max"),
        ),
        timeseries(
            "Success ratio",
            [target(series(SUCCESS), PER_MODEL)],
            description="Share of probe requests that succeeded over the window.",
            unit="percentunit",
            minimum=None,
            maximum=1,
        ),
        table(
            "Current primary route",
            [
                target(
                    f"max by (scenario, provider, model, region) ({primary})",
                    instant=True,
                    table=True,
                )
            ],
            description="What the last generator run wrote into the proxy config.",
            columns=["scenario", "region", "provider", "model"],
            renames={},
            hidden=["Value"],
            width=8,
            height=8,
            overrides=[drill_down_link("model")],
        ),
        timeseries(
            "Probe budget (output tokens this hour)",
            [
                target(f"sum({series('perfgen_exporter_budget_output_tokens_used')})", "used"),
                target(f"sum({series('perfgen_exporter_budget_output_tokens_limit')})", "limit"),
            ],
            description="Probes stop (answering from cache) when used reaches the limit. "
            "A limit of 0 means unlimited.",
            unit="short",
            width=16,
            overrides=[LIMIT_LINE],
        ),
    ]
    return dashboard(
        UID_OVERVIEW,
        "perfgen / Overview",
        "Which models are fastest and healthy, which one each route uses, and why.",
        [
            datasource_variable(),
            region_variable(REGION_SOURCE),
            window_variable(),
            scenario_variable(),
        ],
        panels,
        annotations=[route_changes(), firing_alerts()],
    )


def model_drill_down() -> model.Dashboard:
    requests = "llm_requests_total"
    variables = [
        datasource_variable(),
        region_variable(REGION_SOURCE),
        window_variable(),
        scenario_variable(),
        query_variable(
            "provider",
            "Provider",
            f"label_values({series(requests)}, provider)",
            description="Provider as named in the proxy's [[providers]].",
        ),
        query_variable(
            "model",
            "Model",
            f"label_values({series(requests, MODEL[0])}, model)",
            description="Model of the provider.",
        ),
        query_variable(
            "module",
            "Module",
            f"label_values({series(requests, *MODEL)}, module)",
            description="Probe module (latency, throughput, ...) for the per-probe panels.",
        ),
    ]

    def last_probe(metric: str) -> str:
        return series(metric, *MODULE)

    def per_interval(metric: str) -> str:
        return f"increase({series(metric, *MODULE)}[$__rate_interval])"

    panels = [
        stat(
            "Score ($scenario)",
            series(SCORE, *MODEL, SCENARIO),
            description="Composite performance score over the window.",
            decimals=3,
            steps=SCORE_STEPS,
        ),
        stat(
            "Meets thresholds",
            series(MEETS, *MODEL, SCENARIO),
            description="1 when p95 TTFT, mean decode rate and success ratio are all "
            "within the scenario's thresholds.",
            mappings=YES_NO,
            steps=[(None, "red"), (1, "green")],
        ),
        stat(
            "p95 TTFT",
            series(TTFT["p95"], *MODEL),
            unit="s",
            decimals=2,
            description="95th percentile time to first token over the window.",
        ),
        stat(
            "Decode rate",
            series(DECODE_MEAN, *MODEL),
            unit=TOKENS_PER_SECOND,
            decimals=1,
            description="Mean decode rate over the window.",
        ),
        stat(
            "Success ratio",
            series(SUCCESS, *MODEL),
            unit="percentunit",
            decimals=1,
            steps=RATIO_STEPS,
            description="Share of successful probe requests over the window.",
        ),
        stat(
            "Samples",
            series(SAMPLES, *MODEL),
            decimals=0,
            description="Baseline-module probe requests in the window (short prompts, "
            "one stream); below min_test_count the model is not ranked.",
        ),
        timeseries(
            "Score components",
            [
                target(series(COMPONENT, *MODEL), "{{component}} {{region}}"),
                target(series(SCORE, *MODEL, SCENARIO), "score {{region}}"),
            ],
            description="Normalised latency, throughput and reliability components "
            "(each 0..1) and the weighted score they make.",
            unit="none",
            minimum=0,
            maximum=1,
            decimals=3,
        ),
        timeseries(
            "Score per scenario",
            [target(series(SCORE, *MODEL), "{{scenario}} {{region}}")],
            description="The same measurements scored with each scenario's weights.",
            unit="none",
            minimum=0,
            maximum=1,
            decimals=3,
        ),
        timeseries(
            "Success ratio and its upper bound",
            [
                target(series(SUCCESS, *MODEL), "success ratio {{region}}"),
                target(series(SUCCESS_BOUND, *MODEL), "upper bound {{region}}"),
            ],
            description="Share of successful requests over the window, and the upper "
            "bound min_success_rate is judged by when success_rate_confidence is set (no "
            "line without it): one failure among a window's few requests lowers the ratio "
            "far more than the bound.",
            unit="percentunit",
            minimum=None,
            maximum=1,
            decimals=3,
        ),
        timeseries(
            "Latency percentiles",
            [
                *(target(series(TTFT[q], *MODEL), f"TTFT {q} {{{{region}}}}") for q in TTFT),
                target(series(TTFT_MEAN, *MODEL), "TTFT mean {{region}}"),
                target(series(FIRST_CONTENT_P95, *MODEL), "first content p95 {{region}}"),
                target(series(DURATION_P95, *MODEL), "request duration p95 {{region}}"),
            ],
            description="TTFT ends at the first token of any kind (reasoning included); "
            "first content at the first visible answer token. The score's latency "
            "component reads the p95 TTFT, or the mean where [performance.score] "
            "latency_statistic is `mean`.",
            unit="s",
        ),
        timeseries(
            "p95 TTFT per module",
            [target(series(TTFT_P95_MODULE, *MODEL), "{{module}} {{region}}")],
            description="Short prompts (latency), long generations (throughput) and "
            "parallel streams (concurrent) load a model differently.",
            unit="s",
        ),
        timeseries(
            "Last probe: latency ($module)",
            [
                target(last_probe("llm_probe_ttft_seconds"), "TTFT {{region}}"),
                target(last_probe("llm_probe_first_content_seconds"), "first content {{region}}"),
                target(
                    last_probe("llm_probe_request_duration_seconds"), "request duration {{region}}"
                ),
                target(last_probe("llm_probe_duration_seconds"), "whole probe {{region}}"),
            ],
            description="Per-probe gauges: the medians of the last probe, as scraped. "
            "Flat stretches are cached answers between paid probes.",
            unit="s",
        ),
        timeseries(
            "Last probe: decode rate ($module)",
            [
                target(last_probe("llm_probe_tokens_per_second"), "per stream {{region}}"),
                target(
                    last_probe("llm_probe_aggregate_tokens_per_second"), "all streams {{region}}"
                ),
            ],
            description="Median decode rate of the last probe; `all streams` is the "
            "concurrent module's total output tokens / wall time.",
            unit=TOKENS_PER_SECOND,
        ),
        heatmap(
            "TTFT distribution ($module)",
            f"sum by (le) ({per_interval('llm_ttft_seconds_bucket')})",
            description="New TTFT observations per histogram bucket and interval, all "
            "chosen regions together.",
            unit="s",
        ),
        timeseries(
            "Requests and failures by reason ($module)",
            [
                target(f"sum({per_interval('llm_requests_total')})", "requests"),
                target(
                    f"sum by (reason) ({per_interval('llm_request_failures_total')})",
                    "failed: {{reason}}",
                ),
            ],
            description="Paid probe requests per interval and those that failed, by "
            "reason (timeout, http_429, http_5xx, bad_stream, ...).",
            unit="short",
            bars=True,
            calcs=("sum", "max"),
        ),
        state_timeline(
            "Probe state ($module)",
            [
                target(last_probe("llm_probe_success"), "success {{region}}"),
                target(last_probe("llm_probe_cached"), "answered from cache {{region}}"),
                target(
                    last_probe("llm_probe_token_count_estimated"), "tokens estimated {{region}}"
                ),
            ],
            description="success: every request of the probe succeeded; cached: the "
            "scrape reused the last result (cost control); tokens estimated: "
            "the server reported no usage.",
            mappings=value_map({"0": ("no", "transparent"), "1": ("yes", "blue")}),
        ),
        timeseries(
            "Tokens ($module)",
            [
                target(f"sum({per_interval('llm_output_tokens_total')})", "output"),
                target(f"sum({per_interval('llm_input_tokens_total')})", "input"),
            ],
            description="Tokens spent on this model's probes per interval.",
            unit="short",
            bars=True,
            calcs=("sum", "max"),
        ),
    ]
    return dashboard(
        UID_MODEL,
        "perfgen / Model",
        "One model: its score and why, latency percentiles, last probes and failures.",
        variables,
        panels,
        annotations=[firing_alerts()],
    )


def exporter_health() -> model.Dashboard:
    def exporter(metric: str) -> str:
        return series(metric, EXPORTER)

    def generator(metric: str) -> str:
        return series(metric, GENERATOR)

    probe_up = series("up", PROBE)
    panels: list[Item] = [
        row("Exporter"),
        stat(
            "Exporter up",
            f"min({exporter('up')})",
            mappings=UP_DOWN,
            steps=[(None, "red"), (1, "green")],
            description="Prometheus reached the exporter's /metrics.",
        ),
        stat(
            "Config reload",
            f"min({exporter('perfgen_exporter_config_last_reload_successful')})",
            mappings=value_map({"0": ("failed", "red"), "1": ("ok", "green")}),
            steps=[(None, "red"), (1, "green")],
            description="A refused config keeps the old one running; fix the file and "
            "send SIGHUP or POST /-/reload.",
        ),
        stat(
            "Config age",
            "time() - max("
            f"{exporter('perfgen_exporter_config_last_reload_success_timestamp_seconds')})",
            unit="s",
            decimals=0,
            description="Time since the config was last loaded successfully.",
        ),
        stat(
            "Probe targets",
            f"sum({exporter('perfgen_exporter_targets')})",
            description="target x module pairs the exporter offers on /sd.",
        ),
        stat(
            "Probe targets up",
            f"sum({probe_up}) / count({probe_up})",
            unit="percentunit",
            decimals=0,
            steps=RATIO_STEPS,
            description="/probe scrapes that answered (a failed probe still answers, "
            "with llm_probe_success 0).",
        ),
        stat(
            "Budget exhausted",
            f"max({exporter('perfgen_exporter_budget_exhausted')})",
            mappings=YES_NO,
            steps=[(None, "green"), (1, "red")],
            description="While exhausted, scrapes are answered from the last result.",
        ),
        timeseries(
            "Scrapes by outcome",
            [
                target(
                    "sum by (module, outcome) "
                    f"(rate({exporter('perfgen_exporter_scrapes_total')}[$__rate_interval]))",
                    "{{module}} {{outcome}}",
                )
            ],
            description="fresh: a paid probe ran; cached: answered from the last result "
            "(test_interval_minutes); budget_exhausted and backoff: skipped.",
            unit="reqps",
            stacked=True,
            calcs=("mean", "max"),
        ),
        timeseries(
            "Probes in flight",
            [
                target(
                    f"sum by (instance) ({exporter('perfgen_exporter_probes_in_flight')})",
                    "{{instance}}",
                )
            ],
            description="Bounded by max_concurrent_tests.",
            unit="short",
        ),
        timeseries(
            "Event-loop lag",
            [
                target(
                    f"max by (instance) ({exporter('perfgen_exporter_event_loop_lag_seconds')})",
                    "{{instance}}",
                )
            ],
            description="A busy event loop delays the timestamps of streamed tokens and "
            "so inflates TTFT: keep this well below the TTFT you measure.",
            unit="s",
        ),
        timeseries(
            "Probe budget",
            [
                target(f"sum({exporter('perfgen_exporter_budget_output_tokens_used')})", "used"),
                target(f"sum({exporter('perfgen_exporter_budget_output_tokens_limit')})", "limit"),
            ],
            description="Output tokens spent on probes this hour; 0 limit = unlimited.",
            unit="short",
            overrides=[LIMIT_LINE],
        ),
        timeseries(
            "Probe spend",
            [
                target(
                    "3600 * sum by (provider, model) (rate("
                    f"{exporter('perfgen_exporter_probe_cost_dollars_total')}"
                    "[$__rate_interval]))",
                    "{{provider}}/{{model}} $/h",
                ),
                target(f"sum({exporter('perfgen_exporter_budget_dollars_used')})", "used"),
                target(f"sum({exporter('perfgen_exporter_budget_dollars_limit')})", "limit"),
            ],
            description="Dollars per hour paid for probes of each model, by "
            "[performance.prices]; used and limit of max_dollars_per_hour (0 limit = "
            "unlimited).",
            unit="currencyUSD",
            overrides=[LIMIT_LINE],
        ),
        timeseries(
            "Probe intervals",
            [
                target(
                    "max by (provider, model, module) "
                    f"({exporter('perfgen_exporter_probe_interval_seconds')})",
                    "{{provider}}/{{model}} {{module}}",
                ),
                target(
                    "count by (reason) "
                    f"({exporter('perfgen_exporter_probe_interval_reason')} == 1)",
                    "targets {{reason}}",
                ),
            ],
            description="Least time between two paid probes of each target+module as "
            "chosen now (test_interval_minutes, or the adaptive choice), and how many "
            "targets have each reason.",
            unit="s",
        ),
        timeseries(
            "Exporter versions",
            [
                target(
                    f"count by (version) ({exporter('perfgen_exporter_build_info')})",
                    "{{version}}",
                )
            ],
            description="How many exporters run each perfgen version "
            "(perfgen_exporter_build_info).",
            unit="short",
            decimals=0,
        ),
        timeseries(
            "/probe scrape duration",
            [
                target(
                    f"max by (instance) ({series('scrape_duration_seconds', PROBE)})",
                    "{{instance}}",
                )
            ],
            description="How long Prometheus waited for /probe: long for a paid probe, "
            "short for a cached answer. Near scrape_timeout means timeouts.",
            unit="s",
            calcs=("max", "mean"),
        ),
        timeseries(
            "Config reloads",
            # Each successful reload moves the timestamp, so changes() counts them.
            [
                target(
                    "sum by (instance) (changes("
                    f"{exporter('perfgen_exporter_config_last_reload_success_timestamp_seconds')}"
                    "[$__rate_interval]))",
                    "{{instance}} reloads",
                ),
                target(
                    "min by (instance) "
                    f"({exporter('perfgen_exporter_config_last_reload_successful')})",
                    "{{instance}} last reload ok",
                ),
            ],
            description="Successful reloads (SIGHUP or POST /-/reload) per interval, and "
            "whether the last attempt succeeded (0: the old config is kept).",
            unit="short",
            decimals=0,
            calcs=("sum", "lastNotNull"),
        ),
        row("Generator"),
        stat(
            "Generator up",
            f"min({generator('up')})",
            mappings=UP_DOWN,
            steps=[(None, "red"), (1, "green")],
            description="Prometheus reached `perfgen generate --metrics-listen`.",
            width=6,
        ),
        stat(
            "Last run",
            f"min({generator('perfgen_generator_last_run_success')})",
            mappings=value_map({"0": ("failed", "red"), "1": ("ok", "green")}),
            steps=[(None, "red"), (1, "green")],
            description="Whether the last generator run succeeded (unchanged or changed).",
            width=6,
        ),
        stat(
            "Since last success",
            f"time() - max({generator('perfgen_generator_last_success_timestamp_seconds')})",
            unit="s",
            decimals=0,
            steps=[(None, "green"), (3600, "red")],
            description="A stale proxy config keeps yesterday's fastest model.",
            width=6,
        ),
        stat(
            "Route changes (24h)",
            f"sum(increase({generator('perfgen_generator_route_changes_total')}[24h]))",
            decimals=0,
            steps=[(None, "green"), (10, "orange")],
            description="Many changes mean flapping: raise hysteresis_margin or hysteresis_for.",
            width=6,
        ),
        timeseries(
            "Route changes by scenario",
            [
                target(
                    "sum by (scenario) (increase("
                    f"{generator('perfgen_generator_route_changes_total')}[$__rate_interval]))",
                    "{{scenario}}",
                )
            ],
            description="Primary changes written to the proxy config, per interval.",
            unit="short",
            bars=True,
            calcs=("sum", "max"),
        ),
        timeseries(
            "Generator runs",
            [
                target(
                    f"time() - max({generator('perfgen_generator_last_run_timestamp_seconds')})",
                    "since last run",
                ),
                target(
                    "time() - max("
                    f"{generator('perfgen_generator_last_success_timestamp_seconds')})",
                    "since last success",
                ),
            ],
            description="Saw-tooth with the --every period when healthy; a rising line "
            "is a generator that stopped running or succeeding.",
            unit="s",
        ),
    ]
    return dashboard(
        UID_EXPORTER,
        "perfgen / Exporter & generator health",
        "Is the measuring machinery itself healthy: exporter, its probe budget, generator.",
        [datasource_variable(), region_variable(REGION_SOURCE)],
        panels,
        annotations=[firing_alerts()],
        time_from="now-3h",
    )


DASHBOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "perfgen-overview.json": overview,
    "perfgen-model.json": model_drill_down,
    "perfgen-exporter.json": exporter_health,
}


def build_all() -> dict[str, str]:
    return {name: render(builder()) for name, builder in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfgen.grafana.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=DASHBOARDS_DIR, help="directory to write the dashboards to"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file in --out is stale"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in build_all().items():
        path = args.out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (run python -m perfgen.grafana.build)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
