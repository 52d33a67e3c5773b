"""Build perfgen's Grafana dashboards from Python data.

Dashboards are data (kubernetes-mixin style): this module describes them with a few
small helpers, writes `grafana/dashboards/*.json`, and a test fails when the committed
JSON differs from what this file builds. Edit here, then run

    python -m grafana.build            # rewrite grafana/dashboards/*.json
    python -m grafana.build --check    # exit 1 when the committed JSON is stale

Metric, recording-rule and job names come from docs/CONTRACTS.md. Where a recording rule
exists the panels use it (one definition of "p95 TTFT" for alerts, ranking and humans);
raw metrics appear only where no rule exists (per-probe gauges, failures by reason,
histograms for heatmaps) and then always with `$__rate_interval`, so that a rate never
spans fewer than two scrapes whatever the zoom.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4, the version docker-compose.yml pins
TAG = "perfgen"
# Every panel and variable queries the data source chosen in the `datasource` variable,
# so the dashboards work unchanged against any Prometheus (or VictoriaMetrics) data source.
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
# The windows the recording rules are rendered for; `[performance] window` (default 1h).
# Render rules for more windows and list them here to offer them in the `window` picker.
WINDOWS: tuple[str, ...] = ("1h",)

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


def rule(level: str, metric: str, operation: str) -> str:
    """A recording rule name for the window chosen in the dashboard, e.g. `..:p95_$window`."""
    return f"{level}:{metric}:{operation}_$window"


SCORE = rule("provider_model", "llm_performance_score", "ratio")
MEETS = rule("provider_model", "llm_meets_thresholds", "bool")
COMPONENT = rule("provider_model", "llm_score_component", "ratio")
TTFT = {q: rule("provider_model", "llm_ttft_seconds", q) for q in ("p50", "p95", "p99")}
TTFT_P95_MODULE = rule("provider_model_module", "llm_ttft_seconds", "p95")
FIRST_CONTENT_P95 = rule("provider_model", "llm_first_content_seconds", "p95")
DURATION_P95 = rule("provider_model", "llm_request_duration_seconds", "p95")
DECODE_MEAN = rule("provider_model", "llm_decode_tokens_per_second", "mean")
SAMPLES = rule("provider_model", "llm_requests", "increase")
SUCCESS = rule("provider_model", "llm_request_success", "ratio")

MODEL_SELECTOR = 'provider="$provider", model="$model"'
MODULE_SELECTOR = 'provider="$provider", model="$model", module="$module"'


# --------------------------------------------------------------------------- building blocks


def target(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    table: bool = False,
    heatmap: bool = False,
) -> Json:
    """One Prometheus query; refIds are assigned by the panel in order (A, B, ...)."""
    fmt = "table" if table else "heatmap" if heatmap else "time_series"
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
    }


def thresholds(steps: Sequence[tuple[float | None, str]]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def value_map(mapping: dict[str, tuple[str, str]]) -> list[Json]:
    """Grafana value mappings: raw value -> (text, colour)."""
    options = {
        value: {"color": color, "index": index, "text": text}
        for index, (value, (text, color)) in enumerate(mapping.items())
    }
    return [{"type": "value", "options": options}]


YES_NO = value_map({"0": ("no", "red"), "1": ("yes", "green")})
UP_DOWN = value_map({"0": ("down", "red"), "1": ("up", "green")})


def override(name: str, **properties: Any) -> Json:
    """A field override by display name; keys use `__` for `.` (custom__width)."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": key.replace("__", "."), "value": value} for key, value in properties.items()
        ],
    }


