"""perfgen's recording rules (docs/CONTRACTS.md), read into `ranking.ModelStats`.

Which series the generator and `perfgen query` read, how they are queried (one instant
query per role at one evaluation time; for the hysteresis, one instant subquery per
statistic over the hold time), and how one provider+model's numbers become a
ModelStats. Talking HTTP and turning failures into PromQLError is the client's job
(`promql.py`); ranking the ModelStats is `ranking.py`'s.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from perfgen.config import Route
from perfgen.generator.promql import PromClient, PromQLError, Sample
from perfgen.generator.ranking import ModelStats

Key = tuple[str, str]  # (provider, model)

PROBE_TIMESTAMP = "llm_probe_timestamp_seconds"

# Queries in flight at once: Prometheus evaluates them in parallel while this process
# decodes the answers that came back. Below requests' pool of 10 connections per host.
QUERY_WORKERS = 4


def rule_names(window: str) -> dict[str, str]:
    """The recording-rule series the generator and `perfgen query` read, by role."""
    return {
        "score": f"provider_model:llm_performance_score:ratio_{window}",
        "meets": f"provider_model:llm_meets_thresholds:bool_{window}",
        "samples": f"provider_model:llm_requests:increase_{window}",
        "ttft_p95": f"provider_model:llm_ttft_seconds:p95_{window}",
        "ttft_mean": f"provider_model:llm_ttft_seconds:mean_{window}",
        "decode": f"provider_model:llm_decode_tokens_per_second:mean_{window}",
        "success": f"provider_model:llm_request_success:ratio_{window}",
        # Recorded only with [performance] success_rate_confidence; absent otherwise.
        "success_upper": f"provider_model:llm_request_success:wilson_upper_{window}",
        # Read only with [performance.generator] switch_confidence (NOISE_ROLES).
        "ttft_stderr": f"provider_model:llm_ttft_seconds:stderr_{window}",
        "decode_stderr": f"provider_model:llm_decode_tokens_per_second:stderr_{window}",
    }


# Across regions (series with different `region` labels) each figure is folded to the
# worst region's: the lowest score, meets-thresholds flag, sample count, decode rate,
# success ratio and its upper bound, the highest p95 and mean TTFT. A route chosen for every
# region must be good in each of them. With one series per provider and model (one
# region, no region label) the fold changes nothing; duplicates of HA replicas that are
# not deduplicated fold the same way. The newest probe is the newest of any region.
FOLD = {
    "score": "min",
    "meets": "min",
    "samples": "min",
    "ttft_p95": "max",
    "ttft_mean": "max",
    "decode": "min",
    "success": "min",
    "success_upper": "min",
    "ttft_stderr": "max",
    "decode_stderr": "max",
}
# The standard errors matter only to a switch judged by its confidence: without one the
# generator does not ask for them (two queries fewer per cycle).
NOISE_ROLES = ("ttft_stderr", "decode_stderr")


def region_selector(name: str, region: str | None) -> str:
    """`name`, or `name{region="eu"}`: one region's series of a metric."""
    if region is None:
        return name
    return f"{name}{{region={json.dumps(region)}}}"


def snapshot_queries(
    window: str, stale_after: str, region: str | None = None, *, noise: bool = False
) -> dict[str, str]:
    """PromQL per role; `region` keeps one region's series, else regions fold (FOLD).

    `noise`: also the standard errors (NOISE_ROLES)."""
    names = rule_names(window)
    queries = {}
    for role, fold in FOLD.items():
        if role in NOISE_ROLES and not noise:
            continue
        by = "provider, model, scenario" if role in ("score", "meets") else "provider, model"
        queries[role] = f"{fold} by ({by}) ({region_selector(names[role], region)})"
    # The newest probe of any module within stale_after; an exporter that stopped
    # reporting still shows its last timestamp here until stale_after has passed.
    probe = region_selector(PROBE_TIMESTAMP, region)
    queries["last_probe"] = f"max by (provider, model) (max_over_time({probe}[{stale_after}]))"
    return queries


