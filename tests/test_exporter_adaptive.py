"""Adaptive probing on an injected clock: which key is due, why, and that the budget holds."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import deque
from typing import Any

import pytest

from perfgen.config import (
    AdaptiveSettings,
    ConfigError,
    GeneratorSettings,
    Performance,
    ScoreSettings,
    parse_config,
)
from perfgen.exporter.adaptive import AdaptiveIntervals
from perfgen.exporter.result import ProbeResult, RequestResult
from perfgen.exporter.scheduler import CostSettings, Scheduler

MINUTE = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100_000.0

    def __call__(self) -> float:
        return self.now


def performance(**overrides: object) -> Performance:
    base = Performance(
        test_interval_minutes=15,
        min_test_count=5,
        adaptive=AdaptiveSettings(enabled=True, min_interval_minutes=5),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def configured(models: list[str], scenarios: str) -> Performance:
    """[performance] of one provider `p` with `models`, adaptive probing on, and `scenarios`."""
    text = (
        f'[[providers]]\nname = "p"\napi_base_url = "http://127.0.0.1:9/v1"\napi_key = "k"\n'
        f"models = {json.dumps(models)}\n"
        + "[performance]\ntest_interval_minutes = 15\n[performance.adaptive]\nenabled = true\n"
        + scenarios
    )
    return parse_config(text).performance


def result(
    provider: str,
    model: str,
    at: float,
    *,
    ttft: float = 0.5,
    decode: float = 80.0,
    success: bool = True,
    module: str = "latency",
    tokens: int = 16,
) -> ProbeResult:
    request = (
        RequestResult(
            success=True,
            ttft_seconds=ttft,
            duration_seconds=ttft + (tokens - 1) / decode,
            output_tokens=tokens,
            tokens_per_second=decode,
            token_count_source="usage",
        )
        if success
        else RequestResult(success=False, failure_reason="http_5xx", output_tokens=0)
    )
    return ProbeResult(provider, model, module, at, 1.0, (request,))


def feed(policy: AdaptiveIntervals, clock: FakeClock, model: str, n: int, **kw: object) -> None:
    for _ in range(n):
        clock.now += MINUTE
        policy.observe(("p", model, "latency"), result("p", model, clock.now, **kw))  # type: ignore[arg-type]


def key(model: str) -> tuple[str, str, str]:
    return ("p", model, "latency")


def test_fixed_without_policy() -> None:
    scheduler = Scheduler(CostSettings(900, 30, 3, 0), clock=FakeClock())
    choice = scheduler.interval(key("a"))
    assert (choice.seconds, choice.reason) == (900, "fixed")


def test_disabled_means_no_policy() -> None:
    assert AdaptiveIntervals.from_performance(Performance(), FakeClock()) is None


def test_little_data_is_probed_at_the_minimum() -> None:
    clock = FakeClock()
    policy = AdaptiveIntervals(performance(), clock)
    feed(policy, clock, "a", 4)
    choice = policy.choose(key("a"))
    assert choice.reason == "little_data" and choice.seconds == 5 * MINUTE


def test_contested_behind_and_ahead() -> None:
    clock = FakeClock()
    policy = AdaptiveIntervals(performance(), clock)
    feed(policy, clock, "a", 6, ttft=0.5, decode=80)
    feed(policy, clock, "b", 6, ttft=0.55, decode=78)  # within 10 % of a
    feed(policy, clock, "c", 6, ttft=4.0, decode=12)  # far behind both
    assert policy.choose(key("a")).reason == "contested"
    assert policy.choose(key("b")).reason == "contested"
    behind = policy.choose(key("c"))
    assert behind.reason == "behind" and behind.seconds == 15 * MINUTE


def test_a_contest_is_sampled_by_the_cheaper_module() -> None:
    """Contested a and b: their latency probes (16 tokens) come at the minimum (they
    watch every target anyway), their throughput probes (256 tokens) keep the full
    interval. A module with no cheaper one beside it (c's throughput alone), or only one
    costing more than half of it, does not hand the contest on."""
    clock = FakeClock()
    custom = dataclasses.replace(
        performance().modules["latency"], max_tokens=200
    )  # 200 tokens: more than half of throughput's 256
    policy = AdaptiveIntervals(performance(), clock)
    pricey = AdaptiveIntervals(
        performance(modules={**performance().modules, "latency": custom}), clock
    )
    for each in (policy, pricey):
        for model, ttft in (("a", 0.5), ("b", 0.52)):
            feed(each, clock, model, 6, ttft=ttft, decode=80)
            clock.now += MINUTE
            each.observe(
                ("p", model, "throughput"),
                result("p", model, clock.now, ttft=ttft, module="throughput", tokens=256),
            )
    watch = policy.choose(key("a"))
    assert watch.reason == "watch" and watch.seconds == 5 * MINUTE
    throughput = policy.choose(("p", "a", "throughput"))
    assert throughput.reason == "cheaper_module" and throughput.seconds == 15 * MINUTE
    assert "latency (16 tokens against 256)" in throughput.detail
    assert pricey.choose(key("a")).reason == "contested"
    assert pricey.choose(("p", "a", "throughput")).reason == "contested"
    # c probes only throughput: nothing cheaper samples it, so it is probed sooner itself.
    for _ in range(6):
        clock.now += MINUTE
        policy.observe(
            ("p", "c", "throughput"),
            result("p", "c", clock.now, ttft=0.51, module="throughput", tokens=256),
        )
    assert policy.choose(("p", "c", "throughput")).reason == "contested"


def test_the_cheapest_module_watches_leaders_and_trailers_alike() -> None:
    """A clear leader and a clear trailer, each probed by latency (16 tokens) and
    throughput (256): the latency probe comes at the minimum for both, since it is what
    notices the leader slowing down or the trailer recovering; the throughput probe waits
    the full interval. Without the pricier module beside it, latency is judged as before."""
    clock = FakeClock()
    policy = AdaptiveIntervals(performance(), clock)
    for model, ttft, decode in (("a", 0.3, 200), ("b", 4.0, 12)):
        feed(policy, clock, model, 6, ttft=ttft, decode=decode)
    assert policy.choose(key("a")).reason == "ahead"  # no throughput result seen yet
    for model, ttft, decode in (("a", 0.3, 200), ("b", 4.0, 12)):
        clock.now += MINUTE
        policy.observe(
            ("p", model, "throughput"),
            result(
                "p", model, clock.now, ttft=ttft, decode=decode, module="throughput", tokens=256
            ),
        )
    for model, long in (("a", "ahead"), ("b", "behind")):
        watch = policy.choose(key(model))
        assert (watch.reason, watch.seconds) == ("watch", 5 * MINUTE)
        assert "16 tokens against throughput's 256" in watch.detail
        pricier = policy.choose(("p", model, "throughput"))
        assert (pricier.reason, pricier.seconds) == (long, 15 * MINUTE)


def test_steady_leader_and_trailer_wait_a_degraded_leader_does_not() -> None:
    """A steady leader's next probe would change no decision (and in a time-range window
    would only dilute a first bad result): it waits the full interval, as the clearly
    behind model does. Its first result that looks degraded brings it to the minimum."""
    clock = FakeClock()
    policy = AdaptiveIntervals(performance(), clock)
    feed(policy, clock, "a", 6, ttft=0.3, decode=200)
    feed(policy, clock, "b", 6, ttft=4.0, decode=12)
    choice = policy.choose(key("a"))
    assert choice.reason == "ahead" and choice.seconds == 15 * MINUTE
    assert "leads default" in choice.detail
    behind = policy.choose(key("b"))
    assert behind.reason == "behind" and behind.seconds == 15 * MINUTE
    clock.now += MINUTE
    policy.observe(key("a"), result("p", "a", clock.now, ttft=0.9, decode=200))
    degraded = policy.choose(key("a"))
    assert degraded.reason == "degraded" and degraded.seconds == 5 * MINUTE


def test_leader_of_one_scenario_is_ahead_even_if_behind_in_another() -> None:
    clock = FakeClock()
    scenarios = (
        "[performance.scenarios.think]\n"
        "weights = { latency = 0, throughput = 1, reliability = 0 }\n"
    )
    policy = AdaptiveIntervals(configured(["a", "b"], scenarios), clock)
    # a answers first far sooner, b decodes far faster: each leads one scenario.
    feed(policy, clock, "a", 6, ttft=0.2, decode=60)
    feed(policy, clock, "b", 6, ttft=3.0, decode=400)
    for model, scenario in (("a", "default"), ("b", "think")):
        choice = policy.choose(key(model))
        assert choice.reason == "ahead" and choice.seconds == 15 * MINUTE
        assert f"leads {scenario}" in choice.detail


def test_score_references_set_a_clearly_slower_model_apart() -> None:
    """b answers a 100-token request in 2.2 s, a in 3.2 s; against the thresholds (5 s,
    10 tokens/s) b scores only 4 % higher (contested), against 1 s and 100 tokens/s 12 %."""
    loose = performance(generator=GeneratorSettings(hysteresis_margin=0.05))
    steep = performance(
        generator=GeneratorSettings(hysteresis_margin=0.05),
        score=ScoreSettings(latency_reference_ms=1000, throughput_reference_tokens_per_sec=100),
    )
    reasons: dict[str, str] = {}
    for name, perf in (("loose", loose), ("steep", steep)):
        clock = FakeClock()
        policy = AdaptiveIntervals(perf, clock)
        feed(policy, clock, "a", 6, ttft=1.0, decode=45)
        feed(policy, clock, "b", 6, ttft=0.8, decode=70)
        reasons[name] = policy.choose(key("a")).reason
    assert reasons == {"loose": "contested", "steep": "behind"}


def test_the_latency_statistic_is_the_rules_one() -> None:
    """a: five first tokens in 0.3 s and one in 3 s, decoding at 90 tokens/s; b: steady
    0.9 s at 60. On the p95 (3 s, the tail) b leads a by more than the margin; on the mean
    (0.75 s, under the 1 s reference like b's 0.9 s) a leads b on its decode rate."""
    reasons: dict[str, str] = {}
    for statistic in ("p95", "mean"):
        perf = performance(
            score=ScoreSettings(
                form="capped",
                latency_reference_ms=1000,
                throughput_reference_tokens_per_sec=100,
                latency_statistic=statistic,
            )
        )
        clock = FakeClock()
        policy = AdaptiveIntervals(perf, clock)
        feed(policy, clock, "a", 1, ttft=3.0, decode=90)
        feed(policy, clock, "a", 5, ttft=0.3, decode=90)
        feed(policy, clock, "b", 6, ttft=0.9, decode=60)
        reasons[statistic] = policy.choose(key("a")).reason
    assert reasons == {"p95": "behind", "mean": "ahead"}


def test_failed_and_degraded_are_probed_sooner() -> None:
    clock = FakeClock()
    policy = AdaptiveIntervals(performance(), clock)
    feed(policy, clock, "a", 6, ttft=0.3, decode=200)
    feed(policy, clock, "b", 6, ttft=4.0, decode=12)
    clock.now += MINUTE
    policy.observe(key("a"), result("p", "a", clock.now, ttft=1.2, decode=200))
    assert policy.choose(key("a")).reason == "degraded"
    clock.now += MINUTE
    policy.observe(key("a"), result("p", "a", clock.now, success=False))
    assert policy.choose(key("a")).reason == "failing"
    # An hour later every result has left the window: short of data again.
    clock.now += 3601
    assert policy.choose(key("a")).reason == "little_data"


def test_scenario_candidates_limit_the_competitors() -> None:
    clock = FakeClock()
    scenarios = '[performance.scenarios.default]\ncandidates = ["p,a", "p,c"]\n'
    policy = AdaptiveIntervals(configured(["a", "b", "c"], scenarios), clock)
    feed(policy, clock, "a", 6, ttft=0.5, decode=80)
    feed(policy, clock, "b", 6, ttft=0.52, decode=80)  # close, but not a candidate
    feed(policy, clock, "c", 6, ttft=4.0, decode=12)
    assert policy.choose(key("a")).reason == "ahead"


def test_budget_pressure_restores_the_full_interval() -> None:
    clock = FakeClock()
    policy = AdaptiveIntervals(performance(), clock)
    choice = policy.choose(key("a"), budget_share=0.8)
    assert choice.reason == "budget" and choice.seconds == 15 * MINUTE


@pytest.mark.asyncio
async def test_due_times_follow_the_policy() -> None:
    clock = FakeClock()
    perf = performance()
    scheduler = Scheduler(
        CostSettings.from_performance(perf), clock=clock, intervals=AdaptiveIntervals(perf, clock)
    )
    calls: list[float] = []

    async def start(timeout: float) -> ProbeResult:
        calls.append(clock.now)
        return result("p", "a", clock.now)

    # Little data: every 5 minutes, never at the 1-minute scrapes in between.
    for _ in range(11):
        await scheduler.probe(key("a"), start, timeout=30, cost=16)
        clock.now += MINUTE
    assert [c - calls[0] for c in calls] == [0, 300, 600]
    assert scheduler.interval(key("a")).reason == "little_data"


@pytest.mark.asyncio
async def test_the_watch_is_paid_at_the_minimum_and_throughput_hourly() -> None:
    """A leader a and a trailer b, both steady, probed by latency and throughput every
    one-minute scrape for two hours, adaptive between 10 and 60 minutes (min_test_count
    2): each pays a latency probe every 10 minutes and a throughput probe every hour."""
    clock = FakeClock()
    perf = performance(
        test_interval_minutes=60,
        min_test_count=2,
        adaptive=AdaptiveSettings(enabled=True, min_interval_minutes=10),
    )
    scheduler = Scheduler(
        CostSettings.from_performance(perf), clock=clock, intervals=AdaptiveIntervals(perf, clock)
    )
    paid: dict[tuple[str, str], list[float]] = {}
    for _ in range(2 * 60):
        for model, ttft, decode in (("a", 0.3, 200.0), ("b", 4.0, 12.0)):
            for module, tokens in (("latency", 16), ("throughput", 256)):

                async def start(
                    timeout: float,
                    key: tuple[str, str] = (model, module),
                    figures: Any = (ttft, decode, tokens),
                ) -> ProbeResult:
                    paid.setdefault(key, []).append(clock.now)
                    return result(
                        "p",
                        key[0],
                        clock.now,
                        ttft=figures[0],
                        decode=figures[1],
                        module=key[1],
                        tokens=figures[2],
                    )

                await scheduler.probe(("p", model, module), start, timeout=30, cost=tokens)
        clock.now += MINUTE
    for model, long in (("a", "ahead"), ("b", "behind")):
        latency = paid[(model, "latency")]
        assert {b - a for a, b in zip(latency, latency[1:], strict=False)} == {600.0}
        throughput = paid[(model, "throughput")]
        # Its first result and the first watch result fill min_test_count at once.
        assert [b - a for a, b in zip(throughput, throughput[1:], strict=False)] == [3600]
        assert scheduler.interval(("p", model, "throughput")).reason == long
        assert scheduler.interval(("p", model, "latency")).reason == "watch"


@pytest.mark.asyncio
async def test_the_hourly_budget_still_holds() -> None:
    """Every target contested or short of data wants the minimum; the budget caps it.
    Under its pressure the throughput probes fall back to the full interval, while the
    latency probes keep watching at the minimum (the budget still refuses past it)."""
    clock = FakeClock()
    perf = performance(max_output_tokens_per_hour=2000)
    scheduler = Scheduler(
        CostSettings.from_performance(perf), clock=clock, intervals=AdaptiveIntervals(perf, clock)
    )
    spent: deque[tuple[float, int]] = deque()
    models = ["a", "b", "c", "d"]
    reasons: set[str] = set()
    watch: set[str] = set()
    for _ in range(4 * 60):  # four hours of one-minute scrapes
        for model in models:
            for module, tokens in (("latency", 16), ("throughput", 256)):

                async def start(
                    timeout: float, model: str = model, module: str = module, tokens: int = tokens
                ) -> ProbeResult:
                    return result("p", model, clock.now, module=module, tokens=tokens)

                answer = await scheduler.probe(("p", model, module), start, timeout=30, cost=tokens)
                if answer.outcome == "fresh":
                    spent.append((clock.now, tokens))
                    hour = sum(t for at, t in spent if at > clock.now - 3600)
                    assert hour <= 2000
        reasons.add(scheduler.interval(("p", "a", "throughput")).reason)
        watch.add(scheduler.interval(("p", "a", "latency")).reason)
        clock.now += MINUTE
    assert spent, "nothing was probed"
    assert "budget" in reasons
    assert "budget" not in watch and "watch" in watch


def test_config_validates_the_adaptive_table() -> None:
    head = '[[providers]]\nname = "p"\napi_base_url = "http://127.0.0.1:9/v1"\n'
    head += 'api_key = "k"\nmodels = ["a"]\n[performance]\ntest_interval_minutes = 15\n'
    ok = parse_config(head + "[performance.adaptive]\nenabled = true\n", "c.toml").performance
    assert ok.adaptive == AdaptiveSettings(enabled=True, min_interval_minutes=5)
    short = parse_config(
        head.replace("= 15", "= 2") + "[performance.adaptive]\nenabled = true\n"
    ).performance
    assert short.adaptive.min_interval_minutes == 2
    with pytest.raises(ConfigError, match=r"c\.toml.*performance\.adaptive\.min_interval_minutes"):
        parse_config(head + "[performance.adaptive]\nmin_interval_minutes = 20\n", "c.toml")
    with pytest.raises(ConfigError, match=r"performance\.adaptive\.often"):
        parse_config(head + "[performance.adaptive]\noften = true\n", "c.toml")


def test_the_watch_confirms_a_leader_that_starts_to_look_degraded_once() -> None:
    """With confirm_after_seconds, the leader's watch (latency beside throughput) probes
    again that soon after its first result that looks degraded, then waits the minimum
    while the target stays degraded; the pricier module never confirms. Off (0):
    degraded, as before."""
    reasons: dict[float, list[tuple[str, float]]] = {}
    for confirm in (30.0, 0.0):
        clock = FakeClock()
        adaptive = AdaptiveSettings(
            enabled=True, min_interval_minutes=5, confirm_after_seconds=confirm
        )
        policy = AdaptiveIntervals(performance(adaptive=adaptive), clock)
        feed(policy, clock, "a", 6, ttft=0.3, decode=200)
        feed(policy, clock, "b", 6, ttft=4.0, decode=12)
        clock.now += MINUTE
        throughput = ("p", "a", "throughput")
        policy.observe(throughput, result("p", "a", clock.now, module="throughput", tokens=256))
        seen = []
        for ttft in (0.3, 1.2, 1.2, 0.3):  # steady, degraded (a change), degraded, steady
            clock.now += MINUTE
            policy.observe(key("a"), result("p", "a", clock.now, ttft=ttft, decode=200))
            choice = policy.choose(key("a"))
            seen.append((choice.reason, choice.seconds))
            if ttft > 1:
                pricier = policy.choose(throughput)
                assert (pricier.reason, pricier.seconds) == ("degraded", 5 * MINUTE)
        reasons[confirm] = seen
    assert reasons[30.0] == [
        ("watch", 5 * MINUTE),
        ("confirm", 30.0),
        ("degraded", 5 * MINUTE),
        ("watch", 5 * MINUTE),
    ]
    assert reasons[0.0] == [
        ("watch", 5 * MINUTE),
        ("degraded", 5 * MINUTE),
        ("degraded", 5 * MINUTE),
        ("watch", 5 * MINUTE),
    ]


def test_only_a_leader_confirms_and_not_past_the_budget_share() -> None:
    """A target's only baseline module confirms too, past BUDGET_SHARE it does not; a
    trailer's slowdown moves no route, so it does not confirm (a sample added beside each
    bad one would bias its window towards looking fast)."""
    clock = FakeClock()
    adaptive = AdaptiveSettings(enabled=True, min_interval_minutes=5, confirm_after_seconds=30)
    policy = AdaptiveIntervals(performance(adaptive=adaptive), clock)
    feed(policy, clock, "a", 6, ttft=0.3, decode=200)
    feed(policy, clock, "b", 6, ttft=0.9, decode=100)
    for model, ttft in (("a", 1.2), ("b", 3.6)):
        clock.now += MINUTE
        policy.observe(key(model), result("p", model, clock.now, ttft=ttft, decode=200))
    assert policy.choose(key("a")).reason == "confirm"
    assert "last TTFT 1.2 vs window median 0.3" in policy.choose(key("a")).detail
    assert policy.choose(key("a"), budget_share=0.9).reason == "budget"
    assert policy.choose(key("b")).reason == "degraded"
    head = (
        '[[providers]]\nname = "p"\napi_base_url = "http://127.0.0.1:9/v1"\napi_key = "k"\n'
        'models = ["a"]\n[performance]\ntest_interval_minutes = 15\n[performance.adaptive]\n'
    )
    ok = parse_config(head + "confirm_after_seconds = 30\n", "c.toml").performance
    assert ok.adaptive.confirm_after_seconds == 30
    with pytest.raises(ConfigError, match=r"c\.toml.*adaptive\.confirm_after_seconds.*at most"):
        parse_config(head + "confirm_after_seconds = 301\n", "c.toml")
    with pytest.raises(ConfigError, match=r"c\.toml.*adaptive\.confirm_after_seconds"):
        parse_config(head + "confirm_after_seconds = -1\n", "c.toml")


def test_a_reload_keeps_a_pending_confirmation_unless_it_stops_confirming() -> None:
    """A config reload between a leader's first degraded-looking result and its
    confirmation keeps the confirmation due; a reload that sets confirm_after_seconds to
    0 drops it (the target is then probed as degraded, never at a 0 s interval)."""
    clock = FakeClock()
    confirming = performance(
        adaptive=AdaptiveSettings(enabled=True, min_interval_minutes=5, confirm_after_seconds=30)
    )
    policy = AdaptiveIntervals(confirming, clock)
    feed(policy, clock, "a", 6, ttft=0.3, decode=200)
    feed(policy, clock, "b", 6, ttft=0.9, decode=100)
    clock.now += MINUTE
    policy.observe(key("a"), result("p", "a", clock.now, ttft=1.2, decode=200))
    assert policy.choose(key("a")).reason == "confirm"
    reloaded = AdaptiveIntervals.from_performance(confirming, clock, previous=policy)
    assert reloaded is not None
    assert (reloaded.choose(key("a")).reason, reloaded.choose(key("a")).seconds) == (
        "confirm",
        30.0,
    )
    stopped = performance(
        adaptive=AdaptiveSettings(enabled=True, min_interval_minutes=5, confirm_after_seconds=0)
    )
    off = AdaptiveIntervals.from_performance(stopped, clock, previous=policy)
    assert off is not None
    assert (off.choose(key("a")).reason, off.choose(key("a")).seconds) == ("degraded", 5 * MINUTE)


class _Recomputing(AdaptiveIntervals):
    """The policy by its definition: every rival's score recomputed from its window at
    every decision, nothing kept."""

    def _standings(self, target: tuple[str, str]) -> list[tuple[str, float, float, Any]]:
        mine = self._window_scores(target)
        out = []
        for scenario in self._scenarios:
            if scenario.name not in mine:
                continue
            rivals = [
                (scores[scenario.name], other)
                for other in list(self._samples)
                if other != target and scenario.name in (scores := self._window_scores(other))
            ]
            if rivals:
                best, rival = max(rivals)
                out.append((scenario.name, mine[scenario.name], best, rival))
        return out


def test_kept_scores_decide_as_recomputing_every_rival_does() -> None:
    """The scores and each scenario's two best that the policy keeps between results (so
    that a decision at 1000 targets does not rescore all of them) give every decision the
    recomputing policy gives: random results, failures and gaps on 8 targets, two
    scenarios of which one has candidates, samples leaving the window in between."""
    models = [f"m{i}" for i in range(8)]
    scenarios = (
        '[performance.scenarios.think]\ncandidates = ["p,m0", "p,m1", "p,m2", "p,m5"]\n'
        "weights = { latency = 0.7, throughput = 0.2, reliability = 0.1 }\n"
    )
    perf = dataclasses.replace(
        configured(models, scenarios), window="20m", min_test_count=2, test_interval_minutes=60
    )
    rng = random.Random(7)
    clock = FakeClock()
    kept, recomputing = AdaptiveIntervals(perf, clock), _Recomputing(perf, clock)
    reasons = set()
    for _ in range(600):
        clock.now += rng.choice((5.0, 30.0, 120.0, 400.0))
        model = rng.choice(models)
        module = rng.choice(("latency", "latency", "throughput"))
        probe = result(
            "p",
            model,
            clock.now,
            ttft=rng.lognormvariate(-0.5, 0.6) * (1 + models.index(model) / 8),
            decode=rng.uniform(40, 120),
            success=rng.random() > 0.1,
            module=module,
        )
        for policy in (kept, recomputing):
            policy.observe(("p", model, module), probe)
        for other in rng.sample(models, 3):
            for mod in ("latency", "throughput"):
                expected = recomputing.choose(("p", other, mod))
                assert kept.choose(("p", other, mod)) == expected
                reasons.add(expected.reason)
    # The comparison reached the decisions that read the rivals.
    assert {"ahead", "behind", "cheaper_module", "watch"} <= reasons


def test_a_reload_that_drops_a_module_keeps_deciding() -> None:
    """Results of a module that a reload removed (or made non-baseline) carry over in the
    target's window, but the module no longer counts as one the target is probed with:
    the one left decides alone (no watch beside it), and nothing fails on the gone one."""
    clock = FakeClock()
    quick = dataclasses.replace(performance().modules["latency"], max_tokens=8)
    before = performance(modules={**performance().modules, "quick": quick})
    policy = AdaptiveIntervals(before, clock)
    for model, ttft in (("a", 0.3), ("b", 3.0)):
        for module in ("quick", "latency"):
            for _ in range(3):
                clock.now += MINUTE
                policy.observe(("p", model, module), result("p", model, clock.now, ttft=ttft))
    assert policy.choose(("p", "a", "quick")).reason == "watch"
    assert policy.choose(key("a")).reason == "ahead"
    reloaded = AdaptiveIntervals.from_performance(performance(), clock, previous=policy)
    assert reloaded is not None
    assert reloaded.choose(key("a")).reason == "ahead"
    assert reloaded.choose(key("b")).reason == "behind"
