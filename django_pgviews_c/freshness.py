"""Staleness and due-ness of materialized views, from one catalog query.

A materialized view is stale when a relation it reads (directly or through views, down to
tables, foreign tables and other materialized views) had writes since its last successful
refresh began. Each refresh records, when it starts, the relfilenode and the write counter
(``n_tup_ins + n_tup_upd + n_tup_del`` of the cumulative statistics) of every such relation
(history.py); the check compares them with their values now. Every doubt counts as stale:
counters that went down (a reset, a crash), a database whose statistics were reset, relations
without statistics (foreign tables, ``track_counts = off``), a view never refreshed by this app.

A view declared with ``staleness = "exact"`` is judged, for each table that carries the exact
mode's trigger (exact.py), by the statements committed on it instead: a committed write is seen
at once, a rolled-back one never. A table without the trigger is judged by the statistics.
"""

from __future__ import annotations

__all__ = [
    "ViewFreshness", "freshness", "stale_models", "due_models", "closure", "next_due", "staleness_mode",
    "PassResult", "plan_pass", "refresh_pass",
]  # fmt: skip

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_pgviews_c import _core
from django_pgviews_c import view as pg
from django_pgviews_c.dberrors import execute_script
from django_pgviews_c.wording import plural

_CLOSURE_SQL = _core.freshness_sql()
_CLOSURE_EXACT_SQL = _core.freshness_sql(exact=True)
_CLEAR_SNAPSHOT_SQL = _core.query_sql("clear_stats_snapshot")


def qualified(model: type[pg.View]) -> str:
    return _core.qualified_name(*_core.split_table(model._meta.db_table))


STALENESS_MODES = ("statistics", "exact")


def staleness_mode(model: type[pg.View]) -> str:
    """A materialized view's ``staleness``: "statistics" (the default) or "exact"."""
    mode = getattr(model, "staleness", "statistics")
    if mode not in STALENESS_MODES:
        raise ValueError(f'{model._meta.label}.staleness must be "statistics" or "exact", not {mode!r}')
    return mode


def is_exact(model: type[pg.View]) -> bool:
    return issubclass(model, pg.MaterializedView) and staleness_mode(model) == "exact"


@dataclass
class Source:
    oid: int
    name: str
    relkind: str
    relfilenode: int
    counter: int | None  # None: no statistics for this relation
    trigger: int | None = None  # the exact mode's trigger on it (exact views only)
    writes: int | None = None  # statements committed on it, counted by that trigger


@dataclass
class ViewState:
    """What the catalog says of one materialized view now."""

    oid: int | None  # None: the view does not exist
    populated: bool
    stats_reset: str | None
    sources: dict[int, Source] = field(default_factory=dict)
    # The isolation level of the caller's transaction, when read inside one that is not READ
    # COMMITTED: a REFRESH later in that transaction reads its snapshot, which may be older than
    # these counters (a write committed in between would be counted, not in the data).
    isolation: str | None = None
    # The database's identity: its oid and its cluster's system identifier. A record taken in
    # another (a dump restored here) says nothing of this one, whose relations a new cluster
    # may give the very oids and relfilenodes the record's sources are keyed by.
    database: list[int] | None = None

    def snapshot(self) -> dict[str, Any]:
        """The JSON form a refresh record keeps (history.RefreshRecord.sources)."""
        snap = {
            "populated": self.populated,
            "stats_reset": self.stats_reset,
            "database": self.database,
            "rels": {
                str(s.oid): [s.relfilenode, s.counter, s.relkind, s.name]
                + ([[s.trigger, s.writes]] if s.trigger is not None else [])
                for s in self.sources.values()
            },
        }
        if self.isolation:
            snap["isolation"] = self.isolation
        return snap


