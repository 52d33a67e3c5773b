"""Every config key with its type, default and meaning, as the parser itself reads them.

perfgen/config.py reads the TOML imperatively, one `_Reader` call per key, each with its
type, default and bounds. Parsing `reference.toml` (every table, next to this file) with
a `_Reader` that also writes those calls down yields the complete key list, so a key
added to the parser shows up here without anyone copying it. The meaning of each key is
prose in perfgen/config_docs.py; the two are checked against each other.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfgen import config
from perfgen.config_docs import TABLES, TableDoc
from perfgen.docs.markdown import code, number, table

REFERENCE = Path(__file__).with_name("reference.toml")

_KIND_NAMES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "table",
}


@dataclass
class KeyRead:
    """What the parser said about one key when it read it."""

    kind: str
    default: Any = None
    bounds: dict[str, Any] = dataclasses.field(default_factory=dict)
    is_table: bool = False


class _Trace:
    def __init__(self) -> None:
        # (table as the reader names it, key) -> what was read, in reading order
        self.reads: dict[tuple[str, str], KeyRead] = {}
        self.absent_tables: list[str] = []
        self.readers: list[Any] = []

    def note(self, table: str, key: str, read: KeyRead) -> None:
        # The outermost call comes first (number() before the get() it makes): it knows most.
        self.reads.setdefault((table, key), read)


@contextmanager
def _recording(trace: _Trace) -> Iterator[None]:
    base: Any = config._Reader

    class Recording(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            trace.readers.append(self)

        def get(self, name: str, kind: Any, default: Any = None) -> Any:
            kinds = kind if isinstance(kind, tuple) else (kind,)
            label = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            trace.note(self.prefix, name, KeyRead(label, default))
            return super().get(name, kind, default)

        def number(self, name: str, default: float, **bounds: Any) -> Any:
            trace.note(self.prefix, name, KeyRead("number", default, bounds))
            return super().number(name, default, **bounds)

        def integer(self, name: str, default: int, **bounds: Any) -> Any:
            trace.note(self.prefix, name, KeyRead("integer", default, bounds))
            return super().integer(name, default, **bounds)

        def duration(self, name: str, default: str | None, *args: Any, **kwargs: Any) -> Any:
            trace.note(self.prefix, name, KeyRead("duration", default))
            return super().duration(name, default, *args, **kwargs)

        def strings(self, name: str, default: tuple[str, ...] = (), **kwargs: Any) -> Any:
            trace.note(self.prefix, name, KeyRead("array of strings", default))
            return super().strings(name, default, **kwargs)

        def url(self, name: str, *args: Any, **kwargs: Any) -> Any:
            # A reader that checks URLs itself (where the parser has one) says so here.
            trace.note(self.prefix, name, KeyRead("http(s) URL"))
            return super().url(name, *args, **kwargs)

        def sub(self, name: str) -> Any:
            trace.note(self.prefix, name, KeyRead("table", is_table=True))
            reader = super().sub(name)
            if reader is None:
                trace.absent_tables.append(self.key(name))
            return reader

    config._Reader = Recording  # type: ignore[misc]
    try:
        yield
    finally:
        config._Reader = base  # type: ignore[misc]


class IncompleteReference(RuntimeError):
    """The key list and config_docs.py disagree; the message says what to add where."""


def _pattern(table: str) -> re.Pattern[str]:
    return re.compile(
        "^"
        + r"\.".join("[^.]+" if part == "NAME" else re.escape(part) for part in table.split("."))
        + "$"
    )


# Tables and the tables that only hold NAME tables (performance.modules), most specific first.
_PATTERNS = {
    name: _pattern(name)
    for name in sorted(
        {".".join(t.split(".")[:n]) for t in TABLES for n in range(1, t.count(".") + 2)},
        key=lambda t: -t.count("."),
    )
}


def _table_of(prefix: str) -> str:
    # `providers[2] (groq)` is one entry of the proxy's [[providers]] array.
    plain = re.sub(r"\[\d+\](?: \([^)]*\))?", "", prefix)
    for name, pattern in _PATTERNS.items():
        if pattern.match(plain):
            return name
    return plain


def read_keys() -> dict[str, dict[str, KeyRead]]:
    """Table (as in TABLES) -> key -> what the parser read, from parsing reference.toml."""
    trace = _Trace()
    with _recording(trace):
        config.parse_config(REFERENCE.read_text(encoding="utf-8"), REFERENCE)
    if trace.absent_tables:
        raise IncompleteReference(
            f"{REFERENCE}: add the table(s) {', '.join(trace.absent_tables)} so that the "
            "parser reads their keys"
        )
    # A key the parser accepts without reading it when absent (it looks at the table
    # first) was never read with its type: the reference must set it.
    typed = {(_table_of(prefix), key) for prefix, key in trace.reads}
    unread = [
        reader.key(name)
        for reader in trace.readers
        for name in sorted(reader.seen)
        if (_table_of(reader.prefix), name) not in typed
    ]
    if unread:
        raise IncompleteReference(
            f"{REFERENCE}: set {', '.join(unread)} so that the parser reads them with their type"
        )
    tables: dict[str, dict[str, KeyRead]] = {}
    for (prefix, key), read in trace.reads.items():
        tables.setdefault(_table_of(prefix), {}).setdefault(key, read)
    return tables


def _check(tables: dict[str, dict[str, KeyRead]]) -> None:
    problems: list[str] = []
    containers = set(_PATTERNS) - set(TABLES)
    for name, keys in tables.items():
        doc = TABLES.get(name)
        if doc is None and name in containers and all(r.is_table for r in keys.values()):
            continue  # e.g. performance.modules: only holds the NAME tables
        if doc is None:
            problems.append(f"table {name} has no TableDoc in perfgen/config_docs.py")
            continue
        for key, read in keys.items():
            if key in doc.keys:
                continue
            if read.is_table and f"{name}.{key}" in containers | set(TABLES):
                continue
            if read.is_table and f"{name}.{key}.NAME" in TABLES:
                continue
            problems.append(f"{name}.{key}: no meaning in perfgen/config_docs.py TABLES")
    for name, doc in TABLES.items():
        for key in doc.keys:
            if key not in tables.get(name, {}):
                problems.append(f"{name}.{key}: in perfgen/config_docs.py, not read by the parser")
    if problems:
        heading = "the configuration reference is incomplete:"
        raise IncompleteReference("\n  ".join([heading, *problems]))


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return code("true" if value else "false")
    if isinstance(value, float):
        return code(number(value))
    if isinstance(value, str):
        return code(f'"{value}"')
    if isinstance(value, tuple | list):
        return code("[" + ", ".join(f'"{item}"' for item in value) + "]")
    return code(str(value))


def _type(read: KeyRead) -> str:
    bounds = read.bounds
    low, high = bounds.get("minimum"), bounds.get("maximum")
    if low is not None and high is not None:
        left = "(" if bounds.get("exclusive_min") else "["
        return f"{read.kind} in {left}{number(low)}, {number(high)}]"
    if low is not None:
        return f"{read.kind} {'>' if bounds.get('exclusive_min') else '≥'} {number(low)}"
    if high is not None:
        return f"{read.kind} ≤ {number(high)}"
    return read.kind


def _defaults_when_absent(name: str) -> Any:
    # Without a [performance.weights] table the dataclass' weights apply, while a key left
    # out of a table that sets others reads as 0: the reference shows the former.
    return {"performance.weights": config.Weights()}.get(name)


def _section(name: str, doc: TableDoc, keys: dict[str, KeyRead]) -> list[str]:
    heading = f"## `{doc.title}`" + (f" ({doc.read_by})" if doc.read_by else "")
    lines = [heading, ""]
    if doc.intro:
        lines += [doc.intro.format(scenarios=", ".join(code(s) for s in config.SCENARIOS)), ""]
    absent = _defaults_when_absent(name)
    header = (
        ["key", "type", "default", "meaning"] if doc.show_defaults else ["key", "type", "meaning"]
    )
    rows = []
    for key, meaning in doc.keys.items():
        read = keys[key]
        row = [code(key), _type(read)]
        if doc.show_defaults:
            if doc.default is not None:
                row.append(doc.default)
            else:
                row.append(_value(getattr(absent, key) if absent is not None else read.default))
        rows.append([*row, meaning])
    lines += table(header, rows)
    if doc.note:
        lines += ["", doc.note]
    if name == "performance.modules.NAME":
        lines += ["", *_builtin_modules()]
    return lines + [""]


def _builtin_modules() -> list[str]:
    fields = [f.name for f in dataclasses.fields(config.Module) if f.name != "name"]
    rows = []
    for name, module in config.BUILTIN_MODULES.items():
        row = [code(name)]
        for field in fields:
            value = getattr(module, field)
            if field == "prompts":
                row.append(_value(value) if len(value) == 1 else f"{len(value)} prompts")
            else:
                row.append(_value(value) if value is not None else "–")
        rows.append(row)
    return ["Built-in modules:", "", *table(["module", *fields], rows)]


def render(root: Path) -> str:
    tables = read_keys()
    _check(tables)
    lines: list[str] = []
    for name, doc in TABLES.items():
        lines += _section(name, doc, tables[name])
    return "\n".join(lines)
