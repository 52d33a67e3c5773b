"""generator.snapshot: recording-rule numbers into ranking.ModelStats (no Prometheus)."""

from __future__ import annotations

import re

import pytest

from perfgen.config import Route
from perfgen.generator.promql import Sample
from perfgen.generator.ranking import UNKNOWN, Policy, classify
from perfgen.generator.snapshot import (
    HoldScores,
    Snapshot,
    fetch_snapshot,
    hold_queries,
    model_stats,
    snapshot_queries,
)


def snapshot(**kwargs: float) -> Snapshot:
    values = dict(
        at=1000.0,
        window="1h",
        stale_after_seconds=600,
        hold_seconds=60,
        hold_step=15,
        hold_points=5,
    )
    values.update(kwargs)
    return Snapshot(**values)


def test_model_stats_prefers_scenario_series_and_drops_nan():
    snap = snapshot()
    key = ("p", "m")
    snap.score[key] = {"default": 0.4, "think": 0.7}
    snap.meets[key] = {"default": 1.0}
    snap.plain["samples"] = {key: 9.0}
    snap.plain["ttft_p95"] = {key: float("nan")}
    snap.plain["decode_stderr"] = {key: 4.5}
    snap.last_probe[key] = 900.0
    snap.hold[("p", "m", "think")] = HoldScores(0.6, 0.8, covered=True)
    think = model_stats(snap, "think", Route("p", "m"))
    assert (think.score, think.score_scenario, think.meets_thresholds) == (0.7, "think", True)
    assert think.ttft_p95_seconds is None and think.fresh
    assert (think.decode_stderr, think.ttft_mean_stderr) == (4.5, None)
    assert (think.hold_min, think.hold_max, think.hold_covered) == (0.6, 0.8, True)
    default = model_stats(snap, "default", Route("p", "m"))
    assert default.score == 0.4 and not default.hold_covered  # no default history
    snap.at = 2000.0
    assert model_stats(snap, "think", Route("p", "m")).fresh is False


def test_no_probe_timestamp_at_all_is_stale_not_fresh():
    # The exporter went silent longer ago than stale_after but less than the rules'
    # window: the rules still report a score, but no probe timestamp is left.
    snap = snapshot()
    snap.score[("p", "m")] = {"default": 0.9}
    snap.meets[("p", "m")] = {"default": 1.0}
    snap.plain["samples"] = {("p", "m"): 20.0}
    stats = model_stats(snap, "default", Route("p", "m"))
    assert stats.fresh is False
    assert stats.stale_reason == "no probe within stale_after (10 min)"
    group, reason = classify(stats, Policy())
    assert group == UNKNOWN and reason.startswith("no fresh data: no probe within")


def test_a_model_without_its_own_probe_timestamp_is_stale():
    snap = snapshot()
    snap.last_probe[("p", "other")] = 990.0
    assert model_stats(snap, "default", Route("p", "m")).fresh is False
    assert model_stats(snap, "default", Route("p", "other")).fresh is True


def test_last_probe_query_looks_back_stale_after():
    query = snapshot_queries("1h", "15m")["last_probe"]
    assert query == ("max by (provider, model) (max_over_time(llm_probe_timestamp_seconds[15m]))")


