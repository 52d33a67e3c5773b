#!/usr/bin/env bash
# Install what the demo needs (on Debian/Ubuntu, as root), then run `perfgen demo`.
#
#   bash scripts/demo.sh                  # the story (about 75 s), then stop
#   bash scripts/demo.sh --keep-running   # stay up afterwards until Ctrl-C
#
# Arguments go to `perfgen demo` (docs/demo.md). Idempotent
# and quiet when everything is already installed (scripts/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_debian_packages prometheus prometheus-alertmanager python3 python3-venv
# scripts/test.sh's install (with the test extras) is a superset of this one.
ensure_venv ""   # perfgen alone, no extras

exec .venv/bin/perfgen demo "$@"
