"""migrate renames a column or a table that views read: PostgreSQL follows, the views keep
working and are left alone, and migrate warns about each view whose declared SQL no longer
builds (django_pgviews_c/buildcheck.py). The project of tests/test_migrate_aside.py (tests/txproj),
on a database of its own, each command a real `python -m django` process."""

from __future__ import annotations

import pytest
from django.db import migrations, models

from django_pgviews_c.buildcheck import renaming_migrations
from tests import psycopg_compat
from tests.test_migrate_aside import DB as ASIDE_DB
from tests.test_migrate_aside import Project, migrated_project

DB = ASIDE_DB.replace("pgvc_tx", "pgvc_rn", 1)

NAME_TO_TITLE = "        migrations.RenameField('item', 'name', 'title'),\n"
CHEAP_SQL = "SELECT id, price, name\n        FROM shop_item"
NAMES_SQL = 'sql = "SELECT id, name FROM shop_item"'


def q(sql: str, params=None) -> list[tuple]:
    return psycopg_compat.query(DB, sql, params)


class RenameProject(Project):
    db = DB


def objects() -> list[tuple]:
    return q(
        "SELECT relname::text, oid::bigint, relkind::text, relispopulated FROM pg_class "
        "WHERE relname IN ('shop_cheap', 'shop_cheapcount', 'shop_names') ORDER BY 1"
    )


@pytest.fixture
def project(tmp_path):
    yield from migrated_project(tmp_path, RenameProject)


def rename_name_to_title(project: RenameProject) -> None:
    project.edit_models(
        "    name = models.CharField(max_length=20)\n\n\nclass Cheap",
        "    title = models.CharField(max_length=20)\n\n\nclass Cheap",
    )
    project.migration("0002_rename", "0001_initial", NAME_TO_TITLE)


def test_renamed_column_warns_naming_each_view_and_changes_nothing(project):
    before = objects()
    rows = q("SELECT id, name FROM shop_names ORDER BY id")
    rename_name_to_title(project)
    done = project.ok("migrate")
    out = done.stdout
    # The view and the materialized view that name the column in their SQL, with the error as
    # the sync's build errors say it; not the one that reads the view (its column keeps its name).
    assert "the declared SQL of 2 views no longer builds" in out
    assert "(shop.0002_rename)" in out
    assert 'shop.Cheap (shop_cheap): column "name" does not exist (SQLSTATE 42703)' in out
    assert 'shop.Names (shop_names): column "name" does not exist (SQLSTATE 42703)' in out
    assert "at line 1, column 19 of its SQL:\n      SELECT id, price, name\n" in out
    assert "at line 1, column 12 of its SQL:\n      SELECT id, name FROM shop_item\n" in out
    assert "shop.CheapCount" not in out
    assert "still work (PostgreSQL followed the rename)" in out
    assert "a fresh database" in out
    # Said once: on the command's output, not again on stderr by logging's last-resort handler
    # (the project configures no handler for the package's loggers, as Django's default has none).
    assert out.count("no longer builds") == 1
    assert "no longer builds" not in done.stderr, done.stderr
    # Nothing changed: the same objects, populated, with the same rows; nothing left beside.
    assert objects() == before
    assert q("SELECT id, name FROM shop_names ORDER BY id") == rows
    assert q("SELECT count(*) FROM pg_class WHERE relname LIKE '%%pgvc_check%%'") == [(0,)]
    assert q("SELECT name::text FROM django_migrations WHERE app = 'shop' ORDER BY id")[-1] == (
        "0002_rename",
    )
    # pgviews_status says it at any time, and --check fails on it; the next sync changes nothing.
    status = project.django("pgviews_status", "--check")
    assert status.returncode == 1
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("shop.")}
    assert "unbuildable" in lines["shop.Cheap"] and 'column "name" does not exist' in lines["shop.Cheap"]
    assert "unbuildable" in lines["shop.Names"]
    assert "in sync" in lines["shop.CheapCount"]
    assert "2 views work in the database but their declared SQL no longer builds" in status.stderr
    assert "(shop.Cheap, shop.Names)" in status.stderr
    assert "no longer builds" not in project.ok("sync_pgviews").stdout
    assert objects() == before


def test_the_warning_honours_verbosity(project):
    rename_name_to_title(project)
    done = project.ok("migrate", "-v", "0")
    assert done.stdout == ""
    # Not said on the output: logged, so the warning still reaches the terminal, once.
    assert done.stderr.count("the declared SQL of 2 views no longer builds") == 1, done.stderr


def _migrate_help_text(project: RenameProject, name: str, dependency: str, help_text: str):
    """A migration that may rename (an AlterField of item.price's help_text), migrated: no view
    is said to no longer build."""
    project.migration(
        name,
        dependency,
        f"        migrations.AlterField('item', 'price', models.IntegerField(help_text={help_text!r})),\n",
    )
    done = project.ok("migrate")
    assert "no longer builds" not in done.stdout
    return done


def test_after_the_sql_is_updated_migrate_says_nothing(project):
    rename_name_to_title(project)
    assert "no longer builds" in project.ok("migrate").stdout
    project.edit_models(CHEAP_SQL, "SELECT id, price, title AS name\n        FROM shop_item")
    project.edit_models(NAMES_SQL, 'sql = "SELECT id, title AS name FROM shop_item"')
    before = objects()
    # The next migration that can rename: the fixed views were rebuilt by the sync, and the one
    # kept (CheapCount) still builds.
    done = _migrate_help_text(project, "0003_help", "0002_rename", "cents")
    assert "Warning" not in done.stdout + done.stderr
    assert [r[0] for r in objects()] == [r[0] for r in before]
    before = objects()
    # And once more, with nothing rebuilt: every view kept, every declaration checked.
    _migrate_help_text(project, "0004_help", "0003_help", "in cents")
    assert objects() == before  # nothing rebuilt


