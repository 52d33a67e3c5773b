"""Decide each routing scenario's fallback chain from plain numbers.

Nothing here talks to Prometheus or touches a file: the inputs are `ModelStats` per
route (what the recording rules said) and the scenario's current chain, the output is
a `Decision` with the new chain and the reasons for it. That keeps every rule of the
ranking unit-testable with literals.

The order of a new chain:

1. models with fresh data that meet the thresholds, best score first;
2. models with fresh data that fail them, best score first;
3. models without fresh data (or too few samples), in their old order, then candidates
   not yet in the chain in configured order;

cut to `max_chain`. A model whose provider or model is not configured is never written.
When no candidate has fresh data the route is left exactly as it is.

Hysteresis keeps groups 1 and 2 sticky: at each position the incumbent (the model that
came first in the old chain among those left) keeps its place unless a challenger's
lowest score over the hold time beats `(1 + margin)` times the incumbent's highest
score over the same time, and the challenger had a score for the whole hold time.
An incumbent with no score at all counts as 0 and gives way to any scored challenger.
A primary that fails thresholds or lost its data is not an incumbent of group 1, so
it is replaced at once: hysteresis protects against noise, not against an outage.

`rank()` is the same ordering without hysteresis (what `perfgen query` prints).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from perfgen.config import Performance, Route, Thresholds
from perfgen.generator.significance import required_lead
from perfgen.rules.render import ScenarioParams, confidence_z, scenario_params


@dataclass(frozen=True)
class ModelStats:
    """What Prometheus says about one provider+model for one scenario."""

    route: Route
    score: float | None = None  # None: no series, or NaN
    meets_thresholds: bool | None = None  # None: no series
    samples: float | None = None  # requests in the window
    fresh: bool = True  # False: the last probe is older than stale_after
    stale_reason: str = ""
    ttft_p95_seconds: float | None = None
    # The score's latency figure where [performance.score] latency_statistic is "mean".
    ttft_mean_seconds: float | None = None
    decode_tokens_per_second: float | None = None
    success_ratio: float | None = None
    # The ratio's upper confidence bound, which the success threshold is judged by when
    # success_rate_confidence is set; None: not recorded (the ratio is judged).
    success_upper_bound: float | None = None
    # Standard errors of the window's mean TTFT and mean decode rate; None: not read
    # (switch_confidence off) or fewer than 2 samples.
    ttft_mean_stderr: float | None = None
    decode_stderr: float | None = None
    score_scenario: str | None = None  # which scenario label the score came from
    # Over the hold time: lowest and highest score, and whether a score existed at every
    # step. None when there is no history (then the current score stands in).
    hold_min: float | None = None
    hold_max: float | None = None
    hold_covered: bool = False


@dataclass(frozen=True)
class Policy:
    """The knobs of ranking, from `[performance]` and `[performance.generator]`."""

    min_samples: float = 5
    max_chain: int = 3
    margin: float = 0.10
    hold: str = "15m"
    thresholds: Thresholds | None = None  # for explaining why a model fails
    # switch_confidence as a normal quantile (0: off), and the scenarios' scoring the
    # standard errors are computed with (significance.score_stderr).
    switch_z: float = 0.0
    scoring: tuple[ScenarioParams, ...] = ()

    def lead_needed(self, challenger: ModelStats, incumbent: ModelStats) -> float:
        """The score lead over the incumbent that switch_confidence asks for."""
        return required_lead(challenger, incumbent, self.scoring, self.switch_z)


def policy_for(performance: Performance, scenario: str) -> Policy:
    """The Policy of one routing scenario, from `[performance]` and its generator table."""
    settings = performance.generator
    z = confidence_z(settings.switch_confidence)
    return Policy(
        min_samples=performance.min_test_count,
        max_chain=settings.max_chain,
        margin=settings.hysteresis_margin,
        hold=settings.hysteresis_for,
        thresholds=performance.scenario_thresholds(scenario),
        switch_z=z,
        scoring=tuple(scenario_params(performance)) if z > 0 else (),
    )


# Groups, in chain order.
MEETS, FAILS, UNKNOWN = "meets", "fails", "unknown"


@dataclass(frozen=True)
class Entry:
    """One model's place and the reason for it."""

    route: Route
    group: str  # MEETS, FAILS, UNKNOWN or "excluded"
    reason: str
    score: float | None = None
    kept: bool = True  # False: cut by max_chain or excluded


