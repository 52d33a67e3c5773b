"""Rules rendered from other configurations, checked by promtool tests generated for them.

The hand-written tests in rules/tests/ pin the default rendering to hand-computed
numbers. Here the same properties are generated for any [performance]: input series are
chosen relative to the configured thresholds, expected values come from the Python
reference of the formula (rules.render.score_components), and alert timings from the
configured window and test interval. Run for the example config, a SECOND configuration
with other weights, thresholds, window and scenarios, and the demo's short timings.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import pytest
import yaml

from exporter.config import Performance, duration_seconds, load_config, parse_config
from rules.render import (
    TEMPLATES,
    meets_thresholds,
    performance_score,
    prom_duration,
    render_rules,
    scenario_params,
    score_components,
    timings,
    write_rules,
)

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

PROVIDERS = """
[[providers]]
name = "groq"
api_base_url = "https://api.groq.com/openai/v1"
api_key = "$GROQ_API_KEY"
models = ["llama-3.3-70b-versatile", "llama-3.1-8b-instant"]

[[providers]]
name = "deepseek"
api_base_url = "https://api.deepseek.com"
api_key = "$DEEPSEEK_API_KEY"
models = ["deepseek-chat"]
"""

# Other weights, thresholds, window, sample count; a scenario with its own thresholds
# (its components are computed inline) and one that scores throughput alone.
SECOND_CONFIG = PROVIDERS + """
[performance]
test_interval_minutes = 5
min_test_count = 8
window = "30m"

[performance.thresholds]
max_latency_ms = 2000
min_throughput_tokens_per_sec = 25
min_success_rate = 0.9

[performance.weights]
latency = 0.5
throughput = 0.3
reliability = 0.2

[performance.test_models]
models = ["groq:llama-3.1-8b-instant", "deepseek:deepseek-chat"]
modules = ["latency"]

[performance.scenarios.background]
weights = { latency = 0.2, throughput = 0.5, reliability = 0.3 }
thresholds = { max_latency_ms = 8000, min_throughput_tokens_per_sec = 40, min_success_rate = 0.8 }

[performance.scenarios.think]
weights = { latency = 0, throughput = 1, reliability = 0 }

[performance.generator]
hysteresis_for = "30m"
stale_after = "20m"
"""

# The demo's timings: probes every 15 s, a 2 m window.
DEMO_CONFIG = PROVIDERS + """
[performance]
test_interval_minutes = 0.25
min_test_count = 3
window = "2m"

[performance.thresholds]
max_latency_ms = 1500
min_throughput_tokens_per_sec = 0
min_success_rate = 1
"""


def example() -> Performance:
    return load_config(ROOT / "examples" / "config.example.toml").performance


def second() -> Performance:
    return parse_config(SECOND_CONFIG, "second.toml").performance


def demo() -> Performance:
    return parse_config(DEMO_CONFIG, "demo.toml").performance


CONFIGS = {"example": example, "second": second, "demo": demo}


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Case:
    """A model's figures over one window."""

    model: str
    p95: float | None  # None: no successful request, so no TTFT
    decode: float | None
    success: float
    requests: float


def round4(value: float) -> float:
    """PromQL's round(v, 0.0001), which the generated expressions apply."""
    scaled = value * 10000
    # A value on a rounding edge could round differently in Go and Python.
    assert abs(scaled - math.floor(scaled) - 0.5) > 1e-6, value
    return math.floor(scaled + 0.5) / 10000


def number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def cases(performance: Performance) -> list[Case]:
    """Models around the global thresholds; each family varies one figure only."""
    thresholds = performance.thresholds
    latency = thresholds.max_latency_ms / 1000
    throughput = max(thresholds.min_throughput_tokens_per_sec, 10.0)
    failure = max(1 - thresholds.min_success_rate, 0.05)
    n = 4 * max(performance.min_test_count, 10)
    good = {"p95": latency / 2, "decode": 2 * throughput, "success": 1.0, "requests": n}
    result = [Case("ref", **good)]
    for index, factor in enumerate((0.25, 0.5, 1.5, 3, 6)):
        result.append(Case(f"lat-{index}", **{**good, "p95": factor * latency}))
        result.append(Case(f"thr-{index}", **{**good, "decode": throughput * 2 / factor}))
    for index, fraction in enumerate((0.0, 0.25, 0.5, 1.5, 3)):
        result.append(Case(f"rel-{index}", **{**good, "success": 1 - min(1.0, fraction * failure)}))
    result.append(Case("allfail", None, None, 0.0, n))
    result.append(Case("few", **{**good, "requests": performance.min_test_count - 1}))
    return result


