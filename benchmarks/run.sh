#!/usr/bin/env bash
# Side-by-side benchmarks of django-pgviews-c and django-pgviews-redux.
#
#   bash benchmarks/run.sh            # everything (about 10-15 minutes on 2 cores)
#   bash benchmarks/run.sh warm cold  # a subset: warm cold scale10k refresh tiny memory reader
#
# Creates .venv-bench at the repository root. When the project's own .venv exists, .venv-bench
# reuses its site-packages (this package, editable and already built; Django; psycopg) through a
# .pth file and installs only django-pgviews-redux into itself; otherwise it installs this
# package with `pip install --no-build-isolation -e .[psycopg]`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-bench"
REDUX_SPEC="${REDUX_SPEC:-django-pgviews-redux==1.3.*}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    if [ -x "$ROOT/.venv/bin/python" ]; then
        site_main="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        site_bench="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        echo "import site; site.addsitedir('$site_main')" > "$site_bench/_reuse_main_venv.pth"
    else
        "$VENV/bin/pip" install -q setuptools wheel
        "$VENV/bin/pip" install -q --no-build-isolation -e "$ROOT[psycopg]"
    fi
fi
if ! "$VENV/bin/python" -c 'import django_pgviews' 2>/dev/null; then
    # --no-deps: Django comes from the reused environment (or the install above).
    "$VENV/bin/pip" install -q --no-deps "$REDUX_SPEC"
fi

if [ -z "${PGHOST:-}" ]; then
    eval "$("$VENV/bin/python" "$ROOT/tools/pgserver.py" --env)"
fi
export PGHOST PGPORT PGUSER
exec "$VENV/bin/python" "$ROOT/benchmarks/bench.py" "$@"
