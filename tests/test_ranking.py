"""generator.ranking: the chain rules, with literal numbers (no Prometheus)."""

from __future__ import annotations

from perfgen.config import Route, Thresholds, parse_config
from perfgen.generator.ranking import (
    FAILS,
    MEETS,
    UNKNOWN,
    ModelStats,
    Policy,
    classify,
    decide,
    holds_over,
    policy_for,
    rank,
    threshold_failures,
)

A, B, C, D = (Route("p", name) for name in "abcd")
X = Route("q", "x")
PROVIDERS = {"p": ["a", "b", "c", "d"], "q": ["x"]}
POLICY = Policy(min_samples=5, max_chain=3, margin=0.10, hold="15m", thresholds=Thresholds())


def stats(
    route: Route,
    score: float | None,
    *,
    meets: bool | None = True,
    samples: float | None = 20,
    fresh: bool = True,
    hold: tuple[float, float] | None = None,
    covered: bool = True,
    **extra: float,
) -> ModelStats:
    low, high = hold if hold is not None else (score, score)
    return ModelStats(
        route,
        score=score,
        meets_thresholds=meets,
        samples=samples,
        fresh=fresh,
        hold_min=low,
        hold_max=high,
        hold_covered=covered,
        **extra,
    )


def run(old, data, candidates=(), policy=POLICY):
    table = {s.route: s for s in data}
    return decide("default", old, list(candidates), table, PROVIDERS, policy)


def test_faster_model_moves_to_front_when_it_held_the_margin():
    decision = run([A, B], [stats(A, 0.5), stats(B, 0.9)])
    assert decision.new_chain == [B, A]
    assert decision.changed and decision.primary_changed
    assert any("switches primary" in note for note in decision.notes)


def test_model_over_threshold_drops_behind_those_meeting_them():
    decision = run(
        [A, B, C], [stats(A, 0.95, meets=False, ttft_p95_seconds=9.0), stats(B, 0.4), stats(C, 0.6)]
    )
    assert decision.new_chain == [C, B, A]
    entry = next(e for e in decision.entries if e.route == A)
    assert entry.group == FAILS and "p95 TTFT 9.000 s > 5 s" in entry.reason


def test_challenger_inside_margin_does_not_take_over():
    decision = run([A, B], [stats(A, 0.80), stats(B, 0.85)])
    assert decision.new_chain == [A, B] and not decision.changed
    assert any("hysteresis holds primary" in note for note in decision.notes)


def test_challenger_must_beat_margin_for_the_whole_hold_time():
    # Clearly better now, but its lowest score over the hold time is not.
    dipped = run([A, B], [stats(A, 0.5, hold=(0.5, 0.6)), stats(B, 0.9, hold=(0.6, 0.9))])
    assert dipped.new_chain == [A, B]
    # Clearly better now, but without a score for the whole hold time (a new model).
    young = run([A, B], [stats(A, 0.5), stats(B, 0.9, covered=False)])
    assert young.new_chain == [A, B]
    # The incumbent's best moment over the hold time is what must be beaten.
    peaked = run([A, B], [stats(A, 0.5, hold=(0.5, 0.85)), stats(B, 0.9, hold=(0.9, 0.9))])
    assert peaked.new_chain == [A, B]


def test_holds_over_is_strict_and_relative():
    assert holds_over(stats(B, 0.66), stats(A, 0.6), 0.10) is False  # 0.66 is not > 0.66
    assert holds_over(stats(B, 0.67), stats(A, 0.6), 0.10) is True
    assert holds_over(stats(B, 0.67, covered=False), stats(A, 0.6), 0.10) is False


def test_no_hysteresis_when_the_primary_fails_or_has_no_data():
    failing = run([A, B], [stats(A, 0.8, meets=False), stats(B, 0.81, covered=False)])
    assert failing.new_chain == [B, A]
    stale = run([A, B], [stats(A, 0.8, fresh=False), stats(B, 0.5, covered=False)])
    assert stale.new_chain == [B, A]
    assert any("old primary no fresh data" in note for note in stale.notes)


