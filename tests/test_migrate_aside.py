"""migrate with views over the columns it changes, as a user runs it: a project of its own
(tests/txproj, copied per test) whose migrations are written by makemigrations or by hand, each
command a real `python -m django` process, checked in the catalog afterwards.

Renames leave the views alone (PostgreSQL follows them). A dropped or retyped column sets the
views that read it aside, and the drops, the migrations, their records and the re-creation
commit together: readers wait instead of failing, a kill leaves everything as before, a failure
changes nothing and names the view and the line of its SQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_pgviews_c import _core
from tests import psycopg_compat

HERE = Path(__file__).resolve().parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "")
DB = "pgvc_tx" + SUFFIX
READER_ROLE = "pgvc_tx_reader" + SUFFIX
#: The advisory lock a test holds to stop a migration in its middle.
LOCK_KEY = 7_140_901


def q(sql: str, params: Any = None) -> list[tuple]:
    return psycopg_compat.query(DB, sql, params)


class Project:
    #: The database the project's settings name (TXPROJ_DB).
    db = DB

    def __init__(self, path: Path) -> None:
        self.path = path

    def env(self, **extra: str) -> dict[str, str]:
        environ = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="settings",
            TXPROJ_DB=self.db,
            PYTHONPATH=os.pathsep.join([str(self.path), str(HERE.parent)]),
            **extra,
        )
        environ.pop("PGVIEWS_DB_SUFFIX", None)
        return environ

    def django(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def ok(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        done = self.django(*args, **env)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "django", *args],
            cwd=self.path,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def edit_models(self, old: str, new: str) -> None:
        models = self.path / "shop" / "models.py"
        text = models.read_text()
        assert old in text
        models.write_text(text.replace(old, new))
        self._forget_bytecode()

    def migration(self, name: str, dependency: str, operations: str, extra: str = "") -> None:
        (self.path / "shop" / "migrations" / f"{name}.py").write_text(
            "from django.db import migrations, models\n\n\n"
            "class Migration(migrations.Migration):\n"
            f"{extra}"
            f"    dependencies = [('shop', '{dependency}')]\n"
            f"    operations = [\n{operations}    ]\n"
        )
        self._forget_bytecode()

    def rename_item_to_article(self) -> None:
        """Migration 0002_rename: the model Item renamed Article, its table shop_goods; the class
        renamed in models.py (its Meta left to the caller)."""
        self.migration(
            "0002_rename",
            "0001_initial",
            "        migrations.RenameModel('Item', 'Article'),\n"
            "        migrations.AlterModelTable('article', 'shop_goods'),\n",
        )
        self.edit_models("class Item(models.Model):", "class Article(models.Model):")

    def _forget_bytecode(self) -> None:
        for cached in (self.path / "shop").rglob("__pycache__"):
            shutil.rmtree(cached)


def snapshot(data: bool = True) -> dict[str, Any]:
    """What 'as before' means: the same objects (oids), the column's type, the migrations
    recorded, the materialized views populated, with the same rows (``data``: reading them
    waits for a migrate that set them aside)."""
    found = {
        "objects": q(
            "SELECT relname::text, oid::bigint, relkind::text, relispopulated FROM pg_class "
            "WHERE relname IN ('shop_cheap', 'shop_cheapcount', 'shop_names', 'shop_item') ORDER BY 1"
        ),
        "columns": q(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'shop_item'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ),
        "migrations": q("SELECT name::text FROM django_migrations WHERE app = 'shop' ORDER BY id"),
    }
    if data:
        found["cheapcount"] = q("SELECT n, total::bigint FROM shop_cheapcount")
    return found


def oid(relname: str) -> int | None:
    rows = q("SELECT oid::bigint FROM pg_class WHERE relname = %s", [relname])
    return rows[0][0] if rows else None


def wait_for(what: str, probe, timeout: float = 120.0):
    """Poll until probe() returns something true (an event seen in the catalog)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def advisory_waiter() -> int | None:
    rows = q(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [LOCK_KEY],
    )
    return rows[0][0] if rows else None


