"""migrate whose sync of the views fails after its migrations ran: the error names the view and
says what the migrations left, since their "OK" lines are printed above it (a typo in a view's
SQL shipped with a migration, as a project of tests/txproj, each command a real process)."""

from __future__ import annotations

import pytest

from tests import psycopg_compat
from tests.test_migrate_aside import DB as ASIDE_DB
from tests.test_migrate_aside import Project, migrated_project

DB = ASIDE_DB.replace("pgvc_tx", "pgvc_oc", 1)


class OutcomeProject(Project):
    db = DB


def q(sql: str) -> list[tuple]:
    return psycopg_compat.query(DB, sql)


def objects() -> list[tuple]:
    return q(
        "SELECT relname::text, oid::bigint, relispopulated FROM pg_class "
        "WHERE relname IN ('shop_cheap', 'shop_cheapcount', 'shop_names') ORDER BY 1"
    )


@pytest.fixture
def project(tmp_path):
    yield from migrated_project(tmp_path, OutcomeProject)


def test_failed_sync_says_the_migrations_stay_applied_and_the_views_unchanged(project):
    before = objects()
    rows = q("SELECT id, name FROM shop_names ORDER BY id")
    project.edit_models(
        "    name = models.CharField(max_length=20)\n\n\nclass Cheap",
        (
            "    name = models.CharField(max_length=20)\n    note = models.TextField(null=True)\n\n\nclass Cheap"
        ),
    )
    project.migration(
        "0002_note",
        "0001_initial",
        "        migrations.AddField('item', 'note', models.TextField(null=True)),\n",
    )
    project.edit_models('sql = "SELECT id, name FROM shop_item"', 'sql = "SELECT id, nmae FROM shop_item"')
    done = project.django("migrate")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Applying shop.0002_note... OK" in done.stdout
    err = done.stderr
    assert "shop.Names" in err and 'column "nmae" does not exist' in err, err
    assert "The migrations above stay applied (showmigrations lists them)" in err, err
    assert "the views are as they were before migrate" in err
    # True: the migration is recorded and its column is there; the views were not touched.
    assert q("SELECT name::text FROM django_migrations WHERE app = 'shop' ORDER BY id")[-1] == ("0002_note",)
    assert q(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'shop_item' AND column_name = 'note'"
    ) == [(1,)]
    assert objects() == before
    assert q("SELECT id, name FROM shop_names ORDER BY id") == rows


def test_a_field_the_view_lacks_is_said_once_by_migrate(project):
    """A field added to a view's model with its SQL left as it was: the system checks migrate
    runs first (W007) and the sync after the migrations both found it, and migrate said it
    three times (the sync's warning on stdout and again through logging's last resort). It is
    said once, by the sync, with what to do; `check` and `sync_pgviews` alone each say it, and
    PGVIEWS_STRICT_COLUMNS fails migrate with nothing changed."""
    project.edit_models(
        'sql = "SELECT id, name FROM shop_item"\n    name = models.CharField(max_length=20)',
        'sql = "SELECT id, name FROM shop_item"\n    name = models.CharField(max_length=20)\n'
        "    note = models.TextField(null=True)",
    )
    said = "shop.Names.note: the view shop_names on database 'default' has no column 'note'"
    done = project.ok("migrate")
    out = done.stdout + done.stderr
    assert out.count(said) == 1 and "W007" not in out, out
    assert (
        f"{said} (its columns: id, name); a query that selects the field fails. Add a column "
        "'note' to the view's SQL, or set db_column on the field to a column it has." in out
    ), out
    checked = project.ok("check", "--database", "default")
    assert "(django_pgviews_c.W007) " + said in checked.stderr, checked.stderr
    for command in (("sync_pgviews",), ("migrate", "--skip-checks")):
        done = project.ok(*command)
        assert (done.stdout + done.stderr).count(said) == 1, done.stdout + done.stderr
    before = objects()
    failed = project.django("migrate", TXPROJ_STRICT_COLUMNS="1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    out = failed.stdout + failed.stderr
    assert out.count(said) == 1 and "PGVIEWS_STRICT_COLUMNS is on: nothing was changed" in out, out
    assert objects() == before