def closure(
    connection: BaseDatabaseWrapper,
    models: Sequence[type[pg.View]],
    *,
    fresh_stats: bool = True,
    names: Sequence[str] | None = None,
) -> list[ViewState]:
    """One catalog query: for each model, its oid, populated flag and every relation it reads
    with relfilenode and write counter. ``fresh_stats`` drops the statistics snapshot a
    transaction may hold (stats_fetch_consistency), so the counters are read anew. ``names``
    (quoted qualified names, one per model) reads other relations than the models' own: the
    new version of a deferred rebuild, waiting beside the old one."""
    states = [ViewState(None, False, None) for _ in models]
    if not models:
        return states
    params = [list(names) if names is not None else [qualified(m) for m in models]]
    sql = _CLOSURE_EXACT_SQL if any(is_exact(m) for m in models) else _CLOSURE_SQL
    in_transaction = connection.in_atomic_block or not connection.get_autocommit()
    if connection.in_atomic_block:
        # Inside the caller's transaction: in a savepoint rolled back after the read, so that
        # SET LOCAL ends with it; the statistics snapshot the transaction holds is dropped.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if fresh_stats:
                cursor.execute(_CLEAR_SNAPSHOT_SQL)
            rows = _read(cursor, sql, params)
            transaction.set_rollback(True, using=connection.alias)
    else:
        with connection.cursor() as cursor:
            rows = _read(cursor, sql, params)
    for n, oid, name, relkind, relfilenode, counter, populated, stats_reset, trigger, writes in rows:
        state = states[n - 1]
        if relkind == "self":
            state.oid, state.populated = oid, bool(populated)
            state.stats_reset = stats_reset
            state.database = [relfilenode, counter]  # the self row: the database's oid, cluster
            if in_transaction and name not in (None, "read committed", "read uncommitted"):
                state.isolation = name
        else:
            exact = is_exact(models[n - 1])
            state.sources[oid] = Source(
                oid,
                name,
                relkind,
                relfilenode,
                counter,
                trigger if exact else None,
                writes if exact else None,
            )
    return states


def _read(cursor: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """The closure query with JIT off: the recursive part's cost estimate crosses
    jit_above_cost, and compiling takes far longer than the query (as for the sync's catalog
    query). Outside a transaction the two statements form one implicit transaction."""
    # Two statements in one string: through a client-side cursor when the connection binds
    # parameters on the server (psycopg 3's server_side_binding), which refuses that.
    results = execute_script(cursor, "SET LOCAL jit = off;\n" + sql, params)
    while results.description is None and results.nextset():  # psycopg 3 starts at the SET
        pass
    return [tuple(row) for row in results.fetchall()]


@dataclass
class ViewFreshness:
    label: str
    model: type[pg.View]
    exists: bool
    stale: bool
    reasons: list[str]
    last_ok: Any = None  # history.RefreshRecord of the last successful refresh, or None
    last_failure: Any = None  # the last failed one, when newer than last_ok
    interval: dt.timedelta | None = None
    mode: str = "statistics"  # staleness: "statistics" or "exact"
    due: bool = False
    due_at: dt.datetime | None = None  # when a stale view falls due (now or later)
    #: Why its refresh_interval is unusable (None: it is not): the view is never due.
    misconfigured: str | None = None
    state: ViewState | None = field(default=None, repr=False, compare=False)  # what the check read

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)


def refresh_interval(model: type[pg.View]) -> dt.timedelta | None:
    from django_pgviews_c.exceptions import RefreshIntervalError

    interval = getattr(model, "refresh_interval", None)
    if interval is None:
        return None
    if not isinstance(interval, dt.timedelta) or interval < dt.timedelta(0):
        raise RefreshIntervalError(
            f"{model._meta.label}.refresh_interval is {interval!r}: it must be a datetime.timedelta "
            f"of 0 or more (datetime.timedelta(minutes=15), say), or None (refreshed by --stale or "
            f"by hand)"
        )
    return interval


def _interval(model: type[pg.View]) -> tuple[dt.timedelta | None, str | None]:
    """The view's refresh_interval, or None and why it is unusable: one view's bad value makes
    that view misconfigured (never due), not every view's status, --stale and --due fail."""
    from django_pgviews_c.exceptions import RefreshIntervalError

    try:
        return refresh_interval(model), None
    except RefreshIntervalError as exc:
        return None, str(exc)


def _kind(relkind: str) -> str:
    return {"m": "materialized view", "f": "foreign table", "p": "partitioned table"}.get(relkind, "table")