def test_no_fresh_data_at_all_leaves_route_untouched():
    decision = run([A, B], [stats(A, None), stats(B, 0.9, fresh=False)])
    assert decision.untouched and not decision.changed
    assert decision.new_chain == [A, B]
    assert run([A, B], []).untouched


def test_models_without_fresh_data_keep_old_order_after_ranked_ones():
    decision = run(
        [A, B, C, D],
        [stats(A, None), stats(B, 0.3, samples=2), stats(C, 0.7), stats(D, 0.2, meets=False)],
        policy=Policy(max_chain=4),
    )
    # C meets; D fails; A and B (no data / too few samples) keep their old order.
    assert decision.new_chain == [C, D, A, B]
    reasons = {e.route: e.reason for e in decision.entries}
    assert "too few samples: only 2" in reasons[B]
    assert "no score series" in reasons[A]


def test_candidates_without_data_follow_old_chain_members_in_config_order():
    decision = run([B], [stats(A, 0.6)], candidates=[C, D, A, B], policy=Policy(max_chain=4))
    assert decision.new_chain == [A, B, C, D]


def test_model_missing_from_its_provider_is_never_written():
    ghost, stranger = Route("p", "ghost"), Route("nobody", "m")
    decision = run([ghost, A, stranger], [stats(ghost, 0.99), stats(A, 0.5), stats(stranger, 0.99)])
    assert decision.new_chain == [A]
    excluded = {e.route: e.reason for e in decision.entries if e.group == "excluded"}
    assert "not in provider 'p'" in excluded[ghost]
    assert "not in [[providers]]" in excluded[stranger]


def test_chain_is_cut_to_max_chain():
    decision = run(
        [A, B, C, D],
        [stats(r, s) for r, s in ((A, 0.9), (B, 0.8), (C, 0.7), (D, 0.6))],
        policy=Policy(max_chain=2),
    )
    assert decision.new_chain == [A, B]
    cut = [e for e in decision.entries if not e.kept]
    assert [e.route for e in cut] == [C, D] and "max_chain=2" in cut[0].reason


def test_scenario_with_candidates_and_no_route_gets_one_only_with_data():
    added = run([], [stats(X, 0.7), stats(A, 0.9)], candidates=[X, A])
    assert added.new_chain == [A, X] and added.changed
    not_added = run([], [], candidates=[X, A])
    assert not_added.untouched and not not_added.changed


def test_candidates_replace_the_old_chain_members():
    decision = run([A, B], [stats(A, 0.9), stats(X, 0.5)], candidates=[X])
    assert decision.new_chain == [X]
    assert any("not a candidate" in note for note in decision.notes)


def test_fallbacks_are_sticky_too():
    decision = run([A, B, C], [stats(A, 0.9), stats(B, 0.5), stats(C, 0.52)])
    assert decision.new_chain == [A, B, C]


def test_policy_for_reads_the_generator_table_and_the_scenario_thresholds():
    config = parse_config(
        '[[providers]]\nname = "p"\napi_base_url = "http://127.0.0.1:1"\napi_key = "k"\n'
        'models = ["a"]\n'
        "[performance]\nmin_test_count = 3\n"
        "[performance.thresholds]\nmin_success_rate = 0.9\n"
        '[performance.generator]\nhysteresis_margin = 0.07\nhysteresis_for = "2m"\n'
        "max_chain = 2\n"
        "[performance.scenarios.think]\n"
        "thresholds = { max_latency_ms = 9000, min_throughput_tokens_per_sec = 5, "
        "min_success_rate = 0.8 }\n",
        "policy.toml",
    )
    default = policy_for(config.performance, "default")
    assert default == Policy(
        min_samples=3,
        max_chain=2,
        margin=0.07,
        hold="2m",
        thresholds=Thresholds(min_success_rate=0.9),
    )
    think = policy_for(config.performance, "think")
    assert think.thresholds == Thresholds(9000, 5, 0.8)
    # A scenario without thresholds of its own is judged by the global ones.
    assert policy_for(config.performance, "background").thresholds == default.thresholds


