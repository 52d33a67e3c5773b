"""Edit the route strings of the proxy's config.toml and nothing else.

tomlkit keeps comments, ordering, whitespace and unknown tables, so the operator's file
stays theirs; `only_routes_changed` proves it after every edit by comparing the parsed
documents with the routes taken out. Writing is perfgen.atomic.atomic_write (re-exported
here for the generator's commands): a crash leaves either the old or the new file.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import String, StringType

from perfgen.atomic import atomic_write  # noqa: F401 (re-exported: generate_cli imports it here)
from perfgen.generator.proxy_schema import ROUTE_KEYS


class TomlEditError(ValueError):
    """The file cannot be edited safely (no [router], a route that is not a string...)."""


def route_values(text: str) -> dict[str, str]:
    """The scenario routes under [router] (`default`, `think`, ...), as written."""
    router = tomllib.loads(text).get("router", {})
    if not isinstance(router, dict):
        return {}
    return {k: v for k, v in router.items() if k in ROUTE_KEYS and isinstance(v, str)}


def apply_routes(text: str, routes: Mapping[str, str]) -> str:
    """`text` with [router] `key = "value"` set for each of `routes`; all else kept.

    A key that already has this value is not touched at all (not even re-quoted).
    A new key is appended to the [router] table.
    """
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise TomlEditError(f"tomlkit cannot parse the file: {exc}") from None
    if "router" not in document:
        raise TomlEditError("the file has no [router] table")
    router: Any = document["router"]
    if not hasattr(router, "item") and not isinstance(router, dict):
        raise TomlEditError("[router] is not a table")
    for key, value in routes.items():
        if key not in ROUTE_KEYS:
            raise TomlEditError(f"router.{key} is not a route key")
        if key in router:
            old = router.item(key) if hasattr(router, "item") else router[key]
            if not isinstance(old, str):
                raise TomlEditError(f"router.{key} is not a string")
            if str(old) == value:
                continue
            router[key] = _like(old, value)
        else:
            router[key] = value
    return tomlkit.dumps(document)


def _like(old: Any, value: str) -> Any:
    """A string item in the old one's quoting style (comments are kept by tomlkit)."""
    if isinstance(old, String) and old.type == StringType.SLL and "'" not in value:
        return tomlkit.string(value, literal=True)
    return value


def only_routes_changed(old_text: str, new_text: str) -> list[str]:
    """What differs apart from [router] route values; empty = only routes changed."""
    old, new = tomllib.loads(old_text), tomllib.loads(new_text)
    problems: list[str] = []
    old_router, new_router = old.pop("router", {}), new.pop("router", {})
    if old != new:
        problems.append("tables outside [router] differ")
    if _without_routes(old_router) != _without_routes(new_router):
        problems.append("[router] keys other than the routes differ")
    removed = sorted(set(old_router) & set(ROUTE_KEYS) - set(new_router))
    if removed:
        problems.append(f"routes removed: {', '.join(removed)}")
    return problems


def _without_routes(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k not in ROUTE_KEYS}


def unified_diff(old_text: str, new_text: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"{path} (current)",
            tofile=f"{path} (generated)",
        )
    )