def series_values(per_window: float) -> str:
    """A counter growing by per_window every window (4 steps), flat after 2 windows."""
    step = per_window / 4
    if step == 0:
        return "0x16"
    return f"0+{number(step)}x8 {number(8 * step)}x8"


def input_series(case: Case) -> list[dict[str, str]]:
    base = (f'job="llm_probe",instance="exporter:9101",provider="gen",'
            f'model="{case.model}",module="latency"')
    successes = case.requests * case.success
    # All successful observations in one bucket (0, b]: histogram_quantile returns 0.95 b.
    bucket = case.p95 / 0.95 if case.p95 is not None else 1.0
    observed = successes if case.p95 is not None else 0.0
    decode_count = successes if case.decode is not None else 0.0
    series = {
        f'llm_ttft_seconds_bucket{{{base},le="{number(bucket)}"}}': observed,
        f'llm_ttft_seconds_bucket{{{base},le="+Inf"}}': observed,
        f"llm_decode_tokens_per_second_sum{{{base}}}": (case.decode or 0.0) * decode_count,
        f"llm_decode_tokens_per_second_count{{{base}}}": decode_count,
        f"llm_requests_total{{{base}}}": case.requests,
        f'llm_request_failures_total{{{base},reason="timeout"}}': case.requests - successes,
    }
    return [{"series": name, "values": series_values(total)} for name, total in series.items()]


def sample(labels: str, value: float) -> dict[str, object]:
    return {"labels": labels, "value": value}


def recording_test(performance: Performance) -> dict[str, object]:
    t = timings(performance)
    w = t.window
    assert t.window_seconds % 4 == 0, "the generated inputs step a quarter window"
    step = prom_duration(t.window_seconds / 4)
    at = prom_duration(2 * t.window_seconds)  # the window covers exactly 4 steps
    all_cases = cases(performance)
    scenarios = scenario_params(performance)
    score = f"provider_model:llm_performance_score:ratio_{w}"
    component = f"provider_model:llm_score_component:ratio_{w}"
    meets = f"provider_model:llm_meets_thresholds:bool_{w}"

    def expected(chosen: list[Case]) -> tuple[list, list, list]:
        components, scores, flags = [], [], []
        for case in chosen:
            figures = (case.p95, case.decode, case.success)
            for scenario in scenarios:
                flag = meets_thresholds(*figures, case.requests, scenario.thresholds,
                                        performance.min_test_count)
                flags.append(sample(
                    f'{meets}{{provider="gen",model="{case.model}",scenario="{scenario.name}"}}',
                    1 if flag else 0,
                ))
            if case.requests < performance.min_test_count:
                continue  # too few samples: no component, no score
            for name, value in score_components(*figures, performance.thresholds).items():
                components.append(sample(
                    f'{{provider="gen",model="{case.model}",component="{name}"}}',
                    round4(value),
                ))
            for scenario in scenarios:
                value = performance_score(
                    score_components(*figures, scenario.thresholds), scenario.weights
                )
                scores.append(sample(
                    f'{{provider="gen",model="{case.model}",scenario="{scenario.name}"}}',
                    round4(value),
                ))
        return components, scores, flags

    components, scores, flags = expected(all_cases)
    checks: list[dict[str, object]] = [
        {"expr": f"round({component}, 0.0001)", "eval_time": at, "exp_samples": components},
        {"expr": f"round({score}, 0.0001)", "eval_time": at, "exp_samples": scores},
        {"expr": meets, "eval_time": at, "exp_samples": flags},
        # Within [0, 1].
        {"expr": f"{score} > 1 or {score} < 0 or {component} > 1 or {component} < 0",
         "eval_time": at, "exp_samples": []},
        # Too few samples: no score at all.
        {"expr": f'{score}{{model="few"}} or {component}{{model="few"}}',
         "eval_time": at, "exp_samples": []},
        # Nothing fresh two windows later: no score, no flag.
        {"expr": f"{score} or {meets}", "eval_time": prom_duration(4 * t.window_seconds),
         "exp_samples": []},
    ]
    # Monotonic: a worse figure never raises the score and strictly lowers its component.
    for family, name in (("lat", "latency"), ("thr", "throughput"), ("rel", "reliability")):
        for index in range(4):
            better, worse = f"{family}-{index}", f"{family}-{index + 1}"
            checks.append({
                "expr": f'{score}{{model="{worse}"}} > on (scenario) {score}{{model="{better}"}}',
                "eval_time": at, "exp_samples": [],
            })
            checks.append({
                "expr": f'{component}{{model="{worse}",component="{name}"}}'
                        f' >= on () {component}{{model="{better}",component="{name}"}}',
                "eval_time": at, "exp_samples": [],
            })
    alone = [case for case in all_cases if case.model in ("ref", "lat-3")]
    _, alone_scores, _ = expected(alone)
    return {
        "rule_files": ["recording.yml"],
        # Every evaluation then sees a whole number of input steps in the window.
        "evaluation_interval": step,
        "tests": [
            {
                "name": "generated: score, components and flags",
                "interval": step,
                "input_series": [s for case in all_cases for s in input_series(case)],
                "promql_expr_test": checks,
            },
            {
                # The same two models alone score exactly what they scored among 22.
                "name": "generated: a score does not depend on the other models",
                "interval": step,
                "input_series": [s for case in alone for s in input_series(case)],
                "promql_expr_test": [
                    {"expr": f"round({score}, 0.0001)", "eval_time": at,
                     "exp_samples": alone_scores},
                ],
            },
        ],
    }