@dataclass
class Decision:
    scenario: str
    old_chain: list[Route]
    new_chain: list[Route]
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    untouched: bool = False  # no fresh data: the route text is kept byte for byte

    @property
    def changed(self) -> bool:
        return not self.untouched and self.new_chain != self.old_chain

    @property
    def primary_changed(self) -> bool:
        return self.changed and self.new_chain[:1] != self.old_chain[:1]

    @property
    def chain_text(self) -> str:
        return "|".join(str(route) for route in self.new_chain)


def classify(stats: ModelStats | None, policy: Policy) -> tuple[str, str]:
    """(group, reason) of one model."""
    if stats is None or (stats.score is None and stats.meets_thresholds is None):
        return UNKNOWN, "no fresh data: no score series in the window"
    if not stats.fresh:
        return UNKNOWN, f"no fresh data: {stats.stale_reason or 'last probe too old'}"
    if stats.samples is None or stats.samples < policy.min_samples:
        count = "no" if stats.samples is None else f"only {stats.samples:g}"
        return UNKNOWN, f"too few samples: {count} (min_test_count {policy.min_samples:g})"
    if stats.meets_thresholds is False:
        # Also without a score: a model whose every request fails has no latency to
        # score, yet it is the clearest case for demotion.
        why = threshold_failures(stats, policy.thresholds)
        if stats.score is None:
            why.append("no score (no successful request in the window)")
        return FAILS, "fails thresholds" + (f": {'; '.join(why)}" if why else "")
    if stats.score is None:
        return UNKNOWN, "no fresh data: no score series in the window"
    if stats.meets_thresholds is None:
        return FAILS, "fails thresholds: no meets-thresholds series"
    return MEETS, "meets thresholds"


def threshold_failures(stats: ModelStats, thresholds: Thresholds | None) -> list[str]:
    """Which thresholds a model misses, in words; empty when unknown."""
    if thresholds is None:
        return []
    out: list[str] = []
    limit_s = thresholds.max_latency_ms / 1000
    ttft, rate, ratio = (
        _num(stats.ttft_p95_seconds),
        _num(stats.decode_tokens_per_second),
        _num(stats.success_ratio),
    )
    if ttft is not None and ttft > limit_s:
        out.append(f"p95 TTFT {ttft:.3f} s > {limit_s:g} s")
    if rate is not None and rate < thresholds.min_throughput_tokens_per_sec:
        out.append(f"decode {rate:.1f} tokens/s < {thresholds.min_throughput_tokens_per_sec:g}")
    upper = _num(stats.success_upper_bound)
    if upper is not None:
        if upper < thresholds.min_success_rate:
            shown = "" if ratio is None else f"success ratio {ratio:.3f}, "
            out.append(f"{shown}upper bound {upper:.3f} < {thresholds.min_success_rate:g}")
    elif ratio is not None and ratio < thresholds.min_success_rate:
        out.append(f"success ratio {ratio:.3f} < {thresholds.min_success_rate:g}")
    return out


def holds_over(
    challenger: ModelStats, incumbent: ModelStats, margin: float, lead: float = 0.0
) -> bool:
    """True when the challenger beat the incumbent by the margin for the whole hold time,
    and by at least `lead` (what switch_confidence asks of the windows' noise).

    An incumbent with no score at all (now or over the hold time) counts as 0: it has
    nothing for hysteresis to protect, so any scored challenger takes its place at once.
    """
    high = _highest(incumbent)
    if high is None:
        low = challenger.score
        return low is not None and low > 0
    if not challenger.hold_covered:
        return False
    low = _lowest(challenger)
    return low is not None and low > (1 + margin) * high and low - high > lead


@dataclass(frozen=True)
class Ranked:
    """One model's place in a ranking: its group and the reason for it."""

    route: Route
    group: str  # MEETS, FAILS or UNKNOWN
    reason: str