def migrated_project(tmp_path, cls: type[Project] = Project) -> Iterator[Project]:
    """A copy of tests/txproj, migrated on ``cls.db`` (a database of its own), three items in,
    its materialized views refreshed; the database dropped afterwards."""
    path = tmp_path / "txproj"
    shutil.copytree(HERE / "txproj", path, ignore=shutil.ignore_patterns("__pycache__"))
    (path / "shop" / "migrations").mkdir()
    (path / "shop" / "migrations" / "__init__.py").write_text("")
    psycopg_compat.recreate_database(cls.db)
    proj = cls(path)
    proj.ok("makemigrations", "shop")
    proj.ok("migrate", "-v", "0")
    psycopg_compat.query(cls.db, "INSERT INTO shop_item (price, name) VALUES (5, 'a'), (7, 'b'), (20, 'c')")
    proj.ok("refresh_pgviews", "-v", "0")
    assert psycopg_compat.query(cls.db, "SELECT n, total FROM shop_cheapcount") == [(2, 12)]
    try:
        yield proj
    finally:
        psycopg_compat.drop_database(cls.db)


@pytest.fixture
def project(tmp_path):
    yield from migrated_project(tmp_path)


@pytest.fixture
def lock_holder():
    """A second session holding the advisory lock a migration waits on; release() lets it go."""
    conn = psycopg_compat._connect(DB)
    cur = conn.cursor()
    cur.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])

    class Holder:
        def release(self) -> None:
            cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

    try:
        yield Holder()
    finally:
        conn.close()


# -- renames: nothing is set aside --------------------------------------------------------------


def test_rename_field_under_a_view_and_a_materialized_view(project):
    before = snapshot()
    project.edit_models(
        "    price = models.IntegerField()\n    name", "    cost = models.IntegerField()\n    name"
    )
    project.migration(
        "0002_rename", "0001_initial", "        migrations.RenameField('item', 'price', 'cost'),\n"
    )
    done = project.ok("migrate")
    assert "Set aside" not in done.stdout
    after = snapshot()
    assert after["objects"] == before["objects"]  # the same views, never dropped
    assert ("cost", "integer") in after["columns"]
    assert after["migrations"] == before["migrations"] + [("0002_rename",)]
    # PostgreSQL followed the rename: both still answer.
    assert q("SELECT count(*), sum(price) FROM shop_cheap") == [(2, 12)]
    assert q("SELECT n, total FROM shop_cheapcount") == [(2, 12)]
    # And the next sync sees nothing to do.
    assert project.ok("sync_pgviews").returncode == 0
    assert snapshot()["objects"] == before["objects"]


def test_rename_model_and_table_set_nothing_aside(project):
    before = snapshot()
    project.rename_item_to_article()
    project.edit_models(
        "    name = models.CharField(max_length=20)\n\n\nclass Cheap",
        "    name = models.CharField(max_length=20)\n\n    class Meta:\n        db_table = 'shop_goods'\n\n\nclass Cheap",
    )
    done = project.ok("migrate")
    assert "Set aside" not in done.stdout
    assert oid("shop_cheap") == {r[0]: r[1] for r in before["objects"]}["shop_cheap"]
    assert oid("shop_item") is None and oid("shop_goods") is not None
    assert q("SELECT count(*) FROM shop_cheap") == [(2,)]


# -- a column a view still reads is removed: nothing changes -------------------------------------


def test_remove_field_a_view_reads_fails_and_changes_nothing(project):
    before = snapshot()
    project.edit_models("    price = models.IntegerField()\n    name", "    name")
    project.ok("makemigrations", "shop", "-n", "drop_price")
    done = project.django("migrate")
    assert done.returncode != 0
    # Names the view, the error, and the line of its SQL.
    assert "shop.Cheap" in done.stderr
    assert 'column "price" does not exist' in done.stderr
    assert "at line 1, column 12 of its SQL:\n  SELECT id, price, name" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot() == before  # column, views (same oids), records, data
    assert ("price", "integer") in snapshot()["columns"]


def test_alter_field_that_keeps_the_type_sets_nothing_aside(project):
    before = snapshot()
    project.edit_models(
        "price = models.IntegerField()\n    name",
        "price = models.IntegerField(null=True, db_index=True, help_text='in cents')\n    name",
    )
    project.ok("makemigrations", "shop", "-n", "price_nullable")
    done = project.ok("migrate")
    assert "Set aside" not in done.stdout
    after = snapshot()
    assert after["objects"] == before["objects"]
    assert after["migrations"] == before["migrations"] + [("0002_price_nullable",)]


# -- a column's type changes: set aside and back, in one transaction ----------------------------


