#!/usr/bin/env bash
# Install what perfgen's tests need (on Debian/Ubuntu, as root), then lint and test.
#
#   bash scripts/test.sh                 # ruff + the whole pytest suite (about 5 minutes)
#   bash scripts/test.sh -m "not e2e"    # extra arguments go to pytest
#
# Idempotent and quiet when everything is already installed: apt runs only for a missing
# binary, pip only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---------------------------------------------------------------- system packages
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
{ command -v prometheus-alertmanager || command -v alertmanager; } >/dev/null 2>&1 \
    || missing+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Debian splits venv (ensurepip) out of python3.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: missing ${missing[*]}; run as root, or install them with:" >&2
        echo "    apt-get update && apt-get install -y prometheus prometheus-alertmanager docker-compose python3-venv" >&2
        exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2046  # de-duplicated package names, one word each
    apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# ---------------------------------------------------------------- Python environment
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "scripts/test.sh: perfgen needs Python 3.11+, $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.perfgen-test-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "scripts/test.sh: installing perfgen[test] into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp" .venv/.perfgen-installed
fi

# ---------------------------------------------------------------- lint + tests
.venv/bin/ruff check .
# Under this script a missing Prometheus must fail the integration tests, not skip them.
PERFGEN_REQUIRE_BINARIES=1 exec .venv/bin/python -m pytest "$@"
