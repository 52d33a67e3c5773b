"""Load and validate the proxy's config.toml: its [[providers]] and perfgen's [performance].

One file, one truth: the proxy reads [proxy], [router] and [[providers]]; perfgen reads
[[providers]] and [performance]. Everything under [performance] is validated strictly
(unknown keys are errors) because a typo there silently changes what gets measured or
paid for. The proxy's own tables are only checked for what perfgen relies on, since the
proxy itself ignores unknown keys and may grow new ones.

Every error is a ConfigError naming the file and the dotted key.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from perfgen.capabilities import (
    CAPABILITY_FIELDS,
    LOWEST,
    MAX_TOKENS_FIELDS,
    MIN_THINKING_BUDGET,
    REASONING_EFFORTS,
    Capabilities,
)
from perfgen.capabilities import resolve as resolve_capabilities
from perfgen.endpoints import proxy_endpoint

SCENARIOS = (
    "default",
    "background",
    "think",
    "plan_implementation",
    "long_context",
    "web_search",
    "image",
)
PROTOCOLS = ("openai", "anthropic", "openai-responses")
# `success_rate_confidence`, `switch_confidence`: the least level at which a one-sided
# bound lies on the far side of its estimate.
MIN_CONFIDENCE = 0.5

# The proxy picks the wire format from the provider's name; perfgen infers the same way.
_ANTHROPIC_NAMES = {"anthropic", "minimax", "kimi"}
# ollama serves an OpenAI-compatible /v1/chat/completions; gemini is not spoken here and
# needs an explicit protocol override pointing at an OpenAI-compatible endpoint.
_UNSUPPORTED_NAMES = {"gemini"}


class ConfigError(ValueError):
    """A configuration problem, located by file and dotted key."""

    def __init__(self, path: str | os.PathLike[str], key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {message}")


class Secret:
    """An API key reference that never prints its value.

    `$NAME` is read from the environment when the key is used, so rotating a key does not
    need a config reload, and the value is never part of the frozen config.
    """

    __slots__ = ("_ref",)

    def __init__(self, ref: str) -> None:
        self._ref = ref

    @property
    def env_var(self) -> str | None:
        return self._ref[1:] if self._ref.startswith("$") else None

    def reveal(self) -> str:
        """The key itself; raises KeyError naming the variable (never a value) when unset."""
        name = self.env_var
        if name is None:
            return self._ref
        value = os.environ.get(name)
        if not value:
            raise KeyError(f"environment variable {name} is not set")
        return value

    def __repr__(self) -> str:
        return f"Secret(${self.env_var})" if self.env_var else "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)


@dataclass(frozen=True)
class Route:
    """One `provider,model` entry of a proxy route chain."""

    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> Route:
        # The proxy splits on the first ',' and also accepts the first ':'.
        text = text.strip()
        sep = "," if "," in text else ":"
        provider, found, model = text.partition(sep)
        provider, model = provider.strip(), model.strip()
        if not found or not provider or not model or "|" in text:
            raise ValueError(f"{text!r} is not a 'provider,model' route")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider},{self.model}"

    @property
    def target(self) -> str:
        """The exporter's target name, `provider:model`."""
        return f"{self.provider}:{self.model}"


def parse_chain(text: str) -> list[Route]:
    """Split a `a,x|b,y` fallback chain into routes, primary first."""
    return [Route.parse(part) for part in text.split("|") if part.strip()]


@dataclass(frozen=True)
class Provider:
    name: str
    api_base_url: str
    api_key: Secret
    models: tuple[str, ...]
    protocol: str
    # A separate key for probing keeps probe spend apart from production traffic.
    probe_api_key: Secret | None = None
    # The URL the proxy itself calls (perfgen/endpoints.py); None: the protocol's rule,
    # as with an api_base_url or protocol override in [performance.providers.NAME].
    endpoint: str | None = None
    # [performance.providers.NAME] capability keys: (model glob, keys), "*" provider-wide.
    capability_overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()

    def capabilities(self, model: str) -> Capabilities:
        """What a probe request to `model` looks like (perfgen/capabilities.py)."""
        return resolve_capabilities(self.protocol, self.name, model, self.capability_overrides)

    @property
    def key_for_probing(self) -> Secret:
        return self.probe_api_key or self.api_key


@dataclass(frozen=True)
class Target:
    provider: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, text: str) -> Target:
        # First ':' splits: model names such as qwen2.5-coder:latest keep theirs.
        provider, found, model = text.partition(":")
        if not found or not provider or not model:
            raise ValueError(f"{text!r} is not 'provider:model'")
        return cls(provider, model)


@dataclass(frozen=True)
class Module:
    """How one kind of probe talks to a model."""

    name: str
    prompts: tuple[str, ...]
    max_tokens: int
    timeout_seconds: float
    runs: int = 1
    concurrency: int = 1
    input_tokens: int = 0  # pad the prompt to about this many tokens (long-prompt scenarios)
    expected_response: str | None = None  # regex the answer must match
    # No sampling parameter is sent unless set: reasoning models refuse all but the default.
    temperature: float | None = None
    # Sent where the model family takes one ("lowest": the family's lowest effort).
    reasoning_effort: str | None = None

    @property
    def baseline(self) -> bool:
        """Measures the model under no extra load: one stream at a time, the prompt as
        written. Only these modules feed the score's latency and throughput figures."""
        return self.input_tokens == 0 and self.concurrency == 1

    @property
    def output_tokens_per_probe(self) -> int:
        """The most output tokens one probe can spend (its budget reservation)."""
        return self.max_tokens * self.runs * self.concurrency


