"""What terraphim-llm-proxy does with a config.toml: refuse it, or silently skip parts of it.

The rules are the proxy's own loader and router as established from its source (Feb
2026) and from loading files with its parser; docs/configuration.md ("What the proxy
checks") lists them. Three kinds of finding:

- `REFUSES`: the proxy exits 1 at start-up with this file (a serde parse error, a
  `validate()` failure, a host that is not an IP literal). A restart with such a file
  takes the proxy down; the generator never writes one.
- `DROPS`: the proxy starts, but at request time silently skips or never uses this
  entry (an unknown provider, a fallback model not listed exactly, spaces inside a
  route). These are perfgen's own stricter promises: the generator never introduces
  one, and `perfgen validate` fails on them.
- `NOTE`: true and worth knowing, not wrong (a scenario the current proxy never routes
  to, a mapping that bypasses [router], a `$NAME` management secret used literally).

Unknown keys and tables are fine, as they are for the proxy's serde parser
(no `deny_unknown_fields`), which is why [performance] can live in the same file.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perfgen.config import SCENARIOS, Route

# The [router] keys that hold a route chain: one per routing scenario.
ROUTE_KEYS = SCENARIOS
# serde's rename_all = "snake_case": "FillFirst" is an `unknown variant` parse error.
STRATEGIES = ("fill_first", "round_robin", "latency_optimized", "cost_optimized")
# Selected only by a keyword path the running server does not reach.
UNROUTED_SCENARIOS = ("think", "plan_implementation")

REFUSES, DROPS, NOTE = "refuses", "drops", "note"


@dataclass(frozen=True)
class Finding:
    level: str  # REFUSES, DROPS or NOTE
    key: str  # dotted key, e.g. router.default or providers[1].api_key
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class _Findings(list[Finding]):
    def refuses(self, key: str, message: str) -> None:
        self.append(Finding(REFUSES, key, message))

    def drops(self, key: str, message: str) -> None:
        self.append(Finding(DROPS, key, message))

    def note(self, key: str, message: str) -> None:
        self.append(Finding(NOTE, key, message))


def check_text(text: str, env: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding for a file's text; `env`: also check `$NAME` keys resolve in it."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [Finding(REFUSES, "", f"not valid TOML: {exc}")]
    return check(document, env)


def check(document: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[Finding]:
    found = _Findings()
    providers = _providers(document.get("providers"), env, found)
    _proxy(document.get("proxy"), env, found)
    _router(document.get("router"), providers, found)
    _typed_tables(document, found)
    return list(found)


def validate_text(text: str) -> list[str]:
    """What the proxy refuses or silently drops, as 'key: message'; empty = valid."""
    return [str(f) for f in check_text(text) if f.level != NOTE]


def refusals(text: str) -> list[str]:
    """Only what makes the proxy refuse to start."""
    return [str(f) for f in check_text(text) if f.level == REFUSES]


def split_route(text: str) -> tuple[str, str] | None:
    """perfgen's reading of a route: first ',' (else first ':'), trimmed; None if malformed.

    The proxy does not trim the parts of the primary: `check_route` reports spaces.
    """
    try:
        route = Route.parse(text)
    except ValueError:
        return None
    return route.provider, route.model


def check_route(key: str, value: Any, providers: Mapping[str, set[str]], errors: list[str]) -> None:
    """perfgen's promises for a route chain, as messages appended to `errors`."""
    found = _Findings()
    if not isinstance(value, str):
        found.refuses(key, f"must be a string route, got {_kind(value)}")
    else:
        _chain(key, value, providers, found)
    errors.extend(str(f) for f in found if f.level != NOTE)


def _chain(key: str, value: str, providers: Mapping[str, set[str]], found: _Findings) -> None:
    parts = value.split("|")
    if not value.strip():
        found.drops(key, "empty route: the proxy warns and uses the default route")
        return
    for index, part in enumerate(parts):
        where = "the primary" if index == 0 else f"fallback {index}"
        if not part.strip():
            found.drops(key, f"empty entry in {value!r}")
            continue
        if part != part.strip() or any(s != s.strip() for s in part.strip().split(",", 1)):
            # The primary's parts are not trimmed: ' groq' is no provider, ' llama' no model.
            found.drops(key, f"{where} {part!r} has spaces; write 'provider,model' without them")
        pair = split_route(part)
        if pair is None:
            found.drops(key, f"{where} {part.strip()!r} is not 'provider,model': never used")
            continue
        provider, model = pair
        if provider not in providers:
            consequence = (
                "the proxy warns and falls back to the default route"
                if index == 0
                else "silently dropped at request time"
            )
            found.drops(
                key, f"provider {provider!r} of {where} is not in [[providers]]: {consequence}"
            )
        elif model not in providers[provider]:
            consequence = (
                "perfgen routes only to listed models"
                if index == 0
                else "a fallback not listed exactly is silently dropped at request time"
            )
            found.drops(
                key,
                f"model {model!r} of {where} is not in provider {provider!r}'s models: "
                f"{consequence}",
            )


