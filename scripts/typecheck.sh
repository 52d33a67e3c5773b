#!/usr/bin/env bash
# mypy over the whole package, under the perfgen.* names it is imported by.
#
#   bash scripts/typecheck.sh            # settings: [tool.mypy] in pyproject.toml
#   bash scripts/typecheck.sh --no-incremental   # extra arguments go to mypy
#
# mypy does not follow setuptools' editable finder for the package-dir mapping, so
# scripts/typecheck.py checks the real files through a symlink tree built from that table.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/typecheck.py "$@"
