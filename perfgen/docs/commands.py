"""Every option of every `perfgen` command, from the click commands themselves."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click
from click.core import UNSET

from perfgen.cli import COMMANDS
from perfgen.docs.markdown import code, number, table


def _load(target: str) -> click.Command:
    module_name, attribute = target.split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(command, click.Command), target
    return command


def _range(kind: click.types._NumberRangeBase, noun: str) -> str:
    low, high = kind.min, kind.max
    if low is not None and high is not None:
        left, right = "(" if kind.min_open else "[", ")" if kind.max_open else "]"
        return f"{noun} in {left}{number(low)}, {number(high)}{right}"
    if low is not None:
        return f"{noun} {'>' if kind.min_open else '≥'} {number(low)}"
    if high is not None:
        return f"{noun} {'<' if kind.max_open else '≤'} {number(high)}"
    return noun


def _type(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    if isinstance(kind, click.Choice):
        return " | ".join(code(str(choice)) for choice in kind.choices)
    if isinstance(kind, click.FloatRange):
        return _range(kind, "number")
    if isinstance(kind, click.IntRange):
        return _range(kind, "integer")
    if isinstance(kind, click.Path):
        return "directory" if not kind.file_okay else "file" if not kind.dir_okay else "path"
    return {"float": "number", "integer": "integer", "text": "text"}.get(kind.name, kind.name)


def _default(param: click.Parameter) -> str:
    if param.required:
        return "required"
    value: Any = param.default
    if value is UNSET or value is None or callable(value):
        return ""
    if isinstance(param, click.Option) and param.is_flag:
        return "on" if value else ""
    if isinstance(value, float):
        return code(number(value))
    return code(str(value))


def _names(param: click.Parameter) -> str:
    metavar = f" {param.metavar}" if param.metavar else ""
    return ", ".join(code(name + metavar) for name in [*param.opts, *param.secondary_opts])


def _meaning(param: click.Parameter) -> str:
    text = getattr(param, "help", None) or ""
    if param.multiple and "repeatable" not in text.lower():
        text += " Repeatable."
    envvar = param.envvar if isinstance(param.envvar, str) else None
    if envvar and envvar not in text:
        text += f" Environment: {code(envvar)}."
    return text.strip()


def _summary(command: click.Command) -> str:
    # The first paragraph; the rest of a docstring is formatted for a terminal's --help.
    return (command.help or "").strip().split("\n\n")[0].replace("\n", " ")


def _section(path: list[str], command: click.Command) -> list[str]:
    name = " ".join(["perfgen", *path])
    lines = [f"## `{name}`", "", _summary(command), ""]
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            lines += _section([*path, sub_name], sub)
        return lines
    rows = [
        [_names(p), _type(p), _default(p), _meaning(p)]
        for p in command.params
        if isinstance(p, click.Option | click.Argument) and not getattr(p, "hidden", False)
    ]
    lines += table(["option", "type", "default", "meaning"], rows)
    return lines + [""]


def _leaves(path: list[str], command: click.Command) -> list[tuple[list[str], click.Command]]:
    if isinstance(command, click.Group):
        return [leaf for n, sub in command.commands.items() for leaf in _leaves([*path, n], sub)]
    return [(path, command)]


def render(root: Path) -> str:
    lines = []
    for name, target in COMMANDS.items():
        lines += _section([name], _load(target))
    return "\n".join(lines)


def render_summary(root: Path) -> str:
    """One row per command for the front page, linking to its options in docs/cli.md."""
    rows = []
    for name, target in COMMANDS.items():
        for path, command in _leaves([name], _load(target)):
            title = " ".join(["perfgen", *path])
            anchor = "-".join(["perfgen", *path])
            rows.append([f"[{code(title)}](docs/cli.md#{anchor})", _summary(command)])
    return "\n".join(table(["command", "does"], rows))
