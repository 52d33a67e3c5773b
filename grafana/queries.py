"""Every PromQL query of the dashboards, as Grafana would send it.

A dashboard query that Prometheus rejects, or that finds nothing because a metric or rule
was renamed, shows as an empty panel that nobody notices until an incident. The tests
take every panel target, variable and annotation query from the committed JSON, fill in
the variables the way Grafana would, and run it against a Prometheus holding real data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

# Grafana's built-in interval variables, with values that fit a stack scraped every 15 s
# or faster ($__rate_interval must cover at least two scrapes).
BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $var, ${var}, ${var:format} and the deprecated [[var]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it lives."""

    dashboard: str  # uid
    where: str  # "panel 'Title' A", "variable provider", "annotation Route changes"
    expr: str  # as written in the dashboard, variables unexpanded
    kind: str  # "panel" | "variable" | "annotation"
    instant: bool = False

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.where}: {self.expr}"


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """file name -> dashboard JSON."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for item in panels:
        yield item
        yield from iter_panels(item.get("panels", []))


def variable_query(variable: dict[str, Any]) -> str | None:
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return query if isinstance(query, str) and query else None


def label_values_to_promql(query: str) -> tuple[str, str] | None:
    """`label_values(metric{sel}, label)` -> (`group by (label) (metric{sel})`, label).

    Grafana answers label_values with the series API; a `group by` over the same
    selector finds the same values, so the query test can check it like any other.
    """
    match = _LABEL_VALUES.match(query)
    if not match:
        return None
    selector, label = match.group(1), match.group(2)
    if not selector:
        return None  # label_values(label) lists every series: nothing to check
    return f"group by ({label}) ({selector.strip()})", label


def extract_queries(dashboards: Mapping[str, dict[str, Any]] | None = None) -> list[Query]:
    """Every query of every dashboard: panel targets, query variables, annotations."""
    dashboards = load_dashboards() if dashboards is None else dashboards
    found: list[Query] = []
    for board in dashboards.values():
        uid = board["uid"]
        for variable in board.get("templating", {}).get("list", []):
            query = variable_query(variable) if variable.get("type") == "query" else None
            converted = label_values_to_promql(query) if query else None
            if converted:
                found.append(
                    Query(
                        uid, f"variable {variable['name']}", converted[0], "variable", instant=True
                    )
                )
        for annotation in board.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                found.append(
                    Query(uid, f"annotation {annotation['name']}", annotation["expr"], "annotation")
                )
        for panel in iter_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(
                        Query(
                            uid,
                            f"panel {panel.get('title')!r} {target.get('refId')}",
                            target["expr"],
                            "panel",
                            instant=bool(target.get("instant")),
                        )
                    )
    return found


def variables_used(expr: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Expand Grafana variables; an unknown variable is an error, not an empty string.

    Grafana would leave an unknown `$name` in place and Prometheus would then reject the
    query or, worse, accept it as something else; failing here names the typo.
    """
    merged = {**BUILTINS, **values}

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in merged:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return merged[name]

    return _VARIABLE.sub(replace, expr)


def regex_escape(value: str) -> str:
    """Escape a value for an `=~` matcher the way Grafana's regex format does."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", value)
