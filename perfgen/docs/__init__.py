"""The reference tables of docs/*.md, generated from the code they describe.

Each table lives in a Markdown file between two markers::

    <!-- generated:NAME (python -m perfgen.docs --write) -->
    ...
    <!-- end generated -->

`python -m perfgen.docs --write` rewrites what is between them; `--check` only compares
and exits 1 naming every block that differs (tests/test_docs.py runs the same check).
Everything outside the markers is prose written by people and is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FIX_COMMAND = "python -m perfgen.docs --write"

# The Markdown files that may hold generated blocks, relative to the repository root.
DOC_GLOBS = ("README.md", "CONTRIBUTING.md", "docs/*.md")

_BLOCK = re.compile(
    r"(?P<start><!-- generated:(?P<name>[a-z0-9-]+)[^>]*-->\n)"
    r"(?P<body>.*?)(?P<end><!-- end generated -->)",
    re.DOTALL,
)


def _start_marker(name: str) -> str:
    return f"<!-- generated:{name} ({FIX_COMMAND}) -->\n"


def generators() -> dict[str, Callable[[Path], str]]:
    """Block name -> function of the repository root returning the block's Markdown."""
    # Imported here: each pulls in a part of perfgen (the exporter, rules, CLI modules).
    from perfgen.docs import alerts, commands, config_keys, metrics

    return {
        "config-keys": config_keys.render,
        "metrics-probe": metrics.render_probe,
        "metrics-exporter": metrics.render_exporter,
        "metrics-generator": metrics.render_generator,
        "cli": commands.render,
        "cli-summary": commands.render_summary,
        "alert-timings": alerts.render_timings,
        "alerts": alerts.render_alerts,
    }


@dataclass(frozen=True)
class Drift:
    path: Path
    block: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: generated:{self.block}: {self.problem}"


def doc_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in DOC_GLOBS:
        files.extend(sorted(root.glob(pattern)))
    return files


def regenerate(text: str, blocks: dict[str, str]) -> tuple[str, list[str]]:
    """Text with every known block replaced; also the names of unknown blocks."""
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in blocks:
            unknown.append(name)
            return match[0]
        return _start_marker(name) + blocks[name] + match["end"]

    return _BLOCK.sub(replace, text), unknown


def sync(root: Path, *, write: bool) -> list[Drift]:
    """Compare (and with write=True rewrite) every generated block under root."""
    rendered = {name: render(root).rstrip("\n") + "\n" for name, render in generators().items()}
    problems: list[Drift] = []
    placed: set[str] = set()
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        placed.update(match["name"] for match in _BLOCK.finditer(text))
        new, unknown = regenerate(text, rendered)
        relative = path.relative_to(root)
        problems += [Drift(relative, name, "no generator of that name") for name in unknown]
        if new == text:
            continue
        if write:
            path.write_text(new, encoding="utf-8")
        else:
            for old_match, new_match in zip(
                _BLOCK.finditer(text), _BLOCK.finditer(new), strict=True
            ):
                if old_match[0] != new_match[0]:
                    problems.append(
                        Drift(relative, old_match["name"], "differs from what the code yields")
                    )
    for name in sorted(set(rendered) - placed):
        problems.append(Drift(Path("docs"), name, "placed in no document"))
    return problems
