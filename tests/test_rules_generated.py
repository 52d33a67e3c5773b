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

from perfgen.config import LATENCY_MEAN, Performance, duration_seconds, load_config, parse_config
from perfgen.rules.render import (
    TEMPLATES,
    is_baseline,
    meets_thresholds,
    performance_score,
    prom_duration,
    render_rules,
    scenario_params,
    score_components,
    success_upper_bound,
    timings,
    write_rules,
)
from perfgen.timing import watch_module

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
SECOND_CONFIG = (
    PROVIDERS
    + """
[performance]
test_interval_minutes = 5
min_test_count = 8
window = "30m"
success_rate_confidence = 0.9

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
)

# The demo's timings: probes every 15 s, a 2 m window.
DEMO_CONFIG = (
    PROVIDERS
    + """
[performance]
test_interval_minutes = 0.25
min_test_count = 3
window = "2m"

[performance.thresholds]
max_latency_ms = 1500
min_throughput_tokens_per_sec = 0
min_success_rate = 1
"""
)


# The second config with score references apart from its thresholds (2 s, 25 tokens/s,
# success 0.9, so a failure ratio of 0.1 would score 0.5 without the reference).
SCORED_CONFIG = (
    SECOND_CONFIG
    + """
[performance.score]
latency_reference_ms = 750
throughput_reference_tokens_per_sec = 60
failure_ratio_reference = 0.25
"""
)


# Score references in the capped form: the cases past a reference (a p95 of 0.5 s against
# 0.7 s; decode rates of 200 and 100 against 60 tokens/s) score 1 on it. (The scored
# config's 750 ms put a capped score on a rounding edge, see round4.)
CAPPED_CONFIG = (
    SECOND_CONFIG
    + """
[performance.score]
form = "capped"
latency_reference_ms = 700
throughput_reference_tokens_per_sec = 60
failure_ratio_reference = 0.25
"""
)


# The latency component on the mean TTFT, in the ratio form (the example config has it in
# the capped form).
MEAN_CONFIG = (
    SECOND_CONFIG
    + """
[performance.score]
latency_statistic = "mean"
latency_reference_ms = 700
throughput_reference_tokens_per_sec = 60
"""
)


def example() -> Performance:
    return load_config(ROOT / "examples" / "config.example.toml").performance


def second() -> Performance:
    return parse_config(SECOND_CONFIG, "second.toml").performance


def demo() -> Performance:
    return parse_config(DEMO_CONFIG, "demo.toml").performance


def scored() -> Performance:
    return parse_config(SCORED_CONFIG, "scored.toml").performance


def capped_config() -> Performance:
    return parse_config(CAPPED_CONFIG, "capped.toml").performance


def mean_config() -> Performance:
    return parse_config(MEAN_CONFIG, "mean.toml").performance


CONFIGS = {
    "example": example,
    "second": second,
    "demo": demo,
    "scored": scored,
    "capped": capped_config,
    "mean": mean_config,
}


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


# Each family worsens one figure, from better to worse, down to an extreme: a first token
# 10000 times the threshold, 0 tokens/s, (almost) every request failing.
FAMILY_STEPS = 6
HUGE_LATENCY_FACTOR = 1e4
NOISE = 1e-9  # float noise of PromQL arithmetic on the generated counters


def requests_per_case(performance: Performance) -> int:
    return 4 * max(performance.min_test_count, 10)


def good_figures(performance: Performance) -> dict[str, float]:
    """Well inside every global threshold."""
    thresholds = performance.thresholds
    latency = thresholds.max_latency_ms / 1000
    throughput = max(thresholds.min_throughput_tokens_per_sec, 10.0)
    return {
        "p95": latency / 2,
        "decode": 2 * throughput,
        "success": 1.0,
        "requests": requests_per_case(performance),
    }


def cases(performance: Performance) -> list[Case]:
    """Models around the global thresholds; each family varies one figure only."""
    thresholds = performance.thresholds
    latency = thresholds.max_latency_ms / 1000
    throughput = max(thresholds.min_throughput_tokens_per_sec, 10.0)
    failure = max(1 - thresholds.min_success_rate, 0.05)
    n = requests_per_case(performance)
    good = good_figures(performance)
    result = [Case("ref", **good)]
    # 2.8, not 3: with the example's score references (1 s, 100 tokens/s) 3x the threshold
    # puts background's score exactly on a rounding edge (0.40625), see round4.
    latencies = (0.25, 0.5, 1.5, 2.8, 6, HUGE_LATENCY_FACTOR)
    decodes = (8, 4, 4 / 3, 2 / 3, 1 / 3, 0)
    # The last: one request of n succeeds (with none, there is no TTFT: see allfail).
    failures = (0.0, 0.25 * failure, 0.5 * failure, 1.5 * failure, 3 * failure, 1 - 1 / n)
    assert len(latencies) == len(decodes) == len(failures) == FAMILY_STEPS
    for index in range(FAMILY_STEPS):
        result.append(Case(f"lat-{index}", **{**good, "p95": latencies[index] * latency}))
        result.append(Case(f"thr-{index}", **{**good, "decode": decodes[index] * throughput}))
        result.append(Case(f"rel-{index}", **{**good, "success": 1 - min(1.0, failures[index])}))
    # Every request failed: no TTFT, no decode rate, success 0, the worst of every figure.
    result.append(Case("allfail", None, None, 0.0, n))
    result.append(Case("few", **{**good, "requests": performance.min_test_count - 1}))
    return result


def series_values(per_window: float) -> str:
    """A counter growing by per_window every window (4 steps), flat after 2 windows."""
    step = per_window / 4
    if step == 0:
        return "0x16"
    return f"0+{number(step)}x8 {number(8 * step)}x8"


def bucket_of(case: Case) -> float:
    # All successful observations in one bucket (0, b]: histogram_quantile returns 0.95 b.
    return case.p95 / 0.95 if case.p95 is not None else 1.0


def input_series(
    case: Case, module: str = "latency", bounds: tuple[float, ...] = ()
) -> list[dict[str, str]]:
    """The exporter's series of one module of a model. `bounds`: further bucket bounds,
    so that series of one model summed over modules share every `le`, as real ones do."""
    base = (
        f'job="llm_probe",instance="exporter:9101",provider="gen",'
        f'model="{case.model}",module="{module}"'
    )
    successes = case.requests * case.success
    bucket = bucket_of(case)
    observed = successes if case.p95 is not None else 0.0
    decode_count = successes if case.decode is not None else 0.0
    buckets = {
        f'llm_ttft_seconds_bucket{{{base},le="{number(le)}"}}': observed if le >= bucket else 0.0
        for le in sorted({bucket, *bounds})
    }
    series = {
        **buckets,
        f'llm_ttft_seconds_bucket{{{base},le="+Inf"}}': observed,
        # Every observation at the case's p95: its mean TTFT is its p95.
        f"llm_ttft_seconds_sum{{{base}}}": (case.p95 or 0.0) * observed,
        f"llm_ttft_seconds_count{{{base}}}": observed,
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
                flag = meets_thresholds(
                    *figures,
                    case.requests,
                    scenario.thresholds,
                    performance.min_test_count,
                    success_rate_confidence=performance.success_rate_confidence,
                )
                flags.append(
                    sample(
                        f'{meets}{{provider="gen",model="{case.model}",scenario="{scenario.name}"}}',
                        1 if flag else 0,
                    )
                )
            if case.requests < performance.min_test_count:
                continue  # too few samples: no component, no score
            for name, value in score_components(
                *figures, performance.thresholds, performance.score
            ).items():
                components.append(
                    sample(
                        f'{{provider="gen",model="{case.model}",component="{name}"}}',
                        round4(value),
                    )
                )
            for scenario in scenarios:
                value = performance_score(
                    score_components(*figures, scenario.thresholds, performance.score),
                    scenario.weights,
                )
                scores.append(
                    sample(
                        f'{{provider="gen",model="{case.model}",scenario="{scenario.name}"}}',
                        round4(value),
                    )
                )
        return components, scores, flags

    components, scores, flags = expected(all_cases)
    checks: list[dict[str, object]] = [
        {"expr": f"round({component}, 0.0001)", "eval_time": at, "exp_samples": components},
        {"expr": f"round({score}, 0.0001)", "eval_time": at, "exp_samples": scores},
        {"expr": meets, "eval_time": at, "exp_samples": flags},
        # Within [0, 1].
        {
            "expr": f"{score} > 1 or {score} < 0 or {component} > 1 or {component} < 0",
            "eval_time": at,
            "exp_samples": [],
        },
        # Too few samples: no score at all.
        {
            "expr": f'{score}{{model="few"}} or {component}{{model="few"}}',
            "eval_time": at,
            "exp_samples": [],
        },
        # Nothing fresh two windows later: no score, no flag.
        {
            "expr": f"{score} or {meets}",
            "eval_time": prom_duration(4 * t.window_seconds),
            "exp_samples": [],
        },
    ]

    # Monotonic: a worse figure never raises the score and strictly lowers its component:
    # a slower first token, a lower decode rate, a lower success ratio, each down to its
    # extreme; and a model whose every request failed scores no higher than any of them.
    # ("No higher" up to float noise: the inputs are counters whose ratios may differ in
    # the last bit where a weight of 0 leaves two scores equal.)
    # In the capped form two figures both past the reference tie at 1: there a worse
    # figure only must not raise its component.
    def expected_component(model: str, name: str) -> float:
        case = next(case for case in all_cases if case.model == model)
        figures = (case.p95, case.decode, case.success)
        return score_components(*figures, performance.thresholds, performance.score)[name]

    for family, name in (("lat", "latency"), ("thr", "throughput"), ("rel", "reliability")):
        for index in range(FAMILY_STEPS - 1):
            better, worse = f"{family}-{index}", f"{family}-{index + 1}"
            tie = expected_component(better, name) == expected_component(worse, name) == 1.0
            checks.append(
                {
                    "expr": f'{score}{{model="{worse}"}} > on (scenario) '
                    f'{score}{{model="{better}"}} + {NOISE}',
                    "eval_time": at,
                    "exp_samples": [],
                }
            )
            checks.append(
                {
                    "expr": f'{component}{{model="{worse}",component="{name}"}}'
                    f" {'>' if tie else '>='} on () "
                    f'{component}{{model="{better}",component="{name}"}}',
                    "eval_time": at,
                    "exp_samples": [],
                }
            )
        worst = f"{family}-{FAMILY_STEPS - 1}"
        checks.append(
            {
                "expr": f'{score}{{model="allfail"}} > on (scenario) {score}{{model="{worst}"}}'
                f" + {NOISE}",
                "eval_time": at,
                "exp_samples": [],
            }
        )
    # The extremes themselves, each scored (present) and within [0, 1] (checked above).
    extremes = [*(f"{family}-{FAMILY_STEPS - 1}" for family in ("lat", "thr", "rel")), "allfail"]
    checks.append(
        {
            "expr": f"count by (model) "
            f'({score}{{scenario="default",model=~"{"|".join(extremes)}"}})',
            "eval_time": at,
            "exp_samples": [sample(f'{{model="{model}"}}', 1) for model in extremes],
        }
    )
    if performance.success_rate_confidence:
        # The Wilson bound the success check reads, value for value; one request in a
        # window is enough for a bound (no min_test_count), none is no series.
        bound = f"provider_model:llm_request_success:wilson_upper_{w}"
        bounds = [
            sample(
                f'{{provider="gen",model="{case.model}"}}',
                round4(
                    success_upper_bound(
                        case.success, case.requests, performance.success_rate_confidence
                    )
                ),
            )
            for case in all_cases
            if case.requests > 0
        ]
        checks.append({"expr": f"round({bound}, 0.0001)", "eval_time": at, "exp_samples": bounds})
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
                # The same two models alone score exactly what they scored among the others.
                "name": "generated: a score does not depend on the other models",
                "interval": step,
                "input_series": [s for case in alone for s in input_series(case)],
                "promql_expr_test": [
                    {
                        "expr": f"round({score}, 0.0001)",
                        "eval_time": at,
                        "exp_samples": alone_scores,
                    },
                ],
            },
            baseline_modules_test(performance),
            stderr_test(performance),
        ],
    }


def quantile_of_two(low: Case, high: Case, q: float) -> float:
    """histogram_quantile(q) of low's and high's observations summed: each model puts all
    its observations in one bucket, (0, b_low] and (b_low, b_high]; equal counts."""
    assert low.p95 is not None and high.p95 is not None
    b_low, b_high = bucket_of(low), bucket_of(high)
    assert low.requests == high.requests and b_low < b_high and q > 0.5
    rank = q * (low.requests + high.requests)
    return b_low + (b_high - b_low) * (rank - low.requests) / high.requests


def baseline_modules_test(performance: Performance) -> dict[str, object]:
    """Only the baseline modules (input_tokens 0, concurrency 1) feed the score's latency
    and throughput figures and the sample count; every module's failures count.

    Every model has the same good requests in module `throughput`; on top of them:
      plain    nothing
      padded   as many slow requests in `long_context` (prompt padded)
      crowded  as many slow requests in `concurrent` (parallel streams)
      slowed   the same slow requests in `latency`: a baseline module, so they count
      strained as many `long_context` requests, every one failing
    """
    modules = performance.modules
    for name in ("latency", "throughput"):
        assert is_baseline(modules[name]), name
    for name in ("long_context", "concurrent"):
        assert not is_baseline(modules[name]), name
    t = timings(performance)
    w = t.window
    at = prom_duration(2 * t.window_seconds)
    thresholds = performance.thresholds
    latency = thresholds.max_latency_ms / 1000
    good = good_figures(performance)
    slow = {**good, "p95": 6 * latency, "decode": good["decode"] / 6}
    bounds = (bucket_of(Case("", **good)), bucket_of(Case("", **slow)))

    def series(model: str, module: str, figures: dict) -> list[dict[str, str]]:
        return input_series(Case(model, **figures), module, bounds)

    inputs = [
        s
        for model in ("plain", "padded", "crowded", "slowed", "strained")
        for s in series(model, "throughput", good)
    ]
    inputs += series("padded", "long_context", slow)
    inputs += series("crowded", "concurrent", slow)
    inputs += series("slowed", "latency", slow)
    inputs += series(
        "strained", "long_context", {**slow, "p95": None, "decode": None, "success": 0.0}
    )
    n = good["requests"]
    slowed_p95 = quantile_of_two(Case("", **good), Case("", **slow), 0.95)
    slowed_mean = (good["p95"] + slow["p95"]) / 2  # equal counts at each case's figure
    figures = {  # p95, decode, success, samples, mean TTFT
        "plain": (good["p95"], good["decode"], 1.0, n, good["p95"]),
        "padded": (good["p95"], good["decode"], 1.0, n, good["p95"]),
        "crowded": (good["p95"], good["decode"], 1.0, n, good["p95"]),
        "slowed": (slowed_p95, (good["decode"] + slow["decode"]) / 2, 1.0, 2 * n, slowed_mean),
        "strained": (good["p95"], good["decode"], 0.5, n, good["p95"]),
    }
    by_mean = performance.score.latency_statistic == LATENCY_MEAN
    score = f"provider_model:llm_performance_score:ratio_{w}"
    scores = [
        sample(
            f'{{provider="gen",model="{model}",scenario="{scenario.name}"}}',
            round4(
                performance_score(
                    score_components(
                        mean if by_mean else p95,
                        decode,
                        success,
                        scenario.thresholds,
                        performance.score,
                    ),
                    scenario.weights,
                )
            ),
        )
        for model, (p95, decode, success, _, mean) in figures.items()
        for scenario in scenario_params(performance)
    ]

    def per_model(rule: str, index: int) -> dict[str, object]:
        return {
            "expr": f"round({rule}, 0.0001)",
            "eval_time": at,
            "exp_samples": [
                sample(f'{{provider="gen",model="{model}"}}', round4(values[index]))
                for model, values in figures.items()
            ],
        }

    # Slow requests of other modules leave every figure exactly as plain's.
    same = " or ".join(
        f'{rule}{{model=~"padded|crowded"}} != ignoring (model) group_left {rule}{{model="plain"}}'
        for rule in (
            f"provider_model:llm_ttft_seconds:p50_{w}",
            f"provider_model:llm_ttft_seconds:p95_{w}",
            f"provider_model:llm_ttft_seconds:p99_{w}",
            f"provider_model:llm_ttft_seconds:mean_{w}",
            f"provider_model:llm_decode_tokens_per_second:mean_{w}",
            f"provider_model:llm_requests:increase_{w}",
            f"provider_model:llm_request_success:ratio_{w}",
            f"provider_model:llm_score_component:ratio_{w}",
            score,
            f"provider_model:llm_meets_thresholds:bool_{w}",
        )
    )
    # ... while the same slow requests in a baseline module lower every score that
    # weighs latency or throughput.
    weighed = [
        scenario.name
        for scenario in scenario_params(performance)
        if scenario.weights.latency + scenario.weights.throughput > 0
    ]
    lower = (
        f'{score}{{model="slowed",scenario=~"{"|".join(weighed)}"}}'
        f' < ignoring (model) {score}{{model="plain"}}'
    )
    return {
        "name": "generated: only the baseline modules feed the score's figures",
        "interval": prom_duration(t.window_seconds / 4),
        "input_series": inputs,
        "promql_expr_test": [
            {"expr": f"round({score}, 0.0001)", "eval_time": at, "exp_samples": scores},
            per_model(f"provider_model:llm_ttft_seconds:p95_{w}", 0),
            per_model(f"provider_model:llm_decode_tokens_per_second:mean_{w}", 1),
            per_model(f"provider_model:llm_request_success:ratio_{w}", 2),
            per_model(f"provider_model:llm_requests:increase_{w}", 3),
            per_model(f"provider_model:llm_ttft_seconds:mean_{w}", 4),
            {"expr": same, "eval_time": at, "exp_samples": []},
            {
                "expr": f"count({lower})",
                "eval_time": at,
                "exp_samples": [sample("{}", len(weighed))],
            },
            # The per-module p95 keeps every module, for the dashboards (the slow requests
            # are in the bucket (b_good, b_slow]: their p95 interpolates from b_good).
            {
                "expr": f'round(provider_model_module:llm_ttft_seconds:p95_{w}{{model="padded"}}'
                ", 0.0001)",
                "eval_time": at,
                "exp_samples": [
                    sample(f'{{provider="gen",model="padded",module="{module}"}}', round4(p95))
                    for module, p95 in (
                        ("throughput", good["p95"]),
                        ("long_context", bounds[0] + 0.95 * (bounds[1] - bounds[0])),
                    )
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
    stale_seconds = [int(t.stale_after_seconds), int(t.module_stale_after_seconds)]
    step = reduce(math.gcd, [60, onset, int(t.window_seconds), *stale_seconds, *seconds.values()])
    # The stale targets were measured once, at 0: the age first exceeds the threshold at
    # the first evaluation after it. `waiting` is a module that, under adaptive probing with
    # a watch, may wait test_interval_minutes: it is stale only after module_stale_after.
    stale_active, waiting_active = ((after // step + 1) * step for after in stale_seconds)
    watch = watch_module(performance)
    waiting_module = "throughput" if watch != "throughput" else "latency"
    end = (
        max(
            onset + max(int(t.window_seconds), *seconds.values()),
            waiting_active + seconds["infra_for"],
        )
        + 2 * step
    )
    count = end // step

    def flip(before: float, after: float) -> str:
        return f"{number(before)}x{onset // step - 1} {number(after)}x{count - onset // step + 1}"

    def steady(value: float) -> str:
        return f"{number(value)}x{count}"

    labels = 'job="llm_probe",instance="exporter:9101",provider="gen"'
    w = t.window
    series = [
        # failing: success under the threshold; its latest probe fails from the onset.
        (
            f'provider_model:llm_request_success:ratio_{w}{{provider="gen",model="failing"}}',
            steady(thresholds.min_success_rate / 2),
        ),
        (
            f'provider_model:llm_requests:increase_{w}{{provider="gen",model="failing"}}',
            steady(performance.min_test_count),
        ),
        (f'llm_probe_success{{{labels},model="failing",module="latency"}}', flip(1, 0)),
        # slow: p95 twice the threshold; its latest probe is slow from the onset.
        (
            f'provider_model:llm_ttft_seconds:p95_{w}{{provider="gen",model="slow"}}',
            steady(2 * latency),
        ),
        (
            f'provider_model:llm_requests:increase_{w}{{provider="gen",model="slow"}}',
            steady(performance.min_test_count),
        ),
        (
            f'llm_probe_ttft_seconds{{{labels},model="slow",module="latency"}}',
            flip(latency / 2, 2 * latency),
        ),
        # padded: as slow, but only its probes of modules outside the baseline turn slow.
        (
            f'provider_model:llm_ttft_seconds:p95_{w}{{provider="gen",model="padded"}}',
            steady(2 * latency),
        ),
        (
            f'provider_model:llm_requests:increase_{w}{{provider="gen",model="padded"}}',
            steady(performance.min_test_count),
        ),
        (
            f'llm_probe_ttft_seconds{{{labels},model="padded",module="latency"}}',
            steady(latency / 2),
        ),
        (
            f'llm_probe_ttft_seconds{{{labels},model="padded",module="long_context"}}',
            flip(latency / 2, 2 * latency),
        ),
        (
            f'llm_probe_ttft_seconds{{{labels},model="padded",module="concurrent"}}',
            flip(latency / 2, 2 * latency),
        ),
        # sinking: the score halves at the onset.
        (
            f'provider_model:llm_performance_score:ratio_{w}{{provider="gen",model="sinking",'
            'scenario="default"}',
            flip(0.8, 0.4),
        ),
        # The exporter goes down at the onset.
        ('up{job="perfgen_exporter",instance="127.0.0.1:9101"}', flip(1, 0)),
        # stale: measured once, at 0.
        (f'llm_probe_timestamp_seconds{{{labels},model="stale",module="latency"}}', steady(0)),
        (
            f'llm_probe_timestamp_seconds{{{labels},model="waiting",module="{waiting_module}"}}',
            steady(0),
        ),
        # The provider's probe key disappears at the onset.
        (
            f'llm_probe_failed{{{labels},model="nokey",module="latency",reason="no_api_key"}}',
            flip(0, 1),
        ),
    ]
    minimum = thresholds.min_throughput_tokens_per_sec
    if minimum > 0:  # with no minimum, nothing is too slow
        series += [
            # crawl: half the minimum decode rate; its latest probe is slow from the onset.
            (
                f'provider_model:llm_decode_tokens_per_second:mean_{w}{{provider="gen",model="crawl"}}',
                steady(minimum / 2),
            ),
            (
                f'provider_model:llm_requests:increase_{w}{{provider="gen",model="crawl"}}',
                steady(performance.min_test_count),
            ),
            (
                f'llm_probe_tokens_per_second{{{labels},model="crawl",module="latency"}}',
                flip(2 * minimum, minimum / 2),
            ),
            # crowded: as crawl, but only its probes outside the baseline turn slow.
            (
                f"provider_model:llm_decode_tokens_per_second:mean_{w}"
                '{provider="gen",model="crowded"}',
                steady(minimum / 2),
            ),
            (
                f'provider_model:llm_requests:increase_{w}{{provider="gen",model="crowded"}}',
                steady(performance.min_test_count),
            ),
            (
                f'llm_probe_tokens_per_second{{{labels},model="crowded",module="latency"}}',
                steady(2 * minimum),
            ),
            (
                f'llm_probe_tokens_per_second{{{labels},model="crowded",module="concurrent"}}',
                flip(2 * minimum, minimum / 2),
            ),
            (
                f'llm_probe_tokens_per_second{{{labels},model="crowded",module="long_context"}}',
                flip(2 * minimum, minimum / 2),
            ),
        ]
    firing = {
        ("PerfgenProbeFailing", 'model="failing",severity="warning"'): onset + seconds["probe_for"],
        ("PerfgenLatencyHigh", 'model="slow"'): onset + seconds["probe_for"],
        ("PerfgenThroughputLow", 'model="crawl"'): onset + seconds["probe_for"],
        ("PerfgenScoreDegraded", 'model="sinking"'): onset + int(t.window_seconds),
        ("PerfgenExporterDown", 'job="perfgen_exporter"'): onset + seconds["infra_for"],
        ("PerfgenProbeMisconfigured", 'provider="gen"'): onset + seconds["infra_for"],
        ("PerfgenProbeDataStale", 'model="stale",cause="old"'): stale_active + seconds["infra_for"],
        ("PerfgenProbeDataStale", 'model="waiting",cause="old"'): waiting_active
        + seconds["infra_for"],
    }
    if minimum <= 0:
        del firing[("PerfgenThroughputLow", 'model="crawl"')]
    checks = []
    for (alert, selector), when in firing.items():
        expr = f'count by (alertstate) (ALERTS{{alertname="{alert}",{selector}}})'
        checks.append(
            {
                "expr": expr,
                "eval_time": prom_duration(when - step),
                "exp_samples": [sample('{alertstate="pending"}', 1)],
            }
        )
        checks.append(
            {
                "expr": expr,
                "eval_time": prom_duration(when),
                "exp_samples": [sample('{alertstate="firing"}', 1)],
            }
        )
    # Slow probes of modules outside the baseline confirm nothing: never pending either.
    for when in (onset + step, onset + seconds["probe_for"], end - step):
        checks.append(
            {
                "expr": 'ALERTS{model=~"padded|crowded"}',
                "eval_time": prom_duration(when),
                "exp_samples": [],
            }
        )
    if waiting_active > stale_active:  # a module that waits is not stale at stale_after
        checks.append(
            {
                "expr": 'ALERTS{model="waiting"}',
                "eval_time": prom_duration(waiting_active - step),
                "exp_samples": [],
            }
        )
    return {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": prom_duration(step),
        "tests": [
            {
                "name": "generated: alerts fire after their derived for:",
                "interval": prom_duration(step),
                "input_series": [{"series": name, "values": values} for name, values in series],
                "promql_expr_test": checks,
            }
        ],
    }


def stderr_test(performance: Performance) -> dict[str, object]:
    """The standard errors of the window's means, for any window.

    Every step adds two observations, m - d and m + d, so over the window's 4 steps n = 8,
    the mean is m and s^2 = 8 d^2 / 7: the standard error is sqrt(s^2 / 8) = d / sqrt 7.
    """
    t = timings(performance)
    w = t.window
    module = next(name for name, module in performance.modules.items() if is_baseline(module))
    base = (
        f'job="llm_probe",instance="exporter:9101",provider="gen",model="spread",module="{module}"'
    )
    inputs, expected = [], []
    for metric, middle, offset in (
        ("llm_ttft_seconds", 0.8, 0.3),
        ("llm_decode_tokens_per_second", 60.0, 15.0),
    ):
        per_step = {
            "count": 2.0,
            "sum": 2 * middle,
            "squared_total": (middle - offset) ** 2 + (middle + offset) ** 2,
        }
        for suffix, value in per_step.items():
            inputs.append(
                {"series": f"{metric}_{suffix}{{{base}}}", "values": f"0+{number(value)}x8"}
            )
        expected.append(
            {
                "expr": f"round(provider_model:{metric}:stderr_{w}, 0.0001)",
                "eval_time": prom_duration(2 * t.window_seconds),
                "exp_samples": [
                    sample('{provider="gen",model="spread"}', round4(offset / math.sqrt(7)))
                ],
            }
        )
    return {
        "name": "generated: standard errors of the window's means",
        "interval": prom_duration(t.window_seconds / 4),
        "input_series": inputs,
        "promql_expr_test": expected,
    }


def _seconds(duration: str) -> int:
    return int(duration_seconds(duration))


def run_promtool(directory: Path, *tests: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "test", "rules", *tests],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_suite(performance: Performance, directory: Path) -> None:
    write_rules(render_rules(performance), directory)
    for name, document in (
        ("recording_test.yml", recording_test(performance)),
        ("alerts_test.yml", alerts_test(performance)),
    ):
        (directory / name).write_text(yaml.safe_dump(document, sort_keys=False))


# --------------------------------------------------------------------------- tests


@needs_promtool
@pytest.mark.slow  # a generated promtool suite per config: ~3 s each
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generated_promtool_suite_passes(name: str, tmp_path: Path) -> None:
    write_suite(CONFIGS[name](), tmp_path)
    check = subprocess.run(
        [PROMTOOL, "check", "rules", *TEMPLATES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
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


def test_score_references_move_the_score_not_the_thresholds() -> None:
    plain, other = render_rules(second()), render_rules(scored())
    recording = other["recording.yml"]
    # The score's components use the references ...
    assert "0.75 / (0.75 + provider_model:llm_ttft_seconds:p95_30m)" in recording
    assert "provider_model:llm_decode_tokens_per_second:mean_30m + 60)" in recording
    assert "0.25 / (0.25 + (1 - provider_model:llm_request_success:ratio_30m))" in recording
    # ... also inline, for the scenario with its own thresholds ...
    assert "8 / (8 + provider_model:llm_ttft_seconds:p95_30m)" not in recording
    # ... while the pass/fail flag and the alerts keep the thresholds.
    assert "p95_30m <= bool 2" in recording and "p95_30m <= bool 8" in recording
    assert other["alerts.yml"] == plain["alerts.yml"]
    assert recording != plain["recording.yml"]
    at_reference = score_components(0.75, 60.0, 0.75, scored().thresholds, scored().score)
    assert at_reference["latency"] == pytest.approx(0.5)
    assert at_reference["throughput"] == pytest.approx(0.5)
    assert at_reference["reliability"] == pytest.approx(0.5)
    # Without it, one failure in ten (ratio 0.1) is already the 0.5 of min_success_rate 0.9.
    assert score_components(0.75, 60.0, 0.9, second().thresholds)["reliability"] == pytest.approx(
        0.5
    )


def test_capped_form_ties_models_past_the_reference() -> None:
    ratio, capped = render_rules(scored())["recording.yml"], render_rules(capped_config())
    recording = capped["recording.yml"]
    assert "clamp_max(0.7 / provider_model:llm_ttft_seconds:p95_30m, 1)" in recording
    assert "clamp_max(provider_model:llm_decode_tokens_per_second:mean_30m / 60, 1)" in recording
    # Reliability keeps its ratio form, and the alerts do not depend on the form.
    assert "0.25 / (0.25 + (1 - provider_model:llm_request_success:ratio_30m))" in recording
    assert capped["alerts.yml"] == render_rules(scored())["alerts.yml"]
    assert "clamp_max" not in ratio
    thresholds, score = capped_config().thresholds, capped_config().score

    def components(p95: float | None, decode: float | None) -> dict[str, float]:
        return score_components(p95, decode, 1.0, thresholds, score)

    # At and past the reference: 1, whatever the figure; beyond it, in proportion.
    perfect = {"latency": 1.0, "throughput": 1.0, "reliability": 1.0}
    assert components(0.2, 200.0) == components(0.7, 60.0) == perfect
    assert components(1.4, 30.0)["latency"] == pytest.approx(0.5)
    assert components(1.4, 30.0)["throughput"] == pytest.approx(0.5)
    # A p95 of 0 makes PromQL's L / 0 = +Inf, which the cap makes 1.
    assert components(0.0, 0.0) == {"latency": 1.0, "throughput": 0.0, "reliability": 1.0}
    assert components(None, None)["latency"] == 0.0


def test_second_config_changes_the_expectations() -> None:
    default, other = recording_test(example()), recording_test(second())
    default_scores = default["tests"][0]["promql_expr_test"][1]["exp_samples"]
    other_scores = other["tests"][0]["promql_expr_test"][1]["exp_samples"]
    assert default_scores != other_scores
    # think weighs throughput alone: its score is the throughput component.
    components = {
        (s["labels"], s["value"]) for s in other["tests"][0]["promql_expr_test"][0]["exp_samples"]
    }
    for case in cases(second()):
        if case.requests < 8:
            continue
        think = next(
            s["value"]
            for s in other_scores
            if s["labels"] == f'{{provider="gen",model="{case.model}",scenario="think"}}'
        )
        assert (
            f'{{provider="gen",model="{case.model}",component="throughput"}}',
            think,
        ) in components


@needs_promtool
@pytest.mark.slow  # two generated promtool suites
def test_expectations_of_one_config_fail_against_another(tmp_path: Path) -> None:
    # The expectations are configuration-specific: the example's generated test must fail
    # against the second configuration's rules, or it would not be testing them.
    write_rules(render_rules(second()), tmp_path)
    test = recording_test(example())
    (tmp_path / "recording_test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = run_promtool(tmp_path, "recording_test.yml")
    assert result.returncode != 0
    assert f"ratio_{example().window}" in result.stdout + result.stderr


# --------------------------------------------------------------------------- reference


def test_reference_score_properties() -> None:
    for performance in (example(), second(), demo()):
        for scenario in scenario_params(performance):
            thresholds = scenario.thresholds
            latency = thresholds.max_latency_ms / 1000
            minimum = thresholds.min_throughput_tokens_per_sec
            # Exactly 0.5 at each threshold (when the threshold is not a floor case).
            at_threshold = score_components(
                latency, minimum or None, thresholds.min_success_rate, thresholds
            )
            assert at_threshold["latency"] == pytest.approx(0.5)
            if minimum >= 1:
                assert at_threshold["throughput"] == pytest.approx(0.5)
            if thresholds.min_success_rate <= 0.999:
                assert at_threshold["reliability"] == pytest.approx(0.5)


# Figures from best to worst, down to the extremes: a first token after 11 days, 0 tokens/s
# (None: no decode sample at all), 100 % failures.
P95S = (0.0, 0.1, 1.0, 5.0, 30.0, 1e6, None)
DECODES = (1e6, 100.0, 10.0, 1.0, 0.1, 0.0, None)
SUCCESSES = (1.0, 0.999, 0.99, 0.9, 0.5, 0.01, 0.0)


def scenarios_of_every_config() -> list:
    return [
        scenario
        for performance in (example(), second(), demo())
        for scenario in scenario_params(performance)
    ]


def test_reference_score_is_within_0_and_1_for_extreme_inputs() -> None:
    for scenario in scenarios_of_every_config():
        for p95 in P95S:
            for decode in DECODES:
                for success in SUCCESSES:
                    components = score_components(p95, decode, success, scenario.thresholds)
                    assert all(0.0 <= value <= 1.0 for value in components.values())
                    value = performance_score(components, scenario.weights)
                    assert 0.0 <= value <= 1.0 + 1e-12, (p95, decode, success, value)


@pytest.mark.parametrize("figure", ["p95", "decode", "success"])
def test_reference_score_is_monotonic_in_each_figure(figure: str) -> None:
    """A worse figure never raises the score, whatever the other two figures and the
    scenario's weights, and strictly lowers its own component (except between "no decode
    sample" and 0 tokens/s, which score the same: 0)."""
    name, worsening = {
        "p95": ("latency", P95S),
        "decode": ("throughput", DECODES),
        "success": ("reliability", SUCCESSES),
    }[figure]
    figures = {"p95": P95S, "decode": DECODES, "success": SUCCESSES}
    others = [key for key in figures if key != figure]
    for scenario in scenarios_of_every_config():
        for first in figures[others[0]]:
            for second_value in figures[others[1]]:
                previous_score, previous_component = math.inf, math.inf
                for value in worsening:
                    args = {figure: value, others[0]: first, others[1]: second_value}
                    components = score_components(
                        args["p95"], args["decode"], args["success"], scenario.thresholds
                    )
                    score = performance_score(components, scenario.weights)
                    assert score <= previous_score + 1e-12, (scenario.name, args)
                    if figure == "decode" and value is None:
                        assert components[name] == previous_component == 0.0
                    else:
                        assert components[name] < previous_component, (scenario.name, args)
                    previous_score, previous_component = score, components[name]