def _expandable(
    key: str, value: str, env: Mapping[str, str] | None, found: _Findings, *, required: bool
) -> None:
    """The proxy's `$NAME` expansion: whole values only, a missing variable is an error."""
    if not value.startswith("$"):
        if required and not value:
            found.refuses(key, "required, a non-empty string (the proxy: 'API key not configured')")
        return
    name = value[1:]
    if name.startswith("{"):
        found.refuses(key, f"{value!r}: the proxy has no ${{NAME}} form; write '${name[1:-1]}'")
    elif not name:
        found.refuses(key, "'$' names no environment variable")
    elif env is not None:
        resolved = env.get(name)
        if resolved is None:
            found.refuses(key, f"environment variable {name} is not set (the proxy exits 1)")
        elif required and not resolved:
            found.refuses(key, f"environment variable {name} is empty ('API key not configured')")


def _providers(raw: Any, env: Mapping[str, str] | None, found: _Findings) -> dict[str, set[str]]:
    if raw is None:
        found.refuses("providers", "missing: at least one [[providers]] entry is required")
        return {}
    if not isinstance(raw, list):
        found.refuses("providers", "must be an array of tables ([[providers]])")
        return {}
    names: dict[str, set[str]] = {}
    for index, table in enumerate(raw):
        key = f"providers[{index}]"
        if not isinstance(table, dict):
            found.refuses(key, "must be a table")
            continue
        for field_name in ("name", "api_base_url", "api_key"):
            if not isinstance(table.get(field_name), str):
                what = "missing" if field_name not in table else f"got {_kind(table[field_name])}"
                found.refuses(f"{key}.{field_name}", f"required, a string ({what})")
        if isinstance(table.get("api_key"), str):
            _expandable(f"{key}.api_key", table["api_key"], env, found, required=False)
        models = table.get("models")
        if not isinstance(models, list) or not models:
            found.refuses(f"{key}.models", "required, a non-empty list of strings")
            models = []
        elif not all(isinstance(m, str) for m in models):
            found.refuses(f"{key}.models", "every model must be a string")
        transformers = table.get("transformers")
        if transformers is not None and not (
            isinstance(transformers, list) and all(isinstance(t, str) for t in transformers)
        ):
            found.refuses(f"{key}.transformers", "must be a list of strings")
        name = table.get("name")
        if not isinstance(name, str):
            continue
        if name in names:
            found.note(
                f"{key}.name", f"provider {name!r} is defined twice: the first wins at lookup"
            )
            continue
        names[name] = {m for m in models if isinstance(m, str)}
    return names


def _proxy(raw: Any, env: Mapping[str, str] | None, found: _Findings) -> None:
    if raw is None:
        found.refuses("proxy", "missing: the [proxy] table is required ('missing field proxy')")
        return
    if not isinstance(raw, dict):
        found.refuses("proxy", "must be a table")
        return
    host = raw.get("host")
    if not isinstance(host, str):
        found.refuses("proxy.host", "required, a string IP address such as '127.0.0.1'")
    elif not _is_ip(host):
        found.refuses(
            "proxy.host",
            f"{host!r} is not an IP literal ('Invalid host'); use e.g. '127.0.0.1', '::1', "
            "'0.0.0.0'",
        )
    port = raw.get("port")
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535):
        found.refuses("proxy.port", "required, an integer 0..65535")
    api_key = raw.get("api_key")
    if not isinstance(api_key, str):
        found.refuses("proxy.api_key", "required, a non-empty string ('API key not configured')")
    else:
        _expandable("proxy.api_key", api_key, env, found, required=True)
    if "timeout_ms" in raw and not (_is_int(raw["timeout_ms"]) and raw["timeout_ms"] >= 0):
        found.refuses("proxy.timeout_ms", "must be a non-negative integer")