def rank(
    routes: Sequence[Route],
    stats: Mapping[Route, ModelStats],
    policy: Policy,
    old_chain: Sequence[Route] = (),
) -> list[Ranked]:
    """`routes` in chain order, without hysteresis: meets by score, fails by score,
    then unknown (those in `old_chain` in its order, the rest in the given order).

    The ranking `perfgen query` prints; `decide()` orders the same way, except that
    hysteresis may keep an incumbent ahead of a slightly better challenger.
    """
    return _rank(routes, stats, policy, old_chain, sticky=False)[0]


def decide(
    scenario: str,
    old_chain: Sequence[Route],
    candidates: Sequence[Route],
    stats: Mapping[Route, ModelStats],
    provider_models: Mapping[str, Iterable[str]],
    policy: Policy,
) -> Decision:
    """The new chain for one scenario. `candidates` empty: the old chain's routes."""
    old = list(old_chain)
    decision = Decision(scenario, old, list(old))
    pool = _unique(list(candidates) or old)
    known = {name: set(models) for name, models in provider_models.items()}

    eligible: list[Route] = []
    for route in pool:
        if route.provider not in known:
            decision.entries.append(
                Entry(
                    route,
                    "excluded",
                    f"provider {route.provider!r} is not in [[providers]]",
                    kept=False,
                )
            )
        elif route.model not in known[route.provider]:
            decision.entries.append(
                Entry(
                    route,
                    "excluded",
                    f"model not in provider {route.provider!r}'s models",
                    kept=False,
                )
            )
        else:
            eligible.append(route)

    ranked, notes = _rank(eligible, stats, policy, old, sticky=True)
    if all(item.group == UNKNOWN for item in ranked):
        decision.untouched = True
        decision.notes.append("no candidate has fresh data with enough samples: route left as is")
        decision.entries.extend(
            Entry(item.route, UNKNOWN, item.reason, _score(stats.get(item.route)))
            for item in ranked
        )
        return decision

    decision.notes.extend(notes)
    decision.new_chain = [item.route for item in ranked[: policy.max_chain]]
    for index, item in enumerate(ranked):
        kept = index < policy.max_chain
        reason = item.reason
        if not kept:
            reason += f"; cut by max_chain={policy.max_chain}"
        decision.entries.append(
            Entry(item.route, item.group, reason, _score(stats.get(item.route)), kept)
        )
    if old and ranked[0].route != old[0]:
        placed = {item.route: item for item in ranked}
        note = _primary_change_note(old[0], ranked[0].route, placed)
        if note:
            decision.notes.append(note)
    return decision


def _rank(
    routes: Sequence[Route],
    stats: Mapping[Route, ModelStats],
    policy: Policy,
    old_chain: Sequence[Route],
    *,
    sticky: bool,
) -> tuple[list[Ranked], list[str]]:
    """The one ordering behind rank() and decide(); `sticky` adds hysteresis."""
    members = _unique(list(routes))
    old_index: dict[Route, int] = {}
    for i, route in enumerate(old_chain):
        old_index.setdefault(route, i)  # a route listed twice keeps its first place
    groups: dict[str, list[Route]] = {MEETS: [], FAILS: [], UNKNOWN: []}
    reasons: dict[Route, str] = {}
    for route in members:
        group, reason = classify(stats.get(route), policy)
        groups[group].append(route)
        reasons[route] = reason

    ranked: list[Ranked] = []
    notes: list[str] = []
    for group in (MEETS, FAILS):
        if sticky:
            chosen, group_notes = _sticky_order(
                groups[group], stats, old_index, policy, len(ranked)
            )
            notes.extend(group_notes)
        else:
            chosen = _score_order(groups[group], stats, old_index)
        ranked.extend(Ranked(route, group, reasons[route]) for route in chosen)
    # Unknown models keep their old relative order; the others follow in given order.
    position = {route: i for i, route in enumerate(members)}
    unknown = sorted(groups[UNKNOWN], key=lambda r: old_index.get(r, len(old_chain) + position[r]))
    ranked.extend(Ranked(route, UNKNOWN, reasons[route]) for route in unknown)
    return ranked, notes


def _score_order(
    members: list[Route], stats: Mapping[Route, ModelStats], old_index: Mapping[Route, int]
) -> list[Route]:
    """Best score first; ties keep the old chain's order, then the route's name."""
    return sorted(
        members, key=lambda r: (-(stats[r].score or 0.0), old_index.get(r, math.inf), str(r))
    )


