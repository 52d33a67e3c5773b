"""perfgen's recording rules (docs/CONTRACTS.md), read into `ranking.ModelStats`.

Which series the generator and `perfgen query` read, how they are queried (one instant
query per role, one range query for the hysteresis history, all at one evaluation
time), and how one provider+model's numbers become a ModelStats. Talking HTTP and
turning failures into PromQLError is the client's job (`promql.py`); ranking the
ModelStats is `ranking.py`'s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from exporter.config import Route
from generator.promql import PromClient
from generator.ranking import ModelStats

Key = tuple[str, str]  # (provider, model)

PROBE_TIMESTAMP = "llm_probe_timestamp_seconds"


def rule_names(window: str) -> dict[str, str]:
    """The recording-rule series the generator and `perfgen query` read, by role."""
    return {
        "score": f"provider_model:llm_performance_score:ratio_{window}",
        "meets": f"provider_model:llm_meets_thresholds:bool_{window}",
        "samples": f"provider_model:llm_requests:increase_{window}",
        "ttft_p95": f"provider_model:llm_ttft_seconds:p95_{window}",
        "decode": f"provider_model:llm_decode_tokens_per_second:mean_{window}",
        "success": f"provider_model:llm_request_success:ratio_{window}",
    }


def snapshot_queries(window: str, stale_after: str) -> dict[str, str]:
    """PromQL per role. `max by` folds duplicates (HA replicas behind Thanos, say)."""
    names = rule_names(window)
    queries = {
        role: f"max by (provider, model, scenario) ({names[role]})"
        for role in ("score", "meets")
    }
    queries.update({
        role: f"max by (provider, model) ({names[role]})"
        for role in ("samples", "ttft_p95", "decode", "success")
    })
    # The newest probe of any module within stale_after; an exporter that stopped
    # reporting still shows its last timestamp here until stale_after has passed.
    queries["last_probe"] = (
        f"max by (provider, model) (max_over_time({PROBE_TIMESTAMP}[{stale_after}]))"
    )
    return queries


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
    history: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    hold_points: int = 0
    warnings: list[str] = field(default_factory=list)

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
) -> Snapshot:
    """Run the snapshot queries at one instant; any failed query fails the snapshot."""
    at = time.time() if at is None else at
    step = max(15.0, math.ceil(hold_seconds / 60))
    snap = Snapshot(at, window, stale_after_seconds, hold_seconds, step)
    queries = snapshot_queries(window, stale_after)
    for role, query in queries.items():
        samples = client.instant(query, at)
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
    if not snap.score:
        snap.warnings.append(
            f"no {rule_names(window)['score']} series at all: are perfgen's recording rules "
            f"loaded with window {window}, and is the exporter scraped?"
        )
    if snap.score and not snap.last_probe:
        # The recording rules still answer for up to their window after the exporter
        # went silent; without a probe timestamp their numbers may be that old.
        snap.warnings.append(
            f"no {PROBE_TIMESTAMP} in the last {stale_after}: every model counts as "
            "stale and routes are left as they are (is the exporter scraped?)"
        )
    if hold_seconds > 0 and snap.score:
        # Hysteresis: the score at every step of the hold time, from one range query.
        start = at - hold_seconds
        snap.hold_points = int(math.floor(hold_seconds / step + 1e-9)) + 1
        for series in client.range(queries["score"], start, at, step):
            labels = series.labels
            key3 = (labels.get("provider", ""), labels.get("model", ""),
                    labels.get("scenario", "default"))
            snap.history[key3] = [v for _, v in series.points]
    return snap


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
        values = snap.history.get((route.provider, route.model, label), [])
        finite = [v for v in values if not math.isnan(v)]
        if finite:
            hold_min, hold_max = min(finite), max(finite)
        covered = len(finite) >= snap.hold_points > 0
    return ModelStats(
        route=route,
        score=score,
        meets_thresholds=None if meets_value is None else meets_value >= 0.5,
        samples=_finite(snap.plain.get("samples", {}).get(key)),
        fresh=fresh,
        stale_reason=stale_reason,
        ttft_p95_seconds=_finite(snap.plain.get("ttft_p95", {}).get(key)),
        decode_tokens_per_second=_finite(snap.plain.get("decode", {}).get(key)),
        success_ratio=_finite(snap.plain.get("success", {}).get(key)),
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
