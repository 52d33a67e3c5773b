"""Load and validate the simulator's TOML file into frozen dataclasses.

Validation is strict, like blackbox_exporter's: an unknown key is an error, and every
error names the file and the key path, because a typo such as `ttft_ms_` would
otherwise silently leave a demo running with the default profile.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

PROTOCOLS = ("openai", "anthropic")
FAULT_KINDS = (
    "http_429",
    "http_500",
    "http_503",
    "hang",
    "stall",
    "malformed",
    "error_event",
    "empty",
    "http_529",  # Anthropic's overloaded_error status
    "quota",  # insufficient_quota / credit balance too low
    "context_length",  # the prompt is over the model's context window
    "content_filter",  # a few tokens, then the filter stops the answer
)
# Where a model puts its reasoning in the stream (docs/simulator.md, "Reasoning shapes").
REASONING_SHAPES = ("reasoning_content", "reasoning", "reasoning_details", "think_tags", "hidden")
# Where an OpenAI-style stream carries usage.
USAGE_POSITIONS = ("separate_chunk", "finish_chunk", "before_empty_chunk", "after_done")
MAX_TOKENS_FIELDS = ("any", "max_tokens", "max_completion_tokens")


# The modes of simulator/hostile.py (listed here: that module imports this one).
HOSTILE_MODES = (
    "giant_line",
    "giant_event",
    "gzip_bomb",
    "absurd_usage",
    "key_echo",
    "endless",
    "trickle",
)


class ConfigError(ValueError):
    """A config problem, already phrased as `file: key.path: what is wrong`."""


@dataclass(frozen=True, slots=True)
class Profile:
    """How one model behaves; every field can be scripted by phases or PATCHed."""

    ttft_ms: float = 300.0
    ttft_sigma: float = 0.0
    tokens_per_second: float = 50.0
    tps_jitter: float = 0.0
    output_tokens: int = 64
    reasoning_tokens: int = 0
    tokens_per_chunk: int = 1
    include_usage: bool = True
    error_rate: float = 0.0
    faults: Mapping[str, float] = field(default_factory=lambda: {"http_500": 1.0})
    retry_after_seconds: int = 5
    reasoning_shape: str = "reasoning_content"
    usage_position: str = "separate_chunk"
    # The output-cap field the model accepts ("any": both); the other one gets HTTP 400.
    max_tokens_field: str = "any"
    # Request fields the model refuses with HTTP 400 naming them (e.g. "temperature").
    rejected_parameters: tuple[str, ...] = ()
    # A prefix cache: a prompt sharing a long prefix with a recent one is served faster.
    prompt_cache: bool = False
    cache_ttft_factor: float = 0.2
    hostile: str = ""  # "": an honest provider; else a simulator.hostile.HOSTILE_MODES mode
    hostile_bytes: int = 512 << 20  # how much giant_line, giant_event and gzip_bomb send

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["faults"] = dict(self.faults)
        data["rejected_parameters"] = list(self.rejected_parameters)
        return data


PROFILE_FIELDS = tuple(f.name for f in dataclasses.fields(Profile))


@dataclass(frozen=True, slots=True)
class Phase:
    after_seconds: float
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    profile: Profile
    phases: tuple[Phase, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    protocol: str
    models: tuple[ModelConfig, ...]
    api_key: str | None = None

    def model(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if model.name == name:
                return model
        return None


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    providers: tuple[ProviderConfig, ...]
    seed: int | None = None
    source: str = "<memory>"

    def provider(self, name: str) -> ProviderConfig | None:
        for provider in self.providers:
            if provider.name == name:
                return provider
        return None


def load_simulator_config(path: str | Path) -> SimulatorConfig:
    """Read and validate a simulator TOML file; raises ConfigError naming file and key."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    return parse_simulator_config(data, source)


