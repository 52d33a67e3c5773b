"""generator.significance: a score's standard error, and the lead switch_confidence asks."""

from __future__ import annotations

import math

import pytest

from perfgen.config import Route, parse_config
from perfgen.generator.ranking import ModelStats, Policy, decide, policy_for
from perfgen.generator.significance import required_lead, score_stderr
from perfgen.rules.render import scenario_params

CONFIG = (
    '[[providers]]\nname = "p"\napi_base_url = "http://127.0.0.1:1"\napi_key = "k"\n'
    'models = ["a", "b"]\n'
    "[performance.score]\n"
    'form = "capped"\nlatency_statistic = "mean"\nlatency_reference_ms = 1000\n'
    "throughput_reference_tokens_per_sec = 100\nfailure_ratio_reference = 1.0\n"
    '[performance.generator]\nswitch_confidence = 0.9\nhysteresis_for = "0s"\n'
    "[performance.scenarios.background]\n"
    "weights = { latency = 0.1, throughput = 0.6, reliability = 0.3 }\n"
)
PERFORMANCE = parse_config(CONFIG, "significance.toml").performance
SCORING = tuple(scenario_params(PERFORMANCE))
A, B = Route("p", "a"), Route("p", "b")


def figures(route: Route = A, **given: float | str | None) -> ModelStats:
    base: dict = {
        "score": 0.9,
        "meets_thresholds": True,
        "samples": 10.0,
        "ttft_mean_seconds": 0.6,
        "ttft_mean_stderr": 0.05,
        "decode_tokens_per_second": 80.0,
        "decode_stderr": 5.0,
        "success_ratio": 1.0,
        "score_scenario": "default",
        "hold_covered": True,
    }
    base.update(given)
    base["hold_min"] = base["hold_max"] = base["score"]
    return ModelStats(route, **base)


def test_a_mean_under_the_cap_adds_no_latency_noise() -> None:
    # Capped latency: 0.6 s and 0.65 s both score 1. Only the decode rate moves:
    # 0.4 x (80 - 75) / 100 = 0.02; a success ratio of 1 has no binomial spread.
    assert score_stderr(figures(), SCORING) == pytest.approx(0.02)


def test_a_mean_near_the_cap_adds_what_crossing_it_costs() -> None:
    # 0.98 + 0.05 s crosses the 1 s reference: 0.4 x (1 - 1 / 1.03) = 0.011650.
    near = figures(ttft_mean_seconds=0.98)
    assert score_stderr(near, SCORING) == pytest.approx(math.hypot(0.02, 0.4 * (1 - 1 / 1.03)))


def test_failures_add_their_binomial_spread() -> None:
    # 9 of 10: spread sqrt(0.09 / 10) = 0.0949; reliability 1 / (1 + f) at f = 0.1 and
    # 0.1949 is 0.9091 and 0.8369, times the weight 0.2.
    failing = figures(success_ratio=0.9, decode_stderr=None)
    spread = math.sqrt(0.9 * 0.1 / 10)
    expected = 0.2 * (1 / 1.1 - 1 / (1 + 0.1 + spread))
    assert score_stderr(failing, SCORING) == pytest.approx(expected)


def test_the_score_s_own_scenario_weights_are_used() -> None:
    # background weighs throughput 0.6: 0.6 x 0.05 = 0.03.
    assert score_stderr(figures(score_scenario="background"), SCORING) == pytest.approx(0.03)
    # A scenario without rules of its own scores like default.
    assert score_stderr(figures(score_scenario="think"), SCORING) == pytest.approx(0.02)


def test_unknown_errors_add_nothing_and_the_lead_scales_with_z() -> None:
    bare = figures(ttft_mean_stderr=None, decode_stderr=None)
    assert score_stderr(bare, SCORING) == 0.0
    assert required_lead(figures(), figures(B), SCORING, 0.0) == 0.0
    assert required_lead(figures(), figures(B), SCORING, 2.0) == pytest.approx(
        2.0 * math.hypot(0.02, 0.02)
    )


def test_policy_for_turns_the_confidence_into_a_quantile() -> None:
    policy = policy_for(PERFORMANCE, "default")
    assert policy.switch_z == pytest.approx(1.2816, abs=1e-4)
    assert [params.name for params in policy.scoring] == ["default", "background"]
    off = parse_config(CONFIG.replace("switch_confidence = 0.9", "switch_confidence = 0"), "x")
    assert policy_for(off.performance, "default").switch_z == 0.0


def decide_between(incumbent: ModelStats, challenger: ModelStats, policy: Policy):
    table = {incumbent.route: incumbent, challenger.route: challenger}
    return decide("default", [A, B], [A, B], table, {"p": ["a", "b"]}, policy)


def test_a_lead_within_the_noise_does_not_switch() -> None:
    policy = policy_for(PERFORMANCE, "default")  # margin 0.05, z 1.28
    # b leads by 0.06 (beyond the 5 % margin, 0.045), but with decode errors of 10 tokens/s
    # each the difference's error is 0.4 x 0.1 x sqrt 2 = 0.057: 1.28 of them is 0.072.
    noisy = decide_between(
        figures(A, score=0.90, decode_stderr=10.0),
        figures(B, score=0.96, decode_stderr=10.0),
        policy,
    )
    assert noisy.new_chain == [A, B]
    assert any("switch_confidence asks a lead of 0.072" in note for note in noisy.notes)
    # The same lead from windows that measured their decode rates to 2 tokens/s: 0.015.
    sure = decide_between(
        figures(A, score=0.90, decode_stderr=2.0),
        figures(B, score=0.96, decode_stderr=2.0),
        policy,
    )
    assert sure.new_chain == [B, A]
    # Without switch_confidence the noisy lead switches: the margin alone is met.
    margin_only = Policy(min_samples=2, margin=0.05, hold="0s")
    plain = decide_between(
        figures(A, score=0.90, decode_stderr=10.0),
        figures(B, score=0.96, decode_stderr=10.0),
        margin_only,
    )
    assert plain.new_chain == [B, A]
