#!/usr/bin/env bash
# Install what perfgen's tests need (on Debian/Ubuntu, as root), then lint and test.
#
#   bash scripts/test.sh                 # ruff + the whole pytest suite (about 5 minutes)
#   bash scripts/test.sh -m "not e2e"    # extra arguments go to pytest
#
# Idempotent and quiet when everything is already installed (scripts/lib.sh): apt runs
# only for a missing binary, pip only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_debian_packages prometheus prometheus-alertmanager victoria-metrics docker-compose python3 \
    python3-venv
ensure_venv test

.venv/bin/ruff check .
# Under this script a missing Prometheus must fail the integration tests, not skip them.
PERFGEN_REQUIRE_BINARIES=1 exec .venv/bin/python -m pytest "$@"