def panel(
    kind: str,
    title: str,
    targets: Sequence[Json],
    *,
    description: str,
    width: int,
    height: int,
    unit: str | None = None,
    decimals: int | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    steps: Sequence[tuple[float | None, str]] | None = None,
    mappings: list[Json] | None = None,
    custom: Json | None = None,
    options: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    color: Json | None = None,
) -> Json:
    defaults: Json = {}
    for key, value in (
        ("unit", unit),
        ("decimals", decimals),
        ("min", minimum),
        ("max", maximum),
        ("mappings", mappings),
        ("custom", custom),
        ("color", color),
    ):
        if value is not None:
            defaults[key] = value
    if steps is not None:
        defaults["thresholds"] = thresholds(steps)
    refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    result: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        # Grid position is filled in by Layout; width/height travel with the panel until then.
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "targets": [{**t, "refId": refs[i]} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def timeseries(
    title: str,
    targets: Sequence[Json],
    *,
    description: str,
    unit: str,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
    calcs: Sequence[str] = ("lastNotNull", "max"),
    decimals: int | None = None,
    overrides: list[Json] | None = None,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 70 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
    }
    return panel(
        "timeseries",
        title,
        targets,
        description=description,
        width=width,
        height=height,
        unit=unit,
        minimum=minimum,
        maximum=maximum,
        custom=custom,
        decimals=decimals,
        overrides=overrides,
        options={
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": list(calcs),
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def stat(
    title: str,
    expr: str,
    *,
    description: str,
    unit: str = "none",
    width: int = 4,
    height: int = 4,
    decimals: int | None = None,
    steps: Sequence[tuple[float | None, str]] = ((None, "blue"),),
    mappings: list[Json] | None = None,
    legend: str = "",
) -> Json:
    return panel(
        "stat",
        title,
        [target(expr, legend, instant=True)],
        description=description,
        width=width,
        height=height,
        unit=unit,
        decimals=decimals,
        steps=steps,
        mappings=mappings,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "auto",
            "orientation": "auto",
        },
    )


def table(
    title: str,
    targets: Sequence[Json],
    *,
    description: str,
    columns: Sequence[str],
    renames: dict[str, str],
    width: int,
    height: int,
    sort_by: str | None = None,
    overrides: list[Json] | None = None,
    hidden: Iterable[str] = (),
) -> Json:
    """Instant table queries merged row-wise on their labels (each query one column)."""
    order = {name: index for index, name in enumerate(columns)}
    exclude = {"Time": True, **{name: True for name in hidden}}
    options: Json = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "countRows": False},
    }
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return panel(
        "table",
        title,
        targets,
        description=description,
        width=width,
        height=height,
        overrides=overrides,
        options=options,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": exclude,
                    "indexByName": order,
                    "renameByName": renames,
                },
            },
        ],
    )


def state_timeline(
    title: str,
    targets: Sequence[Json],
    *,
    description: str,
    mappings: list[Json],
    width: int = 12,
    height: int = 8,
) -> Json:
    return panel(
        "state-timeline",
        title,
        targets,
        description=description,
        width=width,
        height=height,
        mappings=mappings,
        color={"mode": "thresholds"},
        steps=[(None, "green")],
        options={
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.8,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    )


def heatmap(
    title: str, expr: str, *, description: str, unit: str, width: int = 12, height: int = 8
) -> Json:
    return panel(
        "heatmap",
        title,
        [target(expr, "{{le}}", heatmap=True)],
        description=description,
        width=width,
        height=height,
        options={
            "calculate": False,
            "cellGap": 1,
            "color": {
                "mode": "scheme",
                "scheme": "Oranges",
                "steps": 64,
                "exponent": 0.5,
                "fill": "dark-orange",
                "reverse": False,
            },
            "yAxis": {"axisPlacement": "left", "unit": unit},
            "rowsFrame": {"layout": "auto"},
            "filterValues": {"le": 1e-9},
            "tooltip": {"show": True, "yHistogram": True},
            "legend": {"show": True},
        },
    )


def row(title: str) -> Json:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
    }


def layout(panels: Sequence[Json]) -> list[Json]:
    """Place panels left to right on Grafana's 24-column grid, wrapping like text.

    Rows always start a new line. Ids are assigned in order, so they are stable as long
    as the panel list is: links and provisioned alert references stay valid.
    """
    x = y = line_height = 0
    placed: list[Json] = []
    for index, source in enumerate(panels, start=1):
        item = json.loads(json.dumps(source))  # a copy: helpers may share sub-objects
        pos = item["gridPos"]
        if item["type"] == "row" or x + pos["w"] > 24:
            y, x, line_height = y + line_height, 0, 0
        pos["x"], pos["y"] = x, y
        item["id"] = index
        x += pos["w"]
        line_height = max(line_height, pos["h"])
        if item["type"] == "row":
            x = 24  # nothing shares a line with a row header
        placed.append(item)
    return placed