_SHORT_PROMPTS = (
    "Explain in one sentence what a hash map is.",
    "Name three prime numbers and say why each is prime.",
    "What does HTTP status 429 mean? Answer briefly.",
    "Give one tip for writing readable Python code.",
    "In one sentence, what is a p95 latency?",
)
_LONG_PROMPTS = (
    "Write a detailed, step-by-step explanation of how TCP congestion control works.",
    "Write a short story of several paragraphs about a lighthouse keeper.",
    "Explain, with examples, the differences between processes, threads and coroutines.",
)

BUILTIN_MODULES: dict[str, Module] = {
    "latency": Module("latency", _SHORT_PROMPTS, max_tokens=16, timeout_seconds=30),
    "throughput": Module("throughput", _LONG_PROMPTS, max_tokens=256, timeout_seconds=60),
    "concurrent": Module(
        "concurrent", _SHORT_PROMPTS, max_tokens=64, timeout_seconds=60, concurrency=4
    ),
    # Reasoning models think before they answer, and their cap covers the thinking: 8
    # tokens would end every one of them mid-thought. 128 at the lowest effort lets them
    # answer; a model that just says OK still stops after two tokens.
    "health": Module(
        "health",
        ("Reply with: OK",),
        max_tokens=128,
        timeout_seconds=15,
        expected_response=r"(?i)\bok\b",
        reasoning_effort=LOWEST,
    ),
    "long_context": Module(
        "long_context", _SHORT_PROMPTS, max_tokens=16, timeout_seconds=60, input_tokens=8000
    ),
}


@dataclass(frozen=True)
class Thresholds:
    max_latency_ms: float = 5000.0  # applies to p95 time to first token
    min_throughput_tokens_per_sec: float = 10.0  # applies to the mean decode rate
    min_success_rate: float = 0.95


@dataclass(frozen=True)
class Weights:
    latency: float = 0.4
    throughput: float = 0.4
    reliability: float = 0.2


@dataclass(frozen=True)
class Scenario:
    name: str
    weights: Weights | None = None  # None: the global weights
    thresholds: Thresholds | None = None  # None: the global thresholds
    candidates: tuple[Route, ...] = ()  # empty: the routes already in the scenario's chain


@dataclass(frozen=True)
class GeneratorSettings:
    hysteresis_margin: float = 0.05
    hysteresis_for: str = "15m"
    max_chain: int = 3
    stale_after: str | None = None  # None: three probe intervals
    # How sure a challenger's lead must be, given the windows' standard errors, before it
    # takes a place (a one-sided level, as success_rate_confidence); 0: the margin alone.
    switch_confidence: float = 0.0


@dataclass(frozen=True)
class ExporterSettings:
    scrape_timeout_offset_seconds: float = 0.5
    log_format: str = "logfmt"
    backoff_initial_seconds: float = 30.0
    # Bearer token of the management API's POST/DELETE, always `$ENV_NAME`; None: disabled.
    management_token: Secret | None = None
    # What one provider's answer may make a probe hold (docs/security.md): a longer SSE
    # line or event fails the request as bad_stream; of the answer text, only this many
    # bytes are kept for expected_response (none when the module has no pattern).
    max_sse_line_bytes: int = 1 << 20
    max_sse_event_bytes: int = 1 << 20
    max_answer_bytes: int = 64 << 10