def newest_evaluation_query(window: str, region: str | None = None) -> str:
    """When the rules last wrote a score: the end of the hold window (see HoldQueries)."""
    return f"max(timestamp({region_selector(rule_names(window)['score'], region)}))"


@dataclass(frozen=True)
class HoldScores:
    """One score series over the hold time."""

    low: float | None  # lowest score at the hold time's steps; None: no score at any
    high: float | None  # highest
    covered: bool  # a (non-NaN) score at every step of the hold time


@dataclass(frozen=True)
class HoldQueries:
    """The hysteresis statistics of every score series, one instant query each.

    `at` is the newest rule evaluation (the newest score sample's timestamp), not the
    wall clock: a server that shows samples only some time after they were written
    (VictoriaMetrics' `-search.latencyOffset`, 30 s by default; remote write and
    vmalert in between) would otherwise have no score at the last steps, and no
    challenger could ever hold for the whole hold time. Prometheus and VictoriaMetrics
    with their default settings then decide alike.

    The steps are those a range query from `at - hold` to `at` would evaluate (`points`
    of them, `step` seconds apart). A subquery's steps are multiples of its step since
    the epoch, so the inner selector is shifted by `offset` (the distance from
    `at - hold` up to the next multiple) and the subquery is evaluated at `time`, the
    last shifted step: its steps minus the offset are exactly the range query's. Its
    range reaches half a step before the first step, so the first step is inside
    whether the server's ranges are left-closed (Prometheus 2) or left-open (3).

    The fold across series (regions, HA duplicates) is applied after the function, not
    at each step: aggregating 7000 series at each of 61 steps is what made the range
    query slow (a subquery over a plain selector is cheap). With one series per
    provider, model and scenario this is the same number. Across regions: the lowest
    score is the worst region's lowest; the highest is the lowest of the regions'
    highest, at least the worst region's highest (so an incumbent is defended with a
    figure no lower than its own); coverage needs a score at every step in every
    region; `sum` propagates a NaN step of any region.
    """

    time: float
    step: float
    points: int
    queries: dict[str, str]
    end: float = 0.0  # the `at` asked for: the last step of the range query