def judge(
    state: ViewState,
    last_ok: Any,
    refreshed_since: dict[int, dt.datetime],
) -> list[str]:
    """Why a view is stale (empty: fresh). ``refreshed_since`` maps the oid of each materialized
    view this app refreshed to the start of its last successful refresh. A table that carries
    the exact mode's trigger now and carried the same one at the last refresh is judged by the
    statements committed on it only (a TRUNCATE is one of them); any other, by the statistics."""
    if state.oid is None:
        return ["does not exist"]
    if not state.populated:
        return ["not populated"]
    if last_ok is None or not last_ok.sources:
        return ["no successful refresh recorded"]
    snap = last_ok.sources
    elsewhere = _elsewhere(snap, state)
    if elsewhere:
        return [elsewhere]
    reasons = []
    if snap.get("isolation"):
        reasons.append(
            f"its last refresh ran in a {snap['isolation']} transaction, whose snapshot may be older "
            "than the counters it recorded"
        )
    rels = snap.get("rels", {})
    # Names read at the last refresh under an oid no relation of the view has now: a source
    # read under such a name again was re-created since (new oid, new statistics).
    gone = {before[3] for oid, before in rels.items() if int(oid) not in state.sources and len(before) > 3}
    recreated = []
    by_statistics = False
    for source in state.sources.values():
        name = f"{_kind(source.relkind)} {source.name}"
        before = rels.get(str(source.oid))
        exact_before = before[4] if before is not None and len(before) > 4 else None
        if source.trigger is not None and exact_before is not None and exact_before[0] == source.trigger:
            if source.writes < exact_before[1]:
                reasons.append(f"{name}'s exact counter went down")
            elif source.writes > exact_before[1]:
                reasons.append(f"{name} had {source.writes - exact_before[1]} statements committed")
            continue
        by_statistics = True
        if source.counter is None:
            reasons.append(f"{name} has no statistics")
            continue
        if before is None:
            if source.name in gone:
                recreated.append(name)
            else:
                reasons.append(f"{name} was not read at the last refresh")
            continue
        why = _by_counters(source, name, before, last_ok, refreshed_since)
        if why:
            reasons.append(why)
    reasons[:0] = _recreated(recreated, len(state.sources))
    if by_statistics and snap.get("stats_reset") != state.stats_reset:
        reasons.insert(0, "the database's statistics were reset")
    return reasons


def _elsewhere(snap: dict[str, Any], state: ViewState) -> str | None:
    """Why a view whose last refresh was recorded in another database (this one restored from a
    dump of it) is stale, or None. The sources are keyed by oid: restored into a new cluster,
    its relations can get the oids and relfilenodes they had, their counters start over from
    the restore's COPY, and a counter that climbs back to the recorded value would read as
    fresh. A record without the identity (taken before it was kept) is judged as before."""
    before = snap.get("database")
    if before is None or state.database is None or list(before) == list(state.database):
        return None
    return (
        "its last refresh was recorded in another database (this one was restored from a dump, "
        "or copied): what its sources held then cannot be told from what they hold now"
    )


def _by_counters(
    source: Source, name: str, before: list[Any], last_ok: Any, refreshed_since: dict[int, dt.datetime]
) -> str | None:
    """Why a source read at the last refresh under the same oid makes the view stale, judged
    by its relfilenode and write counter (None: it does not)."""
    old_node, old_counter = before[0], before[1]
    if source.relkind == "m" and source.oid in refreshed_since:
        # A materialized view this app refreshes is judged by its history and relfilenode:
        # the write counters of its own refresh may reach the statistics after a reader's
        # refresh began, and would make every reader stale twice.
        if refreshed_since[source.oid] > last_ok.started_at or old_node != source.relfilenode:
            return f"{name} was refreshed since"
        return None
    if old_node != source.relfilenode:
        verb = "was refreshed since" if source.relkind == "m" else "was rewritten (TRUNCATE or similar)"
        return f"{name} {verb}"
    if old_counter is None or source.counter is None or source.counter < old_counter:
        return f"{name}'s statistics were reset"
    if source.counter > old_counter:
        return f"{name} had {source.counter - old_counter} writes"
    return None


def _recreated(names: list[str], sources: int) -> list[str]:
    """Why a view whose sources have new oids under the names they had is stale: they were
    created anew since its last refresh, their write counters started over, and what they held
    then cannot be told from what they hold now."""
    if not names:
        return []
    if len(names) == sources:
        return [
            "every relation it reads was created anew since its last refresh (the database was "
            "restored from a dump, or they were dropped and created again): their statistics "
            "started over"
        ]
    return [
        f"{name} was created anew since the last refresh (dropped and created again, or restored)"
        for name in names
    ]


def freshness(
    models: Iterable[type[pg.View]] | None = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    now: dt.datetime | None = None,
) -> list[ViewFreshness]:
    """Staleness and due-ness of the materialized views among ``models`` (default: every one
    that belongs to ``using``), in dependency order. Two queries: the catalog and the history."""
    from django_pgviews_c import history

    chosen = history.materialized_models(models, using)
    connection = connections[using]
    states = closure(connection, chosen)
    last_ok, last_any = history.latest(connection, [m._meta.label for m in chosen])
    refreshed_since = {
        state.oid: last_ok[m._meta.label].started_at
        for m, state in zip(chosen, states, strict=True)
        if state.oid is not None and m._meta.label in last_ok
    }
    now = now or timezone.now()
    out = []
    for model, state in zip(chosen, states, strict=True):
        label = model._meta.label
        ok = last_ok.get(label)
        reasons = judge(state, ok, refreshed_since)
        newest = last_any.get(label)
        failure = (
            newest if newest is not None and not newest.ok and (ok is None or newest.id > ok.id) else None
        )
        interval, misconfigured = _interval(model)
        item = ViewFreshness(
            label=label,
            model=model,
            exists=state.oid is not None,
            stale=bool(reasons),
            reasons=reasons,
            last_ok=ok,
            last_failure=failure,
            interval=interval,
            mode=staleness_mode(model),
            state=state,
            misconfigured=misconfigured,
        )
        if item.stale and item.exists and item.interval is not None:
            item.due_at = now if ok is None else ok.started_at + item.interval
            item.due = item.due_at <= now
        out.append(item)
    return out