def test_updating_the_sql_after_a_rename_keeps_the_materialized_view(project):
    """The SQL updated to the new name, as the warning asks, renders as the view PostgreSQL
    kept: the materialized view is kept with its rows and restamped, not rebuilt (katago-server's
    four count views were each rebuilt in migrate for a renamed column they all read)."""
    rename_name_to_title(project)
    project.ok("migrate")
    before = {row[0]: row for row in objects()}
    rows = q("SELECT id, name FROM shop_names ORDER BY id")
    project.edit_models(NAMES_SQL, 'sql = "SELECT id, title AS name FROM shop_item"')
    done = project.ok("migrate")
    assert {row[0]: row for row in objects()}["shop_names"] == before["shop_names"], done.stdout
    assert q("SELECT id, name FROM shop_names ORDER BY id") == rows
    assert "UPDATED" not in done.stdout, done.stdout
    # Restamped: the next sync finds it in sync, and a real change is still rebuilt.
    assert "shop.Names" not in project.ok("sync_pgviews").stdout
    project.edit_models(
        'sql = "SELECT id, title AS name FROM shop_item"',
        'sql = "SELECT id, upper(title) AS name FROM shop_item"',
    )
    project.ok("sync_pgviews")
    assert {row[0]: row for row in objects()}["shop_names"][1] != before["shop_names"][1]


def test_a_lock_on_what_views_read_makes_the_check_stop_not_wait_nor_refuse(project):
    """A session holding ACCESS EXCLUSIVE on the table the views read (an ALTER, a plain REFRESH
    elsewhere): pgviews_status's check stops after the short lock_timeout instead of waiting,
    and judges no view unbuildable for it (buildcheck.unbuildable)."""
    rename_name_to_title(project)
    project.ok("migrate", "-v", "0")
    holder = psycopg_compat._connect(DB)
    try:
        cur = holder.cursor()
        cur.execute("BEGIN")
        cur.execute("LOCK TABLE shop_item IN ACCESS EXCLUSIVE MODE")
        status = project.django("pgviews_status")
        # Still held after the command returned: it did not wait for the lock's release.
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = 'shop_item'::regclass AND granted "
            "AND pid = pg_backend_pid()"
        )
        assert cur.fetchone()[0] >= 1
        cur.execute("ROLLBACK")
    finally:
        holder.close()
    assert status.returncode == 0, status.stderr
    assert "unbuildable" not in status.stdout
    # Once the lock is gone the check judges them again.
    assert "unbuildable" in project.django("pgviews_status").stdout


def test_renamed_table_warns_for_the_views_naming_it(project):
    before = objects()
    project.rename_item_to_article()
    done = project.ok("migrate")
    assert 'shop.Cheap (shop_cheap): relation "shop_item" does not exist (SQLSTATE 42P01)' in done.stdout
    assert 'shop.Names (shop_names): relation "shop_item" does not exist (SQLSTATE 42P01)' in done.stdout
    assert "shop.CheapCount" not in done.stdout
    assert objects() == before


def _statements(stderr: str) -> list[str]:
    """The records of django.db.backends: "(seconds) SQL; args=...; alias=...", maybe on
    several lines."""
    return ["(" + record for record in ("\n" + stderr).split("\n(")[1:]]


def test_migrate_without_renaming_operations_sends_no_check(project):
    project.migration(
        "0002_add",
        "0001_initial",
        "        migrations.AddField('item', 'size', models.IntegerField(null=True)),\n",
    )
    project.edit_models(
        "    price = models.IntegerField()\n",
        "    price = models.IntegerField()\n    size = models.IntegerField(null=True)\n",
    )
    done = project.ok("migrate", TXPROJ_LOG_QUERIES="1")
    sent = _statements(done.stderr)
    assert any("ADD COLUMN" in s for s in sent)  # the log holds what migrate sent
    assert not any("_pgvc_check" in s for s in sent)
    # A RunSQL can rename anything: the declarations are checked (in one round trip, all good).
    project.migration(
        "0003_sql", "0002_add", "        migrations.RunSQL('SELECT 1', migrations.RunSQL.noop),\n"
    )
    done = project.ok("migrate", TXPROJ_LOG_QUERIES="1")
    checks = [s for s in _statements(done.stderr) if "_pgvc_check" in s]
    assert len(checks) == 1 and checks[0].count("CREATE ") == 3
    assert "no longer builds" not in done.stdout


def _migration(*operations: object) -> migrations.Migration:
    migration = migrations.Migration("0009_x", "shop")
    migration.operations = list(operations)
    return migration


def test_which_operations_can_rename():
    renames = [
        migrations.RenameField("item", "a", "b"),
        migrations.AlterField("item", "a", models.IntegerField(db_column="b")),
        migrations.RenameModel("Item", "Thing"),
        migrations.AlterModelTable("item", "t"),
        migrations.RunSQL("ALTER TABLE t RENAME a TO b"),
        migrations.SeparateDatabaseAndState(database_operations=[migrations.RenameField("item", "a", "b")]),
    ]
    for op in renames:
        assert renaming_migrations([(_migration(op), False)]) == ["shop.0009_x"], op
        assert renaming_migrations([(_migration(op), True)]) == ["shop.0009_x"], op  # un-applied
    others = [
        migrations.AddField("item", "c", models.IntegerField(null=True)),
        migrations.RemoveField("item", "a"),  # what reads it is set aside and re-created
        migrations.DeleteModel("Item"),
        migrations.RunPython(migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(state_operations=[migrations.RenameField("item", "a", "b")]),
    ]
    assert renaming_migrations([(_migration(*others), False)]) == []
    assert renaming_migrations(None) == [] and renaming_migrations([]) == []
