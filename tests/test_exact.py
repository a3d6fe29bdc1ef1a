"""The exact staleness mode on a real PostgreSQL: the sync keeps one statement-level trigger per
table an exact view reads; a committed write makes the view stale at once (no statistics flush
to wait for), a rolled-back one never does, TRUNCATE does; the triggers go when no exact view
reads the table any more; a role without the TRIGGER privilege gets an error naming the table
and the GRANT; a writer without rights on the counter table still writes."""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection

from django_pgviews_c import freshness, freshstatus
from django_pgviews_c.exceptions import PlanError
from tests import psycopg_compat
from tests.helpers import ViewSet, catalog_rows, execute

SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
DEV = "pgvc_exact_dev" + SUFFIX  # syncs, owns its views, not the table
WRITER = "pgvc_exact_writer" + SUFFIX  # may write the table, nothing else


def other_session(sql: str) -> None:
    """``sql`` on a session of its own, as an application would; no statistics flush asked."""
    psycopg_compat.query(connection.settings_dict["NAME"], sql)


def triggers(table: str) -> list[tuple]:
    return catalog_rows(
        "SELECT tgname::text, tgfoid::regproc::text FROM pg_trigger WHERE tgrelid = %s::regclass",
        [table],
    )


def counters() -> dict[str, int]:
    return dict(catalog_rows("SELECT rel::regclass::text, writes FROM django_pgviews_c_exact"))


def state(vs: ViewSet, name: str) -> freshness.ViewFreshness:
    return freshness.freshness([vs.models[name]])[0]


@pytest.fixture
def tables(transactional_db):
    execute("CREATE TABLE ex_a (id int PRIMARY KEY, v int)")
    execute("CREATE TABLE ex_b (id int PRIMARY KEY, v int)")
    execute("INSERT INTO ex_a VALUES (1, 1), (2, 2)")
    execute("INSERT INTO ex_b VALUES (1, 10)")
    vs = ViewSet()
    yield vs
    for name in ("t_exsum", "t_exjoin", "t_exstats"):
        execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
    execute("DROP VIEW IF EXISTS t_explain")
    execute("DROP TABLE IF EXISTS ex_a, ex_b CASCADE")
    execute("DELETE FROM django_pgviews_c_exact")


def declare(vs: ViewSet, exact: bool = True) -> None:
    mode = {"staleness": "exact"} if exact else {}
    vs.view("ExPlain", "SELECT a.id, a.v + b.v AS v FROM ex_a a JOIN ex_b b USING (id)")
    vs.view("ExSum", "SELECT sum(v) AS s FROM ex_a", materialized=True, **mode)
    vs.view("ExJoin", "SELECT id, v FROM t_explain", materialized=True,
            dependencies=("viewtest.ExPlain",), **mode)  # fmt: skip


def test_the_sync_puts_one_trigger_on_each_table_and_two_views_share_it(tables):
    declare(tables)
    result = tables.sync()
    assert sorted(result.exact.created) == ["ex_a", "ex_b"]
    # ExSum and ExJoin both read ex_a: one trigger there, the same function everywhere.
    assert triggers("ex_a") == [("pgviews_c_exact", "django_pgviews_c_exact_bump")]
    assert triggers("ex_b") == [("pgviews_c_exact", "django_pgviews_c_exact_bump")]
    # Idempotent: a second sync changes nothing.
    again = tables.sync()
    assert again.exact.created == [] and again.exact.dropped == []
    assert len(triggers("ex_a")) == 1
    # The user's rows are as they were.
    assert catalog_rows("SELECT id, v FROM ex_a ORDER BY id") == [(1, 1), (2, 2)]


def test_a_sync_with_nothing_to_do_reads_the_triggers_once_more(tables):
    from django.test.utils import CaptureQueriesContext

    declare(tables)
    tables.sync()
    with CaptureQueriesContext(connection) as ctx:
        result = tables.sync()
    assert result.actions == [] and result.catalog_queries == 1
    assert len(ctx.captured_queries) == 2  # the catalog query, then the exact triggers' state


