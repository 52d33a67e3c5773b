"""Render perfgen's Prometheus recording and alerting rules from the [performance] table.

The rules are data, like a kubernetes-mixin: jinja2 templates next to this file
(`recording.yml.j2`, `alerts.yml.j2`) filled from one `RuleParams` computed here.
Everything numeric the templates need (score references, `for:` durations, windows)
is derived in Python, in one place, so the templates stay declarative and the
derivations can be unit-tested and documented (docs/rules-and-alerts.md).

The templates use `[[ ... ]]` / `[% ... %]` / `[# ... #]` as jinja delimiters because
the rules themselves contain Prometheus' Go-template `{{ ... }}` annotations.

This module also holds `score_components` / `performance_score`, a plain-Python
reference of the score formula the PromQL implements; tests compare the two.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import jinja2
import yaml

from perfgen.atomic import atomic_write
from perfgen.config import (
    SCORE_CAPPED,
    Module,
    Performance,
    ScoreSettings,
    Thresholds,
    Weights,
    duration_seconds,
)
from perfgen.timing import (
    MIN_PROBE_CADENCE_SECONDS,
    STALE_INTERVALS,
    probe_cadence_seconds,
    stale_after_seconds,
    watch_module,
)

RULES_DIR = Path(__file__).resolve().parent
RENDERED_DIR = RULES_DIR / "rendered"

# filename written -> template it comes from
TEMPLATES: dict[str, str] = {
    "recording.yml": "recording.yml.j2",
    "alerts.yml": "alerts.yml.j2",
}

# Repo-relative, so the committed default works for anyone browsing the repository;
# deployments pass their own absolute URL (e.g. their git host's blob URL).
DEFAULT_RUNBOOK_BASE_URL = "docs/runbook.md"

# A score alert fires when the score falls this far (relative) under its own baseline.
DEFAULT_SCORE_DROP = 0.2

# Score references must be > 0 or the components divide by zero. A threshold of 0 means
# "no minimum", so the component falls back to these floors and still ranks models.
THROUGHPUT_REFERENCE_FLOOR = 1.0  # tokens/s, used when min_throughput_tokens_per_sec == 0
FAILURE_REFERENCE_FLOOR = 0.001  # failure ratio, used when min_success_rate == 1

# One probe round cannot confirm a problem; the next one must agree. 1.5 intervals lets
# the second probe land (probe timing jitters by up to a scrape interval) before firing.
PROBE_CONFIRM_INTERVALS = 1.5
# Infrastructure alerts (exporter down, budget, generator) follow scrapes rather than
# probes: a couple of missed scrapes is normal, but never wait longer than this.
INFRA_FOR_CAP_SECONDS = 120.0
# The score's own baseline: its average over this many windows.
BASELINE_WINDOWS = 6
# Route flapping: more than this many primary changes per scenario within the range
# below (A->B->A is two changes and can be legitimate; a third within the range is not).
FLAP_MAX_CHANGES = 2
FLAP_RANGE_MIN_SECONDS = 3600.0
FLAP_RANGE_HYSTERESIS_MULTIPLE = 4


# --------------------------------------------------------------------------- formatting


def prom_duration(seconds: float) -> str:
    """A Prometheus duration for `seconds`, rounded up to whole seconds: 5400 -> `1h30m`."""
    total = max(0, math.ceil(seconds - 1e-9))
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def prom_number(value: float) -> str:
    """A float as a PromQL literal without float noise: 5.0 -> `5`, 1-0.95 -> `0.05`."""
    value = round(value, 12)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def prom_string(value: str) -> str:
    """A PromQL double-quoted string literal (Go escaping, which JSON's is a subset of)."""
    return json.dumps(value)


def human_seconds(seconds: float) -> str:
    """Seconds for people in annotations: 5 -> `5s`, 0.8 -> `800ms`, 5400 -> `1h30m`."""
    if seconds < 1:
        return f"{prom_number(seconds * 1000)}ms"
    if seconds == int(seconds):
        return prom_duration(seconds)
    return f"{prom_number(seconds)}s"


def human_percent(ratio: float) -> str:
    return f"{prom_number(ratio * 100)}%"


# --------------------------------------------------------------------------- modules


class RuleError(ValueError):
    """A [performance] table the rules cannot be rendered from (the message names the key)."""


def is_baseline(module: Module) -> bool:
    """A module that measures the model under no extra load: one stream at a time, the
    prompt as written. Only these feed the score's latency and throughput figures."""
    return module.baseline


def baseline_modules(performance: Performance) -> tuple[str, ...]:
    """The baseline modules of `performance.modules`, sorted (built-ins: health, latency,
    throughput; long_context pads the prompt, concurrent runs parallel streams)."""
    names = tuple(
        sorted(name for name, module in performance.modules.items() if is_baseline(module))
    )
    if not names:
        raise RuleError(
            "performance.modules: no module qualifies as a baseline module (input_tokens = 0 "
            "and concurrency = 1), so the score would have no latency or throughput figures; "
            "keep at least one such module (the built-in latency module is one)"
        )
    return names


def module_regex(names: tuple[str, ...]) -> str:
    """A PromQL `=~` pattern matching exactly these module names: `health|latency`."""
    return "|".join(re.escape(name) for name in names)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ScenarioParams:
    """What the rules need to know about one scenario's score and thresholds."""

    name: str
    weights: Weights
    thresholds: Thresholds
    # The scenario's thresholds differ from the global ones: its score cannot reuse the
    # recorded components (which use the global thresholds) and computes its own inline.
    own_thresholds: bool
    # `[performance.score]`: references separate from the thresholds (unset: the threshold).
    score: ScoreSettings = ScoreSettings()

    @property
    def latency_reference_seconds(self) -> float:
        return self.thresholds.max_latency_ms / 1000.0

    @property
    def throughput_reference(self) -> float:
        return max(self.thresholds.min_throughput_tokens_per_sec, THROUGHPUT_REFERENCE_FLOOR)

    # The score's own references: the pass/fail figures above unless [performance.score]
    # sets one (alerts and the thresholds check keep using the thresholds).
    @property
    def latency_score_reference_seconds(self) -> float:
        reference = self.score.latency_reference_ms
        return self.latency_reference_seconds if reference is None else reference / 1000.0

    @property
    def throughput_score_reference(self) -> float:
        reference = self.score.throughput_reference_tokens_per_sec
        return self.throughput_reference if reference is None else reference

    @property
    def capped(self) -> bool:
        return self.score.form == SCORE_CAPPED

    @property
    def failure_reference(self) -> float:
        reference = self.score.failure_ratio_reference
        if reference is not None:
            return reference
        return max(round(1.0 - self.thresholds.min_success_rate, 12), FAILURE_REFERENCE_FLOOR)

    @property
    def no_decode_meets_throughput(self) -> bool:
        # Without decode-rate samples the rate counts as 0 tokens/s, which meets a
        # minimum only when there is no minimum.
        return self.thresholds.min_throughput_tokens_per_sec <= 0


@dataclass(frozen=True)
class Timings:
    """Every duration the rules use, derived from [performance] (docs/rules-and-alerts.md)."""

    # A `derivation` is how the duration follows from the config; `python -m perfgen.docs`
    # prints it beside the values of the example and demo configs.
    window: str = field(metadata={"derivation": "`window`; also every recording rule's suffix"})
    window_seconds: float
    interval_seconds: float  # test_interval_minutes in seconds
    cadence_seconds: float  # how often a target is measured (perfgen/timing.py)
    probe_for: str = field(
        metadata={
            "derivation": f"{PROBE_CONFIRM_INTERVALS:g} × probe cadence "
            f"(`test_interval_minutes`, or `min_interval_minutes` when adaptive probing "
            f"watches, at least {MIN_PROBE_CADENCE_SECONDS:g} s)"
        }
    )
    infra_for: str = field(
        metadata={"derivation": f"probe `for:`, at most {prom_duration(INFRA_FOR_CAP_SECONDS)}"}
    )
    score_for: str = field(
        metadata={"derivation": "`window`: longer than a single probe stays in it"}
    )
    baseline: str = field(metadata={"derivation": f"{BASELINE_WINDOWS} × `window`"})
    stale_after: str = field(
        metadata={
            "derivation": "`[performance.generator] stale_after`, "
            f"else {STALE_INTERVALS} × probe cadence"
        }
    )
    stale_after_seconds: float
    # Under adaptive probing with a watch, the other modules may wait test_interval_minutes:
    # a module is stale only after STALE_INTERVALS of those (never sooner than stale_after).
    module_stale_after: str = field(
        metadata={
            "derivation": "`stale_after`; for modules other than the watch under adaptive "
            f"probing, {STALE_INTERVALS} × `test_interval_minutes` if longer"
        }
    )
    module_stale_after_seconds: float
    flap_range: str = field(
        metadata={
            "derivation": f"max({prom_duration(FLAP_RANGE_MIN_SECONDS)}, "
            f"{FLAP_RANGE_HYSTERESIS_MULTIPLE} × `hysteresis_for`)"
        }
    )


def timings(performance: Performance) -> Timings:
    window_s = duration_seconds(performance.window)
    interval_s = performance.test_interval_minutes * 60.0
    cadence_s = probe_cadence_seconds(performance)
    probe_for_s = PROBE_CONFIRM_INTERVALS * cadence_s
    # The generator calls a target stale after the same time (perfgen/timing.py).
    stale_s = stale_after_seconds(performance)
    module_stale_s = stale_s
    if watch_module(performance):
        module_stale_s = max(stale_s, STALE_INTERVALS * interval_s)
    flap_s = max(
        FLAP_RANGE_MIN_SECONDS,
        FLAP_RANGE_HYSTERESIS_MULTIPLE * duration_seconds(performance.generator.hysteresis_for),
    )
    return Timings(
        window=performance.window,
        window_seconds=window_s,
        interval_seconds=interval_s,
        cadence_seconds=cadence_s,
        probe_for=prom_duration(probe_for_s),
        infra_for=prom_duration(min(probe_for_s, INFRA_FOR_CAP_SECONDS)),
        score_for=performance.window,
        baseline=prom_duration(BASELINE_WINDOWS * window_s),
        stale_after=prom_duration(stale_s),
        stale_after_seconds=stale_s,
        module_stale_after=prom_duration(module_stale_s),
        module_stale_after_seconds=module_stale_s,
        flap_range=prom_duration(flap_s),
    )


def scenario_params(performance: Performance) -> list[ScenarioParams]:
    """`default` (global weights and thresholds) first, then every scenario with its own
    weights or thresholds; a scenario with only candidates scores like `default`."""
    result = [
        ScenarioParams(
            "default", performance.weights, performance.thresholds, False, performance.score
        )
    ]
    for name in sorted(performance.scenarios):
        scenario = performance.scenarios[name]
        if scenario.weights is None and scenario.thresholds is None:
            continue
        thresholds = performance.scenario_thresholds(name)
        result.append(
            ScenarioParams(
                name=name,
                weights=performance.scenario_weights(name),
                thresholds=thresholds,
                own_thresholds=thresholds != performance.thresholds,
                score=performance.score,
            )
        )
    return result


@dataclass(frozen=True)
class RuleParams:
    performance: Performance
    timings: Timings
    scenarios: list[ScenarioParams]
    targets: list[tuple[str, str, str]]  # (provider, model, module) the exporter's /sd lists
    runbook_base_url: str
    score_drop: float
    baseline_modules: tuple[str, ...]  # modules whose requests the score's figures use
    watch_module: str | None  # the module probed at min_interval_minutes (perfgen/timing.py)

    @property
    def default(self) -> ScenarioParams:
        return self.scenarios[0]

    @property
    def baseline_matcher(self) -> str:
        """The label matcher selecting the baseline modules: `module=~"health|latency"`."""
        return f"module=~{prom_string(module_regex(self.baseline_modules))}"

    @property
    def flap_max_changes(self) -> int:
        return FLAP_MAX_CHANGES

    @property
    def success_z(self) -> float:
        """The normal quantile of `success_rate_confidence`; 0 when the gate reads the ratio."""
        return confidence_z(self.performance.success_rate_confidence)


def rule_params(
    performance: Performance,
    *,
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL,
    score_drop: float = DEFAULT_SCORE_DROP,
) -> RuleParams:
    if not 0 < score_drop < 1:
        raise ValueError(f"score_drop must be between 0 and 1, got {score_drop:g}")
    # With probing disabled nothing is expected to be measured, so nothing is "missing".
    targets = (
        [
            (target.provider, target.model, module)
            for target in performance.targets
            for module in performance.sd_modules
        ]
        if performance.enabled
        else []
    )
    return RuleParams(
        performance=performance,
        timings=timings(performance),
        scenarios=scenario_params(performance),
        targets=targets,
        runbook_base_url=runbook_base_url,
        score_drop=score_drop,
        baseline_modules=baseline_modules(performance),
        watch_module=watch_module(performance),
    )


# --------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(RULES_DIR)),
        block_start_string="[%",
        block_end_string="%]",
        variable_start_string="[[",
        variable_end_string="]]",
        comment_start_string="[#",
        comment_end_string="#]",
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not ""
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # YAML/PromQL, not HTML
    )
    env.filters["num"] = prom_number
    env.filters["str"] = prom_string
    env.filters["seconds"] = human_seconds
    env.filters["percent"] = human_percent
    return env


