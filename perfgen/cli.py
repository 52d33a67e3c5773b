"""The `perfgen` command: one entry point, each sub-command owned by its package.

Sub-commands are imported only when invoked, so `perfgen query` does not pay for
aiohttp and `perfgen simulate` does not pay for tomlkit, and a broken optional
piece cannot stop the others from running.
"""

from __future__ import annotations

import importlib

import click

from perfgen import __version__

# name -> "module:attribute" of a click.Command; the order is the order of --help.
COMMANDS: dict[str, str] = {
    "demo": "perfgen.stack.demo_cli:demo",
    "simulate": "perfgen.simulator.cli:simulate",
    "exporter": "perfgen.exporter.cli:exporter",
    "probe": "perfgen.exporter.cli:probe",
    "rules": "perfgen.rules.cli:rules",
    "generate": "perfgen.generator.generate_cli:generate",
    "query": "perfgen.generator.query_cli:query",
    "validate": "perfgen.generator.validate_cli:validate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="perfgen")
def main() -> None:
    """Measure LLM providers the Prometheus way and keep the proxy's routes fast.

    \b
    simulator ─▶ exporter /probe ◀─ Prometheus (rules: percentiles, score, alerts)
                                         │
                     perfgen generate ◀──┘──▶ proxy config.toml [router]

    Every command that takes --config reads the proxy's own config.toml:
    its [[providers]] and perfgen's [performance] table.

    \b
    Exit codes: 0 success (generate: unchanged), 1 error,
                2 usage error, 3 generate: routes changed.
    """