# --------------------------------------------------------------------------- variables


def datasource_variable() -> Json:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "regex": "",
        "hide": 0,
        "refresh": 1,
        "current": {},
        "options": [],
        "includeAll": False,
        "multi": False,
    }


def window_variable() -> Json:
    options = [{"selected": w == WINDOWS[0], "text": w, "value": w} for w in WINDOWS]
    return {
        "type": "custom",
        "name": "window",
        "label": "Window",
        "description": "Range the recording rules aggregate over ([performance] window); "
        "a window is offered only when its rules are rendered.",
        "query": ",".join(WINDOWS),
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "current": {"selected": True, "text": WINDOWS[0], "value": WINDOWS[0]},
        "options": options,
    }


def query_variable(
    name: str, label: str, query: str, *, description: str, default: str | None = None
) -> Json:
    """A `label_values(...)` variable, refreshed when the time range changes."""
    current: Json = {"selected": True, "text": default, "value": default} if default else {}
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        # The plain-string query form: every Grafana version reads it (newer ones migrate
        # it to their structured editor on load).
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "current": current,
        "options": [],
    }


def scenario_variable() -> Json:
    return query_variable(
        "scenario",
        "Scenario",
        f"label_values({SCORE}, scenario)",
        default="default",
        description="Routing scenario whose weights and thresholds the score uses; "
        "`default` carries the global [performance] weights.",
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[Json],
    panels: Sequence[Json],
    *,
    annotations: Sequence[Json] = (),
    time_from: str = "now-6h",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,  # shared crosshair: latency and failures line up in time
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "title": "perfgen",
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {"list": [builtin_annotation(), *annotations]},
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def builtin_annotation() -> Json:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def prometheus_annotation(name: str, expr: str, *, title: str, text: str, color: str) -> Json:
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "expr": expr,
        "step": "60s",
        "titleFormat": title,
        "textFormat": text,
        "tagKeys": "scenario,provider,model,alertname",
        "useValueForTime": False,
    }


# The counter, not primary_info: a route change replaces one info series by another,
# and changes() of either is 0. The 2m range at a 60s step sees every increment.
ROUTE_CHANGES = prometheus_annotation(
    "Route changes",
    f'changes(perfgen_generator_route_changes_total{{job="{GENERATOR_JOB}"}}[2m]) > 0',
    title="Primary route changed: {{scenario}}",
    text="see Primary route per scenario",
    color="purple",
)
FIRING_ALERTS = prometheus_annotation(
    "Perfgen alerts",
    'ALERTS{alertname=~"Perfgen.+", alertstate="firing"}',
    title="{{alertname}}",
    text="{{provider}} {{model}}",
    color="red",
)


# --------------------------------------------------------------------------- dashboards


def drill_down_link(column: str) -> Json:
    """Clicking a model in a table opens its drill-down with the same window and time."""
    url = (
        f"/d/{UID_MODEL}/perfgen-model?${{__url_time_range}}&${{datasource:queryparam}}"
        "&${window:queryparam}&${scenario:queryparam}"
        "&var-provider=${__data.fields.provider}&var-model=${__data.fields.model}"
    )
    return override(column, links=[{"title": "Drill down: ${__data.fields.model}", "url": url}])