def test_partitions_get_a_trigger_each(transactional_db):
    execute("CREATE TABLE ex_p (k int, v int) PARTITION BY RANGE (k)")
    execute("CREATE TABLE ex_p1 PARTITION OF ex_p FOR VALUES FROM (0) TO (10)")
    vs = ViewSet()
    try:
        vs.view("ExPart", "SELECT sum(v) AS s FROM ex_p", materialized=True, staleness="exact")
        assert sorted(vs.sync().exact.created) == ["ex_p", "ex_p1"]
        vs.models["ExPart"].refresh()
        other_session("INSERT INTO ex_p VALUES (1, 1)")  # through the parent
        assert state(vs, "ExPart").reasons == ["partitioned table ex_p had 1 statements committed"]
        vs.models["ExPart"].refresh()
        other_session("TRUNCATE ex_p1")  # the partition alone
        assert state(vs, "ExPart").reasons == ["table ex_p1 had 1 statements committed"]
    finally:
        execute("DROP MATERIALIZED VIEW IF EXISTS t_expart")
        execute("DROP TABLE ex_p")
        execute("DELETE FROM django_pgviews_c_exact")


def test_a_committed_write_is_stale_at_once(tables):
    declare(tables)
    tables.sync()
    tables.models["ExSum"].refresh()
    tables.models["ExJoin"].refresh()
    assert not state(tables, "ExSum").stale and not state(tables, "ExJoin").stale
    other_session("UPDATE ex_b SET v = 11")  # no flush asked, no wait: the counter is in the commit
    assert state(tables, "ExJoin").reasons == ["table ex_b had 1 statements committed"]
    assert not state(tables, "ExSum").stale
    other_session("INSERT INTO ex_a VALUES (3, 3)")
    assert state(tables, "ExSum").reasons == ["table ex_a had 1 statements committed"]
    tables.models["ExSum"].refresh()
    assert not state(tables, "ExSum").stale


def test_a_rolled_back_write_keeps_it_fresh(tables):
    declare(tables)
    tables.view("ExStats", "SELECT sum(v) AS s FROM ex_a", materialized=True)  # statistics mode
    tables.sync()
    for name in ("ExSum", "ExStats"):
        tables.models[name].refresh()
    other_session("BEGIN; INSERT INTO ex_a VALUES (7, 7); UPDATE ex_a SET v = 0; ROLLBACK")
    other_session("SELECT pg_stat_force_next_flush(); BEGIN; DELETE FROM ex_a; ROLLBACK")
    assert not state(tables, "ExSum").stale
    assert counters().get("ex_a", 0) == 0
    # The statistics count aborted writes: the same view in statistics mode would be stale.
    # Wait until they show it, then the exact view is still fresh.
    stats = tables.models["ExStats"]
    deadline = time.monotonic() + 65.0  # the statistics' documented bound
    while not freshness.freshness([stats])[0].stale:
        assert time.monotonic() < deadline, "the aborted writes never reached the statistics"
        time.sleep(0.05)
    assert not state(tables, "ExSum").stale


def test_truncate_is_stale(tables):
    declare(tables)
    tables.sync()
    tables.models["ExJoin"].refresh()
    other_session("TRUNCATE ex_b")
    assert state(tables, "ExJoin").reasons == ["table ex_b had 1 statements committed"]


def test_a_write_in_the_refreshing_transaction_is_seen_by_the_refresh(tables):
    from django.db import transaction

    declare(tables)
    tables.sync()
    with transaction.atomic():
        execute("INSERT INTO ex_a VALUES (4, 4)")
        tables.models["ExSum"].refresh()
    assert catalog_rows("SELECT s FROM t_exsum") == [(7,)]
    assert not state(tables, "ExSum").stale


def test_removing_exact_removes_the_triggers_and_their_counters(tables):
    declare(tables)
    tables.sync()
    other_session("INSERT INTO ex_a VALUES (5, 5)")
    assert counters() == {"ex_a": 1}
    # ExSum back to statistics: ExJoin still reads ex_a and ex_b exactly, the triggers stay.
    tables.view("ExSum", "SELECT sum(v) AS s FROM ex_a", materialized=True)
    assert tables.sync().exact.dropped == []
    assert len(triggers("ex_a")) == 1
    assert freshness.freshness([tables.models["ExSum"]])[0].mode == "statistics"
    # Neither is exact now: both triggers go, with the counter, in a sync with nothing else to do.
    declare(tables, exact=False)
    result = tables.sync()
    assert result.actions == [] and sorted(result.exact.dropped) == ["ex_a", "ex_b"]
    assert triggers("ex_a") == [] and triggers("ex_b") == []
    assert counters() == {}
    # And the sync after that is one catalog query again.
    assert tables.sync().exact.dropped == []