def alerts_test(performance: Performance) -> dict[str, object]:
    """Pending one evaluation before the derived `for:` has passed, firing at it."""
    t = timings(performance)
    thresholds = performance.thresholds
    latency = thresholds.max_latency_ms / 1000
    seconds = {name: _seconds(getattr(t, name)) for name in ("probe_for", "infra_for")}
    # When the latest probe turns bad, the score halves and the exporter goes down. One
    # window of history keeps the score's baseline above 0.5 until the alert has fired.
    onset = int(t.window_seconds)
    step = reduce(math.gcd, [60, onset, int(t.window_seconds), int(t.stale_after_seconds),
                             *seconds.values()])
    # The stale target was measured once, at 0: its age first exceeds stale_after at the
    # first evaluation after it.
    stale_active = (int(t.stale_after_seconds) // step + 1) * step
    end = max(onset + max(int(t.window_seconds), *seconds.values()),
              stale_active + seconds["infra_for"]) + 2 * step
    count = end // step

    def flip(before: float, after: float) -> str:
        return f"{number(before)}x{onset // step - 1} {number(after)}x{count - onset // step + 1}"

    def steady(value: float) -> str:
        return f"{number(value)}x{count}"

    labels = 'job="llm_probe",instance="exporter:9101",provider="gen"'
    w = t.window
    series = [
        # failing: success under the threshold; its latest probe fails from the onset.
        (f'provider_model:llm_request_success:ratio_{w}{{provider="gen",model="failing"}}',
         steady(thresholds.min_success_rate / 2)),
        (f'provider_model:llm_requests:increase_{w}{{provider="gen",model="failing"}}',
         steady(performance.min_test_count)),
        (f'llm_probe_success{{{labels},model="failing",module="latency"}}', flip(1, 0)),
        # slow: p95 twice the threshold; its latest probe is slow from the onset.
        (f'provider_model:llm_ttft_seconds:p95_{w}{{provider="gen",model="slow"}}',
         steady(2 * latency)),
        (f'provider_model:llm_requests:increase_{w}{{provider="gen",model="slow"}}',
         steady(performance.min_test_count)),
        (f'llm_probe_ttft_seconds{{{labels},model="slow",module="latency"}}',
         flip(latency / 2, 2 * latency)),
        # sinking: the score halves at the onset.
        (f'provider_model:llm_performance_score:ratio_{w}{{provider="gen",model="sinking",'
         'scenario="default"}', flip(0.8, 0.4)),
        # The exporter goes down at the onset.
        ('up{job="perfgen_exporter",instance="127.0.0.1:9101"}', flip(1, 0)),
        # stale: measured once, at 0.
        (f'llm_probe_timestamp_seconds{{{labels},model="stale",module="latency"}}', steady(0)),
        # The provider's probe key disappears at the onset.
        (f'llm_probe_failed{{{labels},model="nokey",module="latency",reason="no_api_key"}}',
         flip(0, 1)),
    ]
    minimum = thresholds.min_throughput_tokens_per_sec
    if minimum > 0:  # with no minimum, nothing is too slow
        series += [
            # crawl: half the minimum decode rate; its latest probe is slow from the onset.
            (f'provider_model:llm_decode_tokens_per_second:mean_{w}{{provider="gen",model="crawl"}}',
             steady(minimum / 2)),
            (f'provider_model:llm_requests:increase_{w}{{provider="gen",model="crawl"}}',
             steady(performance.min_test_count)),
            (f'llm_probe_tokens_per_second{{{labels},model="crawl",module="latency"}}',
             flip(2 * minimum, minimum / 2)),
        ]
    firing = {
        ("PerfgenProbeFailing", 'model="failing",severity="warning"'): onset + seconds["probe_for"],
        ("PerfgenLatencyHigh", 'model="slow"'): onset + seconds["probe_for"],
        ("PerfgenThroughputLow", 'model="crawl"'): onset + seconds["probe_for"],
        ("PerfgenScoreDegraded", 'model="sinking"'): onset + int(t.window_seconds),
        ("PerfgenExporterDown", 'job="perfgen_exporter"'): onset + seconds["infra_for"],
        ("PerfgenProbeMisconfigured", 'provider="gen"'): onset + seconds["infra_for"],
        ("PerfgenProbeDataStale", 'model="stale",cause="old"'): stale_active + seconds["infra_for"],
    }
    if minimum <= 0:
        del firing[("PerfgenThroughputLow", 'model="crawl"')]
    checks = []
    for (alert, selector), when in firing.items():
        expr = f'count by (alertstate) (ALERTS{{alertname="{alert}",{selector}}})'
        checks.append({"expr": expr, "eval_time": prom_duration(when - step),
                       "exp_samples": [sample('{alertstate="pending"}', 1)]})
        checks.append({"expr": expr, "eval_time": prom_duration(when),
                       "exp_samples": [sample('{alertstate="firing"}', 1)]})
    return {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": prom_duration(step),
        "tests": [{
            "name": "generated: alerts fire after their derived for:",
            "interval": prom_duration(step),
            "input_series": [{"series": name, "values": values} for name, values in series],
            "promql_expr_test": checks,
        }],
    }


def _seconds(duration: str) -> int:
    return int(duration_seconds(duration))


def run_promtool(directory: Path, *tests: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "test", "rules", *tests], cwd=directory,
                          capture_output=True, text=True, timeout=120)


