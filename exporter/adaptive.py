"""Adaptive probing: how long a target+module waits before its next paid probe.

With `[performance.adaptive] enabled = true` the scheduler asks this object for each
key's interval instead of using `test_interval_minutes` for all. The interval lies between
`min_interval_minutes` and `test_interval_minutes`: short when a fresh probe is likely
to change a routing decision, the full interval when it is not. It decides only from the
exporter's own recent results (the baseline modules' requests within `window`, the
figures the recording rules score) and the config's scenarios; it never asks Prometheus.

Reasons, checked in this order (the first that applies wins):

| reason | when | interval |
|---|---|---|
| `budget` | the hour's budget is more than BUDGET_SHARE committed (not the watch) | maximum |
| `little_data` | fewer than `min_test_count` results of the target in the window | minimum |
| `failing` | the key's last probe failed (backoff still applies) | minimum |
| `confirm` | a leader's watch has just started to look degraded | confirm_after_seconds |
| `degraded` | the target's last result is DEGRADED_FACTOR worse than its window median | minimum |
| `watch` | the target's cheapest baseline module, costing at most half of another | minimum |
| `contested` | a competitor in a scenario it serves scores within the hysteresis margin | minimum |
| `cheaper_module` | contested; a module of the target costing at most half is probed | maximum |
| `ahead` | it leads at least one scenario it can serve by more than the margin | maximum |
| `behind` | in every such scenario a competitor leads it by more than the margin | maximum |
| `clear` | no competitor has enough data to compare with | maximum |

What a change costs a user is the time until its first result is in: a degradation that
starts between two probes waits on average half an interval before anything can see it.
So every target is watched at the minimum by its cheapest baseline module (`latency`'s
16 tokens beside `throughput`'s 256), which sees a slower first token, a slower decode and
failures alike; the expensive module waits the full interval unless the target is short
of data, its own last probe failed, or the target looks degraded. A watched target whose
last result looks degraded has every module probed at the minimum (`degraded`), which
confirms or clears it sooner. With `confirm_after_seconds`, the watch's result that
first looks degraded is followed by one more cheap probe that soon: a real change has
its second bad sample in the window one minimum interval sooner (a route moves once the
bad samples are about half of the window's), and a fluke (a lognormal TTFT's tail) is
diluted by a fresh draw. It is once per streak, and only for a target
that led a scenario before that result: a trailer's slowdown changes no route, and a
confirmation adds a sample beside each bad one, which biases a model's window towards
looking faster than it is (a heavy-tailed trailer's mean TTFT) and, in a time-range
window, slows its recovery (docs/benchmarks.md section 5, round 12).

More samples do not by themselves react faster: the rules' window is a time range, so
each sample of a steady target weighs less the more of them there are, and the share of
bad samples after a change grows with time, not with the probe rate (with every module
of the leader at the minimum, detection got slower: docs/benchmarks.md section 5, round
2). That is why the full interval can be long (an hour) while the watch keeps every
target ranked and fresh: what it buys is spend, at about the same routing.
A target probed by a single baseline module has no watch: contested it is probed at the
minimum, a steady leader or a clear trailer at the full interval.

The score is the recording rules' (`rules.render.score_components` with each scenario's
weights and thresholds), from the mean or a nearest-rank p95 of the window's TTFTs
(`[performance.score] latency_statistic`); a scenario's
competitors are its `candidates`, or every target this exporter probes.
The hourly token budget still caps everything: a probe the budget refuses is refused.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from perfgen.config import LATENCY_MEAN, Performance, Thresholds, Weights, duration_seconds
from perfgen.exporter.result import ProbeResult
from perfgen.exporter.spend import probe_output_tokens
from perfgen.rules.render import baseline_modules, performance_score, score_components
from perfgen.timing import CHEAP_MODULE_SHARE, confirming_module, watching_module

ProbeKey = tuple[str, str, str]  # provider, model, module
Target = tuple[str, str]  # provider, model
Clock = Callable[[], float]

REASONS = (
    "fixed",
    "budget",
    "little_data",
    "failing",
    "confirm",
    "degraded",
    "watch",
    "contested",
    "cheaper_module",
    "ahead",
    "behind",
    "clear",
)
# Above this share of the hourly budget, probes other than the watch come at the full
# interval again, so that the shortened ones can never starve the regular schedule.
BUDGET_SHARE = 0.75
# A last result this many times slower (TTFT) or slower-decoding than the target's median.
DEGRADED_FACTOR = 2.0


@dataclass(frozen=True)
class Choice:
    """A key's current interval and why."""

    seconds: float
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class _Sample:
    at: float
    success: bool
    ttft: float | None
    decode: float | None