def _sticky_order(
    members: list[Route],
    stats: Mapping[Route, ModelStats],
    old_index: Mapping[Route, int],
    policy: Policy,
    offset: int = 0,
) -> tuple[list[Route], list[str]]:
    """Order by score, but let an incumbent keep its place until it is clearly beaten.

    At each position the incumbent is the route left with the lowest old index. The
    challenger is the first route in score order that scores above the incumbent and
    `holds_over` it; as `remaining` is in score order, the search stops at the first
    route that does not score above the incumbent. Linear per position, and once no
    incumbent is left the rest is plain score order.
    """
    remaining = _score_order(members, stats, old_index)
    incumbents = sorted((r for r in remaining if r in old_index), key=old_index.__getitem__)
    result: list[Route] = []
    notes: list[str] = []
    while remaining:
        if not incumbents:
            result.extend(remaining)  # nothing left to defend: plain score order
            break
        best, incumbent = remaining[0], incumbents[0]
        index = 0
        if best != incumbent:
            base = stats[incumbent]
            floor = base.score or 0.0
            found = None
            for i, route in enumerate(remaining):
                challenger = stats[route]
                if not (challenger.score or 0.0) > floor:
                    break  # in score order: nobody further down scores above the incumbent
                if route != incumbent and holds_over(
                    challenger, base, policy.margin, policy.lead_needed(challenger, base)
                ):
                    found = i
                    break
            index = remaining.index(incumbent) if found is None else found
            notes.append(
                _hysteresis_note(
                    offset + len(result), remaining[index], best, incumbent, stats, policy
                )
            )
        pick = remaining.pop(index)
        if pick == incumbent:
            incumbents.pop(0)
        elif pick in old_index:
            incumbents.remove(pick)
        result.append(pick)
    return result, notes


def _hysteresis_note(
    position: int,
    pick: Route,
    best: Route,
    incumbent: Route,
    stats: Mapping[Route, ModelStats],
    policy: Policy,
) -> str:
    where = "primary" if position == 0 else f"position {position + 1}"
    challenger = best if pick == incumbent else pick
    champ, base = stats[challenger], stats[incumbent]
    base_max = _highest(base)
    low = _lowest(champ)
    low_text = "n/a" if low is None else f"{low:.3f}"
    if base_max is None:
        detail = (
            f"{incumbent} has no score over {policy.hold}, counted as 0; "
            f"{challenger} scores {low_text}"
        )
    else:
        need = (1 + policy.margin) * base_max
        detail = (
            f"{challenger} lowest score over {policy.hold} {low_text}"
            f"{'' if champ.hold_covered else ' (no score for the whole hold time)'}"
            f" vs {incumbent} highest {base_max:.3f} x {1 + policy.margin:g}"
            f" = {need:.3f}"
        )
        lead = policy.lead_needed(champ, base)
        if lead > 0:
            detail += (
                f"; switch_confidence asks a lead of {lead:.3f}"
                f" ({policy.switch_z:.2f} standard errors of the difference)"
            )
    if pick == incumbent:
        return f"hysteresis holds {where}: {incumbent} stays ({detail})"
    return f"hysteresis switches {where} to {pick}: beat {incumbent} for {policy.hold} ({detail})"


def _primary_change_note(old: Route, new: Route, placed: Mapping[Route, Ranked]) -> str | None:
    """Why the old primary lost its place when hysteresis did not decide it."""
    item = placed.get(old)
    if item is None:
        return f"primary {old} -> {new}: old primary is not a candidate or not configured"
    if item.group == MEETS:
        return None  # the hysteresis note already says why
    return f"primary {old} -> {new}: old primary {item.reason}"


def _unique(routes: list[Route]) -> list[Route]:
    return list(dict.fromkeys(routes))


def _score(stats: ModelStats | None) -> float | None:
    return stats.score if stats else None


def _highest(stats: ModelStats) -> float | None:
    """The incumbent's best over the hold time (or now); None without any score."""
    return max((s for s in (stats.hold_max, stats.score) if s is not None), default=None)


def _lowest(stats: ModelStats) -> float | None:
    """The challenger's worst over the hold time; the current score without history."""
    return stats.hold_min if stats.hold_min is not None else stats.score


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
