"""clear_pgviews: refuses to drop what it does not manage (unless --cascade), asks before it
drops anything when a person runs it, and says what it dropped."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests import psycopg_compat
from tests.helpers import catalog_rows, execute, relkind, snapshot

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_clear"
DBNAME = "pgviews_c" + SUFFIX
VIEWTEST = "SELECT count(*) FROM pg_class WHERE relkind IN ('v', 'm') AND relname LIKE 'viewtest\\_%%'"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_an_unmanaged_dependant_is_named_and_nothing_is_dropped():
    execute("CREATE VIEW user_report AS SELECT model_id FROM viewtest_dependantview")
    execute("CREATE MATERIALIZED VIEW user_totals AS SELECT count(*) AS n FROM viewtest_relatedview")
    before = snapshot()
    with pytest.raises(CommandError) as info:
        run("clear_pgviews")
    text = str(info.value)
    assert (
        "public.user_report (view not managed by django-pgviews-c, reads public.viewtest_dependantview)"
        in text
    )
    assert "public.user_totals (materialized view not managed" in text
    assert "--cascade" in text and "Nothing was changed." in text
    assert snapshot() == before


@pytest.mark.django_db
def test_cascade_drops_them_by_name_dependants_first():
    execute("CREATE VIEW user_report AS SELECT model_id FROM viewtest_dependantview")
    execute("CREATE VIEW user_report2 AS SELECT * FROM user_report")
    out = run("clear_pgviews", "--cascade")
    lines = [line.strip() for line in out.splitlines()]
    dropped = [line.split()[1] for line in lines if line.startswith("dropped ") and "views of" not in line]
    assert dropped.index("public.user_report2") < dropped.index("public.user_report")
    assert dropped.index("public.user_report") < dropped.index("viewtest.DependantView")
    assert dropped.index("viewtest.DependantView") < dropped.index("viewtest.RelatedView")
    assert relkind("user_report") is None and relkind("user_report2") is None
    assert catalog_rows(VIEWTEST) == [(0,)]
    assert relkind("viewtest_testmodel") == "r"
    assert f"dropped {len(dropped)} views of database 'default'" in out


@pytest.mark.django_db
def test_clear_says_what_it_dropped():
    out = run("clear_pgviews")
    assert "dropped viewtest.DependantView (public.viewtest_dependantview, view)" in out
    assert (
        "dropped viewtest.MaterializedRelatedView (public.viewtest_materializedrelatedview, materialized view)"
        in out
    )
    assert catalog_rows(VIEWTEST) == [(0,)]


# -- a person at a terminal -------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PGVIEWS_DB_SUFFIX"] = SUFFIX
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def process_db():
    psycopg_compat.recreate_database(DBNAME)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield
    finally:
        psycopg_compat.drop_database(DBNAME)


def _at_terminal(answer: str, *args: str) -> tuple[int, str]:
    """Run clear_pgviews with a terminal as stdin that has ``answer`` typed into it."""
    master, slave = pty.openpty()
    try:
        os.write(master, (answer + "\n").encode())
        done = subprocess.run(
            [sys.executable, "-m", "django", "clear_pgviews", *args],
            cwd=ROOT, env=_env(), stdin=slave, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(master)
        os.close(slave)
    return done.returncode, done.stdout + done.stderr


def _count() -> int:
    return psycopg_compat.query(DBNAME, VIEWTEST.replace("%%", "%"))[0][0]


def test_at_a_terminal_it_asks_first(process_db):
    views = _count()
    assert views > 0
    code, out = _at_terminal("no")
    assert code == 0, out
    assert "You have requested to drop" in out and "viewtest.RelatedView" in out
    assert "Clear cancelled." in out
    assert _count() == views
    code, out = _at_terminal("yes")
    assert code == 0, out
    assert "dropped viewtest.RelatedView" in out
    assert _count() == 0


def test_no_input_does_not_ask(process_db):
    subprocess.run(
        [sys.executable, "-m", "django", "sync_pgviews", "-v", "0"], cwd=ROOT, env=_env(), check=True
    )
    assert _count() > 0
    for flag in ("--no-input", "--noinput"):
        code, out = _at_terminal("no", flag)
        assert code == 0, out
        assert "You have requested" not in out
        assert _count() == 0
        subprocess.run(
            [sys.executable, "-m", "django", "sync_pgviews", "-v", "0"], cwd=ROOT, env=_env(), check=True
        )


# -- the exact mode's triggers --------------------------------------------------------------------


def _triggers_on(table: str) -> list[str]:
    return [
        r[0]
        for r in catalog_rows(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
            "ORDER BY 1",
            [table],
        )
    ]


@pytest.mark.django_db
def test_the_exact_modes_triggers_go_with_the_views_and_the_next_sync_puts_them_back(monkeypatch):
    from django_pgviews_c import clear as clear_module
    from django_pgviews_c import declarations
    from tests.helpers import ViewSet

    execute("CREATE TABLE cl_src (id int PRIMARY KEY, v int); INSERT INTO cl_src VALUES (1, 1)")
    # A trigger of the user's own on the same table: not ours, it stays.
    execute(
        "CREATE FUNCTION cl_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$; "
        "CREATE TRIGGER user_audit AFTER INSERT ON cl_src FOR EACH STATEMENT EXECUTE FUNCTION cl_noop()"
    )
    vs = ViewSet()
    vs.view("ClSum", "SELECT sum(v) AS s FROM cl_src", materialized=True, staleness="exact")
    assert vs.sync().exact.created == ["cl_src"]
    execute("INSERT INTO cl_src VALUES (2, 2)")  # counted by our trigger
    counter = "SELECT writes FROM django_pgviews_c_exact WHERE rel = 'cl_src'::regclass::oid"
    assert catalog_rows(counter) == [(1,)]
    assert _triggers_on("cl_src") == ["pgviews_c_exact", "user_audit"]
    project = declarations.view_models()
    with monkeypatch.context() as patched:
        patched.setattr(clear_module, "view_models", lambda: project + list(vs.models.values()))
        out = run("clear_pgviews")
    assert "dropped viewtest.ClSum (public.t_clsum, materialized view)" in out
    assert "dropped trigger pgviews_c_exact from cl_src (exact staleness)" in out
    # No trigger of ours remains anywhere, nor its counter; the user's trigger is there.
    assert catalog_rows("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgviews_c_exact'") == [(0,)]
    assert _triggers_on("cl_src") == ["user_audit"]
    assert catalog_rows(counter) == []
    assert catalog_rows(VIEWTEST) == [(0,)]
    # The next sync re-creates the view and its trigger.
    result = vs.sync()
    assert result.statuses["viewtest.ClSum"] == "CREATED" and result.exact.created == ["cl_src"]
    assert _triggers_on("cl_src") == ["pgviews_c_exact", "user_audit"]
