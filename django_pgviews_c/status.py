"""What pgviews_status reports: the planner's view of each declared view, without changing
anything, plus row estimates and sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS

from django_pgviews_c import _core
from django_pgviews_c.pending import PENDING_STATE
from django_pgviews_c.sync import sync_pgviews

_SIZES = _core.query_sql("status_sizes")


@dataclass
class ViewState:
    label: str
    kind: str
    qualified: str
    state: str
    detail: str
    rows: int | None = None
    #: Where ``rows`` comes from: "estimate" (the server's, pg_class.reltuples), "history" (the
    #: row count the last successful refresh recorded, where the server has no estimate), or None.
    rows_source: str | None = None
    size: int | None = None
    #: A pending rebuild: seconds since the data the old version serves was refreshed (its last
    #: successful refresh in the history); None otherwise, or when none is recorded.
    old_data_age: float | None = None


#: The state of a view that works in the database but whose declared SQL the server refuses now
#: (a column or table renamed under it: PostgreSQL followed the rename, the declaration did not).
UNBUILDABLE_STATE = "unbuildable"


def view_status(using: str = DEFAULT_DB_ALIAS, *, check_builds: bool = False) -> list[ViewState]:
    """Each declared view's state. ``check_builds`` (pgviews_status): also build the declaration
    of each view a sync would keep as it is, beside it in a transaction rolled back
    (buildcheck.py); one the server refuses is ``unbuildable``."""
    from django_pgviews_c.sync import view_models

    models = {m._meta.label: m for m in view_models()}
    out: list[ViewState] = []
    for result in sync_pgviews(using, dry_run=True, send_signals=False, check_sql_changed=True):
        refused = _refused(result, models) if check_builds else {}
        for label in result.statuses:
            # The planner's own state code: nothing here reads its English.
            state = result.states.get(label, "in sync")
            reason = result.reasons.get(label, "")
            # Missing columns make the state `columns`; another type family is shown, not failed.
            problems = [p.detail for p in result.column_problems if p.label == label]
            if problems and state in ("columns", "in sync"):
                reason = "; ".join(problems)
            if label in refused:
                state, reason = UNBUILDABLE_STATE, refused[label]
            model = models[label]
            schema, name = _core.split_table(model._meta.db_table)
            out.append(
                ViewState(
                    label=label,
                    kind="mat" if hasattr(model, "refresh") else "view",
                    qualified=_core.qualified_name(schema, name),
                    state=state,
                    detail=reason,
                )
            )
        # Objects with our fingerprint that no view declares any more: sync_pgviews --prune.
        for qualified, relkind in result.orphans:
            out.append(
                ViewState(
                    label=qualified,
                    kind="mat" if relkind == "m" else "view",
                    qualified=qualified,
                    state="orphaned",
                    detail="carries django-pgviews-c's fingerprint, but no view declares it "
                    "(sync_pgviews --prune drops it)",
                )
            )
    _not_built_yet(using, [v for v in out if v.state == PENDING_STATE])
    _no_longer_deferred(using, [v for v in out if v.state == "changed" and v.kind == "mat"])
    _pending_ages(using, [v for v in out if v.state == PENDING_STATE])
    existing = [v for v in out if v.state != "missing"]
    if existing:
        from django.db import connections

        with connections[using].cursor() as cursor:
            cursor.execute(_SIZES, [[v.qualified for v in existing]])
            sizes = {row[0]: row[1:] for row in cursor.fetchall()}
        for v in existing:
            rows, size = sizes.get(v.qualified, (None, None))
            # reltuples is -1 until the view is first analyzed: unknown, as the table prints it.
            v.rows = rows if v.kind == "mat" and rows is not None and rows >= 0 else None
            v.rows_source = "estimate" if v.rows is not None else None
            v.size = size
    return out


def _refused(result: Any, models: dict[str, Any]) -> dict[str, str]:
    """label -> what the server says of its declaration, for the views ``result`` keeps whose
    declaration no longer builds."""
    from django.db import connections

    from django_pgviews_c.buildcheck import kept_models, unbuildable

    kept = kept_models(result, list(models.values()))
    found = unbuildable(connections[result.using], kept, set(models))
    return {
        item.label: f"its declared SQL no longer builds: {item.error.message} (SQLSTATE "
        f"{item.error.sqlstate}); the view works (PostgreSQL followed a rename): update its sql"
        for item in found
        if not item.unchecked  # its check was not granted a lock in time: not judged
    }


#: What a view the next sync defers, whose waiting version is not there yet, is told to do.
NOT_BUILT_YET = (
    "its rebuild is deferred, but its waiting version is not there yet (or is of an older "
    "definition): sync_pgviews (or migrate) creates it beside the old one WITH NO DATA, then "
    "refresh_pgviews --pending swaps it in"
)


def _not_built_yet(using: str, pending: list[ViewState]) -> None:
    """A view the dry run says a sync would defer is waiting only when its waiting version is
    there and matches the code; otherwise it is changed, and sync_pgviews (not --pending, which
    has nothing to populate) is what brings it on."""
    if not pending:
        return
    from django_pgviews_c.pending import current_waiting

    there = current_waiting(using)
    for v in pending:
        if v.label not in there:
            v.state, v.detail = "changed", NOT_BUILT_YET


#: What a view whose rebuild still waits, though it no longer defers, is told.
NO_LONGER_DEFERRED = (
    "its rebuild waits beside it, but the view no longer defers (defer_rebuild, "
    "PGVIEWS_DEFER_REBUILD): refresh_pgviews --pending swaps it in, or the next sync_pgviews "
    "(or migrate) rebuilds it in place and drops the waiting version"
)


def _no_longer_deferred(using: str, changed: list[ViewState]) -> None:
    """A changed view whose waiting version is there and matches the code still waits, whatever
    the setting says now: --pending completes it."""
    if not changed:
        return
    from django_pgviews_c.pending import current_waiting

    there = current_waiting(using)
    for v in changed:
        if v.label in there:
            v.state, v.detail = PENDING_STATE, NO_LONGER_DEFERRED


def _pending_ages(using: str, pending: list[ViewState]) -> None:
    """The age of the data each pending rebuild's old version still serves, from the history."""
    if not pending:
        return
    from django.db import connections
    from django.utils import timezone

    from django_pgviews_c import history
    from django_pgviews_c.freshstatus import _age

    last_ok, _ = history.latest(connections[using], [v.label for v in pending])
    failed = _failed_completions(using, [v.label for v in pending])
    now = timezone.now()
    for v in pending:
        ok = last_ok.get(v.label)
        if ok is None:
            v.detail += "; the old version serves data of unknown age (no refresh recorded)"
        else:
            v.old_data_age = round((now - ok.started_at).total_seconds(), 3)
            v.detail += f"; the old version serves data refreshed {_age(v.old_data_age)} ago"
        rec = failed.get(v.label)
        if rec is not None:
            age = _age((now - rec.started_at).total_seconds())
            v.detail += (
                f"; the last attempt to complete it failed {age} ago: {rec.sqlstate} {rec.message.strip()}"
            )


def _failed_completions(using: str, labels: list[str]) -> dict[str, Any]:
    """The record of each view whose last attempt at completing its pending rebuild (populating
    the new version, or swapping it in) failed. Refreshes of the old version that succeeded
    since do not hide it: the rebuild still waits."""
    from django.db import DatabaseError, transaction

    from django_pgviews_c.models import RefreshRecord

    records = RefreshRecord.objects.using(using).filter(view__in=labels, plain_reason="pending rebuild")
    try:
        with transaction.atomic(using=using):  # the history missing: said by the freshness
            newest = list(records.order_by("view", "-id").distinct("view"))
    except DatabaseError:
        return {}
    return {rec.view: rec for rec in newest if not rec.ok}
