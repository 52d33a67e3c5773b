# shellcheck shell=bash
# What scripts/demo.sh and scripts/test.sh share: install what is missing, and say nothing
# when everything is already there. Sourced (not run) from the repository root:
#
#   set -euo pipefail
#   cd "$(dirname "$0")/.."
#   source scripts/lib.sh
#   ensure_debian_packages prometheus prometheus-alertmanager python3 python3-venv
#   ensure_venv test            # .venv with `pip install -e '.[test]'`
#
# apt runs only for a package whose commands are missing (as root, on Debian/Ubuntu);
# pip only when pyproject.toml changed since the last install into .venv.

# Messages are prefixed with the script that sourced this file: `scripts/test.sh: ...`.
PERFGEN_SCRIPT="${PERFGEN_SCRIPT:-scripts/${0##*/}}"

say() { echo "$PERFGEN_SCRIPT: $*"; }

die() {
    echo "$PERFGEN_SCRIPT: $*" >&2
    exit 1
}

_have() { command -v "$1" >/dev/null 2>&1; }

# _package_present PKG: whether what we need from a Debian package is already on the
# machine. Judged by its commands, not by dpkg, so binaries installed some other way
# (an upstream tarball on PATH, a pyenv Python) count too.
_package_present() {
    case "$1" in
        prometheus) _have prometheus && _have promtool ;;
        # Debian renames alertmanager to prometheus-alertmanager.
        prometheus-alertmanager) { _have alertmanager || _have prometheus-alertmanager; } && _have amtool ;;
        # The scale-out backend: the single-node server and the rule checker (upstream
        # tarballs name them victoria-metrics-prod and vmalert-prod).
        victoria-metrics)
            { _have victoria-metrics || _have victoria-metrics-prod; } \
                && { _have vmalert || _have vmalert-prod; } ;;
        docker-compose) _have docker-compose ;;
        python3) _have python3 ;;
        # Debian splits venv (ensurepip) out of python3; not needed once .venv works.
        python3-venv)
            .venv/bin/python -c '' >/dev/null 2>&1 \
                || "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1 ;;
        *) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed' ;;
    esac
}

# ensure_debian_packages PKG...: apt-get install those of PKG... that are missing, in one
# apt run; without root (or apt), print the command to run instead and exit 1.
ensure_debian_packages() {
    local package missing=() still=()
    for package in "$@"; do
        _package_present "$package" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    if [ "$(id -u)" -ne 0 ] || ! _have apt-get; then
        die "missing ${missing[*]}; run as root on Debian/Ubuntu, or install them with:
    apt-get update && apt-get install -y ${missing[*]}"
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # apt's chatter (debconf, needrestart) is shown only when something fails.
    local log
    log="$(mktemp)"
    if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$log"
    hash -r
    for package in "${missing[@]}"; do
        _package_present "$package" || still+=("$package")
    done
    ((${#still[@]} == 0)) || die "installed ${still[*]}, but its commands are still not on PATH ($PATH)"
}

# ensure_venv [EXTRAS]: .venv (Python 3.11+) with perfgen installed editable, with the
# given extras (`test` -> `pip install -e '.[test]'`). The venv is created with $PYTHON
# (default python3); an install with extras also counts as the plain one.
ensure_venv() {
    local extras="${1:-}" python="${PYTHON:-python3}"
    local stamp=".venv/.perfgen${extras:+-$extras}-installed" target=".${extras:+[$extras]}"
    local new_enough='import sys; sys.exit(sys.version_info < (3, 11))'
    if ! .venv/bin/python -c "$new_enough" >/dev/null 2>&1; then
        _have "$python" || die "perfgen needs Python 3.11+, and $python is not on PATH (set PYTHON)"
        "$python" -c "$new_enough" \
            || die "perfgen needs Python 3.11+, $python is $("$python" -V 2>&1) (set PYTHON)"
        # --clear: a .venv left by an older or removed Python is replaced, not patched.
        "$python" -m venv --clear .venv
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing perfgen${extras:+[$extras]} into .venv"
        .venv/bin/python -m pip install -q --disable-pip-version-check -e "$target"
        touch "$stamp" .venv/.perfgen-installed
    fi
}