@dataclass(frozen=True)
class _Scenario:
    name: str
    weights: Weights
    thresholds: Thresholds
    candidates: frozenset[Target] | None  # None: every probed target


class AdaptiveIntervals:
    """Chooses each key's interval from recent results; fed by the scheduler after each probe."""

    def __init__(self, performance: Performance, clock: Clock) -> None:
        self._clock = clock
        self.maximum = performance.test_interval_minutes * 60.0
        self.minimum = min(performance.adaptive.min_interval_minutes * 60.0, self.maximum)
        self.window = duration_seconds(performance.window)
        self.margin = performance.generator.hysteresis_margin
        self.min_samples = performance.min_test_count
        self.confirm = min(performance.adaptive.confirm_after_seconds, self.minimum)
        self._score = performance.score
        self._baseline = frozenset(baseline_modules(performance))
        self._costs = {
            name: probe_output_tokens(module)
            for name, module in performance.modules.items()
            if name in self._baseline
        }
        names = ["default", *(n for n in performance.scenarios if n != "default")]
        self._scenarios = [
            _Scenario(
                name,
                performance.scenario_weights(name),
                performance.scenario_thresholds(name),
                frozenset((r.provider, r.model) for r in own.candidates)
                if (own := performance.scenarios.get(name)) and own.candidates
                else None,
            )
            for name in names
        ]
        self._samples: dict[Target, deque[_Sample]] = {}
        self._last_failed: dict[ProbeKey, bool] = {}
        self._modules: dict[Target, set[str]] = {}  # baseline modules seen per target
        self._looked_degraded: dict[ProbeKey, bool] = {}  # by the key's previous result
        self._confirm: dict[ProbeKey, str] = {}  # a confirmation due, and what it confirms
        # Every probe compares its target with every other (a leader? a contest?): at 1000
        # targets recomputing each rival's score per probe held the event loop ~15 ms
        # (bench/adaptive_scale.py). A target's scores change only with a new result or
        # when its oldest sample leaves the window, so they are kept until then; each
        # scenario's two best (enough for any target's best rival) are kept too, and
        # rebuilt only when one of those two changes.
        self._kept_scores: dict[Target, tuple[float, dict[str, float]]] = {}  # until, scores
        self._expiries: list[tuple[float, Target]] = []  # heap of kept scores' `until`
        self._changed: set[Target] = set()  # scores that may differ from `_top`'s view
        self._top: dict[str, list[tuple[float, Target]]] | None = None

    @classmethod
    def from_performance(
        cls, performance: Performance, clock: Clock, previous: AdaptiveIntervals | None = None
    ) -> AdaptiveIntervals | None:
        """The policy when `[performance.adaptive] enabled`, else None (fixed intervals).

        `previous` (a config reload): its recent results and any confirmation due carry
        over, so a reload does not make every target look short of data and probe it at
        the minimum, nor drop a leader's pending confirmation.
        """
        if not performance.adaptive.enabled:
            return None
        policy = cls(performance, clock)
        if previous is not None:
            policy._samples = previous._samples
            policy._last_failed = previous._last_failed
            policy._modules = previous._modules
            policy._looked_degraded = previous._looked_degraded
            # A confirmation due stays due (a reload mid-degradation would otherwise leave
            # the leader unconfirmed until its next watch), unless the new config stopped
            # confirming.
            if policy.confirm > 0:
                policy._confirm = previous._confirm
        return policy

    # ----------------------------------------------------------------- feeding

    def observe(self, key: ProbeKey, result: ProbeResult) -> None:
        self._last_failed[key] = not result.success
        if key[2] not in self._baseline:
            return
        self._modules.setdefault(key[:2], set()).add(key[2])
        # Ranking every target is the costly part, so only for a probe that could start
        # a confirmation: the watch's, after a result that did not look degraded.
        led = (
            self.confirm > 0
            and not self._looked_degraded.get(key, False)
            and self._is_watch(key)
            and self._leads(key[:2])
        )
        samples = self._samples.setdefault(key[:2], deque())
        # The scheduler's clock (monotonic in the exporter), not the result's unix time.
        now = self._clock()
        for request in result.requests:
            samples.append(
                _Sample(
                    now,
                    request.success,
                    request.ttft_seconds if request.success else None,
                    request.tokens_per_second if request.success else None,
                )
            )
        self._forget_scores(key[:2])  # `led` above read the scores before this result
        self._note_confirmation(key, led)

    def _forget_scores(self, target: Target) -> None:
        self._kept_scores.pop(target, None)
        self._changed.add(target)

    def _note_confirmation(self, key: ProbeKey, led: bool) -> None:
        """After `key`'s result is in: is one confirming probe of it due? `led`: the target
        led a scenario before this result."""
        degraded = self._degraded(self._recent(key[:2]))
        started = bool(degraded) and not self._looked_degraded.get(key, False)
        self._looked_degraded[key] = bool(degraded)
        if led and started and self._is_watch(key):
            self._confirm[key] = degraded
        else:
            self._confirm.pop(key, None)

    # ----------------------------------------------------------------- deciding

    def choose(self, key: ProbeKey, budget_share: float = 0.0) -> Choice:
        """The interval of `key` now; `budget_share`: committed share of the hour's budget."""
        target = key[:2]
        short, long = self.minimum, self.maximum
        pricier = self._pricier_module(key)
        # The watch is the regular schedule that staleness and the alerts' timings are
        # derived from (perfgen/timing.py), so budget pressure does not lengthen it; the
        # budget itself still refuses any probe past it.
        if budget_share > BUDGET_SHARE and not pricier:
            return Choice(long, "budget", f"{budget_share:.0%} of the hourly budget committed")
        recent = self._recent(target)
        if len(recent) < self.min_samples:
            return Choice(
                short,
                "little_data",
                f"{len(recent)} results in the window, min_test_count {self.min_samples}",
            )
        if self._last_failed.get(key):
            return Choice(short, "failing", "the last probe failed")
        confirming = self._confirm.get(key)
        if confirming and budget_share <= BUDGET_SHARE:
            return Choice(
                self.confirm, "confirm", f"{confirming}: probed once more to confirm or clear it"
            )
        degraded = self._degraded(recent)
        if degraded:
            return Choice(short, "degraded", degraded)
        if pricier:
            return Choice(
                short,
                "watch",
                f"the target's cheapest baseline module ({self._costs[key[2]]} tokens against "
                f"{pricier}'s {self._costs[pricier]}) watches it for changes",
            )
        leads: list[str] = []
        any_scenario = False
        for scenario, own, best, rival in self._standings(target):
            any_scenario = True
            lo, hi = sorted((own, best))
            if hi <= (1 + self.margin) * lo:
                contest = (
                    f"{scenario}: score {own:.3f} within {self.margin:.0%} of "
                    f"{rival[0]}:{rival[1]} {best:.3f}"
                )
                cheaper = self._cheaper_module(key)
                if cheaper:
                    return Choice(
                        long,
                        "cheaper_module",
                        f"{contest}; {cheaper} ({self._costs[cheaper]} tokens against "
                        f"{self._costs[key[2]]}) is probed at the minimum instead",
                    )
                return Choice(short, "contested", contest)
            if own > best:
                leads.append(scenario)
        if not any_scenario:
            return Choice(long, "clear", "no competitor with enough data")
        if leads:
            # Steady and ahead: a sooner probe would change no decision, and in a window
            # that is a time range it would only dilute a first bad result.
            return Choice(long, "ahead", f"leads {', '.join(leads)} by more than {self.margin:.0%}")
        # Not longer than the interval: a model must keep min_test_count results in the
        # window to stay ranked (and in the fallback chain) and fresh for stale_after.
        return Choice(long, "behind", f"trails by more than {self.margin:.0%} everywhere")

    def _standings(self, target: Target) -> list[tuple[str, float, float, Target]]:
        """Per scenario the target serves with a scored rival: (scenario, its score, the
        best rival's score, that rival)."""
        mine = self._scores(target)
        top = self._scenario_top()
        out = []
        for scenario in self._scenarios:
            if scenario.name not in mine:
                continue
            # The best scored target other than this one, ties to the greater key (max()).
            rival = next((e for e in top.get(scenario.name, ()) if e[1] != target), None)
            if rival is not None:
                out.append((scenario.name, mine[scenario.name], rival[0], rival[1]))
        return out

    def _scenario_top(self) -> dict[str, list[tuple[float, Target]]]:
        """Each scenario's two best (score, target): any target's best rival is one of them."""
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            self._changed.add(heapq.heappop(self._expiries)[1])
        top = self._top
        if top is not None and not any(
            target in self._changed for members in top.values() for _, target in members
        ):
            # Only targets outside the two best changed: each may enter, none can leave.
            for target in self._changed:
                for name, score in self._scores(target).items():
                    top[name] = heapq.nlargest(2, [*top.get(name, ()), (score, target)])
            self._changed.clear()
            return top
        entries: dict[str, list[tuple[float, Target]]] = {}
        for other in list(self._samples):
            for name, score in self._scores(other).items():
                entries.setdefault(name, []).append((score, other))
        self._top = {name: heapq.nlargest(2, scored) for name, scored in entries.items()}
        self._changed.clear()
        return self._top

    def _leads(self, target: Target) -> bool:
        """The target scores best in a scenario it serves: where its slowdown moves a route."""
        return any(own >= best for _, own, best, _ in self._standings(target))

    def _recent(self, target: Target) -> list[_Sample]:
        samples = self._samples.get(target)
        if not samples:
            return []
        horizon = self._clock() - self.window
        while samples and samples[0].at <= horizon:
            samples.popleft()
        return list(samples)

    def _pricier_module(self, key: ProbeKey) -> str | None:
        """The target's priciest baseline module seen, if `key` is the one watching it
        (`timing.watching_module` of the modules the target has been probed with)."""
        costs = self._seen_costs(key[:2])
        if watching_module(costs) != key[2]:
            return None
        return max(costs, key=lambda m: (costs[m], m))

    def _is_watch(self, key: ProbeKey) -> bool:
        """`key` confirms for its target: the watch, or its only baseline module (of those
        it has been probed with; `perfgen query --cost` reads the config's)."""
        return confirming_module(self._seen_costs(key[:2])) == key[2]

    def _seen_costs(self, target: Target) -> dict[str, int]:
        """The baseline modules the target has been probed with, and their tokens per probe;
        one a reload removed or made non-baseline no longer counts."""
        return {m: self._costs[m] for m in self._modules.get(target, ()) if m in self._costs}

    def _cheaper_module(self, key: ProbeKey) -> str | None:
        """The target's cheapest other baseline module, if it costs at most CHEAP_MODULE_SHARE."""
        own = self._costs.get(key[2])
        if own is None:
            return None
        costs = self._seen_costs(key[:2])
        cheaper = [m for m in costs if m != key[2] and costs[m] <= CHEAP_MODULE_SHARE * own]
        return min(cheaper, key=lambda m: (costs[m], m)) if cheaper else None

    def _serves(self, scenario: _Scenario, target: Target) -> bool:
        return scenario.candidates is None or target in scenario.candidates

    def _degraded(self, recent: list[_Sample]) -> str:
        last_at = recent[-1].at
        last = [s for s in recent if s.at == last_at and s.success]
        earlier = [s for s in recent if s.at < last_at and s.success]
        if not last or len(earlier) < self.min_samples:
            return ""
        for name, worse in (("TTFT", True), ("decode rate", False)):
            values = [_figure(s, name) for s in earlier]
            now_values = [_figure(s, name) for s in last]
            usual = _median(values)
            now = _median(now_values)
            if usual is None or now is None or usual <= 0 or now <= 0:
                continue
            ratio = now / usual if worse else usual / now
            if ratio >= DEGRADED_FACTOR:
                return f"last {name} {now:.3g} vs window median {usual:.3g}"
        return ""

    def _scores(self, target: Target) -> dict[str, float]:
        """The target's score per scenario it serves, from its window; {} without enough."""
        kept = self._kept_scores.get(target)
        if kept is not None and self._clock() < kept[0]:
            return kept[1]
        scores = self._window_scores(target)
        samples = self._samples.get(target)
        # Its oldest sample leaves the window (`_recent`'s horizon) at `at + window`.
        until = samples[0].at + self.window if samples else math.inf
        self._kept_scores[target] = (until, scores)
        if until < math.inf:
            heapq.heappush(self._expiries, (until, target))
        return scores

    def _window_scores(self, target: Target) -> dict[str, float]:
        recent = self._recent(target)
        if len(recent) < self.min_samples:
            return {}
        ttfts = sorted(s.ttft for s in recent if s.ttft is not None)
        decodes = [s.decode for s in recent if s.decode is not None]
        ttft = _latency_figure(ttfts, self._score.latency_statistic)
        decode = statistics.fmean(decodes) if decodes else None
        success = sum(s.success for s in recent) / len(recent)
        return {
            scenario.name: performance_score(
                score_components(ttft, decode, success, scenario.thresholds, self._score),
                scenario.weights,
            )
            for scenario in self._scenarios
            if self._serves(scenario, target)
        }

    def targets(self) -> Iterable[Target]:
        return list(self._samples)


def _latency_figure(ttfts: list[float], statistic: str) -> float | None:
    """The score's latency figure of sorted TTFTs: their mean, or a nearest-rank p95."""
    if not ttfts:
        return None
    if statistic == LATENCY_MEAN:
        return statistics.fmean(ttfts)
    return ttfts[max(0, math.ceil(0.95 * len(ttfts)) - 1)]


def _figure(sample: _Sample, name: str) -> float | None:
    return sample.ttft if name == "TTFT" else sample.decode


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