@dataclass(frozen=True)
class Price:
    """`[performance.prices."provider:model"]`: dollars per million tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def dollars(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1e6


@dataclass(frozen=True)
class AdaptiveSettings:
    """`[performance.adaptive]`: probe a target sooner when a probe may change a route."""

    enabled: bool = False
    min_interval_minutes: float = 5.0  # never sooner than this; at most test_interval_minutes
    # The watch probes a leader whose result just started to look degraded again this
    # soon, once, so that a change is confirmed (or a fluke diluted) before the next
    # minimum interval (exporter/adaptive.py). 0: off.
    confirm_after_seconds: float = 0.0


# `[performance.score] form`: how the latency and throughput components follow their
# figure (docs/rules-and-alerts.md#the-performance-score).
SCORE_RATIO = "ratio"  # R / (R + p95), decode / (decode + R): 0.5 at the reference
SCORE_CAPPED = "capped"  # min(1, R / p95), min(1, decode / R): 1 at or past the reference
SCORE_FORMS = (SCORE_RATIO, SCORE_CAPPED)
# `[performance.score] latency_statistic`: which figure of the window's TTFTs the latency
# component reads (the thresholds and alerts keep the p95). Each value is the suffix of
# the recording rule it reads, provider_model:llm_ttft_seconds:<value>_<window>.
LATENCY_P95 = "p95"  # the tail: one slow first token moves it at once, and for a window
LATENCY_MEAN = "mean"  # what users wait on average: moves by each sample's share
LATENCY_STATISTICS = (LATENCY_P95, LATENCY_MEAN)


@dataclass(frozen=True)
class ScoreSettings:
    """`[performance.score]`: what the score's latency and throughput components are
    relative to, separate from the pass/fail thresholds (None: the scenario's threshold),
    and their form.

    `ratio`: a component is `R / (R + p95)` and `decode / (decode + R)`; it changes fastest
    around its reference, so a reference near the models' own figures makes a 3x slowdown
    a large score change. `capped` (the proxy spec's in-process form): `min(1, R / p95)`
    and `min(1, decode / R)`; every model at or past a reference scores 1 on it, so the
    other component ranks them, and no sampling noise moves a component that is capped.
    `latency_statistic` picks the latency figure (`p95` above, or `mean`): the window's
    p95 TTFT or its mean TTFT.
    """

    latency_reference_ms: float | None = None
    throughput_reference_tokens_per_sec: float | None = None
    # `F / (F + failure ratio)`: the failure ratio scoring 0.5 (None: 1 - min_success_rate).
    failure_ratio_reference: float | None = None
    form: str = SCORE_RATIO  # one of SCORE_FORMS
    latency_statistic: str = LATENCY_P95  # one of LATENCY_STATISTICS


@dataclass(frozen=True)
class Performance:
    enabled: bool = True
    test_interval_minutes: float = 60.0
    test_timeout_seconds: float = 30.0
    max_concurrent_tests: int = 3
    min_test_count: int = 5
    window: str = "1h"
    # min_success_rate is judged by the success ratio's one-sided upper confidence bound
    # at this level (Wilson score interval), not by the ratio: one failure among a few
    # requests is not evidence of a failure rate above the threshold. 0: the plain ratio.
    success_rate_confidence: float = 0.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    weights: Weights = field(default_factory=Weights)
    targets: tuple[Target, ...] = ()
    sd_modules: tuple[str, ...] = ("latency", "throughput")
    max_output_tokens_per_hour: int = 20000  # 0 = unlimited
    modules: Mapping[str, Module] = field(default_factory=lambda: dict(BUILTIN_MODULES))
    scenarios: Mapping[str, Scenario] = field(default_factory=dict)
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    exporter: ExporterSettings = field(default_factory=ExporterSettings)
    adaptive: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    prices: Mapping[Target, Price] = field(default_factory=dict)
    max_dollars_per_hour: float = 0.0  # 0 = no money budget (the token budget still holds)

    def scenario_weights(self, scenario: str) -> Weights:
        own = self.scenarios.get(scenario)
        return own.weights if own and own.weights else self.weights

    def scenario_thresholds(self, scenario: str) -> Thresholds:
        own = self.scenarios.get(scenario)
        return own.thresholds if own and own.thresholds else self.thresholds


@dataclass(frozen=True)
class Config:
    path: str
    providers: Mapping[str, Provider]
    performance: Performance
    router: Mapping[str, Any]  # the raw [router] table, for the generator
    # Accepted but worth a look (a weak literal key); shown at load and on reload.
    warnings: tuple[str, ...] = ()

    def provider_for(self, target: Target) -> Provider | None:
        provider = self.providers.get(target.provider)
        if provider is None or target.model not in provider.models:
            return None
        return provider

    def module(self, name: str) -> Module | None:
        return self.performance.modules.get(name)


# --------------------------------------------------------------------------- parsing

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def url_problem(url: str) -> str | None:
    """Why aiohttp could not connect to `url` (None when it could); never echoes the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError as exc:
        return f"cannot be parsed ({exc})"
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http:// or https://"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    return None


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as `1h`, `15m` or `1h30m`."""
    match = _DURATION_RE.match(text) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


class _Reader:
    """Typed access to one TOML table that records which keys were read."""

    def __init__(self, path: str, prefix: str, table: Any) -> None:
        self.path, self.prefix = path, prefix
        if not isinstance(table, dict):
            raise ConfigError(path, prefix, f"must be a table, got {_type_name(table)}")
        self.table = table
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), message)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python, but `max_chain = true` is a mistake, not a 1.
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {_kind_names(kinds)}, got a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {_kind_names(kinds)}, got {_type_name(value)}")
        # TOML has nan and inf; nan passes every range check (all comparisons are false).
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(name, f"must be a finite number, got {value}")
        return value

    def url(self, name: str, *, required: bool = False) -> str | None:
        """An http(s) URL that aiohttp can connect to (host present, port valid)."""
        value = self.get(name, str)
        if not value:
            if required:
                raise self.error(name, "is required and must be an http(s) URL")
            return None if value is None else self._bad_url(name, "is empty")
        problem = url_problem(value)
        if problem:
            self._bad_url(name, problem)
        return value

    def _bad_url(self, name: str, problem: str) -> NoReturn:
        raise self.error(name, f"must be an http(s) URL: {problem}")

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_min: bool = False,
    ) -> float:
        value = self.get(name, float, default)
        if minimum is not None and (value < minimum or (exclusive_min and value == minimum)):
            bound = f"greater than {minimum:g}" if exclusive_min else f"at least {minimum:g}"
            raise self.error(name, f"must be {bound}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum:g}, got {value:g}")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        value = self.get(name, int, default)
        if value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum}, got {value}")
        return value

    def duration(self, name: str, default: str | None) -> str | None:
        value = self.get(name, str, default)
        if value is not None:
            try:
                duration_seconds(value)
            except ValueError as exc:
                raise self.error(name, str(exc)) from None
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(name, list, None)
        if value is None:
            return default
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise ConfigError(
                    self.path, f"{self.key(name)}[{index}]", "must be a non-empty string"
                )
        return tuple(value)

    def sub(self, name: str) -> _Reader | None:
        self.seen.add(name)
        if name not in self.table:
            return None
        return _Reader(self.path, self.key(name), self.table[name])

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")


def _type_name(value: Any) -> str:
    return {
        dict: "a table",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def infer_protocol(provider_name: str) -> str | None:
    """The wire format the proxy would use for a provider of this name (None: unsupported)."""
    name = provider_name.lower()
    if name in _UNSUPPORTED_NAMES:
        return None
    return "anthropic" if name in _ANTHROPIC_NAMES else "openai"


def _parse_providers(
    path: str, raw: Any, overrides: Mapping[str, Mapping[str, Any]], warnings: list[str]
) -> dict[str, Provider]:
    if raw is None:
        raise ConfigError(path, "providers", "at least one [[providers]] entry is required")
    if not isinstance(raw, list):
        raise ConfigError(path, "providers", "must be an array of tables ([[providers]])")
    providers: dict[str, Provider] = {}
    for index, table in enumerate(raw):
        reader = _Reader(path, f"providers[{index}]", table)
        name = reader.get("name", str)
        if not name:
            raise reader.error("name", "is required and must be a non-empty string")
        reader.prefix = f"providers[{index}] ({name})"
        if name in providers:
            raise reader.error("name", f"provider {name!r} is defined twice")
        base_url = reader.url("api_base_url", required=True)
        assert base_url is not None  # required: url() raised a ConfigError otherwise
        key = reader.get("api_key", str)
        if not key:
            raise reader.error("api_key", "is required and must be non-empty ($NAME = env var)")
        weak = weak_literal_key(key)
        if weak:
            warnings.append(f"{path}: {reader.key('api_key')}: {weak}")
        models = reader.strings("models")
        if not models:
            raise reader.error("models", "is required and must be a non-empty list")
        override = overrides.get(name, {})
        protocol = override.get("protocol") or infer_protocol(name)
        if protocol is None:
            raise ConfigError(
                path,
                f"performance.providers.{name}.protocol",
                f"provider {name!r} speaks a protocol perfgen cannot probe; set protocol = "
                '"openai" and an OpenAI-compatible api_base_url to probe it',
            )
        probe_key = override.get("probe_api_key")
        providers[name] = Provider(
            name=name,
            api_base_url=override.get("api_base_url") or base_url,
            api_key=Secret(key),
            models=models,
            protocol=protocol,
            probe_api_key=Secret(probe_key) if probe_key else None,
            endpoint=None
            if override.get("api_base_url") or override.get("protocol")
            else proxy_endpoint(name, base_url),
            capability_overrides=override.get("capabilities", ()),
        )
    return providers


def _parse_provider_overrides(
    perf: _Reader | None, warnings: list[str]
) -> dict[str, dict[str, Any]]:
    section = perf.sub("providers") if perf else None
    if section is None:
        return {}
    overrides: dict[str, dict[str, Any]] = {}
    for name in section.table:
        reader = section.sub(name)
        assert reader is not None
        protocol = reader.get("protocol", str)
        if protocol is not None and protocol not in PROTOCOLS:
            raise reader.error("protocol", f"must be one of {', '.join(PROTOCOLS)}")
        probe_key = reader.get("probe_api_key", str)
        if probe_key is not None and not probe_key:
            raise reader.error("probe_api_key", "must be non-empty ($NAME = env var)")
        weak = weak_literal_key(probe_key or "$")
        if weak:
            warnings.append(f"{reader.path}: {reader.key('probe_api_key')}: {weak}")
        base_url = reader.url("api_base_url")
        capabilities = [("*", _parse_capabilities(reader))]
        models = reader.sub("models")
        if models is not None:
            for pattern in models.table:
                model_reader = models.sub(pattern)
                assert model_reader is not None
                capabilities.append((pattern, _parse_capabilities(model_reader)))
                model_reader.reject_unknown()
        reader.reject_unknown()
        overrides[name] = {
            "protocol": protocol,
            "probe_api_key": probe_key,
            "api_base_url": base_url,
            "capabilities": tuple((p, c) for p, c in capabilities if c),
        }
    return overrides


def _parse_capabilities(reader: _Reader) -> dict[str, Any]:
    """The capability keys set in one table (perfgen/capabilities.py); unset keys are absent."""
    found: dict[str, Any] = {}
    field = reader.get("max_tokens_field", str)
    if field is not None:
        if field not in MAX_TOKENS_FIELDS:
            raise reader.error("max_tokens_field", f"must be one of {', '.join(MAX_TOKENS_FIELDS)}")
        found["max_tokens_field"] = field
    stream_options = reader.get("stream_options", bool)
    if stream_options is not None:
        found["stream_options"] = stream_options
    for name in ("reasoning_effort", "lowest_effort"):
        effort = _effort(reader, name, allow_lowest=False)
        if effort is not None:
            found[name] = effort
    budget = reader.get("thinking_budget_tokens", int)
    if budget is not None:
        if budget < MIN_THINKING_BUDGET:
            raise reader.error(
                "thinking_budget_tokens",
                f"must be at least {MIN_THINKING_BUDGET} (Anthropic's minimum), got {budget}",
            )
        found["thinking_budget_tokens"] = budget
    assert set(found) <= set(CAPABILITY_FIELDS)
    return found


def _effort(reader: _Reader, name: str, *, allow_lowest: bool) -> str | None:
    value = reader.get(name, str)
    known = (LOWEST, *REASONING_EFFORTS) if allow_lowest else REASONING_EFFORTS
    if value is not None and value not in known:
        raise reader.error(name, f"must be one of {', '.join(known)}, got {value!r}")
    return value


def _parse_thresholds(reader: _Reader, base: Thresholds) -> Thresholds:
    result = Thresholds(
        max_latency_ms=reader.number(
            "max_latency_ms", base.max_latency_ms, minimum=0, exclusive_min=True
        ),
        min_throughput_tokens_per_sec=reader.number(
            "min_throughput_tokens_per_sec", base.min_throughput_tokens_per_sec, minimum=0
        ),
        min_success_rate=reader.number(
            "min_success_rate", base.min_success_rate, minimum=0, maximum=1
        ),
    )
    reader.reject_unknown()
    return result


def _parse_weights(reader: _Reader) -> Weights:
    values = {
        # A weight left out of a weights table is 0: the table must still sum to 1.
        name: reader.number(name, 0.0, minimum=0, maximum=1)
        for name in ("latency", "throughput", "reliability")
    }
    reader.reject_unknown()
    total = sum(values.values())
    if abs(total - 1.0) > 1e-6:
        parts = " + ".join(f"{v:g}" for v in values.values())
        message = f"weights must sum to 1 ({parts} = {total:g})"
        raise ConfigError(reader.path, reader.prefix, message)
    return Weights(**values)


def _parse_module(reader: _Reader, name: str, base: Module) -> Module:
    prompts = reader.strings("prompts", base.prompts)
    if not prompts:
        raise reader.error("prompts", "must list at least one prompt")
    expected = reader.get("expected_response", str, base.expected_response)
    if expected is not None:
        try:
            re.compile(expected)
        except re.error as exc:
            raise reader.error("expected_response", f"is not a valid regex: {exc}") from None
    module = Module(
        name=name,
        prompts=prompts,
        max_tokens=reader.integer("max_tokens", base.max_tokens, minimum=1),
        timeout_seconds=reader.number(
            "timeout_seconds", base.timeout_seconds, minimum=0, exclusive_min=True
        ),
        runs=reader.integer("runs", base.runs, minimum=1),
        concurrency=reader.integer("concurrency", base.concurrency, minimum=1),
        input_tokens=reader.integer("input_tokens", base.input_tokens, minimum=0),
        expected_response=expected,
        temperature=_temperature(reader, base.temperature),
        reasoning_effort=_effort(reader, "reasoning_effort", allow_lowest=True)
        if "reasoning_effort" in reader.table
        else base.reasoning_effort,
    )
    reader.reject_unknown()
    return module


def _temperature(reader: _Reader, default: float | None) -> float | None:
    if "temperature" not in reader.table:
        reader.seen.add("temperature")
        return default
    return reader.number("temperature", 0.0, minimum=0, maximum=2)


def _parse_modules(perf: _Reader, timeout: float) -> dict[str, Module]:
    # The global test_timeout_seconds caps every module's own timeout.
    modules = {
        name: replace(module, timeout_seconds=min(module.timeout_seconds, timeout))
        for name, module in BUILTIN_MODULES.items()
    }
    section = perf.sub("modules")
    if section is None:
        return modules
    for name in section.table:
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise section.error(name, "module names are lower_snake_case")
        reader = section.sub(name)
        assert reader is not None
        # A user-defined module starts from the latency module's defaults.
        base = modules.get(name, replace(modules["latency"], name=name))
        module = _parse_module(reader, name, base)
        modules[name] = replace(module, timeout_seconds=min(module.timeout_seconds, timeout))
    return modules


def _parse_targets(
    perf: _Reader, providers: Mapping[str, Provider], modules: Mapping[str, Module]
) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    section = perf.sub("test_models")
    if section is None:
        # Nothing listed: every configured model is a target.
        every = tuple(Target(p.name, m) for p in providers.values() for m in p.models)
        return every, Performance.sd_modules
    listed_providers = section.strings("providers")
    for index, name in enumerate(listed_providers):
        if name not in providers:
            raise ConfigError(
                section.path,
                f"{section.key('providers')}[{index}]",
                f"provider {name!r} is not defined in [[providers]]",
            )
    targets: list[Target] = []
    for index, text in enumerate(section.strings("models")):
        key = f"{section.key('models')}[{index}]"
        try:
            target = Target.parse(text)
        except ValueError as exc:
            raise ConfigError(section.path, key, str(exc)) from None
        provider = providers.get(target.provider)
        if provider is None:
            raise ConfigError(section.path, key, f"provider {target.provider!r} is not defined")
        if listed_providers and target.provider not in listed_providers:
            raise ConfigError(
                section.path, key, f"provider {target.provider!r} is not in test_models.providers"
            )
        if target.model not in provider.models:
            raise ConfigError(
                section.path,
                key,
                f"model {target.model!r} is not in provider {target.provider!r}'s models",
            )
        if target not in targets:
            targets.append(target)
    # A listed provider with no model named in `models` is tested on all its models.
    named = {t.provider for t in targets}
    for name in listed_providers:
        if name not in named:
            targets.extend(Target(name, m) for m in providers[name].models)
    sd_modules = section.strings("modules", Performance.sd_modules)
    for index, module in enumerate(sd_modules):
        if module not in modules:
            raise ConfigError(
                section.path,
                f"{section.key('modules')}[{index}]",
                f"unknown module {module!r} (known: {', '.join(sorted(modules))})",
            )
    section.reject_unknown()
    return tuple(targets), sd_modules


def _parse_scenarios(
    perf: _Reader, providers: Mapping[str, Provider], thresholds: Thresholds
) -> dict[str, Scenario]:
    section = perf.sub("scenarios")
    if section is None:
        return {}
    scenarios: dict[str, Scenario] = {}
    for name in section.table:
        if name not in SCENARIOS:
            raise section.error(name, f"unknown scenario (known: {', '.join(SCENARIOS)})")
        reader = section.sub(name)
        assert reader is not None
        weights_reader = reader.sub("weights")
        thresholds_reader = reader.sub("thresholds")
        candidates: list[Route] = []
        for index, text in enumerate(reader.strings("candidates")):
            key = f"{reader.key('candidates')}[{index}]"
            try:
                route = Route.parse(text)
            except ValueError as exc:
                raise ConfigError(reader.path, key, str(exc)) from None
            provider = providers.get(route.provider)
            if provider is None or route.model not in provider.models:
                raise ConfigError(
                    reader.path, key, f"{text!r} names no model of a configured provider"
                )
            candidates.append(route)
        reader.reject_unknown()
        scenarios[name] = Scenario(
            name=name,
            weights=_parse_weights(weights_reader) if weights_reader else None,
            thresholds=_parse_thresholds(thresholds_reader, thresholds)
            if thresholds_reader
            else None,
            candidates=tuple(candidates),
        )
    return scenarios


def _parse_generator(perf: _Reader, score: ScoreSettings) -> GeneratorSettings:
    reader = perf.sub("generator")
    if reader is None:
        return GeneratorSettings()
    base = GeneratorSettings()
    confidence = _parse_confidence(
        reader, "switch_confidence", base.switch_confidence, "the margin alone"
    )
    # The recording rules give the standard error of the window's mean TTFT; a p95 has
    # none they could record, and a lead judged without the latency's noise would not be
    # the confidence the key promises.
    if confidence and score.latency_statistic != LATENCY_MEAN:
        raise reader.error(
            "switch_confidence",
            '[performance.score] latency_statistic = "mean" is required: the standard '
            "error is of the window's mean TTFT",
        )
    settings = GeneratorSettings(
        hysteresis_margin=reader.number(
            "hysteresis_margin", base.hysteresis_margin, minimum=0, maximum=1
        ),
        hysteresis_for=reader.duration("hysteresis_for", base.hysteresis_for) or "0s",
        max_chain=reader.integer("max_chain", base.max_chain, minimum=1),
        stale_after=reader.duration("stale_after", None),
        switch_confidence=confidence,
    )
    reader.reject_unknown()
    return settings


def _parse_exporter(perf: _Reader) -> ExporterSettings:
    reader = perf.sub("exporter")
    if reader is None:
        return ExporterSettings()
    base = ExporterSettings()
    log_format = reader.get("log_format", str, base.log_format)
    if log_format not in ("logfmt", "json"):
        raise reader.error("log_format", 'must be "logfmt" or "json"')
    token = reader.get("management_token", str)
    # Only a reference: this file is the proxy's config, often committed or shared, and a
    # token written into it would be readable by everyone who can read the file.
    if token is not None and not re.match(r"^\$[A-Za-z_][A-Za-z0-9_]*$", token):
        raise reader.error(
            "management_token",
            'must be "$ENV_NAME", the environment variable holding the token '
            "(a literal token in the file is refused)",
        )
    settings = ExporterSettings(
        scrape_timeout_offset_seconds=reader.number(
            "scrape_timeout_offset_seconds", base.scrape_timeout_offset_seconds, minimum=0
        ),
        log_format=log_format,
        backoff_initial_seconds=reader.number(
            "backoff_initial_seconds",
            base.backoff_initial_seconds,
            minimum=0,
            exclusive_min=True,
        ),
        management_token=Secret(token) if token is not None else None,
        max_sse_line_bytes=_byte_cap(reader, "max_sse_line_bytes", base.max_sse_line_bytes),
        max_sse_event_bytes=_byte_cap(reader, "max_sse_event_bytes", base.max_sse_event_bytes),
        max_answer_bytes=_byte_cap(reader, "max_answer_bytes", base.max_answer_bytes),
    )
    reader.reject_unknown()
    return settings


def _parse_adaptive(perf: _Reader, interval_minutes: float) -> AdaptiveSettings:
    reader = perf.sub("adaptive")
    if reader is None:
        return AdaptiveSettings()
    base = AdaptiveSettings()
    # The default never exceeds a short interval (the demo probes every 15 s).
    default = min(base.min_interval_minutes, interval_minutes)
    minimum = reader.number("min_interval_minutes", default, minimum=0, exclusive_min=True)
    if minimum > interval_minutes:
        raise reader.error(
            "min_interval_minutes",
            f"must be at most test_interval_minutes ({interval_minutes:g}), got {minimum:g}",
        )
    confirm = reader.number("confirm_after_seconds", base.confirm_after_seconds, minimum=0)
    if confirm > minimum * 60:
        raise reader.error(
            "confirm_after_seconds",
            f"must be at most min_interval_minutes ({minimum:g} min = {minimum * 60:g} s), "
            f"got {confirm:g}",
        )
    settings = AdaptiveSettings(
        enabled=reader.get("enabled", bool, base.enabled),
        min_interval_minutes=minimum,
        confirm_after_seconds=confirm,
    )
    reader.reject_unknown()
    return settings


def _parse_score(perf: _Reader) -> ScoreSettings:
    reader = perf.sub("score")
    if reader is None:
        return ScoreSettings()
    values: dict[str, float | None] = {}
    form = reader.get("form", str, SCORE_RATIO)
    if form not in SCORE_FORMS:
        raise reader.error("form", f"must be one of {', '.join(SCORE_FORMS)}, got {form!r}")
    statistic = reader.get("latency_statistic", str, LATENCY_P95)
    if statistic not in LATENCY_STATISTICS:
        raise reader.error(
            "latency_statistic",
            f"must be one of {', '.join(LATENCY_STATISTICS)}, got {statistic!r}",
        )
    # name -> upper bound: every reference is greater than 0; a ratio is at most 1.
    for name, maximum in (
        ("latency_reference_ms", None),
        ("throughput_reference_tokens_per_sec", None),
        ("failure_ratio_reference", 1.0),
    ):
        if reader.get(name, float) is not None:
            values[name] = reader.number(name, 0.0, minimum=0, maximum=maximum, exclusive_min=True)
    settings = ScoreSettings(
        latency_reference_ms=values.get("latency_reference_ms"),
        throughput_reference_tokens_per_sec=values.get("throughput_reference_tokens_per_sec"),
        failure_ratio_reference=values.get("failure_ratio_reference"),
        form=form,
        latency_statistic=statistic,
    )
    reader.reject_unknown()
    return settings


def _parse_confidence(reader: _Reader, name: str, default: float, off: str) -> float:
    """A one-sided confidence level: 0 (`off` says what that means), or in [0.5, 1)."""
    value = reader.number(name, default, minimum=0)
    # Below 0.5 the bound would lie on the wrong side of the estimate; at 1 it is infinite.
    if value != 0 and not MIN_CONFIDENCE <= value < 1:
        raise reader.error(
            name, f"must be 0 ({off}) or at least {MIN_CONFIDENCE:g} and below 1, got {value:g}"
        )
    return value


def _byte_cap(reader: _Reader, name: str, default: int) -> int:
    # Below 1 KiB real chunks would be refused; above 64 MiB the cap protects nothing.
    return reader.integer(name, default, minimum=1024, maximum=64 << 20)


def _parse_budget(perf: _Reader, default: int) -> tuple[int, float]:
    reader = perf.sub("budget")
    if reader is None:
        return default, 0.0
    value = reader.integer("max_output_tokens_per_hour", default, minimum=0)
    dollars = reader.number("max_dollars_per_hour", 0.0, minimum=0)
    reader.reject_unknown()
    return value, dollars


def _parse_prices(perf: _Reader, providers: Mapping[str, Provider]) -> dict[Target, Price]:
    reader = perf.sub("prices")
    if reader is None:
        return {}
    prices: dict[Target, Price] = {}
    for name in list(reader.table):
        try:
            target = Target.parse(name)
        except ValueError as exc:
            raise reader.error(name, str(exc)) from None
        provider = providers.get(target.provider)
        if provider is None or target.model not in provider.models:
            raise reader.error(name, "names no model of a provider in [[providers]]")
        table = reader.sub(name)
        if table is None or not isinstance(table.table, dict):
            raise reader.error(name, "must be a table { input_per_million, output_per_million }")
        prices[target] = Price(
            input_per_million=table.number("input_per_million", 0.0, minimum=0),
            output_per_million=table.number("output_per_million", 0.0, minimum=0),
        )
        table.reject_unknown()
    return prices


def _parse_performance(
    path: str, raw: Any, providers_raw: Any, warnings: list[str]
) -> tuple[Performance, dict[str, Provider]]:
    perf = _Reader(path, "performance", raw if raw is not None else {})
    overrides = _parse_provider_overrides(perf, warnings)
    providers = _parse_providers(path, providers_raw, overrides, warnings)
    for name in overrides:
        if name not in providers:
            raise ConfigError(
                path, f"performance.providers.{name}", "names no provider defined in [[providers]]"
            )
    base = Performance()
    timeout = perf.number(
        "test_timeout_seconds", base.test_timeout_seconds, minimum=0, exclusive_min=True
    )
    thresholds_reader = perf.sub("thresholds")
    thresholds = (
        _parse_thresholds(thresholds_reader, Thresholds()) if thresholds_reader else Thresholds()
    )
    weights_reader = perf.sub("weights")
    modules = _parse_modules(perf, timeout)
    targets, sd_modules = _parse_targets(perf, providers, modules)
    interval = perf.number(
        "test_interval_minutes", base.test_interval_minutes, minimum=0, exclusive_min=True
    )
    tokens_per_hour, dollars_per_hour = _parse_budget(perf, base.max_output_tokens_per_hour)
    score = _parse_score(perf)
    performance = Performance(
        enabled=perf.get("enabled", bool, True),
        test_interval_minutes=interval,
        test_timeout_seconds=timeout,
        max_concurrent_tests=perf.integer(
            "max_concurrent_tests", base.max_concurrent_tests, minimum=1
        ),
        min_test_count=perf.integer("min_test_count", base.min_test_count, minimum=1),
        window=perf.duration("window", base.window) or base.window,
        success_rate_confidence=_parse_confidence(
            perf, "success_rate_confidence", base.success_rate_confidence, "judge the plain ratio"
        ),
        thresholds=thresholds,
        weights=_parse_weights(weights_reader) if weights_reader else Weights(),
        targets=targets,
        sd_modules=sd_modules,
        max_output_tokens_per_hour=tokens_per_hour,
        modules=modules,
        scenarios=_parse_scenarios(perf, providers, thresholds),
        generator=_parse_generator(perf, score),
        exporter=_parse_exporter(perf),
        adaptive=_parse_adaptive(perf, interval),
        score=score,
        prices=_parse_prices(perf, providers),
        max_dollars_per_hour=dollars_per_hour,
    )
    perf.reject_unknown()
    return performance, providers


def parse_config(text: str, path: str | os.PathLike[str] = "<config>") -> Config:
    path = str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    warnings: list[str] = []
    performance, providers = _parse_performance(
        path, document.get("performance"), document.get("providers"), warnings
    )
    router = document.get("router", {})
    if not isinstance(router, dict):
        raise ConfigError(path, "router", "must be a table")
    return Config(
        path=path,
        providers=providers,
        performance=performance,
        router=router,
        warnings=tuple(warnings),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a proxy config.toml; raises ConfigError naming file and key."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path,
            "",
            f"not UTF-8 (TOML files must be): byte 0x{data[exc.start]:02x} "
            f"at offset {exc.start}, line {line}",
        ) from None
    return parse_config(text, path)


# Shorter values are not secrets worth the name, and replacing them everywhere they occur
# would mangle ordinary text (a 4-letter key would be cut out of every word holding it).
MIN_SECRET_LENGTH = 8
# Stand-in keys that local servers (Ollama, vLLM, LM Studio, llama.cpp) accept as "a key":
# they guard nothing, so they are left in text rather than cut out of every word.
STAND_IN_KEYS = frozenset(
    {
        "ollama",
        "lmstudio",
        "lm-studio",
        "vllm",
        "llamacpp",
        "llama.cpp",
        "none",
        "null",
        "empty",
        "dummy",
        "test",
        "testing",
        "local",
        "localhost",
        "key",
        "apikey",
        "api_key",
        "api-key",
        "secret",
        "token",
        "password",
        "changeme",
        "nokey",
        "no-key",
        "not-needed",
        "not_needed",
        "unused",
        "sk-no-key-required",
        "anything",
        "x",
        "-",
    }
)


def is_redactable(value: str) -> bool:
    """Whether `value` is treated as a secret by redact()."""
    return len(value) >= MIN_SECRET_LENGTH and value.lower() not in STAND_IN_KEYS


def weak_literal_key(key: str) -> str | None:
    """Why a literal key (not `$ENV`) will not be redacted, or None when it will be."""
    if key.startswith("$") or is_redactable(key):
        return None
    why = (
        "a well-known stand-in word"
        if key.lower() in STAND_IN_KEYS
        else f"under {MIN_SECRET_LENGTH} characters"
    )
    return (
        f"literal key is {why}: accepted (local servers such as Ollama take any key) but "
        "not treated as a secret, so it is not redacted from logs; a real key belongs in "
        "an environment variable ($NAME)"
    )


def redact(text: str, secrets: Callable[[], list[str]]) -> str:
    """Replace every known secret value in text; the last line of defence for logs and errors.

    Run it on the whole text before cutting it short: a cut first can leave the start of a
    key at the end of the shortened text, where no longer matching it whole.
    """
    # Longest first: a key that contains another key must go whole, not leave its tail.
    for value in sorted(secrets(), key=len, reverse=True):
        if is_redactable(value):
            text = text.replace(value, "<redacted>")
    return text


# scheme://[userinfo@]host[path][?query][#fragment] as it appears inside any text.
_URL_IN_TEXT = re.compile(
    r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#@'\"<>]*@)?([^\s/?#'\"<>]*)"
    r"([^\s?#'\"<>]*)(\?[^\s#'\"<>]*)?(#[^\s'\"<>]*)?"
)


def _loggable_match(match: re.Match[str]) -> str:
    scheme, _userinfo, host, path, query, _fragment = match.groups()
    return f"{scheme}{host}{path}" + ("?..." if query else "")


def redact_urls(text: str) -> str:
    """Every URL in `text` without user info, query and fragment (keys hide in all three).

    Works on the text as printed, so a URL that a library re-encoded (yarl quotes a query
    differently from the config file) loses its query too, where replacing the configured
    URL would not match. A removed query leaves `?...`, so that it was there stays visible.
    """
    return _URL_IN_TEXT.sub(_loggable_match, text) if "://" in text else text


def secret_values(config: Config) -> list[str]:
    """The resolvable key values of a config, for redact()."""
    values: list[str] = []
    for provider in config.providers.values():
        for secret in (provider.api_key, provider.probe_api_key):
            if secret is None:
                continue
            try:
                values.append(secret.reveal())
            except KeyError:
                pass
    return values