def stale_models(
    models: Iterable[type[pg.View]] | None = None, *, using: str = DEFAULT_DB_ALIAS
) -> list[type[pg.View]]:
    return [f.model for f in freshness(models, using=using) if f.stale and f.exists]


def due_models(
    models: Iterable[type[pg.View]] | None = None, *, using: str = DEFAULT_DB_ALIAS
) -> list[type[pg.View]]:
    return [f.model for f in freshness(models, using=using) if f.due]


def next_due(items: Iterable[ViewFreshness]) -> dt.datetime | None:
    """When the next stale view falls due (None: none is waiting)."""
    times = [f.due_at for f in items if f.due_at is not None and not f.due]
    return min(times) if times else None


def resolve_labels(labels: Iterable[str]) -> list[type[pg.View]]:
    """Models named ``app_label.ModelName`` (or every view of ``app_label``); a clear error
    for a name that is not a materialized or plain view of the project."""
    from django.apps import apps

    from django_pgviews_c.declarations import view_models
    from django_pgviews_c.exceptions import PGViewsError

    views = view_models()
    out: list[type[pg.View]] = []
    for label in labels:
        if "." in label:
            app_label, _, name = label.partition(".")
            try:
                model = apps.get_model(app_label, name)
            except (LookupError, ValueError):
                raise PGViewsError(f"{label}: no such model (expected app_label.ModelName)") from None
            if model not in views:
                raise PGViewsError(f"{label} is not a view or materialized view")
            chosen = [model]
        else:
            try:
                apps.get_app_config(label)
            except LookupError:
                raise PGViewsError(f"{label}: no installed app with that label") from None
            chosen = [m for m in views if m._meta.app_label == label]
            if not chosen:
                raise PGViewsError(f"app {label} declares no views")
        out += [m for m in chosen if m not in out]
    return out


# -- refresh_pgviews: names, --stale, --due ----------------------------------------------------


def add_refresh_arguments(parser: Any) -> None:
    """refresh_pgviews' selection options: view names, --stale, --due and the closures."""
    parser.add_argument(
        "views",
        nargs="*",
        metavar="app_label[.ModelName]",
        help="Refresh only these views (every view of an app given by its label alone).",
    )
    parser.add_argument(
        "--with-dependants", action="store_true", help="Also refresh the views that read the named ones."
    )
    parser.add_argument(
        "--with-dependencies", action="store_true", help="Also refresh the views the named ones read."
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--stale",
        action="store_true",
        help="Refresh only the stale materialized views (a source changed since their last refresh); "
        "print what was refreshed and what was skipped as fresh.",
    )
    which.add_argument(
        "--due",
        action="store_true",
        help="Refresh the stale views whose refresh_interval has passed since their last refresh "
        "(and complete pending rebuilds, as --pending does).",
    )
    which.add_argument(
        "--pending",
        action="store_true",
        help="Complete deferred rebuilds (defer_rebuild, PGVIEWS_DEFER_REBUILD): populate each new "
        "version waiting beside its old one, then swap it in with the sync's short, "
        "lock_timeout-guarded swap. With --jobs N, N new versions are populated at once.",
    )