def test_status_shows_the_mode(tables):
    declare(tables)
    tables.sync()
    tables.models["ExSum"].refresh()
    report = freshstatus.status_report("default", models=[tables.models["ExSum"]])
    item = report["viewtest.ExSum"]
    assert item["staleness"] == "exact" and not item["stale"]
    assert freshstatus.status_line(item).endswith("; fresh [exact]")


def test_an_unknown_mode_is_named(tables):
    tables.view("ExSum", "SELECT sum(v) AS s FROM ex_a", materialized=True, staleness="precise")
    with pytest.raises(ValueError, match=r'viewtest.ExSum.staleness must be "statistics" or "exact"'):
        freshness.freshness([tables.models["ExSum"]])


@pytest.fixture
def roles(tables):
    for role in (DEV, WRITER):
        execute(f'DROP ROLE IF EXISTS "{role}"')
        execute(f'CREATE ROLE "{role}" NOLOGIN')
    execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{DEV}"')
    execute(f'GRANT SELECT ON ex_a, ex_b TO "{DEV}"')
    execute(f'GRANT INSERT, SELECT ON ex_a TO "{WRITER}"')
    yield tables
    execute("RESET ROLE")
    for name in ("t_exsum", "t_exjoin"):
        execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")
    execute("DROP VIEW IF EXISTS t_explain")
    for role in (DEV, WRITER):
        execute(f'DROP OWNED BY "{role}"')
        execute(f'DROP ROLE "{role}"')


def test_a_role_without_trigger_privilege_is_told_what_to_grant(roles):
    declare(roles)
    execute(f'SET ROLE "{DEV}"')
    with pytest.raises(PlanError) as info:
        roles.sync()
    execute("RESET ROLE")
    text = str(info.value)
    assert "ex_a, ex_b" in text and f"GRANT TRIGGER ON ex_a, ex_b TO {DEV}" in text
    assert "Nothing was changed" in text
    # The sync's transaction rolled back: no view, no trigger.
    assert catalog_rows("SELECT to_regclass('t_exsum') IS NULL")[0][0]
    assert triggers("ex_a") == []
    # With the grant it works, and the view's owner need not own the table.
    execute(f'GRANT TRIGGER ON ex_a, ex_b TO "{DEV}"')
    execute(f'SET ROLE "{DEV}"')
    assert sorted(roles.sync().exact.created) == ["ex_a", "ex_b"]
    execute("RESET ROLE")


def test_a_writer_without_rights_on_the_counter_table_still_writes(roles):
    declare(roles)
    roles.sync()  # as the test's own role (the owner of everything)
    roles.models["ExSum"].refresh()
    psycopg_compat.query(
        connection.settings_dict["NAME"], "INSERT INTO ex_a VALUES (6, 6)", setup=f'SET ROLE "{WRITER}"'
    )
    assert counters() == {"ex_a": 1}
    assert state(roles, "ExSum").reasons == ["table ex_a had 1 statements committed"]