@pytest.mark.parametrize("at", [1000.0, 1_700_000_000.0, 1_700_000_007.123, 1_795_706_837.976])
@pytest.mark.parametrize("hold", [20.0, 60.0, 61.5, 900.0, 3600.0, 5400.0])
def test_hold_subqueries_evaluate_the_steps_of_a_range_query(at, hold):
    # A range query from at - hold to at evaluates at start, start + step, ... <= at.
    # The subqueries' steps are multiples of the step since the epoch: shifted back by
    # their offset they must be exactly those, on Prometheus 2 (ranges closed on the
    # left) and 3 (open on the left) alike.
    held = hold_queries("1h", hold, at)
    step_ms = round(held.step * 1000)
    start_ms = round(at * 1000) - round(hold * 1000)
    expected = list(range(start_ms, round(at * 1000) + 1, step_ms))
    assert held.points == len(expected)
    assert held.step == max(15.0, -(-hold // 60))
    end_ms = round(held.time * 1000)
    for name, query in held.queries.items():
        found = re.fullmatch(
            rf"(?:min|sum) by \(provider, model, scenario\) \({name}_over_time\("
            r"\(provider_model:llm_performance_score:ratio_1h(?: offset (\d+)ms)?\)"
            r"\[(\d+)ms:(\d+)ms\]\)\)",
            query,
        )
        assert found, query
        offset, span = int(found.group(1) or 0), int(found.group(2))
        assert int(found.group(3)) == step_ms and 0 <= offset < step_ms
        first = -(-(end_ms - span) // step_ms) * step_ms
        closed = range(first, end_ms + 1, step_ms)
        open_left = [t for t in closed if t > end_ms - span]
        assert [t - offset for t in closed] == expected
        assert [t - offset for t in open_left] == expected


def test_region_selects_one_regions_series_and_without_it_regions_fold_to_the_worst():
    eu = snapshot_queries("1h", "15m", region="eu")
    assert eu["score"] == (
        "min by (provider, model, scenario) "
        '(provider_model:llm_performance_score:ratio_1h{region="eu"})'
    )
    assert eu["last_probe"] == (
        'max by (provider, model) (max_over_time(llm_probe_timestamp_seconds{region="eu"}[15m]))'
    )
    assert all('{region="eu"}' in query for query in eu.values())
    every = snapshot_queries("1h", "15m")
    assert not any("region" in query for query in every.values())
    # The worst region: lowest score, flag, count, rate and ratio; highest p95 TTFT.
    assert every["ttft_p95"].startswith("max by (provider, model) (")
    assert every["decode"].startswith("min by (provider, model) (")
    # The standard errors are asked for only when a switch is judged by its confidence,
    # and fold to the noisiest region's.
    assert "ttft_stderr" not in every and "decode_stderr" not in every
    noisy = snapshot_queries("1h", "15m", noise=True)
    assert noisy["ttft_stderr"] == (
        "max by (provider, model) (provider_model:llm_ttft_seconds:stderr_1h)"
    )
    assert noisy["decode_stderr"].startswith("max by (provider, model) (")
    held = hold_queries("1h", 900, 1000.0, region='e"u')
    assert all('{region="e\\"u"}' in query for query in held.queries.values())
    assert held.queries["sum"].startswith("sum by ")  # a NaN step of any region counts


class _Recorder:
    """A client that records where each query is evaluated; the rules last ran at 947."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        self.calls.append((query, at))
        if query.startswith("max(timestamp("):
            return [Sample({}, 947.0, 1000.0)]
        labels = {"provider": "p", "model": "m", "scenario": "default"}
        return [Sample(labels, 0.5, 1000.0)]


def test_hold_time_ends_at_the_newest_rule_evaluation_not_now():
    client = _Recorder()
    snap = fetch_snapshot(
        client,  # type: ignore[arg-type]
        "1h",
        hold_seconds=60,
        stale_after="15m",
        stale_after_seconds=900,
        at=1000.0,
        region="eu",
    )
    # On the step (15 s) at or before the newest evaluation: the subqueries need no offset.
    assert snap.hold_end == 945.0 and snap.at == 1000.0
    expected = hold_queries("1h", 60, 945.0, region="eu")
    assert expected.time == 945.0 and all(" offset " not in q for q in expected.queries.values())
    held = [(q, at) for q, at in client.calls if "_over_time((" in q]
    assert held == [(q, expected.time) for q in expected.queries.values()]
    assert all(at == 1000.0 for q, at in client.calls if "_over_time((" not in q)
    assert (
        'max(timestamp(provider_model:llm_performance_score:ratio_1h{region="eu"}))',
        1000.0,
    ) in (client.calls)