def parse_simulator_config(data: Mapping[str, Any], source: str = "<memory>") -> SimulatorConfig:
    """Validate an already-parsed mapping (the TOML document, or a dict built by a test)."""
    _check_keys(data, {"seed", "providers"}, source, "")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"{source}: seed: must be an integer")
    raw_providers = _list_of_tables(data.get("providers"), source, "providers")
    if not raw_providers:
        raise ConfigError(f"{source}: providers: at least one [[providers]] table is required")
    providers: list[ProviderConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_providers):
        provider = _parse_provider(raw, source, f"providers[{index}]")
        if provider.name in seen:
            raise ConfigError(f"{source}: providers[{index}].name: duplicate {provider.name!r}")
        seen.add(provider.name)
        providers.append(provider)
    return SimulatorConfig(providers=tuple(providers), seed=seed, source=source)


def apply_profile_changes(
    profile: Profile, changes: Mapping[str, Any], where: str = "profile"
) -> Profile:
    """Return `profile` with `changes` applied; the same checks as the file (used by PATCH)."""
    _check_keys(changes, set(PROFILE_FIELDS), "", where)
    merged = profile.to_json()
    merged.update(changes)
    return _build_profile(merged, "", where)


def _parse_provider(raw: Mapping[str, Any], source: str, path: str) -> ProviderConfig:
    _check_keys(raw, {"name", "protocol", "api_key", "models"}, source, path)
    name = _require_str(raw, "name", source, path)
    if "/" in name or name.startswith("-"):
        raise ConfigError(f"{source}: {path}.name: must not contain '/' or start with '-'")
    protocol = raw.get("protocol", "openai")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{source}: {path}.protocol: must be one of {', '.join(PROTOCOLS)}")
    api_key = raw.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        raise ConfigError(f"{source}: {path}.api_key: must be a non-empty string")
    raw_models = _list_of_tables(raw.get("models"), source, f"{path}.models")
    if not raw_models:
        raise ConfigError(f"{source}: {path}.models: at least one model is required")
    models: list[ModelConfig] = []
    for index, raw_model in enumerate(raw_models):
        model = _parse_model(raw_model, source, f"{path}.models[{index}]")
        if any(m.name == model.name for m in models):
            raise ConfigError(f"{source}: {path}.models[{index}].name: duplicate {model.name!r}")
        models.append(model)
    return ProviderConfig(name=name, protocol=protocol, models=tuple(models), api_key=api_key)


def _parse_model(raw: Mapping[str, Any], source: str, path: str) -> ModelConfig:
    _check_keys(raw, {"name", "phases", *PROFILE_FIELDS}, source, path)
    name = _require_str(raw, "name", source, path)
    profile = _build_profile({k: v for k, v in raw.items() if k in PROFILE_FIELDS}, source, path)
    phases: list[Phase] = []
    for index, raw_phase in enumerate(_list_of_tables(raw.get("phases"), source, f"{path}.phases")):
        phase_path = f"{path}.phases[{index}]"
        _check_keys(raw_phase, {"after_seconds", "set"}, source, phase_path)
        after = raw_phase.get("after_seconds")
        if not _is_number(after) or after < 0:
            raise ConfigError(f"{source}: {phase_path}.after_seconds: must be a number >= 0")
        changes = raw_phase.get("set")
        if not isinstance(changes, Mapping) or not changes:
            raise ConfigError(f"{source}: {phase_path}.set: must be a non-empty table")
        _check_keys(changes, set(PROFILE_FIELDS), source, f"{phase_path}.set")
        # Validate the phase against the profile it modifies, so bad values fail at load.
        _build_profile({**profile.to_json(), **changes}, source, f"{phase_path}.set")
        phases.append(Phase(after_seconds=float(after), changes=dict(changes)))
    phases.sort(key=lambda phase: phase.after_seconds)
    return ModelConfig(name=name, profile=profile, phases=tuple(phases))