def run_refresh_command(stdout: Any, options: dict[str, Any]) -> bool:
    """Run refresh_pgviews for the options add_refresh_arguments adds; False when none was
    given (the command then refreshes everything as before)."""
    from django_pgviews_c.exceptions import PGViewsError
    from django_pgviews_c.refresh import refresh_views

    labels = options.get("views") or []
    stale, due, pending = options.get("stale"), options.get("due"), options.get("pending")
    if not (labels or stale or due or pending):
        if options.get("with_dependants") or options.get("with_dependencies"):
            raise PGViewsError("--with-dependants and --with-dependencies need view names")
        return False
    verbosity = options.get("verbosity", 1)
    models = _named_models(labels, options) if labels else None
    common = {
        "using": options["database"],
        "jobs": options.get("jobs", 1),
        "concurrently": options.get("concurrently", False),
        "strict": options.get("strict", False),
        "progress": stdout.write if verbosity >= 2 else None,
    }
    if pending:
        _complete_pending(stdout, models, verbosity, common)
    elif not (stale or due):
        result = refresh_views(models, **common, waits=stdout.write if verbosity >= 1 else None)
        if verbosity >= 1:
            for label in result.refreshed:
                stdout.write(f"refreshed {label}")
            _write_reasons(stdout, "skipped", _plain_named(labels))
            n = result.count
            stdout.write(f"refreshed {plural(n, 'materialized view')} in {result.wall:.2f}s")
    else:
        _refresh_pass(stdout, models, bool(due), verbosity, common)
    return True


def _named_models(labels: list[str], options: dict[str, Any]) -> list[Any]:
    """The views named, then (as asked) their dependants and their dependencies."""
    from django_pgviews_c.dependencies import get_views_dependants, get_views_dependencies

    models = resolve_labels(labels)
    if options.get("with_dependants"):
        models += [m for m in get_views_dependants(models) if m not in models]
    if options.get("with_dependencies"):
        models += [m for m in get_views_dependencies(models) if m not in models]
    return models


def _plain_named(labels: list[str]) -> dict[str, str]:
    """The plain views named as app_label.ModelName, each with why it was not refreshed."""
    named = resolve_labels([label for label in labels if "." in label])
    why = "a plain view holds no data (it reads its tables when queried): nothing to refresh"
    return {m._meta.label: why for m in named if not issubclass(m, pg.MaterializedView)}


def _write_reasons(stdout: Any, word: str, reasons: dict[str, str]) -> None:
    """One line per view: the word in a column of 9, the label, why."""
    for label, why in reasons.items():
        stdout.write(f"{word:<9} {label}: {why}")


def _complete_pending(stdout: Any, models: list[Any] | None, verbosity: int, common: dict[str, Any]) -> None:
    """--pending: the deferred rebuilds populated and swapped in; RefreshError for those that failed."""
    from django_pgviews_c.exceptions import RefreshError
    from django_pgviews_c.pending import complete_pending

    done = complete_pending(
        common["using"], models=models, verbosity=verbosity, progress=common["progress"], jobs=common["jobs"]
    )
    if verbosity >= 1:
        for label in done.swapped:
            stdout.write(f"swapped in the rebuilt {label}  ({done.timings[label][0]:.2f}s to populate)")
        _write_reasons(stdout, "waiting", done.waiting)
        _write_reasons(stdout, "failed", done.failed)
        if not (done.swapped or done.waiting or done.failed):
            stdout.write(
                "nothing pending: no deferred rebuild waits (a sync that changes a view with "
                "defer_rebuild, or PGVIEWS_DEFER_REBUILD, makes one; pgviews_status shows each view)"
            )
        stdout.write(f"completed {plural(len(done.swapped), 'pending rebuild')} in {done.wall:.2f}s")
    if done.failed:
        raise RefreshError(done.failed, [])


def _refresh_pass(
    stdout: Any, models: list[Any] | None, due: bool, verbosity: int, common: dict[str, Any]
) -> None:
    """--stale / --due: the views that need it refreshed; RefreshError for those that failed,
    then RefreshIntervalError for the views whose refresh_interval is unusable (misconfigured)."""
    from django_pgviews_c.exceptions import RefreshError, RefreshIntervalError

    passed = refresh_pass(models=models, due=due, **common)
    if verbosity >= 1:
        for label in passed.refreshed:
            stdout.write(f"refreshed {label}")
        _write_reasons(stdout, "skipped", passed.skipped)
        _write_reasons(stdout, "failed", passed.failed)
        stdout.write(
            f"refreshed {plural(len(passed.refreshed), 'materialized view')} "
            f"in {passed.wall:.2f}s, "
            f"skipped {len(passed.skipped)}"
        )
    if passed.failed:
        raise RefreshError(passed.failed, [k for k, v in passed.skipped.items() if "failed" in v])
    if passed.misconfigured:
        raise RefreshIntervalError(
            "\n".join(passed.misconfigured.values())
            + "\nThe other views were refreshed as usual; --due never finds "
            + ("this view" if len(passed.misconfigured) == 1 else "these views")
            + " due until it is fixed (the system check django_pgviews_c.E007 says so too)."
        )


# The passes (refresh what is stale, or due) are in passes.py, which reads this module; their
# names stay importable from here.
from django_pgviews_c.passes import PassResult, plan_pass, refresh_pass  # noqa: E402