def test_migrating_the_app_backwards_takes_the_triggers_and_the_function_first(tables):
    from django.core.management import call_command

    declare(tables)
    tables.sync()
    try:
        call_command("migrate", "django_pgviews_c", "0002", verbosity=0)
        assert triggers("ex_a") == [] and triggers("ex_b") == []
        assert catalog_rows("SELECT count(*) FROM pg_proc WHERE proname = 'django_pgviews_c_exact_bump'") == [
            (0,)
        ]
        assert catalog_rows("SELECT to_regclass('django_pgviews_c_exact') IS NULL") == [(True,)]
        other_session("INSERT INTO ex_a VALUES (8, 8)")  # writes still work
    finally:
        call_command("migrate", "django_pgviews_c", verbosity=0)
    assert catalog_rows("SELECT count(*) FROM ex_a") == [(3,)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_refresh_views_captures_the_exact_counters(tables, jobs):
    from django_pgviews_c.refresh import refresh_views

    declare(tables)
    tables.sync()
    other_session("INSERT INTO ex_a VALUES (9, 9)")
    refresh_views(list(tables.models.values()), using="default", jobs=jobs)
    assert not state(tables, "ExSum").stale and not state(tables, "ExJoin").stale
    other_session("DELETE FROM ex_b")
    assert state(tables, "ExJoin").reasons == ["table ex_b had 1 statements committed"]
    assert not state(tables, "ExSum").stale


def test_the_system_check_names_a_mode_that_is_not_one():
    from django_pgviews_c.checks import validate_view_declarations
    from tests.viewtest.models import MaterializedRelatedView

    MaterializedRelatedView.staleness = "precise"
    try:
        [message] = [m for m in validate_view_declarations() if m.id == "django_pgviews_c.E006"]
    finally:
        del MaterializedRelatedView.staleness
    assert message.obj is MaterializedRelatedView
    assert "viewtest.MaterializedRelatedView.staleness is 'precise'" in message.msg
    assert not [m for m in validate_view_declarations() if m.id == "django_pgviews_c.E006"]


def _plan_command(vs: ViewSet, monkeypatch) -> str:
    """sync_pgviews --plan over the project's views and ``vs``'s."""
    from io import StringIO

    from django.core.management import call_command

    from django_pgviews_c import declarations
    from django_pgviews_c import sync as sync_module

    project = declarations.view_models()
    out = StringIO()
    with monkeypatch.context() as patched:
        patched.setattr(sync_module, "view_models", lambda: project + list(vs.models.values()))
        call_command("sync_pgviews", "--plan", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_plan_lists_the_triggers_it_would_create_and_drop_without_doing_it(tables, monkeypatch):
    declare(tables)
    # With the views to create: the rehearsal (rolled back) reads what the triggers would be.
    from django_pgviews_c.sync import Syncer

    chosen = list(tables.models.values())
    rehearsed = Syncer(connection, chosen, {m._meta.label for m in chosen}).run(rehearse=True)
    assert rehearsed.error is None and sorted(rehearsed.exact.created) == ["ex_a", "ex_b"]
    out = _plan_command(tables, monkeypatch)
    lines = [line for line in out.splitlines() if line.startswith("  TRIGGER")]
    assert [line.split("  (")[0] for line in lines] == [
        "  TRIGGER  pgviews_c_exact created on ex_a",
        "  TRIGGER  pgviews_c_exact created on ex_b",
    ], out
    assert all("lock: SHARE ROW EXCLUSIVE" in line for line in lines), out
    assert "2 triggers of the exact mode change; rehearsed" in out, out
    assert triggers("ex_a") == [] and triggers("ex_b") == []  # shown, not done
    tables.sync()
    assert len(triggers("ex_a")) == len(triggers("ex_b")) == 1
    # The same views, no longer exact: no view changes, the triggers would go.
    declare(tables, exact=False)
    out = _plan_command(tables, monkeypatch)
    lines = [line for line in out.splitlines() if line.startswith("  TRIGGER")]
    assert [line.split("  (")[0] for line in lines] == [
        "  TRIGGER  pgviews_c_exact dropped from ex_a",
        "  TRIGGER  pgviews_c_exact dropped from ex_b",
    ], out
    assert "default: no view changes, 2 triggers of the exact mode change (read only" in out, out
    assert len(triggers("ex_a")) == len(triggers("ex_b")) == 1  # shown, not done
    assert sorted(tables.sync().exact.dropped) == ["ex_a", "ex_b"]
    assert "nothing to do" in _plan_command(tables, monkeypatch)


def test_a_database_without_the_counter_table_gets_the_migrate_advice_and_keeps_everything(tables):
    """Where the app's migrations that create the counter table are not applied, the sync of an
    exact view says to run migrate (as every other message about the app's tables does) and
    changes nothing."""
    declare(tables)
    execute("ALTER TABLE django_pgviews_c_exact RENAME TO pgvc_exact_aside")
    try:
        with pytest.raises(PlanError) as raised:
            tables.sync()
    finally:
        execute("ALTER TABLE pgvc_exact_aside RENAME TO django_pgviews_c_exact")
    assert (
        "exact staleness needs the table django_pgviews_c_exact: run manage.py migrate. Nothing was changed."
        in (str(raised.value))
    ), raised.value
    assert catalog_rows("SELECT to_regclass('t_exsum') IS NULL, to_regclass('t_explain') IS NULL") == [
        (True, True)
    ]
    assert triggers("ex_a") == []
