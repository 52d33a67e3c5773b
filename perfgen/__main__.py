"""`python -m perfgen` runs the `perfgen` command."""

from perfgen.cli import main

main(prog_name="perfgen")