def _router(raw: Any, providers: Mapping[str, set[str]], found: _Findings) -> None:
    if not isinstance(raw, dict):
        what = "missing: the [router] table is required" if raw is None else "must be a table"
        found.refuses("router", what)
        return
    for key in ROUTE_KEYS:
        if key in raw and not isinstance(raw[key], str):
            found.refuses(f"router.{key}", f"must be a string route, got {_kind(raw[key])}")
    default = raw.get("default")
    if "default" not in raw:
        found.refuses("router.default", "required")
    elif isinstance(default, str):
        # The proxy's only load-time route check: the untrimmed text before the first ','.
        head = default.split(",", 1)[0]
        if head not in providers:
            found.refuses(
                "router.default",
                f"{head!r} (the text before the first ',') is not a provider name: the proxy "
                "refuses to start; write the primary as 'provider,model' with no spaces",
            )
    for key in ROUTE_KEYS:
        value = raw.get(key)
        if isinstance(value, str):
            _chain(f"router.{key}", value, providers, found)
            if key in UNROUTED_SCENARIOS:
                found.note(
                    f"router.{key}", "the current proxy never routes requests to this scenario"
                )
    threshold = raw.get("long_context_threshold")
    if threshold is not None and not (_is_int(threshold) and threshold >= 0):
        found.refuses("router.long_context_threshold", "must be a non-negative integer")
    strategy = raw.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        found.refuses(
            "router.strategy",
            f"{strategy!r} is an unknown variant: the proxy accepts {', '.join(STRATEGIES)}",
        )
    _mappings(raw.get("model_mappings"), found)
    _exclusions(raw.get("model_exclusions"), found)


def _mappings(raw: Any, found: _Findings) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        found.refuses("router.model_mappings", "must be an array of tables")
        return
    for index, table in enumerate(raw):
        key = f"router.model_mappings[{index}]"
        if not isinstance(table, dict):
            found.refuses(key, "must be a table")
            continue
        for name in ("from", "to"):
            if not isinstance(table.get(name), str):
                found.refuses(f"{key}.{name}", "required, a string")
        if "bidirectional" in table and not isinstance(table["bidirectional"], bool):
            found.refuses(f"{key}.bidirectional", "must be true or false")
        to = table.get("to")
        if isinstance(to, str) and "," in to:
            model = to.split(",", 1)[1]
            if ":" in model:
                found.drops(f"{key}.to", f"model {model!r} contains ':' and is mis-split")
            found.note(
                f"{key}.to",
                f"requests for {table.get('from')!r} go to {to!r}, bypassing [router] "
                "(perfgen's routes do not apply to them)",
            )


def _exclusions(raw: Any, found: _Findings) -> None:
    if raw is None:
        return
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        found.refuses("router.model_exclusions", "must be an array of tables")
        return
    if raw:
        found.note("router.model_exclusions", "parsed but not enforced by the current proxy")


# Typed tables: a wrong type is a serde parse error. Keys the proxy is known to read.
_TYPED: dict[str, dict[str, type]] = {
    "management": {"enabled": bool, "secret_key": str},
    "security.rate_limiting": {
        "enabled": bool,
        "requests_per_minute": int,
        "concurrent_requests": int,
    },
    "webhooks": {"enabled": bool},
}


def _typed_tables(document: Mapping[str, Any], found: _Findings) -> None:
    for root in ("management", "security", "oauth", "webhooks"):
        value = document.get(root)
        if value is not None and not isinstance(value, dict):
            found.refuses(root, "must be a table")
    for name, kinds in _TYPED.items():
        table: Any = document
        for part in name.split("."):
            table = table.get(part) if isinstance(table, dict) else None
        if table is None:
            continue
        if not isinstance(table, dict):
            found.refuses(name, "must be a table")
            continue
        for key, kind in kinds.items():
            if key in table and not _has_type(table[key], kind):
                found.refuses(
                    f"{name}.{key}", f"must be {_kind_name(kind)}, got {_kind(table[key])}"
                )
    for root in ("security", "oauth"):
        tables = document.get(root)
        if not isinstance(tables, dict):
            continue
        for sub, table in tables.items():
            if isinstance(table, dict) and "enabled" in table:
                if not isinstance(table["enabled"], bool):
                    found.refuses(f"{root}.{sub}.enabled", "must be true or false")
    management = document.get("management")
    secret = management.get("secret_key") if isinstance(management, dict) else None
    if isinstance(secret, str) and secret.startswith("$"):
        found.note(
            "management.secret_key",
            f"{secret!r} is the literal secret: the proxy never expands $NAME here",
        )


def _has_type(value: Any, kind: type) -> bool:
    if kind is int:
        return _is_int(value)
    return isinstance(value, kind)


def _is_ip(text: str) -> bool:
    if "%" in text:  # Rust's IpAddr has no zone ids
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", str: "a string"}[kind]


def _kind(value: Any) -> str:
    return {
        dict: "a table",
        list: "a list",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
    }.get(type(value), type(value).__name__)