def test_alter_field_type_sets_views_aside_in_one_transaction(project, lock_holder):
    before = snapshot()
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    # A later migration waits on the test's lock: the state in the middle can be looked at.
    project.migration(
        "0003_wait",
        "0002_bigger_price",
        f"        migrations.RunSQL('SELECT pg_advisory_xact_lock({LOCK_KEY})', migrations.RunSQL.noop),\n",
    )
    proc = project.start("migrate")
    try:
        wait_for("the migration to wait on the lock", advisory_waiter)
        # Mid-migration, other sessions still see the catalog as before: nothing is committed.
        middle = snapshot(data=False)
        assert middle == {k: v for k, v in before.items() if k != "cheapcount"}
    finally:
        lock_holder.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    after = snapshot()
    assert ("price", "bigint") in after["columns"]
    assert after["migrations"] == before["migrations"] + [("0002_bigger_price",), ("0003_wait",)]
    objects = {r[0]: r for r in after["objects"]}
    old = {r[0]: r for r in before["objects"]}
    # Set aside and re-created: new objects; the view that reads only the name was left alone.
    assert objects["shop_cheap"][1] != old["shop_cheap"][1]
    assert objects["shop_cheapcount"][1] != old["shop_cheapcount"][1]
    assert objects["shop_names"][1] == old["shop_names"][1]
    # with_data = False, but it held data: it still does.
    assert objects["shop_cheapcount"][3] is True
    assert q("SELECT n, total FROM shop_cheapcount") == [(2, 12)]
    assert q(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'shop_cheap'::regclass AND attname = 'price'"
    ) == [("bigint",)]
    # -v 1 says what was set aside, re-created and re-populated, with times.
    assert "Set aside 2 views that read what the migrations change (" in out
    assert "shop.Cheap" in out and "shop.CheapCount" in out
    assert "Re-created 2 views set aside for the migrations (" in out
    assert "Re-populated 1 materialized view that held data before (" in out
    project.ok("pgviews_status", "--check")