def render_rules(
    performance: Performance,
    *,
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL,
    score_drop: float = DEFAULT_SCORE_DROP,
) -> dict[str, str]:
    """Render the rule files: filename (`recording.yml`, `alerts.yml`) -> YAML text.

    Raises RuleError when `performance.modules` has no baseline module.
    """
    params = rule_params(performance, runbook_base_url=runbook_base_url, score_drop=score_drop)
    env = _environment()
    files: dict[str, str] = {}
    for filename, template in TEMPLATES.items():
        text = env.get_template(template).render(p=params, t=params.timings)
        # A template bug should fail here, not when Prometheus reloads.
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RuntimeError(f"template {template} rendered invalid YAML: {exc}") from exc
        if not isinstance(document, dict) or not document.get("groups"):
            raise RuntimeError(f"template {template} rendered no rule groups")
        files[filename] = text
    return files


def recorded_names(recording_yaml: str) -> frozenset[str]:
    """The series names a rendered recording-rules file records."""
    groups = yaml.safe_load(recording_yaml)["groups"]
    return frozenset(rule["record"] for g in groups for rule in g["rules"] if "record" in rule)


def write_rules(files: Mapping[str, str], out_dir: str | Path) -> list[Path]:
    """Write rendered files atomically, so a Prometheus reload never reads half a file."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in files.items():
        path = directory / filename
        atomic_write(path, text, backup=False)
        written.append(path)
    return written


def render_warnings(performance: Performance) -> list[str]:
    """Configurations that render valid rules that can never produce a score, or that
    lose it for a moment at every probe."""
    warnings = []
    baseline = set(baseline_modules(performance))
    probed = [name for name in performance.sd_modules if name in baseline]
    if not probed:
        warnings.append(
            f"performance.test_models.modules ({', '.join(performance.sd_modules)}) has no "
            f"baseline module ({', '.join(sorted(baseline))}): the score's figures and "
            "sample count come only from those, so no model will get a score; add one "
            "(such as latency)"
        )
        return warnings
    window_s = duration_seconds(performance.window)
    interval_s, shorter = performance.test_interval_minutes * 60.0, "test_interval_minutes"
    watch = watch_module(performance)
    if performance.adaptive.enabled:
        # Adaptive probing takes a target short of min_test_count results in the window
        # to its minimum interval (reason `little_data`), so that is what has to fill it.
        interval_s = min(interval_s, performance.adaptive.min_interval_minutes * 60.0)
        shorter = "[performance.adaptive] min_interval_minutes"

    def steady_s(name: str) -> float:
        # Once a target has its results, adaptive probing keeps only the watch at the
        # minimum; the other modules of a steady target wait test_interval_minutes.
        if performance.adaptive.enabled and name != watch:
            return performance.test_interval_minutes * 60.0
        return interval_s

    def requests(probes: Callable[[str], int]) -> int:
        # Samples one target gets from `probes(module)` probes of each baseline /sd
        # module: its requests (a baseline module runs one stream per round). Other
        # modules' requests count towards the success ratio, not towards min_test_count.
        return sum(probes(name) * performance.modules[name].runs for name in probed)

    per_window = requests(lambda name: math.floor(window_s / interval_s))
    if per_window < performance.min_test_count:
        warnings.append(
            f"performance.window {performance.window} holds about {per_window} requests per "
            f"target (one probe per {prom_duration(interval_s)} per baseline module), fewer "
            f"than min_test_count {performance.min_test_count}: no model will get a score; "
            f"lengthen the window or shorten {shorter}"
        )
        return warnings
    # A window exactly k intervals long holds k probes, except from the moment the oldest
    # leaves it until the next one's result is scraped: then k - 1 (the bench's traces
    # showed every model unranked at every probe, and the chain reordered around it).
    steady = requests(lambda name: math.floor(window_s / steady_s(name)))
    fewest = requests(lambda name: math.ceil(window_s / steady_s(name)) - 1)
    if fewest < performance.min_test_count:
        cadence = ", ".join(f"{name} every {prom_duration(steady_s(name))}" for name in probed)
        warnings.append(
            f"performance.window {performance.window} holds {steady} requests per target "
            f"({cadence}) but only {fewest} from when the oldest probe leaves it until the "
            f"next result is scraped, fewer than min_test_count {performance.min_test_count}: "
            "every model goes unranked at every probe and the generator reorders the chain "
            f"around it; set min_test_count to at most {fewest}, lengthen the window or "
            f"shorten {shorter}"
        )
    return warnings


# --------------------------------------------------------------------------- reference


def confidence_z(confidence: float) -> float:
    """One-sided normal quantile of a confidence level; 0 for 0 (or 0.5): no bound."""
    return NormalDist().inv_cdf(confidence) if confidence > 0.5 else 0.0


def success_upper_bound(ratio: float, requests: float, confidence: float) -> float:
    """The success ratio's one-sided upper Wilson bound at `confidence` over `requests`.

    What `provider_model:llm_request_success:wilson_upper_<window>` records. Wilson's
    interval rather than the normal one: it stays inside [0, 1] and is not degenerate at
    a ratio of 1, with the few requests a window holds.
    """
    z = confidence_z(confidence)
    if z == 0.0 or requests <= 0:
        return ratio
    z2n = z * z / requests
    spread = z * math.sqrt(max(ratio * (1 - ratio) / requests, 0.0) + z2n / (4 * requests))
    return (ratio + z2n / 2 + spread) / (1 + z2n)


def score_components(
    ttft_seconds: float | None,
    decode_tokens_per_second: float | None,
    success_ratio: float,
    thresholds: Thresholds,
    score: ScoreSettings | None = None,
) -> dict[str, float]:
    """The score components, as the recording rules compute them (docs/rules-and-alerts.md).

    `ttft_seconds` is the window's latency figure: its p95 TTFT, or its mean TTFT where
    `[performance.score] latency_statistic` is "mean".
    None for a figure means the window has no sample of it (every request failed), which
    scores as the worst value: an infinitely slow first token, 0 tokens/s. `score`: the
    config's `[performance.score]` references (default: the thresholds).
    """
    params = ScenarioParams("reference", Weights(), thresholds, False, score or ScoreSettings())
    latency_ref = params.latency_score_reference_seconds
    throughput_ref = params.throughput_score_reference
    failure_ref = params.failure_reference
    capped = params.capped
    if ttft_seconds is None:
        latency = 0.0
    elif capped:
        # PromQL's L / 0 is +Inf, which the cap makes 1.
        latency = 1.0 if ttft_seconds <= latency_ref else latency_ref / ttft_seconds
    else:
        latency = latency_ref / (latency_ref + ttft_seconds)
    if decode_tokens_per_second is None:
        throughput = 0.0
    elif capped:
        throughput = min(1.0, decode_tokens_per_second / throughput_ref)
    else:
        throughput = decode_tokens_per_second / (decode_tokens_per_second + throughput_ref)
    reliability = failure_ref / (failure_ref + (1.0 - success_ratio))
    return {"latency": latency, "throughput": throughput, "reliability": reliability}


def performance_score(components: Mapping[str, float], weights: Weights) -> float:
    return (
        weights.latency * components["latency"]
        + weights.throughput * components["throughput"]
        + weights.reliability * components["reliability"]
    )


def meets_thresholds(
    p95_ttft_seconds: float | None,
    decode_tokens_per_second: float | None,
    success_ratio: float,
    samples: float,
    thresholds: Thresholds,
    min_test_count: int,
    *,
    requests: float | None = None,
    success_rate_confidence: float = 0.0,
) -> bool:
    """`requests`: every module's requests, the success ratio's denominator (default:
    `samples`, the baseline modules' ones)."""
    total = samples if requests is None else requests
    success = success_upper_bound(success_ratio, total, success_rate_confidence)
    return (
        samples >= min_test_count
        and success >= thresholds.min_success_rate
        and p95_ttft_seconds is not None
        and p95_ttft_seconds <= thresholds.max_latency_ms / 1000.0
        and (decode_tokens_per_second or 0.0) >= thresholds.min_throughput_tokens_per_sec
    )
