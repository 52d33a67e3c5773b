"""generator.snapshot: recording-rule numbers into ranking.ModelStats (no Prometheus)."""

from __future__ import annotations

from exporter.config import Route
from generator.ranking import UNKNOWN, Policy, classify
from generator.snapshot import Snapshot, model_stats, snapshot_queries


def snapshot(**kwargs: float) -> Snapshot:
    values = dict(at=1000.0, window="1h", stale_after_seconds=600, hold_seconds=60,
                  hold_step=15, hold_points=5)
    values.update(kwargs)
    return Snapshot(**values)


def test_model_stats_prefers_scenario_series_and_drops_nan():
    snap = snapshot()
    key = ("p", "m")
    snap.score[key] = {"default": 0.4, "think": 0.7}
    snap.meets[key] = {"default": 1.0}
    snap.plain["samples"] = {key: 9.0}
    snap.plain["ttft_p95"] = {key: float("nan")}
    snap.last_probe[key] = 900.0
    snap.history[("p", "m", "think")] = [0.6, 0.7, 0.8, 0.7, 0.7]
    think = model_stats(snap, "think", Route("p", "m"))
    assert (think.score, think.score_scenario, think.meets_thresholds) == (0.7, "think", True)
    assert think.ttft_p95_seconds is None and think.fresh
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
    assert query == ("max by (provider, model) "
                     "(max_over_time(llm_probe_timestamp_seconds[15m]))")