def test_reader_waits_for_the_migration_instead_of_failing(project, lock_holder):
    project.migration(
        "0002_retype",
        "0001_initial",
        "        migrations.AlterField('item', 'price', models.BigIntegerField()),\n"
        f"        migrations.RunSQL('SELECT pg_advisory_xact_lock({LOCK_KEY})', migrations.RunSQL.noop),\n",
    )
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    proc = project.start("migrate")
    seen: dict[str, Any] = {}

    def reader() -> None:
        conn = psycopg_compat._connect(DB)
        try:
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid()")
            seen["pid"] = cur.fetchone()[0]
            cur.execute("SELECT count(*), sum(price) FROM shop_cheap")
            seen["rows"] = [tuple(r) for r in cur.fetchall()]
        except Exception as exc:  # what the reader would see
            seen["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=reader)
    try:
        wait_for("the migration to wait on the lock", advisory_waiter)
        thread.start()  # starts while the migration runs, after the view was set aside
        wait_for("the reader to start", lambda: "pid" in seen or "error" in seen)
        wait_for(
            "the reader to wait on the view's lock",
            lambda: (
                "error" in seen or q("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [seen["pid"]])
            ),
        )
    finally:
        lock_holder.release()
    out, err = proc.communicate(timeout=300)
    thread.join(timeout=300)
    assert proc.returncode == 0, err
    assert "error" not in seen, seen.get("error")
    assert [(int(a), int(b)) for a, b in seen["rows"]] == [(2, 12)]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_mid_migration_leaves_everything_as_before(project, lock_holder, signum):
    before = snapshot()
    project.migration(
        "0002_retype",
        "0001_initial",
        "        migrations.AlterField('item', 'price', models.BigIntegerField()),\n"
        f"        migrations.RunSQL('SELECT pg_advisory_xact_lock({LOCK_KEY})', migrations.RunSQL.noop),\n",
    )
    proc = project.start("migrate")
    try:
        backend = wait_for("the migration to wait on the lock", advisory_waiter)
        proc.send_signal(signum)
        proc.communicate(timeout=60)
        assert proc.returncode != 0
    finally:
        lock_holder.release()
    # The server notices the client is gone and rolls its transaction back.
    wait_for(
        "the killed migrate's session to end",
        lambda: not q("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]),
    )
    assert snapshot() == before
    assert q("SELECT count(*), sum(price) FROM shop_cheap") == [(2, 12)]


def test_unapplying_a_type_change_sets_views_aside_too(project):
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    project.ok("migrate")
    cheap = oid("shop_cheap")
    done = project.ok("migrate", "shop", "0001_initial")
    assert "Set aside 2 views" in done.stdout
    assert oid("shop_cheap") != cheap
    assert ("price", "integer") in snapshot()["columns"]
    assert q("SELECT n, total FROM shop_cheapcount") == [(2, 12)]


def test_another_apps_migrate_command_is_refused_when_views_must_be_set_aside(project):
    before = snapshot()
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    done = project.django("migrate", TXPROJ_OVERRIDE="1")
    assert done.returncode != 0
    assert "shop.Cheap" in done.stderr and "List django_pgviews_c before that app" in done.stderr
    assert "Nothing was changed" in done.stderr
    assert snapshot() == before


# -- a migration that cannot run in a transaction -----------------------------------------------


def test_non_atomic_migration_is_refused_before_anything_runs(project):
    before = snapshot()
    project.migration(
        "0002_retype",
        "0001_initial",
        "        migrations.AlterField('item', 'price', models.BigIntegerField()),\n",
    )
    project.migration(
        "0003_outside",
        "0002_retype",
        "        migrations.RunSQL('SELECT 1', migrations.RunSQL.noop),\n",
        extra="    atomic = False\n",
    )
    done = project.django("migrate")
    assert done.returncode != 0
    assert "shop.0003_outside cannot run in a transaction (Migration.atomic = False)" in done.stderr
    assert "shop.Cheap" in done.stderr and "shop.CheapCount" in done.stderr
    assert "Nothing was changed" in done.stderr
    assert "manage.py migrate shop 0002_retype" in done.stderr
    assert "Applying" not in done.stdout
    assert snapshot() == before
    # The way out it gives works: the atomic ones first, then the other on its own.
    project.ok("migrate", "shop", "0002_retype")
    project.ok("migrate")
    assert snapshot()["migrations"] == before["migrations"] + [("0002_retype",), ("0003_outside",)]
    assert q("SELECT n, total FROM shop_cheapcount") == [(2, 12)]


def test_non_atomic_migration_without_views_to_set_aside_runs(project):
    project.migration(
        "0002_outside",
        "0001_initial",
        "        migrations.AddField('item', 'stock', models.IntegerField(default=0)),\n",
        extra="    atomic = False\n",
    )
    project.edit_models(
        "    name = models.CharField(max_length=20)\n\n\nclass Cheap",
        "    name = models.CharField(max_length=20)\n    stock = models.IntegerField(default=0)\n\n\nclass Cheap",
    )
    done = project.ok("migrate")
    assert "Set aside" not in done.stdout


# -- views the app does not manage (PGVIEWS_RESTORE_DEPENDANTS) ----------------------------------


@pytest.fixture
def reader_role():
    """A role (roles are server-wide: its name carries the suffix), dropped after the database."""
    if not psycopg_compat.query("postgres", "SELECT 1 FROM pg_roles WHERE rolname = %s", [READER_ROLE]):
        psycopg_compat.query("postgres", f"CREATE ROLE {READER_ROLE} NOLOGIN")
    yield READER_ROLE
    psycopg_compat.drop_database(DB)
    psycopg_compat.query("postgres", f"DROP ROLE IF EXISTS {READER_ROLE}")


def _own_view(role: str) -> None:
    q("CREATE VIEW report AS SELECT name, price * 2 AS doubled FROM shop_item")
    q(f"GRANT SELECT ON report TO {role}")
    q("COMMENT ON VIEW report IS 'made by hand'")


def test_unmanaged_dependant_is_named_with_the_way_out(reader_role, project):
    _own_view(reader_role)
    before = snapshot()
    report = oid("report")
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    done = project.django("migrate")
    assert done.returncode != 0
    first = done.stderr.strip().splitlines()[0]
    assert "public.report" in first and "PGVIEWS_RESTORE_DEPENDANTS = True" in first
    assert "Nothing was changed" in done.stderr
    assert snapshot() == before and oid("report") == report


def test_unmanaged_dependants_are_restored_in_the_same_transaction(reader_role, project):
    _own_view(reader_role)
    # A view of the project's over a view it does not manage (which reads the table).
    q("CREATE VIEW raw_cheap AS SELECT id, price FROM shop_item WHERE price < 10")
    project.edit_models(
        "class Names(pg.MaterializedView):",
        "class OverRaw(pg.View):\n"
        '    sql = "SELECT id, price FROM raw_cheap"\n'
        "    price = models.IntegerField()\n\n"
        "    class Meta:\n        managed = False\n\n\n"
        "class Names(pg.MaterializedView):",
    )
    project.ok("sync_pgviews", "-v", "0")
    # And one of the user's over a view of the project's: restored after the sync.
    q("CREATE VIEW cheap_total AS SELECT sum(price) AS total FROM shop_cheap")
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    done = project.ok("migrate", TXPROJ_RESTORE="1")
    assert (
        "Restored 3 views django-pgviews-c does not manage: public.raw_cheap, public.report, public.cheap_total"
        in done.stdout
    )
    assert q("SELECT total FROM cheap_total") == [(12,)]
    assert q("SELECT name, doubled FROM report ORDER BY name") == [("a", 10), ("b", 14), ("c", 40)]
    assert q("SELECT obj_description('report'::regclass, 'pg_class')") == [("made by hand",)]
    assert q("SELECT has_table_privilege(%s, 'report', 'SELECT')", [reader_role]) == [(True,)]
    assert q("SELECT count(*) FROM shop_overraw") == [(2,)]
    assert q(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'report'::regclass AND attname = 'doubled'"
    ) == [("bigint",)]


CHAIN = 1200


def _chain(length: int) -> None:
    """chain_1 reads shop_item.price, chain_i reads chain_(i - 1); created in transactions of
    100 views, so that no transaction of the set-up is large."""
    q("CREATE VIEW chain_1 AS SELECT id, price FROM shop_item")
    for first in range(2, length + 1, 100):
        q(
            f"DO $$ BEGIN FOR i IN {first}..{min(first + 99, length)} LOOP "
            "EXECUTE format('CREATE VIEW chain_%s AS SELECT id, price FROM chain_%s', i, i - 1); "
            "END LOOP; END $$"
        )


def test_the_set_aside_walk_reaches_the_end_of_a_chain_of_1200_views(project):
    """Deeper than any fixed cap of 1000 (aside_sql's walk had one): deepest first."""
    _chain(CHAIN)
    found = q(_core.aside_sql(), {"tables": ["shop_item"], "columns": ["price"]})
    depths = [(name, depth) for _, _, name, _, depth, *_ in found if name.startswith("chain_")]
    assert depths == [(f"chain_{i}", i) for i in range(CHAIN, 0, -1)]


def test_a_chain_of_1200_unmanaged_views_is_set_aside_and_restored(project):
    """About 8,400 locks in the migrate's one transaction (4 per dropped view, 3 per created
    one): README says what a long chain costs. The lock table holds max_locks_per_transaction x
    max_connections (6,400 with the defaults) and some slack that the sessions of a parallel
    test run share: the test runs where it holds twice that."""
    slots = q(
        "SELECT current_setting('max_locks_per_transaction')::int * current_setting('max_connections')::int"
    )
    if slots[0][0] < 2 * 8400:
        pytest.skip(f"a lock table of {slots[0][0]} slots: too small for a migrate of a 1,200-view chain")
    _chain(CHAIN)
    chain_oids = "SELECT relname::text, oid::bigint FROM pg_class WHERE relname LIKE 'chain_%'"
    before = dict(q(chain_oids))
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    done = project.ok("migrate", TXPROJ_RESTORE="1")
    assert f"Restored {CHAIN} views django-pgviews-c does not manage: public.chain_1, " in done.stdout
    after = dict(q(chain_oids))
    assert len(before) == CHAIN and set(after) == set(before)  # every one re-created
    assert all(after[name] != before[name] for name in before)
    assert q(f"SELECT sum(price)::int FROM chain_{CHAIN}") == [(32,)]
    assert q(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = 'chain_{CHAIN}'::regclass AND attname = 'price'"
    ) == [("bigint",)]


def test_grants_and_comments_of_managed_views_survive(reader_role, project):
    q(f"GRANT SELECT ON shop_cheap TO {reader_role}")
    q("COMMENT ON VIEW shop_cheap IS 'cheap things'")
    project.ok("sync_pgviews", "-v", "0")  # stamps below the user's comment
    project.edit_models(
        "price = models.IntegerField()\n    name", "price = models.BigIntegerField()\n    name"
    )
    project.ok("makemigrations", "shop", "-n", "bigger_price")
    project.ok("migrate")
    assert q("SELECT has_table_privilege(%s, 'shop_cheap', 'SELECT')", [reader_role]) == [(True,)]
    comment = q("SELECT obj_description('shop_cheap'::regclass, 'pg_class')")[0][0]
    assert comment.startswith("cheap things\n")
    # The stamp below the comment is intact: every view is in sync.
    project.ok("pgviews_status", "--check")


def test_unmanaged_dependant_that_cannot_be_restored_changes_nothing(reader_role, project):
    _own_view(reader_role)
    before = snapshot()
    report = oid("report")
    project.edit_models("    price = models.IntegerField()\n    name", "    name")
    project.ok("makemigrations", "shop", "-n", "drop_price")
    done = project.django("migrate", TXPROJ_RESTORE="1")
    assert done.returncode != 0
    assert "restore public.report" in done.stderr and "price" in done.stderr
    assert "at line 2, column" in done.stderr and "price * 2) AS doubled" in done.stderr  # its definition
    assert snapshot() == before and oid("report") == report
