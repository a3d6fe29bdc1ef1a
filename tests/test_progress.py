"""A sync says at -v 1 what it re-created and re-populated, with times and rows, and once the
work has gone on for a few seconds a line per materialized view as each is finished; migrate's
sync too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from django_pgviews_c.sync import Syncer
from tests import processes, psycopg_compat
from tests.helpers import ViewSet, execute


@pytest.fixture
def src(db):
    execute("CREATE TABLE t_src (id int PRIMARY KEY, v int); INSERT INTO t_src VALUES (1, 10), (2, 20)")


def _sync(vs: ViewSet, verbosity: int = 1) -> list[str]:
    lines: list[str] = []
    chosen = list(vs.models.values())
    Syncer(
        connection, chosen, {m._meta.label for m in chosen}, verbosity=verbosity, progress=lines.append
    ).run()
    return lines


def test_rebuilt_views_are_reported_with_time_and_rows(src):
    vs = ViewSet()
    vs.view("A", "SELECT id, v FROM t_src")
    vs.view("M", "SELECT id, v FROM t_a", materialized=True, dependencies=("viewtest.A",))
    assert _sync(vs) == []  # created for the first time: the command's summary counts them
    vs.view("M", "SELECT id, v * 2 AS v FROM t_a", materialized=True, dependencies=("viewtest.A",))
    lines = _sync(vs)
    assert len(lines) == 1, lines
    words = lines[0].split()
    assert words[:2] == ["UPDATED", "viewtest.M"], lines
    assert lines[0].endswith(", 2 rows") and "s, " in lines[0], lines
    assert _sync(vs) == []  # nothing to do, nothing said


@override_settings(PGVIEWS_PROGRESS_AFTER_SECONDS=0)
def test_past_the_threshold_each_finished_view_gets_a_line(src):
    vs = ViewSet()
    vs.view("M1", "SELECT id, v FROM t_src", materialized=True)
    vs.view("M2", "SELECT id FROM t_src WHERE v > 10", materialized=True)
    lines = _sync(vs)
    built = sorted(line.split()[1] for line in lines if line.split()[0] == "built")
    assert built == ["viewtest.M1", "viewtest.M2"], lines
    assert any(line.endswith(", 2 rows") for line in lines if "viewtest.M1" in line), lines
    assert any(line.endswith(", 1 rows") for line in lines if "viewtest.M2" in line), lines


def test_below_the_threshold_no_progress_lines(src):
    vs = ViewSet()
    vs.view("M1", "SELECT id, v FROM t_src", materialized=True)
    assert [line for line in _sync(vs) if line.split()[0] == "built"] == []


# -- migrate's sync, in a real process ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = os.environ.get("PGVIEWS_DB_SUFFIX", "") + "_progress"
DBNAME = "pgviews_c" + SUFFIX


def django(*args: str) -> subprocess.CompletedProcess:
    return processes.django(*args, suffix=SUFFIX)


@pytest.fixture(scope="module")
def process_db():
    with processes.migrated_database(DBNAME, django):
        yield


def test_migrate_says_what_its_sync_rebuilt(process_db):
    psycopg_compat.query(DBNAME, "INSERT INTO viewtest_testmodel (name) VALUES ('a'), ('b'), ('c')")
    # Changed by hand: the sync rebuilds it from its declaration.
    psycopg_compat.query(
        DBNAME,
        "DROP MATERIALIZED VIEW viewtest_materializedrelatedview CASCADE; "
        "CREATE MATERIALIZED VIEW viewtest_materializedrelatedview AS "
        "SELECT id AS model_id, id FROM viewtest_testmodel WHERE false",
    )
    done = django("migrate", "-v", "1")
    assert done.returncode == 0, done.stderr
    line = next(
        (line for line in done.stdout.splitlines() if "viewtest.MaterializedRelatedView" in line), None
    )
    assert line is not None, done.stdout
    assert line.split()[0] in ("UPDATED", "FORCED"), line
    assert line.endswith(", 3 rows"), line