def _build_profile(raw: Mapping[str, Any], source: str, path: str) -> Profile:
    defaults = Profile()
    values: dict[str, Any] = {}

    def number(key: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
        value = raw.get(key, getattr(defaults, key))
        ok = _is_number(value) and (value > low if low_open else value >= low) and value <= high
        if not ok:
            bound = f"> {low}" if low_open else f">= {low}"
            upper = "" if high == math.inf else f" and <= {high}"
            raise ConfigError(f"{_prefix(source)}{path}.{key}: must be a number {bound}{upper}")
        return float(value)

    def integer(key: str, low: int) -> int:
        value = raw.get(key, getattr(defaults, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{_prefix(source)}{path}.{key}: must be an integer >= {low}")
        return value

    values["ttft_ms"] = number("ttft_ms", 0)
    values["ttft_sigma"] = number("ttft_sigma", 0, 5)
    values["tokens_per_second"] = number("tokens_per_second", 0, low_open=True)
    values["tps_jitter"] = number("tps_jitter", 0, 0.99)
    values["output_tokens"] = integer("output_tokens", 1)
    values["reasoning_tokens"] = integer("reasoning_tokens", 0)
    values["tokens_per_chunk"] = integer("tokens_per_chunk", 1)
    values["error_rate"] = number("error_rate", 0, 1)
    values["retry_after_seconds"] = integer("retry_after_seconds", 0)
    values["hostile_bytes"] = integer("hostile_bytes", 1)
    hostile = raw.get("hostile", defaults.hostile)
    if hostile != "" and hostile not in HOSTILE_MODES:
        raise ConfigError(
            f"{_prefix(source)}{path}.hostile: must be one of {', '.join(HOSTILE_MODES)}"
        )
    values["hostile"] = hostile
    for key in ("include_usage", "prompt_cache"):
        flag = raw.get(key, getattr(defaults, key))
        if not isinstance(flag, bool):
            raise ConfigError(f"{_prefix(source)}{path}.{key}: must be true or false")
        values[key] = flag
    values["cache_ttft_factor"] = number("cache_ttft_factor", 0, 1, low_open=True)
    for key, allowed in (
        ("reasoning_shape", REASONING_SHAPES),
        ("usage_position", USAGE_POSITIONS),
        ("max_tokens_field", MAX_TOKENS_FIELDS),
    ):
        choice = raw.get(key, getattr(defaults, key))
        if choice not in allowed:
            raise ConfigError(f"{_prefix(source)}{path}.{key}: must be one of {', '.join(allowed)}")
        values[key] = choice
    rejected = raw.get("rejected_parameters", list(defaults.rejected_parameters))
    if not isinstance(rejected, list | tuple) or not all(
        isinstance(name, str) and name for name in rejected
    ):
        raise ConfigError(
            f"{_prefix(source)}{path}.rejected_parameters: must be a list of field names"
        )
    values["rejected_parameters"] = tuple(rejected)
    values["faults"] = _parse_faults(raw.get("faults", defaults.faults), source, f"{path}.faults")
    return Profile(**values)


def _parse_faults(raw: Any, source: str, path: str) -> dict[str, float]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{_prefix(source)}{path}: must be a non-empty table of kind = weight")
    _check_keys(raw, set(FAULT_KINDS), source, path)
    faults: dict[str, float] = {}
    for kind, weight in raw.items():
        if not _is_number(weight) or weight < 0:
            raise ConfigError(f"{_prefix(source)}{path}.{kind}: weight must be a number >= 0")
        faults[kind] = float(weight)
    if sum(faults.values()) <= 0:
        raise ConfigError(f"{_prefix(source)}{path}: at least one weight must be > 0")
    return faults


def _check_keys(raw: Any, allowed: set[str], source: str, path: str) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{_prefix(source)}{path or '<root>'}: must be a table")
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise ConfigError(
                f"{_prefix(source)}{where}: unknown key (allowed: {', '.join(sorted(allowed))})"
            )


def _list_of_tables(raw: Any, source: str, path: str) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        raise ConfigError(f"{source}: {path}: must be an array of tables ([[{path}]])")
    return raw


def _require_str(raw: Mapping[str, Any], key: str, source: str, path: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: {path}.{key}: required, must be a non-empty string")
    return value


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _prefix(source: str) -> str:
    # PATCH bodies have no file; their errors start at the key path.
    return f"{source}: " if source else ""
