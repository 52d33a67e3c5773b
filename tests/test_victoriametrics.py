"""VictoriaMetrics, perfgen's scale-out path: same rules, same generator.

1. `vmalert -dryRun` accepts the committed rules (rules/rendered/*.yml), so MetricsQL
   parses every recording and alerting expression perfgen renders.
2. The generator's ranking cases run against VictoriaMetrics with its default settings
   as well as against Prometheus: the `backend` fixture of
   tests/test_generator_integration.py. What is left here is VictoriaMetrics' own.

One difference shows up in the hysteresis queries: MetricsQL skips NaN samples, so a NaN
score leaves a gap (count_over_time below the step count) instead of a NaN sum as in
Prometheus. The generator treats both as "no score for the whole hold time", so the
outcome is the same (test_challenger_needs_a_score_for_the_whole_hold_time).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
import requests
import test_generator_integration as prometheus_test
from conftest import require_binaries
from test_generator_integration import load_victoriametrics

from perfgen.generator.promql import PromClient
from perfgen.generator.snapshot import hold_queries
from perfgen.stack.processes import project_root

pytestmark = pytest.mark.integration

RULES = sorted((project_root() / "rules" / "rendered").glob("*.yml"))


@pytest.fixture(scope="module")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tuned to show samples at once: these cases query at the data's own times."""
    require_binaries("victoria-metrics")
    process = load_victoriametrics(tmp_path_factory.mktemp("vm"), fresh_reads=True)
    try:
        yield process.url or ""
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


# --------------------------------------------------------------------------- queries


def test_imported_series_reach_now(victoriametrics):
    samples = PromClient(victoriametrics).instant(
        'provider_model:llm_performance_score:ratio_1h{provider="fast",model="b"}'
    )
    assert samples and samples[0].value == 0.9
    assert prometheus_test.NOW - samples[0].timestamp < 120


def test_nan_score_is_a_gap_not_a_nan_sum(victoriametrics):
    # The one MetricsQL difference the hysteresis queries meet (see the module docstring):
    # late,n's NaN sample is skipped, so one step is missing and the sum stays a number.
    # Ending at the newest sample, as the generator does (HoldQueries): at "now" the
    # last steps could be further from it than VictoriaMetrics looks back.
    now = prometheus_test.NOW
    newest = range(int(now - prometheus_test.HISTORY), int(now - 5), prometheus_test.STEP)[-1]
    held = hold_queries("1h", 900, newest + 0.123)
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
