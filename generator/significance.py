"""How uncertain a window's score is: what `switch_confidence` weighs a lead against.

A window holds few samples (four or five at the example's rates), so two models that
are truly alike differ in score by the draw of those samples, and a short window
differs more. The margin asks the same relative lead of a window of three noisy samples
and of one of thirty; `switch_confidence` also asks a lead larger than `z` standard
errors of the difference, in proportion to the noise the windows show. What that buys,
and where it does not (a window of three samples misjudges its own spread),
docs/benchmarks.md measures in round 15.

The score's standard error comes from the delta method: each of its three figures (mean
TTFT, mean decode rate, success ratio) is moved by one standard error towards worse,
the score recomputed with `rules.render.score_components` (the recording rules'
reference), and the changes added in quadrature, as if the figures were independent.
Moving by a whole standard error rather than taking a derivative keeps the caps of the
"capped" form honest: a mean TTFT far under the reference moves the latency
component not at all, one just under it moves it by what crossing the cap costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from perfgen.rules.render import ScenarioParams, performance_score, score_components

if TYPE_CHECKING:  # ranking imports this module
    from perfgen.generator.ranking import ModelStats


def score_stderr(stats: ModelStats, scoring: Sequence[ScenarioParams]) -> float:
    """The standard error of `stats.score`; 0 where a figure's error is unknown.

    `scoring`: the config's scenarios (`rules.render.scenario_params`); the one whose
    series the score came from (`stats.score_scenario`) is used, else `default`. A
    figure without a recorded standard error (fewer than 2 samples of it) adds nothing:
    the sample-count gate (`min_test_count`) is what protects a model with one sample.
    The success ratio's spread is taken over the window's sample count, the baseline
    modules' requests: the ratio counts every module's, so this errs on the wide side.
    """
    params = _params(stats.score_scenario or "default", scoring)
    ttft, decode = stats.ttft_mean_seconds, stats.decode_tokens_per_second
    success = 1.0 if stats.success_ratio is None else stats.success_ratio
    samples = stats.samples or 0.0

    def score(ttft: float | None, decode: float | None, success: float) -> float:
        components = score_components(ttft, decode, success, params.thresholds, params.score)
        return performance_score(components, params.weights)

    base = score(ttft, decode, success)
    moves = []
    if ttft is not None and stats.ttft_mean_stderr:
        moves.append(score(ttft + stats.ttft_mean_stderr, decode, success) - base)
    if decode is not None and stats.decode_stderr:
        worse = max(decode - stats.decode_stderr, 0.0)
        moves.append(score(ttft, worse, success) - base)
    if samples > 0:
        spread = math.sqrt(max(success * (1 - success), 0.0) / samples)
        moves.append(score(ttft, decode, max(success - spread, 0.0)) - base)
    return math.sqrt(sum(move * move for move in moves))


def required_lead(
    challenger: ModelStats, incumbent: ModelStats, scoring: Sequence[ScenarioParams], z: float
) -> float:
    """The score lead `z` standard errors of the difference ask for (0 when z is 0)."""
    if z <= 0:
        return 0.0
    return z * math.hypot(score_stderr(challenger, scoring), score_stderr(incumbent, scoring))


def _params(name: str, scoring: Sequence[ScenarioParams]) -> ScenarioParams:
    by_name = {params.name: params for params in scoring}
    return by_name.get(name) or by_name["default"]