def write_suite(performance: Performance, directory: Path) -> None:
    write_rules(render_rules(performance), directory)
    for name, document in (("recording_test.yml", recording_test(performance)),
                           ("alerts_test.yml", alerts_test(performance))):
        (directory / name).write_text(yaml.safe_dump(document, sort_keys=False))


# --------------------------------------------------------------------------- tests


@needs_promtool
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generated_promtool_suite_passes(name: str, tmp_path: Path) -> None:
    write_suite(CONFIGS[name](), tmp_path)
    check = subprocess.run([PROMTOOL, "check", "rules", *TEMPLATES], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "lint" not in (check.stdout + check.stderr).lower()
    result = run_promtool(tmp_path, "recording_test.yml", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_second_config_changes_the_rules() -> None:
    default, other = render_rules(example()), render_rules(second())
    recording, alerts = other["recording.yml"], other["alerts.yml"]
    assert "_1h" not in recording and "provider_model:llm_ttft_seconds:p95_30m" in recording
    assert "[30m]" in recording and "provider_model:llm_requests:increase_30m >= 8" in recording
    # Global references: L = 2 s, M = 25 tokens/s, F = 1 - 0.9.
    assert "2 / (2 + provider_model:llm_ttft_seconds:p95_30m)" in recording
    assert "provider_model:llm_decode_tokens_per_second:mean_30m + 25)" in recording
    assert "0.1 / (0.1 + (1 - provider_model:llm_request_success:ratio_30m))" in recording
    # background has its own thresholds, so its components are computed inline.
    assert "8 / (8 + provider_model:llm_ttft_seconds:p95_30m)" in recording
    assert "0.2 / (0.2 + (1 - provider_model:llm_request_success:ratio_30m))" in recording
    assert recording.count("scenario: think") == 2  # score and flag
    assert "for: 7m30s" in alerts and "for: 2m" in alerts and "for: 30m" in alerts
    assert "[3h]" in alerts  # baseline: 6 x 30m
    assert "> 1200" in alerts and "for: 20m" in alerts  # stale_after = 20m
    assert "[2h]" in alerts  # flapping range: 4 x hysteresis_for 30m
    assert default["alerts.yml"] != alerts


def test_second_config_changes_the_expectations() -> None:
    default, other = recording_test(example()), recording_test(second())
    default_scores = default["tests"][0]["promql_expr_test"][1]["exp_samples"]
    other_scores = other["tests"][0]["promql_expr_test"][1]["exp_samples"]
    assert default_scores != other_scores
    # think weighs throughput alone: its score is the throughput component.
    components = {
        (s["labels"], s["value"])
        for s in other["tests"][0]["promql_expr_test"][0]["exp_samples"]
    }
    for case in cases(second()):
        if case.requests < 8:
            continue
        think = next(s["value"] for s in other_scores
                     if s["labels"] == f'{{provider="gen",model="{case.model}",scenario="think"}}')
        assert (f'{{provider="gen",model="{case.model}",component="throughput"}}',
                think) in components


@needs_promtool
def test_expectations_of_one_config_fail_against_another(tmp_path: Path) -> None:
    # The expectations are configuration-specific: the example's generated test must fail
    # against the second configuration's rules, or it would not be testing them.
    write_rules(render_rules(second()), tmp_path)
    test = recording_test(example())
    (tmp_path / "recording_test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = run_promtool(tmp_path, "recording_test.yml")
    assert result.returncode != 0
    assert "provider_model:llm_performance_score:ratio_1h" in result.stdout + result.stderr


# --------------------------------------------------------------------------- reference


def test_reference_score_properties() -> None:
    for performance in (example(), second(), demo()):
        for scenario in scenario_params(performance):
            thresholds = scenario.thresholds
            latency = thresholds.max_latency_ms / 1000
            minimum = thresholds.min_throughput_tokens_per_sec
            # Exactly 0.5 at each threshold (when the threshold is not a floor case).
            at_threshold = score_components(latency, minimum or None,
                                             thresholds.min_success_rate, thresholds)
            assert at_threshold["latency"] == pytest.approx(0.5)
            if minimum >= 1:
                assert at_threshold["throughput"] == pytest.approx(0.5)
            if thresholds.min_success_rate <= 0.999:
                assert at_threshold["reliability"] == pytest.approx(0.5)
            previous = 2.0
            for p95 in (0.0, 0.1, 1.0, 5.0, 30.0, 1e6, None):
                for decode in (1e6, 100.0, 10.0, 0.0, None):
                    for success in (1.0, 0.99, 0.9, 0.5, 0.0):
                        value = performance_score(
                            score_components(p95, decode, success, thresholds),
                            scenario.weights,
                        )
                        assert 0.0 <= value <= 1.0
            # Monotonic along a worsening latency.
            for p95 in (0.0, 0.1, 1.0, 5.0, 30.0, None):
                value = score_components(p95, 10.0, 1.0, thresholds)["latency"]
                assert value < previous
                previous = value
