"""`python -m perfgen.docs --check | --write [--root DIR]`: the generated reference tables."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from perfgen.docs import FIX_COMMAND, sync
from perfgen.docs.config_keys import IncompleteReference
from perfgen.docs.links import broken_links


@click.command()
@click.option("--write", "mode", flag_value="write", help="Rewrite every generated block.")
@click.option(
    "--check",
    "mode",
    flag_value="check",
    default=True,
    help="Only compare; exit 1 naming each block that differs (the default).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The repository root (README.md and docs/); default: the checkout this runs from.",
)
def main(mode: str, root: Path | None) -> None:
    """Generate the tables of docs/*.md that mirror the code; check every relative link."""
    if root is None:
        # An editable install runs from the checkout: perfgen/docs/ -> the repository root.
        checkout = Path(__file__).resolve().parents[2]
        root = checkout if (checkout / "docs").is_dir() else Path.cwd()
    try:
        problems = sync(root, write=mode == "write")
    except IncompleteReference as exc:  # the code and its descriptions disagree: say what to add
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for problem in problems:
        click.echo(problem, err=True)
    if problems and mode == "check":
        click.echo(f"fix: {FIX_COMMAND}", err=True)
    links = broken_links(root)
    for link in links:
        click.echo(f"broken link: {link}", err=True)
    if problems or links:
        sys.exit(1)


main(prog_name="python -m perfgen.docs")
