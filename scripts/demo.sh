#!/usr/bin/env bash
# Install what the demo needs (on Debian/Ubuntu, as root), then run `perfgen demo`.
#
#   bash scripts/demo.sh                  # the story, about 2-3 minutes, then stop
#   bash scripts/demo.sh --keep-running   # stay up afterwards until Ctrl-C
#
# Arguments go to `perfgen demo` (see docs/demo.md). Idempotent and quiet when
# everything is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---------------------------------------------------------------- system packages
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
{ command -v prometheus-alertmanager || command -v alertmanager; } >/dev/null 2>&1 \
    || missing+=(prometheus-alertmanager)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/demo.sh: missing ${missing[*]}; run as root, or install them with:" >&2
        echo "    apt-get update && apt-get install -y prometheus prometheus-alertmanager python3-venv" >&2
        exit 1
    fi
    echo "scripts/demo.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2046  # de-duplicated package names, one word each
    apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# ---------------------------------------------------------------- Python environment
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "scripts/demo.sh: perfgen needs Python 3.11+, $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# scripts/test.sh's install (with test extras) is a superset of this one.
stamp=.venv/.perfgen-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "scripts/demo.sh: installing perfgen into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    touch "$stamp"
fi

exec .venv/bin/perfgen demo "$@"
