"""The dashboards: generated JSON is current, structurally sound, and every query parses.

The query test against a Prometheus holding real data is test_grafana_queries.py; these
checks need no server (promtool parses the PromQL offline) and run in about a second.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from perfgen.grafana import build
from perfgen.grafana.board import REGION_ALL, REGION_MATCHER
from perfgen.grafana.queries import (
    BUILTINS,
    Query,
    extract_queries,
    iter_panels,
    label_values_to_promql,
    load_dashboards,
    substitute,
    variable_query,
    variables_used,
)
from perfgen.rules.render import recorded_names

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "docs" / "CONTRACTS.md"
RENDERED_RECORDING = ROOT / "rules" / "rendered" / "recording.yml"
PROVISIONING = ROOT / "grafana" / "provisioning"
EXPECTED_UIDS = {"perfgen-overview", "perfgen-model", "perfgen-exporter"}
JOBS = {"llm_probe", "perfgen_exporter", "perfgen_generator"}
# Standard series every Prometheus has; the dashboards may use them besides the contract's.
PROMETHEUS_BUILTINS = {"up", "ALERTS", "scrape_duration_seconds"}
SAMPLE_VALUES = {
    "datasource": "prometheus",
    "region": REGION_ALL,
    "window": "20m",
    "scenario": "default",
    "provider": "fastai",
    "model": "fast-chat",
    "module": "latency",
}

DASHBOARDS = load_dashboards()
QUERIES = extract_queries(DASHBOARDS)


def contract_names() -> tuple[set[str], set[str]]:
    """(metric names, recording-rule names with `_$window`) listed in docs/CONTRACTS.md.

    The contract abbreviates sibling rules (`...:p50_W`, `:p95_W`); a token starting with
    `:` takes the level and metric of the full name before it.
    """
    metrics: set[str] = set()
    rules: set[str] = set()
    last_rule = ""
    for token in re.findall(r"`([^`]+)`", CONTRACTS.read_text(encoding="utf-8")):
        name = token.split("{")[0].strip()
        if name.startswith(":") and last_rule:
            name = last_rule.rsplit(":", 1)[0] + name
        if re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+_W", name):
            last_rule = name
            rules.add(name[: -len("_W")] + "_$window")
        elif re.fullmatch(r"(llm|perfgen)_[a-z_]+", name):
            metrics.add(name)
    histograms = {
        "llm_ttft_seconds",
        "llm_first_content_seconds",
        "llm_request_duration_seconds",
        "llm_decode_tokens_per_second",
    }
    for name in histograms & metrics:
        metrics |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return metrics, rules


def names_in(expr: str) -> set[str]:
    """Metric and rule names in a PromQL expression (label values and functions excluded)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    tokens = set(re.findall(r"[A-Za-z_:$][A-Za-z0-9_:$]*", without_ranges))
    return {
        t
        for t in tokens
        if ":" in t or t.startswith(("llm_", "perfgen_")) or t in PROMETHEUS_BUILTINS
    }


# --------------------------------------------------------------------------- generated JSON


