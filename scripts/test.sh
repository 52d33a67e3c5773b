#!/usr/bin/env bash
# Install what perfgen's checks need (on Debian/Ubuntu, as root), then run every check:
# ruff check, ruff format --check, mypy (scripts/typecheck.sh), the generated docs, then pytest.
#
#   bash scripts/test.sh                 # every check and the whole suite (about 5 minutes)
#   bash scripts/test.sh -m "not e2e"    # extra arguments go to pytest
#   bash scripts/test.sh -m "not integration and not e2e and not slow"   # the fast tier
#
# The first check that fails stops the run, with its name. Idempotent and quiet when
# everything is already installed (scripts/lib.sh): apt runs only for a missing binary,
# pip only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_debian_packages prometheus prometheus-alertmanager victoria-metrics docker-compose python3 \
    python3-venv
ensure_venv test

check() {
    local name="$1"
    shift
    "$@" || die "$name failed (exit $?): $*"
}

check "ruff check" .venv/bin/ruff check --quiet .
check "ruff format --check" .venv/bin/ruff format --check --quiet .
check "mypy" bash scripts/typecheck.sh
# The reference tables in docs/ against the code, and every relative link (tests/test_docs.py
# checks the same; here it fails early, with the command that fixes it).
check "docs" .venv/bin/python -m perfgen.docs --check --root .
# Under this script a missing Prometheus must fail the integration tests, not skip them.
PERFGEN_REQUIRE_BINARIES=1 exec .venv/bin/python -m pytest "$@"