def test_classify_and_threshold_words():
    assert classify(None, POLICY)[0] == UNKNOWN
    assert classify(stats(A, 0.5, meets=None), POLICY)[0] == FAILS
    assert classify(stats(A, 0.5), POLICY) == (MEETS, "meets thresholds")
    slow = stats(A, 0.1, meets=False, decode_tokens_per_second=3.0, success_ratio=0.5)
    words = threshold_failures(slow, Thresholds())
    assert words == ["decode 3.0 tokens/s < 10", "success ratio 0.500 < 0.95"]
    assert threshold_failures(slow, None) == []


def test_threshold_words_judge_the_success_upper_bound_when_recorded():
    # With success_rate_confidence the rules judge min_success_rate by the upper bound:
    # a ratio under it with a bound above it is no failure, and the words say which.
    lucky = stats(A, 0.5, success_ratio=0.8, success_upper_bound=0.97)
    assert threshold_failures(lucky, Thresholds()) == []
    failing = stats(A, 0.1, meets=False, success_ratio=0.5, success_upper_bound=0.88)
    assert threshold_failures(failing, Thresholds()) == [
        "success ratio 0.500, upper bound 0.880 < 0.95"
    ]


def test_model_failing_every_request_is_demoted_without_a_score():
    # The rules give no score when nothing succeeded, but still a meets-thresholds 0.
    decision = run([A, B], [stats(A, None, meets=False, success_ratio=0.0), stats(B, 0.5)])
    assert decision.new_chain == [B, A]
    entry = next(e for e in decision.entries if e.route == A)
    assert entry.group == FAILS and "success ratio 0.000 < 0.95" in entry.reason


def test_hysteresis_notes_name_the_chain_position():
    decision = run(
        [A, B, C], [stats(A, 0.9), stats(B, 0.2, meets=False), stats(C, 0.21, meets=False)]
    )
    assert decision.new_chain == [A, B, C]
    assert any(
        note.startswith("hysteresis holds position 2: p,b stays") for note in decision.notes
    ), decision.notes


def test_incumbent_without_any_score_gives_way_to_a_scored_challenger():
    # A fails every request (no score now, none over the hold time); B fails the
    # thresholds but has a score. Used to raise ValueError (max of nothing) and to keep A.
    decision = run([A, B], [stats(A, None, meets=False), stats(B, 0.3, meets=False)])
    assert decision.new_chain == [B, A]
    assert any(
        note.startswith("hysteresis switches primary to p,b") and "counted as 0" in note
        for note in decision.notes
    ), decision.notes
    # Even a challenger without a score for the whole hold time: there is nothing to defend.
    young = run([A, B], [stats(A, None, meets=False), stats(B, 0.3, meets=False, covered=False)])
    assert young.new_chain == [B, A]
    assert holds_over(stats(B, 0.3), stats(A, None, meets=False), 0.10) is True
    assert holds_over(stats(B, None, meets=False), stats(A, None, meets=False), 0.10) is False
    # A score earlier in the hold time is still defended.
    recent = run([A, B], [stats(A, None, meets=False, hold=(0.5, 0.5)), stats(B, 0.3, meets=False)])
    assert recent.new_chain == [A, B]


def test_rank_is_decide_without_hysteresis():
    data = [
        stats(A, 0.5),
        stats(B, 0.9),
        stats(C, 0.7, meets=False),
        stats(D, 0.8, samples=2),
        stats(X, 0.5),
    ]
    old = [D, X, A]
    no_hysteresis = Policy(max_chain=9, margin=0.0, hold="0s")
    decision = run(old, data, candidates=[C, A, B, D, X], policy=no_hysteresis)
    table = {s.route: s for s in data}
    ranked = rank([C, A, B, D, X], table, no_hysteresis, old)
    assert [item.route for item in ranked] == decision.new_chain == [B, X, A, C, D]
    assert [item.group for item in ranked] == [MEETS, MEETS, MEETS, FAILS, UNKNOWN]
    # Unknown models: the old chain's order first, then the given order.
    assert [i.route for i in rank([A, B, C], {}, POLICY, [C])] == [C, A, B]
