"""An object that carries our fingerprint but that no declaration claims any more (a renamed
db_table) is reported as orphaned and dropped only when asked (sync_pgviews --prune)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from django_pgviews_c.exceptions import DependantObjectError
from django_pgviews_c.status import view_status
from tests.helpers import ViewSet, execute, relkind, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def renamed():
    """viewtest.R was synced as t_old, then its db_table was renamed to t_new."""
    execute("CREATE TABLE t_src (id int PRIMARY KEY); INSERT INTO t_src VALUES (1)")
    vs = ViewSet()
    vs.view("R", "SELECT id FROM t_src", materialized=True, db_table="t_old")
    vs.sync()
    vs.view("R", "SELECT id FROM t_src", materialized=True, db_table="t_new")
    return vs


def test_renamed_db_table_leaves_an_orphan_that_is_reported_not_dropped(renamed):
    r = renamed.sync()
    # The project's own views are orphans to this ViewSet too: it declares only its own.
    assert ("public.t_old", "m") in r.orphans and ("public.t_new", "m") not in r.orphans
    assert relkind("t_old") == "m" and relkind("t_new") == "m"
    assert renamed.sync().actions == []  # in sync for its declarations; the orphan stays
    assert relkind("t_old") == "m"


def test_prune_drops_the_orphan_and_its_dependants_that_are_ours(renamed):
    renamed.sync()
    renamed.view("D", "SELECT id FROM t_new", dependencies=("viewtest.R",))
    renamed.sync()
    r = renamed.sync(prune=True)
    assert "public.t_old" in [a.target for a in r.actions if a.op == "drop"]
    assert not [a for a in r.actions if a.op != "drop" and a.op != "stamp"]
    assert relkind("t_old") is None and relkind("t_new") == "m" and relkind("t_d") == "v"
    assert renamed.sync(prune=True).actions == []


def test_prune_refuses_when_an_object_we_do_not_manage_reads_the_orphan(renamed):
    renamed.sync()
    execute("CREATE VIEW mine AS SELECT id FROM t_old")
    before = snapshot()
    with pytest.raises(DependantObjectError) as err:
        renamed.sync(prune=True)
    assert "public.mine" in str(err.value) and "t_old, which --prune drops" in str(err.value)
    assert snapshot() == before


def test_pgviews_status_shows_orphans_and_check_fails(capsys):
    """The project's own views, plus a stamped view that nothing declares."""
    call_command("sync_pgviews", verbosity=0)
    execute("CREATE VIEW gone_view AS SELECT 1 AS id")
    execute("COMMENT ON VIEW gone_view IS 'django-pgviews-c:1 body=0 idx=0 rw=0 def=0'")
    rows = {r.label: r for r in view_status()}
    assert rows["public.gone_view"].state == "orphaned"
    assert rows["public.gone_view"].kind == "view"
    with pytest.raises(CommandError, match="not in sync"):
        call_command("pgviews_status", "--check")
    call_command("sync_pgviews", "--prune", verbosity=0)
    assert relkind("gone_view") is None
    assert "public.gone_view" not in {r.label for r in view_status()}
