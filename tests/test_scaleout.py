"""End to end beyond one Prometheus: two regions, agents, remote write, live vmalert.

One `ScaleOutStack` (stack/scaleout.py) serves every check here: per region a simulator
with its own latencies, an exporter and a Prometheus in agent mode remote-writing to one
VictoriaMetrics; vmalert evaluating the committed rules there and notifying
Alertmanager; per region a generator ranking from VictoriaMetrics with --region. The
story runs once (module fixture); the tests read what it found. About 2 minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_binaries
from test_grafana_queries import Live, empty_for_one_region, recorded_rules

from perfgen.config import Route, duration_seconds
from perfgen.generator.proxy_schema import validate_text
from perfgen.grafana.board import REGION_ALL
from perfgen.stack.processes import http_get, project_root
from perfgen.stack.scaleout import (
    EXPECTED_PRIMARIES,
    ScaleOutResult,
    ScaleOutStack,
    run_scaleout_story,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleOutStack]:
    require_binaries("prometheus", "alertmanager", "victoria-metrics", "vmalert")
    workdir: Path = tmp_path_factory.mktemp("scaleout")
    running = ScaleOutStack(workdir, log=print)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def story(stack: ScaleOutStack) -> ScaleOutResult:
    started = time.monotonic()
    result = run_scaleout_story(stack, say=print, progress=print)
    assert time.monotonic() - started < 300, result.seconds
    return result


def test_agents_only_forward_and_vmalert_records_per_region(
    stack: ScaleOutStack, story: ScaleOutResult
) -> None:
    for region in stack.regions:
        # An agent keeps no queryable storage: whatever the rules see came by remote write.
        status, body = http_get(f"{stack.agent_url(region)}/api/v1/query?query=up")
        assert status != 200 or b"agent" in body.lower(), body[:200]
        # The exporter's raw series reached VictoriaMetrics with the agent's region label.
        raw = stack.query(f'llm_requests_total{{job="llm_probe",region="{region}"}}')
        assert {s["metric"]["provider"] for s in raw} == {"alpha", "beta"}
    # Recorded series exist in VictoriaMetrics only because vmalert wrote them back:
    # nothing else evaluates the recording rules in this stack.
    scores = stack.query('provider_model:llm_performance_score:ratio_2m{scenario="default"}')
    assert {(s["metric"]["region"], s["metric"]["provider"]) for s in scores} == {
        (region, provider) for region in stack.regions for provider in ("alpha", "beta")
    }
    # vmalert evaluates every committed rule live, and none of them fails on MetricsQL.
    status, body = http_get(f"{stack.vmalert_url}/api/v1/rules")
    assert status == 200, body[:200]
    groups = json.loads(body)["data"]["groups"]
    assert {g["name"] for g in groups} == {"perfgen-recording", "perfgen-alerts"}
    errors = {
        r["name"]: r.get("lastError") for g in groups for r in g["rules"] if r.get("lastError")
    }
    assert errors == {}


def test_each_region_ranks_its_own_measurements(story: ScaleOutResult) -> None:
    for region, table in story.tables.items():
        lines = table.splitlines()
        assert lines[0] == f"scenario default, window 2m, region {region}", table
        first = lines[2].split()
        assert Route(first[1], first[2]) == EXPECTED_PRIMARIES[region], table


def test_two_regions_get_different_routes(story: ScaleOutResult) -> None:
    assert story.primaries == EXPECTED_PRIMARIES
    assert story.primaries["east"] != story.primaries["west"]


def test_degradation_alert_names_its_region(story: ScaleOutResult) -> None:
    labels = story.alert["labels"]
    assert labels["region"] == story.degraded_region == "east"
    assert (labels["provider"], labels["model"]) == ("alpha", "chat")
    assert labels["severity"] in ("warning", "critical")
    assert "in region east" in story.alert["annotations"]["summary"]
    assert story.alert["annotations"]["runbook_url"].startswith("docs/runbook.md#")


def test_demotion_in_its_region_only(stack: ScaleOutStack, story: ScaleOutResult) -> None:
    assert story.primaries_after == {"east": Route("beta", "chat"), "west": Route("beta", "chat")}
    for region in stack.regions:
        text = stack.config_path(region).read_text(encoding="utf-8")
        assert validate_text(text) == []
    # West's config was rewritten once (alpha -> beta) before the degradation and not
    # since: the east incident changed nothing there.
    west = stack.config_path("west")
    backup = west.with_name("config.toml.bak")
    assert backup.read_text(encoding="utf-8") == (
        west.with_name("config.original.toml").read_text(encoding="utf-8")
    )


def test_dashboards_find_one_region_on_victoriametrics(
    stack: ScaleOutStack, story: ScaleOutResult
) -> None:
    """Every dashboard query, with one region chosen, finds that region's data as
    vmalert recorded it in VictoriaMetrics: the region variable works where regions
    exist (the demo stack of tests/test_grafana_queries.py has none)."""
    window = stack.config.performance.window
    module = stack.config.performance.sd_modules[0]
    # The region empty_for_one_region picks (the first by name) is east, where the story
    # degraded alpha: the drill-down shows a model whose last probe there succeeded, as
    # a failed probe leaves the per-probe gauges out (unknown, not zero).
    healthy = stack.query(
        f'max by (provider, model) (llm_probe_success{{region="east",module="{module}"}}) == 1'
    )
    assert healthy, "no model of region east has a successful probe"
    scrape = duration_seconds(stack.scrape_interval)
    live = Live(
        url=stack.victoriametrics_url,
        values={
            "datasource": "prometheus",
            "region": REGION_ALL,
            "window": window,
            "scenario": "default",
            "provider": healthy[0]["metric"]["provider"],
            "model": healthy[0]["metric"]["model"],
            "module": module,
            # What Grafana computes for a zoomed-in panel (tests/test_grafana_queries.py).
            "__interval": f"{scrape:g}s",
            "__rate_interval": f"{4 * scrape:g}s",
        },
        step=stack.scrape_interval,
        recorded=recorded_rules(stack.config.performance),
    )
    region, empty = empty_for_one_region(live)
    assert region == "east"
    assert not empty, f"empty in region {region}:\n" + "\n".join(empty)


def test_scaleout_files_ship_with_the_package() -> None:
    stack_dir = project_root() / "stack"
    for name in ("scaleout-proxy.toml", "scaleout-east.toml", "scaleout-west.toml"):
        assert (stack_dir / name).is_file()


def test_demo_scale_out_names_a_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from perfgen.stack.demo_cli import demo

    monkeypatch.setenv("PERFGEN_VMALERT_BINARY", "/nonexistent/vmalert")
    result = CliRunner().invoke(demo, ["--scale-out", "--duration", "10"])
    assert result.exit_code == 1
    assert "PERFGEN_VMALERT_BINARY=/nonexistent/vmalert is not an executable file" in (
        result.stderr
    )
