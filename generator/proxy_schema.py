"""Check a config.toml against what terraphim-llm-proxy accepts (its documented config rules).

The generator runs this on every file before it writes it: a route the proxy would
refuse is worse than a stale one, because the proxy would keep its old routes (reload)
or not start at all (restart). Unknown keys and tables are fine, as they are for the
proxy's serde parser.

`validate_text` returns a list of messages, each naming the dotted key; empty = valid.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from perfgen.config import SCENARIOS, Route

# The [router] keys that hold a route chain: one per routing scenario.
ROUTE_KEYS = SCENARIOS
STRATEGIES = ("FillFirst", "RoundRobin", "LatencyOptimized", "CostOptimized")


def validate_text(text: str) -> list[str]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML: {exc}"]
    return validate(document)


def validate(document: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    providers = _providers(document.get("providers"), errors)
    _proxy(document.get("proxy"), errors)
    _router(document.get("router"), providers, errors)
    return errors


def split_route(text: str) -> tuple[str, str] | None:
    """The proxy's split: first ',' (else first ':'), spaces trimmed; None if malformed.

    The same rule perfgen's own config reader applies (`Route.parse`), so a route the
    generator reads is one this check accepts.
    """
    try:
        route = Route.parse(text)
    except ValueError:
        return None
    return route.provider, route.model


def check_route(key: str, value: Any, providers: Mapping[str, set[str]], errors: list[str]) -> None:
    """A route or `|` chain: every part names a configured provider and one of its models."""
    if not isinstance(value, str):
        errors.append(f"{key}: must be a string route, got {_kind(value)}")
        return
    parts = value.split("|")
    if not value.strip() or any(not part.strip() for part in parts):
        errors.append(f"{key}: empty route in {value!r}")
        return
    for part in parts:
        pair = split_route(part)
        if pair is None:
            errors.append(f"{key}: {part.strip()!r} is not 'provider,model'")
            continue
        provider, model = pair
        if provider not in providers:
            errors.append(f"{key}: provider {provider!r} is not defined in [[providers]]")
        elif model not in providers[provider]:
            errors.append(f"{key}: model {model!r} is not in provider {provider!r}'s models")


def _providers(raw: Any, errors: list[str]) -> dict[str, set[str]]:
    if raw is None:
        errors.append("providers: at least one [[providers]] entry is required")
        return {}
    if not isinstance(raw, list):
        errors.append("providers: must be an array of tables ([[providers]])")
        return {}
    found: dict[str, set[str]] = {}
    for index, table in enumerate(raw):
        key = f"providers[{index}]"
        if not isinstance(table, dict):
            errors.append(f"{key}: must be a table")
            continue
        name = table.get("name")
        if not isinstance(name, str) or not name:
            errors.append(f"{key}.name: required, a non-empty string")
            continue
        for field_name in ("api_base_url", "api_key"):
            value = table.get(field_name)
            if not isinstance(value, str) or not value:
                errors.append(f"{key}.{field_name}: required, a non-empty string")
        models = table.get("models")
        if not isinstance(models, list) or not models:
            errors.append(f"{key}.models: required, a non-empty list of strings")
            models = []
        elif not all(isinstance(m, str) and m for m in models):
            errors.append(f"{key}.models: every model must be a non-empty string")
        transformers = table.get("transformers")
        if transformers is not None and not (
            isinstance(transformers, list) and all(isinstance(t, str) for t in transformers)
        ):
            errors.append(f"{key}.transformers: must be a list of strings")
        if name in found:
            errors.append(f"{key}.name: provider {name!r} is defined twice")
        found[name] = {m for m in models if isinstance(m, str)}
    return found


def _proxy(raw: Any, errors: list[str]) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        errors.append("proxy: must be a table")
        return
    if "host" in raw and not isinstance(raw["host"], str):
        errors.append("proxy.host: must be a string")
    port = raw.get("port")
    if port is not None and not (_is_int(port) and 0 <= port <= 65535):
        errors.append("proxy.port: must be an integer 0..65535")
    if "api_key" in raw and not (isinstance(raw["api_key"], str) and raw["api_key"]):
        errors.append("proxy.api_key: must be a non-empty string")
    if "timeout_ms" in raw and not (_is_int(raw["timeout_ms"]) and raw["timeout_ms"] >= 0):
        errors.append("proxy.timeout_ms: must be a non-negative integer")


def _router(raw: Any, providers: Mapping[str, set[str]], errors: list[str]) -> None:
    if not isinstance(raw, dict):
        errors.append(
            "router: the [router] table is required" if raw is None else "router: must be a table"
        )
        return
    if "default" not in raw:
        errors.append("router.default: required")
    for key in ROUTE_KEYS:
        if key in raw:
            check_route(f"router.{key}", raw[key], providers, errors)
    threshold = raw.get("long_context_threshold")
    if threshold is not None and not (_is_int(threshold) and threshold >= 0):
        errors.append("router.long_context_threshold: must be a non-negative integer")
    strategy = raw.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        errors.append(f"router.strategy: must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    _mappings(raw.get("model_mappings"), providers, errors)
    _exclusions(raw.get("model_exclusions"), errors)


def _mappings(raw: Any, providers: Mapping[str, set[str]], errors: list[str]) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        errors.append("router.model_mappings: must be an array of tables")
        return
    for index, table in enumerate(raw):
        key = f"router.model_mappings[{index}]"
        if not isinstance(table, dict):
            errors.append(f"{key}: must be a table")
            continue
        if not isinstance(table.get("from"), str) or not table.get("from"):
            errors.append(f"{key}.from: required, a non-empty string")
        if "to" not in table:
            errors.append(f"{key}.to: required")
        else:
            check_route(f"{key}.to", table["to"], providers, errors)
        if "bidirectional" in table and not isinstance(table["bidirectional"], bool):
            errors.append(f"{key}.bidirectional: must be true or false")


def _exclusions(raw: Any, errors: list[str]) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        errors.append("router.model_exclusions: must be an array of tables")
        return
    for index, table in enumerate(raw):
        key = f"router.model_exclusions[{index}]"
        if not isinstance(table, dict):
            errors.append(f"{key}: must be a table")
            continue
        if not isinstance(table.get("provider"), str):
            errors.append(f"{key}.provider: required, a string")
        patterns = table.get("patterns")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            errors.append(f"{key}.patterns: required, a list of strings")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {
        dict: "a table",
        list: "a list",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)
