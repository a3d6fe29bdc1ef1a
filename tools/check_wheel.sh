#!/usr/bin/env bash
# Install a built artefact (an sdist, a wheel, or the self-contained binary wheel) into a fresh
# virtual environment and run a small real project with it (tools/smokeproject): migrate (which
# syncs the views), rows, refresh_pgviews --jobs 2, Model.refresh(concurrently=True),
# sync_pgviews and pgviews_status, checking what each leaves in the database.
#
#   tools/check_wheel.sh ARTEFACT [--binary]
#
# --binary: the wheel must carry its own libpq. `ldd` must resolve _core's libpq inside the
# wheel's django_pgviews_c.libs/, and the project then runs with the system libpq hidden (a
# private mount namespace in which every libpq.so.5 of the system is an empty file), so a
# wheel that still needed it would fail to import.
#
# Environment: PYTHON (interpreter for the venv, default python3), PGVIEWS_DB_SUFFIX (keeps the
# database apart from other runs), the server as tools/pgserver.py finds it.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 ARTEFACT [--binary]" >&2
    exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
artefact=$(realpath "$1")
binary=
[ "${2:-}" = --binary ] && binary=1
PYTHON=${PYTHON:-python3}
say() { printf 'check_wheel: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pgviews-check-wheel.XXXXXX")
db=pgviews_c_smoke${PGVIEWS_DB_SUFFIX:-}_wheel
venv=$work/venv
cleanup() {
    if [ -x "$venv/bin/python" ] && [ -n "${PGHOST:-}" ]; then
        "$venv/bin/python" - "$root/tools" "$db" <<'EOF' || true
import sys
sys.path.insert(0, sys.argv[1])
import pgserver, psycopg
with psycopg.connect(pgserver.conninfo({**pgserver.ensure_server(), "dbname": "postgres"}), autocommit=True) as c:
    c.execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
EOF
    fi
    rm -rf "$work"
}
trap cleanup EXIT

say "installing $(basename "$artefact") into a fresh venv ($("$PYTHON" --version))"
"$PYTHON" -m venv "$venv"
vpy() { "$venv/bin/python" "$@"; }
vpy -m pip install -q --disable-pip-version-check "$artefact" "psycopg[binary]>=3.1" \
    || fail "pip could not install $(basename "$artefact")"

# The project runs from a copy outside the checkout: django_pgviews_c comes from site-packages.
cp -r "$root/tools/smokeproject" "$work/project"
cd "$work/project"
core=$(vpy -c 'import importlib.util as u; print(u.find_spec("django_pgviews_c._core").origin)')
case $core in "$venv"/*) ;; *) fail "_core imported from $core, not from the venv" ;; esac

run=()
if [ -n "$binary" ]; then
    libs_dir=$(dirname "$core")/../django_pgviews_c.libs
    [ -d "$libs_dir" ] || fail "the wheel has no django_pgviews_c.libs/: it was not repaired"
    resolved=$(env -u LD_LIBRARY_PATH ldd "$core" | awk '$1 ~ /^libpq/ {print $3}')
    say "ldd: _core's libpq resolves to $resolved"
    case $resolved in */django_pgviews_c.libs/libpq*) ;; *) fail "libpq is not taken from the wheel" ;; esac
    # Hide the system's libpq: bind an empty file over each copy the loader could find.
    mapfile -t system_libpq < <(ldconfig -p | awk '/libpq\.so/ {print $NF}' | xargs -r realpath | sort -u)
    if [ ${#system_libpq[@]} -gt 0 ] && unshare --mount true 2>/dev/null; then
        say "hiding the system libpq: ${system_libpq[*]}"
        hide='for f in "$@"; do case $f in --) shift; break ;; esac; mount --bind /dev/null "$f"; shift; done; exec "$@"'
        run=(env -u LD_LIBRARY_PATH unshare --mount sh -c "$hide" hide "${system_libpq[@]}" --)
    else
        say "cannot hide the system libpq here (no unshare, or no system libpq): ldd check only"
        run=(env -u LD_LIBRARY_PATH)
    fi
fi
py() { "${run[@]}" "$venv/bin/python" "$@"; }
manage() { py manage.py "$@"; }

py -c 'from django_pgviews_c import _core, __version__
print(f"check_wheel: django_pgviews_c {__version__}: _core built against libpq {_core.PG_VERSION_BUILT}, runs libpq {_core.libpq_version()}")'

pgenv=$(vpy "$root/tools/pgserver.py" --env) || fail "no PostgreSQL server"
eval "$pgenv"
export SMOKE_DB=$db
vpy - "$root/tools" "$db" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import pgserver
pgserver.make_database(pgserver.ensure_server(), sys.argv[2])
EOF

expect() {  # expect SQL EXPECTED: the query's single value (from a connection of our own)
    local got
    got=$(vpy - "$root/tools" "$db" "$1" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import pgserver, psycopg
with psycopg.connect(pgserver.conninfo({**pgserver.ensure_server(), "dbname": sys.argv[2]})) as c:
    print(c.execute(sys.argv[3]).fetchone()[0])
EOF
    )
    [ "$got" = "$2" ] || fail "$1: expected $2, got $got"
}

manage migrate -v 1 || fail "migrate"
expect "SELECT count(*) FROM pg_matviews WHERE matviewname IN ('shop_producttotalmat', 'shop_topproduct')" 2
expect "SELECT count(*) FROM pg_views WHERE viewname = 'shop_producttotal'" 1
manage shell -c 'from shop.models import Sale
Sale.objects.bulk_create([Sale(product=p, amount=a) for p, a in [("tea", 3), ("coffee", 5), ("tea", 4)]])' \
    || fail "inserting rows"
manage refresh_pgviews --jobs 2 || fail "refresh_pgviews --jobs 2"
expect "SELECT product || '=' || total FROM shop_topproduct" "tea=7"
manage shell -c 'from shop.models import Sale, ProductTotalMat, TopProduct
Sale.objects.create(product="coffee", amount=10)
ProductTotalMat.refresh(concurrently=True)
TopProduct.refresh()
top = TopProduct.objects.get()
assert (top.product, top.total) == ("coffee", 15), top' || fail "Model.refresh()"
out=$(manage sync_pgviews) || fail "sync_pgviews"
printf '%s\n' "$out"
grep -q "0 changed" <<<"$out" || fail "a second sync changed something"
manage pgviews_status >/dev/null || fail "pgviews_status"
say "OK: $(basename "$artefact") installs and runs a project${binary:+ with the system libpq hidden}"