def overview() -> Json:
    ranking = table(
        "Ranking ($scenario, $window)",
        [
            target(
                f'max by (provider, model) ({SCORE}{{scenario="$scenario"}})',
                instant=True,
                table=True,
            ),
            target(
                f'max by (provider, model) ({MEETS}{{scenario="$scenario"}})',
                instant=True,
                table=True,
            ),
            target(f"max by (provider, model) ({TTFT['p95']})", instant=True, table=True),
            target(f"max by (provider, model) ({DECODE_MEAN})", instant=True, table=True),
            target(f"max by (provider, model) ({SUCCESS})", instant=True, table=True),
            target(f"max by (provider, model) ({SAMPLES})", instant=True, table=True),
        ],
        description="Every probed model, best score first. The generator ranks exactly "
        "this among the models that meet the thresholds and have at least "
        "min_test_count samples. Click a model to drill down.",
        columns=[
            "provider",
            "model",
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
    panels = [
        stat(
            "Models ranked",
            f'count({SCORE}{{scenario="$scenario"}}) or vector(0)',
            description="Models with a score in this scenario (enough fresh data).",
            width=6,
        ),
        stat(
            "Meeting thresholds",
            f'sum({MEETS}{{scenario="$scenario"}}) or vector(0)',
            description="Models within the latency, throughput and success thresholds; "
            "only these are eligible as primary.",
            steps=[(None, "red"), (1, "green")],
            width=6,
        ),
        stat(
            "Firing perfgen alerts",
            'count(ALERTS{alertname=~"Perfgen.+", alertstate="firing"}) or vector(0)',
            description="Alerts from rules/rendered/alerts.yml firing now; details in "
            "Alertmanager.",
            steps=[(None, "green"), (1, "red")],
            width=6,
        ),
        stat(
            "Probe budget used",
            "sum(perfgen_exporter_budget_output_tokens_used)"
            " / sum(perfgen_exporter_budget_output_tokens_limit > 0)",
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
            [target(f'{SCORE}{{scenario="$scenario"}}', "{{provider}}/{{model}}")],
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
                    f"max by (scenario, provider, model) "
                    f'(perfgen_generator_primary_info{{job="{GENERATOR_JOB}"}})',
                    "{{scenario}}: {{provider}},{{model}}",
                )
            ],
            description="Which model the generator made primary for each scenario, over "
            "time. A bar ends where the route changed.",
            mappings=value_map({"1": ("primary", "green")}),
        ),
        timeseries(
            "Time to first token p50 / p95 / p99",
            [target(TTFT[q], f"{q} {{{{provider}}}}/{{{{model}}}}") for q in TTFT],
            description="Percentiles over the window, from the exporter's TTFT histograms "
            "(successful requests only).",
            unit="s",
        ),
        timeseries(
            "Decode rate (mean)",
            [target(DECODE_MEAN, "{{provider}}/{{model}}")],
            description="Mean tokens per second after the first token, over the window.",
            unit=TOKENS_PER_SECOND,
        ),
        timeseries(
            "Failed requests by reason",
            [
                target(
                    "sum by (reason) (increase(llm_request_failures_total[$__rate_interval]))",
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
            [target(SUCCESS, "{{provider}}/{{model}}")],
            description="Share of probe requests that succeeded over the window.",
            unit="percentunit",
            minimum=None,
            maximum=1,
        ),
        table(
            "Current primary route",
            [
                target(
                    f"max by (scenario, provider, model) "
                    f'(perfgen_generator_primary_info{{job="{GENERATOR_JOB}"}})',
                    instant=True,
                    table=True,
                )
            ],
            description="What the last generator run wrote into the proxy config.",
            columns=["scenario", "provider", "model"],
            renames={},
            hidden=["Value"],
            width=8,
            height=8,
            overrides=[drill_down_link("model")],
        ),
        timeseries(
            "Probe budget (output tokens this hour)",
            [
                target("sum(perfgen_exporter_budget_output_tokens_used)", "used"),
                target("sum(perfgen_exporter_budget_output_tokens_limit)", "limit"),
            ],
            description="Probes stop (answering from cache) when used reaches the limit. "
            "A limit of 0 means unlimited.",
            unit="short",
            width=16,
            overrides=[
                override(
                    "limit",
                    custom__lineStyle={"fill": "dash", "dash": [10, 10]},
                    color={"mode": "fixed", "fixedColor": "red"},
                )
            ],
        ),
    ]
    return dashboard(
        UID_OVERVIEW,
        "perfgen / Overview",
        "Which models are fastest and healthy, which one each route uses, and why.",
        [datasource_variable(), window_variable(), scenario_variable()],
        panels,
        annotations=[ROUTE_CHANGES, FIRING_ALERTS],
    )


def model_drill_down() -> Json:
    variables = [
        datasource_variable(),
        window_variable(),
        scenario_variable(),
        query_variable(
            "provider",
            "Provider",
            "label_values(llm_requests_total, provider)",
            description="Provider as named in the proxy's [[providers]].",
        ),
        query_variable(
            "model",
            "Model",
            'label_values(llm_requests_total{provider="$provider"}, model)',
            description="Model of the provider.",
        ),
        query_variable(
            "module",
            "Module",
            'label_values(llm_requests_total{provider="$provider", model="$model"}, module)',
            description="Probe module (latency, throughput, ...) for the per-probe panels.",
        ),
    ]
    panels = [
        stat(
            "Score ($scenario)",
            f'{SCORE}{{{MODEL_SELECTOR}, scenario="$scenario"}}',
            description="Composite performance score over the window.",
            decimals=3,
            steps=SCORE_STEPS,
        ),
        stat(
            "Meets thresholds",
            f'{MEETS}{{{MODEL_SELECTOR}, scenario="$scenario"}}',
            description="1 when p95 TTFT, mean decode rate and success ratio are all "
            "within the scenario's thresholds.",
            mappings=YES_NO,
            steps=[(None, "red"), (1, "green")],
        ),
        stat(
            "p95 TTFT",
            f"{TTFT['p95']}{{{MODEL_SELECTOR}}}",
            unit="s",
            decimals=2,
            description="95th percentile time to first token over the window.",
        ),
        stat(
            "Decode rate",
            f"{DECODE_MEAN}{{{MODEL_SELECTOR}}}",
            unit=TOKENS_PER_SECOND,
            decimals=1,
            description="Mean decode rate over the window.",
        ),
        stat(
            "Success ratio",
            f"{SUCCESS}{{{MODEL_SELECTOR}}}",
            unit="percentunit",
            decimals=1,
            steps=RATIO_STEPS,
            description="Share of successful probe requests over the window.",
        ),
        stat(
            "Samples",
            f"{SAMPLES}{{{MODEL_SELECTOR}}}",
            decimals=0,
            description="Baseline-module probe requests in the window (short prompts, "
            "one stream); below min_test_count the model is not ranked.",
        ),
        timeseries(
            "Score components",
            [
                target(f"{COMPONENT}{{{MODEL_SELECTOR}}}", "{{component}}"),
                target(f'{SCORE}{{{MODEL_SELECTOR}, scenario="$scenario"}}', "score"),
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
            [target(f"{SCORE}{{{MODEL_SELECTOR}}}", "{{scenario}}")],
            description="The same measurements scored with each scenario's weights.",
            unit="none",
            minimum=0,
            maximum=1,
            decimals=3,
        ),
        timeseries(
            "Latency percentiles",
            [
                *(target(f"{TTFT[q]}{{{MODEL_SELECTOR}}}", f"TTFT {q}") for q in TTFT),
                target(f"{FIRST_CONTENT_P95}{{{MODEL_SELECTOR}}}", "first content p95"),
                target(f"{DURATION_P95}{{{MODEL_SELECTOR}}}", "request duration p95"),
            ],
            description="TTFT ends at the first token of any kind (reasoning included); "
            "first content at the first visible answer token.",
            unit="s",
        ),
        timeseries(
            "p95 TTFT per module",
            [target(f"{TTFT_P95_MODULE}{{{MODEL_SELECTOR}}}", "{{module}}")],
            description="Short prompts (latency), long generations (throughput) and "
            "parallel streams (concurrent) load a model differently.",
            unit="s",
        ),
        timeseries(
            "Last probe: latency ($module)",
            [
                target(f"llm_probe_ttft_seconds{{{MODULE_SELECTOR}}}", "TTFT"),
                target(f"llm_probe_first_content_seconds{{{MODULE_SELECTOR}}}", "first content"),
                target(
                    f"llm_probe_request_duration_seconds{{{MODULE_SELECTOR}}}", "request duration"
                ),
                target(f"llm_probe_duration_seconds{{{MODULE_SELECTOR}}}", "whole probe"),
            ],
            description="Per-probe gauges: the medians of the last probe, as scraped. "
            "Flat stretches are cached answers between paid probes.",
            unit="s",
        ),
        timeseries(
            "Last probe: decode rate ($module)",
            [
                target(f"llm_probe_tokens_per_second{{{MODULE_SELECTOR}}}", "per stream"),
                target(
                    f"llm_probe_aggregate_tokens_per_second{{{MODULE_SELECTOR}}}", "all streams"
                ),
            ],
            description="Median decode rate of the last probe; `all streams` is the "
            "concurrent module's total output tokens / wall time.",
            unit=TOKENS_PER_SECOND,
        ),
        heatmap(
            "TTFT distribution ($module)",
            f"sum by (le) (increase(llm_ttft_seconds_bucket{{{MODULE_SELECTOR}}}"
            "[$__rate_interval]))",
            description="New TTFT observations per histogram bucket and interval.",
            unit="s",
        ),
        timeseries(
            "Requests and failures by reason ($module)",
            [
                target(
                    f"sum(increase(llm_requests_total{{{MODULE_SELECTOR}}}[$__rate_interval]))",
                    "requests",
                ),
                target(
                    f"sum by (reason) (increase(llm_request_failures_total"
                    f"{{{MODULE_SELECTOR}}}[$__rate_interval]))",
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
                target(f"llm_probe_success{{{MODULE_SELECTOR}}}", "success"),
                target(f"llm_probe_cached{{{MODULE_SELECTOR}}}", "answered from cache"),
                target(f"llm_probe_token_count_estimated{{{MODULE_SELECTOR}}}", "tokens estimated"),
            ],
            description="success: every request of the probe succeeded; cached: the "
            "scrape reused the last result (cost control); tokens estimated: "
            "the server reported no usage.",
            mappings=value_map({"0": ("no", "transparent"), "1": ("yes", "blue")}),
        ),
        timeseries(
            "Tokens ($module)",
            [
                target(
                    f"sum(increase(llm_output_tokens_total{{{MODULE_SELECTOR}}}"
                    "[$__rate_interval]))",
                    "output",
                ),
                target(
                    f"sum(increase(llm_input_tokens_total{{{MODULE_SELECTOR}}}[$__rate_interval]))",
                    "input",
                ),
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
        annotations=[FIRING_ALERTS],
    )


def exporter_health() -> Json:
    exporter = f'job="{EXPORTER_JOB}"'
    generator = f'job="{GENERATOR_JOB}"'
    panels = [
        row("Exporter"),
        stat(
            "Exporter up",
            f"min(up{{{exporter}}})",
            mappings=UP_DOWN,
            steps=[(None, "red"), (1, "green")],
            description="Prometheus reached the exporter's /metrics.",
        ),
        stat(
            "Config reload",
            f"min(perfgen_exporter_config_last_reload_successful{{{exporter}}})",
            mappings=value_map({"0": ("failed", "red"), "1": ("ok", "green")}),
            steps=[(None, "red"), (1, "green")],
            description="A refused config keeps the old one running; fix the file and "
            "send SIGHUP or POST /-/reload.",
        ),
        stat(
            "Config age",
            f"time() - max(perfgen_exporter_config_last_reload_success_timestamp_seconds"
            f"{{{exporter}}})",
            unit="s",
            decimals=0,
            description="Time since the config was last loaded successfully.",
        ),
        stat(
            "Probe targets",
            f"sum(perfgen_exporter_targets{{{exporter}}})",
            description="target x module pairs the exporter offers on /sd.",
        ),
        stat(
            "Probe targets up",
            f'sum(up{{job="{PROBE_JOB}"}}) / count(up{{job="{PROBE_JOB}"}})',
            unit="percentunit",
            decimals=0,
            steps=RATIO_STEPS,
            description="/probe scrapes that answered (a failed probe still answers, "
            "with llm_probe_success 0).",
        ),
        stat(
            "Budget exhausted",
            f"max(perfgen_exporter_budget_exhausted{{{exporter}}})",
            mappings=YES_NO,
            steps=[(None, "green"), (1, "red")],
            description="While exhausted, scrapes are answered from the last result.",
        ),
        timeseries(
            "Scrapes by outcome",
            [
                target(
                    f"sum by (module, outcome) (rate(perfgen_exporter_scrapes_total"
                    f"{{{exporter}}}[$__rate_interval]))",
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
                    f"sum by (instance) (perfgen_exporter_probes_in_flight{{{exporter}}})",
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
                    f"max by (instance) (perfgen_exporter_event_loop_lag_seconds{{{exporter}}})",
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
                target(f"sum(perfgen_exporter_budget_output_tokens_used{{{exporter}}})", "used"),
                target(f"sum(perfgen_exporter_budget_output_tokens_limit{{{exporter}}})", "limit"),
            ],
            description="Output tokens spent on probes this hour; 0 limit = unlimited.",
            unit="short",
            overrides=[
                override(
                    "limit",
                    custom__lineStyle={"fill": "dash", "dash": [10, 10]},
                    color={"mode": "fixed", "fixedColor": "red"},
                )
            ],
        ),
        timeseries(
            "/probe scrape duration",
            [
                target(
                    f'max by (instance) (scrape_duration_seconds{{job="{PROBE_JOB}"}})',
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
                    f"sum by (instance) (changes(perfgen_exporter_config_last_reload_success"
                    f"_timestamp_seconds{{{exporter}}}[$__rate_interval]))",
                    "{{instance}} reloads",
                ),
                target(
                    f"min by (instance) (perfgen_exporter_config_last_reload_successful"
                    f"{{{exporter}}})",
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
            f"min(up{{{generator}}})",
            mappings=UP_DOWN,
            steps=[(None, "red"), (1, "green")],
            description="Prometheus reached `perfgen generate --metrics-listen`.",
            width=6,
        ),
        stat(
            "Last run",
            f"min(perfgen_generator_last_run_success{{{generator}}})",
            mappings=value_map({"0": ("failed", "red"), "1": ("ok", "green")}),
            steps=[(None, "red"), (1, "green")],
            description="Whether the last generator run succeeded (unchanged or changed).",
            width=6,
        ),
        stat(
            "Since last success",
            f"time() - max(perfgen_generator_last_success_timestamp_seconds{{{generator}}})",
            unit="s",
            decimals=0,
            steps=[(None, "green"), (3600, "red")],
            description="A stale proxy config keeps yesterday's fastest model.",
            width=6,
        ),
        stat(
            "Route changes (24h)",
            f"sum(increase(perfgen_generator_route_changes_total{{{generator}}}[24h]))",
            decimals=0,
            steps=[(None, "green"), (10, "orange")],
            description="Many changes mean flapping: raise hysteresis_margin or hysteresis_for.",
            width=6,
        ),
        timeseries(
            "Route changes by scenario",
            [
                target(
                    f"sum by (scenario) (increase(perfgen_generator_route_changes_total"
                    f"{{{generator}}}[$__rate_interval]))",
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
                    f"time() - max(perfgen_generator_last_run_timestamp_seconds{{{generator}}})",
                    "since last run",
                ),
                target(
                    f"time() - max(perfgen_generator_last_success_timestamp_seconds"
                    f"{{{generator}}})",
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
        [datasource_variable()],
        panels,
        annotations=[FIRING_ALERTS],
        time_from="now-3h",
    )


DASHBOARDS = {
    "perfgen-overview.json": overview,
    "perfgen-model.json": model_drill_down,
    "perfgen-exporter.json": exporter_health,
}


def render(builder: Any) -> str:
    """Stable text: sorted keys and a final newline, so a rebuild is a no-op diff."""
    return json.dumps(builder(), indent=2, sort_keys=True) + "\n"


def build_all() -> dict[str, str]:
    return {name: render(builder) for name, builder in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grafana.build",
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
        print(f"stale: {', '.join(stale)} (run python -m grafana.build)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