def test_committed_dashboards_match_the_generator() -> None:
    built = build.build_all()
    committed = {path.name for path in build.DASHBOARDS_DIR.glob("*.json")}
    assert committed == set(built), "grafana/dashboards has files build.py does not make"
    for name, text in built.items():
        current = (build.DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        assert current == text, f"{name} is stale: run python -m perfgen.grafana.build"


def test_build_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert build.main(["--out", str(tmp_path), "--check"]) == 1
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--out", str(tmp_path), "--check"]) == 0


# --------------------------------------------------------------------------- structure


def test_uids_are_the_stable_ones_and_unique() -> None:
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert sorted(uids) == sorted(EXPECTED_UIDS)
    for name, board in DASHBOARDS.items():
        # The file name follows the uid, so a renamed uid is a visible rename.
        assert name == f"{board['uid']}.json"
        assert len(board["uid"]) <= 40  # Grafana's limit


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_and_target_uses_the_datasource_variable(name: str) -> None:
    board = DASHBOARDS[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in iter_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip()
        assert panel.get("description"), f"{panel['title']} needs a description"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panel_ids_unique_and_grid_has_no_overlap(name: str) -> None:
    panels = list(iter_panels(DASHBOARDS[name]["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_window_variable_is_custom_with_the_committed_rules_window() -> None:
    for board in DASHBOARDS.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        if board["uid"] == "perfgen-exporter":
            continue  # no recording rules there
        window = variables["window"]
        assert window["type"] == "custom"
        assert window["current"]["value"] == "20m"
        assert window["query"].split(",") == ["20m", "1h"]


def test_model_drill_down_variables_chain_provider_model_module() -> None:
    board = DASHBOARDS["perfgen-model.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    queries = {name: variable_query(variables[name]) or "" for name in variables}
    for name in ("provider", "model", "module"):
        assert variables[name]["type"] == "query"
        assert queries[name].startswith("label_values(")
        assert REGION_MATCHER in queries[name]  # the chain starts at the region
    assert "$provider" in queries["model"]
    assert "$model" in queries["module"]
    # Grafana resolves variables in order: region before everything it narrows.
    order = list(variables)
    assert order.index("region") < order.index("provider") < order.index("model")


def test_every_variable_used_is_defined() -> None:
    for board in DASHBOARDS.values():
        defined = {v["name"] for v in board["templating"]["list"]} | set(BUILTINS)
        for query in (q for q in QUERIES if q.dashboard == board["uid"]):
            assert variables_used(query.expr) <= defined, str(query)


# --------------------------------------------------------------------------- region

# A series name where it stands as a selector (not inside a longer name).
_NAME_EDGE = r"(?<![A-Za-z0-9_:$]){}(?![A-Za-z0-9_:$])"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_has_a_region_variable_defaulting_to_all(name: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    region = variables["region"]
    assert region["type"] == "query"
    assert region["datasource"]["uid"] == "${datasource}"
    converted = label_values_to_promql(variable_query(region) or "")
    assert converted and converted[1] == "region", region["query"]
    # All is `.*`, which also matches series without the label, and is the default, so
    # a deployment without regions sees everything.
    assert region["includeAll"] is True and region["allValue"] == REGION_ALL
    assert region["current"]["value"] == ["$__all"]
    assert list(variables).index("region") == 1  # right after the data source


def test_every_series_selector_filters_on_the_region() -> None:
    """Each metric or rule a query reads carries `region=~"$region"` in its braces.

    The region variable's own query is the exception: it lists the regions.
    """
    for query in QUERIES:
        if query.where == "variable region":
            continue
        for name in names_in(query.expr):
            for match in re.finditer(_NAME_EDGE.format(re.escape(name)), query.expr):
                rest = query.expr[match.end() :]
                matchers = rest[: rest.find("}") + 1] if rest.startswith("{") else ""
                assert REGION_MATCHER in matchers, f"{name} without region in {query}"


def _query(dashboard: str, where: str) -> Query:
    return next(q for q in QUERIES if q.dashboard == dashboard and q.where == where)


def test_region_all_matches_series_without_a_region(tmp_path: Path) -> None:
    """Prometheus's own engine (promtool test rules) evaluates the dashboards' queries
    over series with and without a region label: All finds both, one region only its own.
    """
    from perfgen.stack.processes import BinaryMissing, find_binary

    try:
        promtool = find_binary("promtool")
    except BinaryMissing as exc:
        pytest.skip(str(exc))
    providers = _query("perfgen-model", "variable provider")
    regions = _query("perfgen-overview", "variable region")
    inputs = [
        ('llm_requests_total{provider="plain", model="m", module="latency"}', "1+1x5"),
        ('llm_requests_total{provider="eu_only", model="m", module="latency", region="eu"}', "1"),
        ('llm_requests_total{provider="us_only", model="m", module="latency", region="us"}', "1"),
        ('up{job="llm_probe", instance="a"}', "1x5"),
        ('up{job="perfgen_exporter", instance="b", region="eu"}', "1x5"),
        ('up{job="llm_probe", instance="c", region="us"}', "1x5"),
    ]
    cases = [
        # (query, $region as Grafana sends it, labels expected)
        (
            providers,
            REGION_ALL,
            ['{provider="plain"}', '{provider="eu_only"}', '{provider="us_only"}'],
        ),
        (providers, "eu", ['{provider="eu_only"}']),
        (providers, "(eu|us)", ['{provider="eu_only"}', '{provider="us_only"}']),  # multi-value
        (regions, REGION_ALL, ["{}", '{region="eu"}', '{region="us"}']),
    ]
    tests = [
        {
            "expr": substitute(query.expr, {**SAMPLE_VALUES, "region": region}),
            "eval_time": "5m",
            "exp_samples": [{"labels": labels, "value": 1} for labels in expected],
        }
        for query, region, expected in cases
    ]
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in inputs],
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "region_test.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_raw_metric_ranges_use_rate_interval() -> None:
    """Graphs rate raw counters over $__rate_interval, never a fixed range.

    A fixed `[1m]` is empty when the scrape interval is 60 s; $__rate_interval adapts.
    Instant stats may use a deliberate range (`[24h]`), and recording rules carry their
    own window.
    """
    for query in QUERIES:
        if query.instant or query.kind != "panel":
            continue
        for selector in re.findall(r"\[([^\]]+)\]", query.expr):
            assert selector == "$__rate_interval", str(query)


def test_recording_rules_preferred_over_raw_histograms() -> None:
    # p95 TTFT and friends come from the rules so that humans, alerts and the generator
    # agree; raw buckets are only for the distribution heatmap.
    for query in QUERIES:
        assert "histogram_quantile" not in query.expr, str(query)
        if "_bucket" in query.expr:
            panel = next(
                p
                for b in DASHBOARDS.values()
                for p in iter_panels(b["panels"])
                if any(t.get("expr") == query.expr for t in p.get("targets", []))
            )
            assert panel["type"] == "heatmap", str(query)


def test_names_come_from_the_contract() -> None:
    metrics, rules = contract_names()
    assert len(rules) >= 12 and "llm_probe_success" in metrics  # the parser found the tables
    for query in QUERIES:
        for name in names_in(query.expr):
            assert name in metrics | rules | PROMETHEUS_BUILTINS, f"{name} in {query}"
        for jobs in re.findall(r'job=~?"([^"]+)"', query.expr):
            assert set(jobs.split("|")) <= JOBS, str(query)


def test_overview_covers_the_required_views() -> None:
    board = DASHBOARDS["perfgen-overview.json"]
    exprs = " ".join(q.expr for q in QUERIES if q.dashboard == board["uid"])
    for needle in (
        "llm_performance_score:ratio_$window",
        "llm_ttft_seconds:p50_$window",
        "llm_ttft_seconds:p95_$window",
        "llm_ttft_seconds:p99_$window",
        "llm_decode_tokens_per_second:mean_$window",
        "llm_request_success:ratio_$window",
        "llm_request_failures_total",
        "perfgen_generator_primary_info",
        "perfgen_exporter_budget_output_tokens_used",
        "perfgen_exporter_budget_output_tokens_limit",
    ):
        assert needle in exprs, needle
    ranking = next(p for p in board["panels"] if p["title"].startswith("Ranking"))
    assert ranking["type"] == "table"
    assert all(t["instant"] and t["format"] == "table" for t in ranking["targets"])


def test_exporter_dashboard_covers_its_metrics() -> None:
    exprs = " ".join(q.expr for q in QUERIES if q.dashboard == "perfgen-exporter")
    metrics, _ = contract_names()
    exporter_metrics = {m for m in metrics if m.startswith("perfgen_exporter_")}
    # scrapes_total is a counter: its name in the contract is the exposed one.
    missing = {m for m in exporter_metrics if m not in exprs}
    assert not missing, missing
    assert f'up{{{REGION_MATCHER}, job="perfgen_exporter"}}' in exprs


@pytest.mark.skipif(not RENDERED_RECORDING.exists(), reason="rules/rendered not rendered yet")
def test_every_rule_used_is_recorded_by_the_rendered_rules() -> None:
    recorded = recorded_names(RENDERED_RECORDING.read_text(encoding="utf-8"))
    for query in QUERIES:
        for name in names_in(substitute(query.expr, SAMPLE_VALUES)):
            if ":" in name:
                assert name in recorded, f"{name} ({query}) is not in {RENDERED_RECORDING}"


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses every expression offline, wrapped as a recording rule."""
    from perfgen.stack.processes import BinaryMissing, find_binary

    try:
        promtool = find_binary("promtool")
    except BinaryMissing as exc:
        pytest.skip(str(exc))
    queries: list[Query] = QUERIES
    rules = [
        {"record": f"grafana:query_{index}", "expr": substitute(q.expr, SAMPLE_VALUES)}
        for index, q in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}), encoding="utf-8"
    )
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        # promtool names the failing rule by its record name; map it back to the panel.
        output = result.stdout + result.stderr
        failing = [str(queries[int(i)]) for i in re.findall(r"grafana:query_(\d+)", output)]
        pytest.fail("unparseable queries:\n" + "\n".join(failing or [output]))
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# --------------------------------------------------------------------------- provisioning


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_datasource_provisioning() -> None:
    document = _yaml(PROVISIONING / "datasources" / "prometheus.yml")
    assert document["apiVersion"] == 1
    prometheus = [d for d in document["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["isDefault"] is True
    assert prometheus[0]["url"] == "http://prometheus:9090"  # the compose service name


def test_dashboard_provisioning_points_at_the_mounted_dashboards() -> None:
    document = _yaml(PROVISIONING / "dashboards" / "perfgen.yml")
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    compose = _yaml(ROOT / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def test_dashboards_are_valid_json_with_schema_version() -> None:
    for path in build.DASHBOARDS_DIR.glob("*.json"):
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["schemaVersion"] == build.SCHEMA_VERSION
        assert "id" not in board  # provisioning assigns ids; a fixed one would clash
        assert build.TAG in board["tags"]
