"""The profiles in force right now: the file's, then due phases, then run-time PATCHes.

PATCHes win over phases because an operator poking a running demo means it; `reset`
drops them and restarts the phase clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from perfgen.simulator.config import ModelConfig, Profile, SimulatorConfig, apply_profile_changes


class ProfileBook:
    def __init__(
        self, config: SimulatorConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._models: dict[tuple[str, str], ModelConfig] = {
            (provider.name, model.name): model
            for provider in config.providers
            for model in provider.models
        }
        self._overrides: dict[tuple[str, str], dict[str, Any]] = {}
        # (phases due, override version) -> profile; phases rarely change, requests often.
        self._cache: dict[tuple[str, str], tuple[int, int, Profile]] = {}
        self._version = 0
        self.started = clock()

    def elapsed(self) -> float:
        return self._clock() - self.started

    def current(self, provider: str, model: str) -> Profile:
        key = (provider, model)
        config = self._models[key]
        elapsed = self.elapsed()
        due = sum(1 for phase in config.phases if phase.after_seconds <= elapsed)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == due and cached[1] == self._version:
            return cached[2]
        profile = config.profile
        for phase in config.phases[:due]:
            profile = apply_profile_changes(profile, phase.changes)
        override = self._overrides.get(key)
        if override:
            profile = apply_profile_changes(profile, override)
        self._cache[key] = (due, self._version, profile)
        return profile

    def patch(self, provider: str, model: str, changes: Mapping[str, Any]) -> Profile:
        """Validate and keep `changes`; raises KeyError for an unknown model, ConfigError."""
        key = (provider, model)
        if key not in self._models:
            raise KeyError(key)
        merged = {**self._overrides.get(key, {}), **changes}
        apply_profile_changes(self.current(provider, model), changes, "body")
        self._overrides[key] = merged
        self._version += 1
        return self.current(provider, model)

    def reset(self) -> None:
        self._overrides.clear()
        self._cache.clear()
        self._version += 1
        self.started = self._clock()

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for provider, model in self._models:
            result.setdefault(provider, {})[model] = self.current(provider, model).to_json()
        return result
