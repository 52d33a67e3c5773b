"""VictoriaMetrics, perfgen's scale-out path: same rules, same generator.

1. `vmalert -dryRun` accepts the committed rules (rules/rendered/*.yml), so MetricsQL
   parses every recording and alerting expression perfgen renders.
2. `perfgen generate` ranks against VictoriaMetrics' Prometheus-compatible query API as it
   does against Prometheus: the recording-rule series of tests/test_generator_integration.py
   (its DATA, built by its openmetrics()) are imported with their timestamps through
   `/api/v1/import/prometheus`, and the same cases give the same routes.

One difference shows up in the hysteresis queries: MetricsQL skips NaN samples, so a NaN
score leaves a gap (count_over_time below the step count) instead of a NaN sum as in
Prometheus. The generator treats both as "no score for the whole hold time", so the
outcome is the same (test_challenger_needs_a_score_for_the_whole_hold_time).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import test_generator_integration as prometheus_test
from conftest import require_binaries
from perfgen.generator.promql import PromClient
from perfgen.generator.run import generate_once
from perfgen.generator.snapshot import hold_queries
from perfgen.stack.processes import ManagedProcess, project_root, start_victoriametrics
from test_generator_integration import (
    openmetrics,
    router,
    run_generate,
    write_config,
)

pytestmark = pytest.mark.integration

RULES = sorted((project_root() / "rules" / "rendered").glob("*.yml"))


def prometheus_text() -> str:
    """openmetrics() as Prometheus text format: VictoriaMetrics' import wants timestamps in
    milliseconds (OpenMetrics has seconds), and needs neither `# TYPE` nor `# EOF`."""
    lines = []
    for line in openmetrics().splitlines():
        if line.startswith("#"):
            continue
        sample, seconds = line.rsplit(" ", 1)
        lines.append(f"{sample} {int(seconds) * 1000}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binaries("victoria-metrics")
    process: ManagedProcess = start_victoriametrics(tmp_path_factory.mktemp("vm"))
    try:
        url = process.url or ""
        prometheus_test.reset_now()
        response = requests.post(
            f"{url}/api/v1/import/prometheus", data=prometheus_text(), timeout=30
        )
        assert response.status_code == 204, response.text
        # Imported rows are searchable once flushed from the in-memory buffers.
        requests.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()
        query = 'provider_model:llm_performance_score:ratio_1h{provider="fast",model="b"}'
        deadline = time.monotonic() + 15
        while not PromClient(url).instant(query):
            if time.monotonic() > deadline:
                raise process.failure("shows no imported series after 15s")
            time.sleep(0.2)
        yield url
    finally:
        process.stop()


# --------------------------------------------------------------------------- rules


def test_vmalert_accepts_the_committed_rules(tmp_path):
    vmalert = require_binaries("vmalert")["vmalert"]
    assert [p.name for p in RULES] == ["alerts.yml", "recording.yml"]
    result = subprocess.run(
        [vmalert, "-dryRun", *(f"-rule={p}" for p in RULES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    # A -rule path matching nothing is only a warning; every file must have been read.
    assert "no groups found" not in log and "error" not in log.lower(), log
    # And the check is real: a broken expression in a copy of the rules is refused.
    broken = tmp_path / "recording.yml"
    text = RULES[1].read_text()
    shutil.copy(RULES[0], tmp_path / "alerts.yml")
    broken.write_text(text.replace("expr: ", "expr: sum(", 1))
    result = subprocess.run(
        [vmalert, "-dryRun", f"-rule={tmp_path / '*.yml'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "bad prometheus expr" in result.stderr + result.stdout


# --------------------------------------------------------------------------- generate


def test_imported_series_reach_now(victoriametrics):
    samples = PromClient(victoriametrics).instant(
        'provider_model:llm_performance_score:ratio_1h{provider="fast",model="b"}'
    )
    assert samples and samples[0].value == 0.9
    assert prometheus_test.NOW - samples[0].timestamp < 120


def test_faster_model_moves_to_front(victoriametrics, tmp_path):
    cfg = write_config(
        tmp_path,
        "fast",
        ["a", "b", "c"],
        {"default": "fast,a|fast,b"},
        '[performance.scenarios.web_search]\ncandidates = ["fast,c", "fast,a"]\n',
    )
    before = cfg.read_bytes()
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", victoriametrics, "--dry-run"
    )
    assert code == 3, err
    assert cfg.read_bytes() == before and "dry run, nothing written" in err
    assert '-default = "fast,a|fast,b"\n+default = "fast,b|fast,a"\n' in out
    result = generate_once(cfg, PromClient(victoriametrics), dry_run=True)
    assert result.exit_code == 3 and result.written is None
    assert result.plan.changed_scenarios == ["default", "web_search"]
    code, _, err = run_generate("--config", str(cfg), "--prometheus", victoriametrics)
    assert code == 3, err
    assert router(cfg)["default"] == "fast,b|fast,a"
    assert router(cfg)["web_search"] == "fast,a|fast,c"


def test_model_over_threshold_drops_behind(victoriametrics, tmp_path):
    cfg = write_config(tmp_path, "thresh", ["a", "b"], {"default": "thresh,a|thresh,b"})
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", victoriametrics, "--explain"
    )
    assert code == 3, err
    assert router(cfg)["default"] == "thresh,b|thresh,a"
    assert "fails thresholds: p95 TTFT 9.000 s > 5 s" in out


def test_challenger_inside_hysteresis_margin_does_not_take_over(victoriametrics, tmp_path):
    cfg = write_config(
        tmp_path,
        "hyst",
        ["a", "b", "c", "d"],
        {"default": "hyst,a|hyst,b", "think": "hyst,c|hyst,d"},
    )
    before = cfg.read_bytes()
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", victoriametrics, "--explain"
    )
    assert code == 0, err
    assert cfg.read_bytes() == before
    assert "hysteresis holds primary: hyst,a stays" in out
    assert "hysteresis holds primary: hyst,c stays" in out  # d: better for only 5 of 15 m
    cfg.write_text(cfg.read_text().replace('hysteresis_for = "15m"', 'hysteresis_for = "0s"'))
    assert run_generate("--config", str(cfg), "--prometheus", victoriametrics)[0] == 3
    assert router(cfg) == {
        "default": "hyst,a|hyst,b",
        "think": "hyst,d|hyst,c",
        "strategy": "fill_first",
    }


def test_challenger_needs_a_score_for_the_whole_hold_time(victoriametrics, tmp_path):
    cfg = write_config(
        tmp_path,
        "late",
        ["a", "b", "c", "n"],
        {"default": "late,a|late,b", "think": "late,a|late,c", "background": "late,a|late,n"},
    )
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", victoriametrics, "--explain"
    )
    assert code == 3, err
    assert router(cfg) == {
        "default": "late,a|late,b",
        "think": "late,c|late,a",
        "background": "late,a|late,n",
        "strategy": "fill_first",
    }
    for challenger in ("b", "n"):
        assert (
            f"hysteresis holds primary: late,a stays (late,{challenger} lowest score "
            "over 15m 0.350 (no score for the whole hold time)"
        ) in out, out
    assert "hysteresis switches primary to late,c: beat late,a for 15m" in out, out


def test_nan_score_is_a_gap_not_a_nan_sum(victoriametrics):
    # The one MetricsQL difference the hysteresis queries meet (see the module docstring):
    # late,n's NaN sample is skipped, so one step is missing and the sum stays a number.
    held = hold_queries("1h", 900, prometheus_test.NOW + 0.123)
    found = {}
    for name, promql in held.queries.items():
        response = requests.get(
            f"{victoriametrics}/api/v1/query",
            params={"query": promql, "time": f"{held.time:.3f}"},
            timeout=5,
        ).json()
        assert response["status"] == "success", response
        found[name] = {
            (r["metric"]["provider"], r["metric"]["model"]): float(r["value"][1])
            for r in response["data"]["result"]
        }
    assert found["count"][("late", "a")] == held.points
    assert found["count"][("late", "n")] < held.points
    assert found["sum"][("late", "n")] == pytest.approx(0.35 * found["count"][("late", "n")])


def test_stale_model_keeps_its_place_after_fresh_ones(victoriametrics, tmp_path):
    cfg = write_config(tmp_path, "stale", ["a", "b"], {"default": "stale,b|stale,a"})
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", victoriametrics, "--explain"
    )
    assert code == 3, err
    assert router(cfg)["default"] == "stale,a|stale,b"
    assert "no fresh data: last probe 4.0 h ago" in out, out


def test_no_data_at_all_leaves_route_untouched(victoriametrics, tmp_path: Path):
    cfg = write_config(tmp_path, "nodata", ["x", "y"], {"default": "nodata,y|nodata,x"})
    before = cfg.read_bytes()
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", victoriametrics, "--explain"
    )
    assert code == 0 and cfg.read_bytes() == before, err
    assert "scenario default: untouched" in out