def hold_queries(
    window: str, hold_seconds: float, at: float, region: str | None = None
) -> HoldQueries:
    """Lowest, highest, step count and sum (NaN when a step was NaN) over the hold time."""
    step_ms = int(max(15.0, math.ceil(hold_seconds / 60)) * 1000)
    at_ms, hold_ms = round(at * 1000), round(hold_seconds * 1000)
    start_ms = at_ms - hold_ms
    first_ms = -(-start_ms // step_ms) * step_ms  # first multiple of the step >= start
    offset_ms = first_ms - start_ms
    steps = hold_ms // step_ms
    selector = region_selector(rule_names(window)["score"], region) + (
        f" offset {offset_ms}ms" if offset_ms else ""
    )
    span = f"[{steps * step_ms + step_ms // 2}ms:{step_ms}ms]"
    fold = {"min": "min", "max": "min", "count": "min", "sum": "sum"}
    queries = {
        name: f"{fold[name]} by (provider, model, scenario) ({name}_over_time(({selector}){span}))"
        for name in ("min", "max", "count", "sum")
    }
    return HoldQueries(
        (first_ms + steps * step_ms) / 1000, step_ms / 1000, steps + 1, queries, at_ms / 1000
    )


@dataclass
class Snapshot:
    """Everything ranking needs, fetched at one evaluation time."""

    at: float
    window: str
    stale_after_seconds: float
    hold_seconds: float
    hold_step: float
    score: dict[Key, dict[str, float]] = field(default_factory=dict)  # key -> scenario -> v
    meets: dict[Key, dict[str, float]] = field(default_factory=dict)
    plain: dict[str, dict[Key, float]] = field(default_factory=dict)  # role -> key -> v
    last_probe: dict[Key, float] = field(default_factory=dict)
    hold: dict[tuple[str, str, str], HoldScores] = field(default_factory=dict)
    hold_points: int = 0
    warnings: list[str] = field(default_factory=list)
    region: str | None = None  # the region ranked from; None: every region, folded
    hold_end: float | None = None  # the newest rule evaluation, where the hold time ends

    def keys(self) -> list[Key]:
        """Every provider+model any rule has data for, sorted."""
        found = set(self.score) | set(self.meets)
        for values in self.plain.values():
            found |= set(values)
        return sorted(found)


def fetch_snapshot(
    client: PromClient,
    window: str,
    *,
    hold_seconds: float,
    stale_after: str,
    stale_after_seconds: float,
    at: float | None = None,
    region: str | None = None,
    noise: bool = False,
) -> Snapshot:
    """Run the snapshot queries at one instant; any failed query fails the snapshot.

    `region`: rank from that region's series only; None: from every region, folded to
    the worst region's figures (FOLD). The queries run concurrently (`QUERY_WORKERS`);
    their answers are read in query order, so the error raised is the first failed
    query's, as if they ran one by one. The newest rule evaluation is asked first: the
    hold-time queries end there (HoldQueries) and join the others as soon as it is known;
    their answers (and errors) count only if there are scores. `noise`: also read the
    standard errors, for a switch judged by its confidence.
    """
    at = time.time() if at is None else at
    step = max(15.0, math.ceil(hold_seconds / 60))
    snap = Snapshot(at, window, stale_after_seconds, hold_seconds, step, region=region)
    queries = snapshot_queries(window, stale_after, region, noise=noise)
    with ThreadPoolExecutor(QUERY_WORKERS) as pool:
        newest = (
            pool.submit(client.instant, newest_evaluation_query(window, region), at)
            if hold_seconds > 0
            else None
        )
        answers = [pool.submit(client.instant, query, at) for query in queries.values()]
        try:
            hold, held = _submit_hold(pool, client, newest, window, hold_seconds, at, region)
            for role, answer in zip(queries, answers, strict=True):
                _add_samples(snap, role, answer.result())
            if newest is not None and snap.score:
                newest.result()  # its error, if it failed
            if hold is not None and snap.score:
                snap.hold_end, snap.hold_step, snap.hold_points = hold.end, hold.step, hold.points
                snap.hold = _hold_scores(hold, [a.result() for a in held])
        finally:
            pool.shutdown(cancel_futures=True)  # after a failure, start no further query
    where = f" in region {region}" if region is not None else ""
    if not snap.score:
        snap.warnings.append(
            f"no {rule_names(window)['score']} series{where} at all: are perfgen's recording "
            f"rules loaded with window {window}, and is the exporter scraped?"
        )
    if snap.score and not snap.last_probe:
        # The recording rules still answer for up to their window after the exporter
        # went silent; without a probe timestamp their numbers may be that old.
        snap.warnings.append(
            f"no {PROBE_TIMESTAMP}{where} in the last {stale_after}: every model counts as "
            "stale and routes are left as they are (is the exporter scraped?)"
        )
    return snap


def _submit_hold(
    pool: ThreadPoolExecutor,
    client: PromClient,
    newest: Future[list[Sample]] | None,
    window: str,
    hold_seconds: float,
    at: float,
    region: str | None,
) -> tuple[HoldQueries | None, list[Future[list[Sample]]]]:
    """Once the newest rule evaluation is known, submit the hold-time queries ending there.

    The end is on a multiple of the step, so the subqueries run at that instant (no
    offset) and never later than the newest sample: a server that moves queries of the
    last moments back (VictoriaMetrics' latency offset) leaves them where they are, and
    their last step in place. No score sample at all: no hold queries.
    """
    if newest is None:
        return None, []
    try:
        found = [s.value for s in newest.result() if math.isfinite(s.value)]
    except PromQLError:
        return None, []  # raised by the caller when there are scores
    if not found:
        return None, []
    step = max(15.0, math.ceil(hold_seconds / 60))
    hold = hold_queries(window, hold_seconds, math.floor(min(max(found), at) / step) * step, region)
    return hold, [pool.submit(client.instant, q, hold.time) for q in hold.queries.values()]


def _add_samples(snap: Snapshot, role: str, samples: list[Sample]) -> None:
    for sample in samples:
        key = (sample.labels.get("provider", ""), sample.labels.get("model", ""))
        if not all(key):
            continue
        if role in ("score", "meets"):
            scenario = sample.labels.get("scenario", "default")
            getattr(snap, role).setdefault(key, {})[scenario] = sample.value
        elif role == "last_probe":
            snap.last_probe[key] = sample.value
        else:
            snap.plain.setdefault(role, {})[key] = sample.value


def _hold_scores(
    hold: HoldQueries, answers: list[list[Sample]]
) -> dict[tuple[str, str, str], HoldScores]:
    """Per score series: lowest, highest, and a score at every step (no NaN among them)."""
    found = {
        name: {
            (
                s.labels.get("provider", ""),
                s.labels.get("model", ""),
                s.labels.get("scenario", "default"),
            ): s.value
            for s in samples
        }
        for name, samples in zip(hold.queries, answers, strict=True)
    }
    nan = math.nan
    out: dict[tuple[str, str, str], HoldScores] = {}
    for key3, count in found["count"].items():
        # min/max_over_time skip NaN (NaN only when every step was NaN);
        # count_over_time counts NaN steps too, but one NaN step makes the sum NaN
        # (as would +Inf and -Inf together, which no score is).
        low, high = found["min"].get(key3, nan), found["max"].get(key3, nan)
        covered = count >= hold.points and not math.isnan(found["sum"].get(key3, nan))
        out[key3] = HoldScores(
            None if math.isnan(low) else low, None if math.isnan(high) else high, covered
        )
    return out


def model_stats(snap: Snapshot, scenario: str, route: Route) -> ModelStats:
    """ranking.ModelStats of one route for one scenario (scenario's own series first)."""
    key = (route.provider, route.model)
    scores = snap.score.get(key, {})
    label = scenario if scenario in scores else "default"
    score = scores.get(label)
    score = score if score is not None and math.isfinite(score) else None
    meets_by = snap.meets.get(key, {})
    meets_value = _finite(meets_by.get(scenario, meets_by.get("default")))
    # Fresh only with a probe timestamp within stale_after. Absent is not fresh: it is
    # exactly what an exporter silent for longer than stale_after (but less than the
    # rules' window) looks like, and its scores are then stale.
    fresh, stale_reason = True, ""
    last = snap.last_probe.get(key)
    if last is None:
        fresh = False
        stale_reason = f"no probe within stale_after ({_age(snap.stale_after_seconds)})"
    elif snap.at - last > snap.stale_after_seconds:
        fresh = False
        stale_reason = f"last probe {_age(snap.at - last)} ago"
    hold_min = hold_max = None
    covered = False
    if snap.hold_seconds <= 0:
        hold_min = hold_max = score
        covered = score is not None
    else:
        held = snap.hold.get((route.provider, route.model, label))
        if held is not None:
            hold_min, hold_max = held.low, held.high
            covered = held.covered and snap.hold_points > 0
    return ModelStats(
        route=route,
        score=score,
        meets_thresholds=None if meets_value is None else meets_value >= 0.5,
        samples=_finite(snap.plain.get("samples", {}).get(key)),
        fresh=fresh,
        stale_reason=stale_reason,
        ttft_p95_seconds=_finite(snap.plain.get("ttft_p95", {}).get(key)),
        ttft_mean_seconds=_finite(snap.plain.get("ttft_mean", {}).get(key)),
        decode_tokens_per_second=_finite(snap.plain.get("decode", {}).get(key)),
        success_ratio=_finite(snap.plain.get("success", {}).get(key)),
        success_upper_bound=_finite(snap.plain.get("success_upper", {}).get(key)),
        ttft_mean_stderr=_finite(snap.plain.get("ttft_stderr", {}).get(key)),
        decode_stderr=_finite(snap.plain.get("decode_stderr", {}).get(key)),
        score_scenario=label if score is not None else None,
        hold_min=hold_min,
        hold_max=hold_max,
        hold_covered=covered,
    )


def _age(seconds: float) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _finite(value: float | None) -> float | None:
    # NaN comes from divisions by zero in rules (no samples); treat it as no data.
    return None if value is None or math.isnan(value) else value
