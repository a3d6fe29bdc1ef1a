"""What pgviews_status shows of each materialized view's freshness (freshness.py judges it): the
last successful refresh, the last failure when newer, whether it is stale and why, as a line of
text or as JSON."""

from __future__ import annotations

__all__ = ["rows_from_history", "status_json", "status_line", "status_report"]

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from django_pgviews_c import view as pg
from django_pgviews_c.freshness import freshness


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def status_report(
    using: str = DEFAULT_DB_ALIAS,
    now: dt.datetime | None = None,
    models: Iterable[type[pg.View]] | None = None,
) -> dict[str, dict[str, Any]]:
    """What pgviews_status shows per materialized view, by label: the last successful refresh
    (time, age, duration, rows), the last failure when newer, whether it is stale and why, how
    staleness is judged ("statistics" or "exact"), and why its refresh_interval is unusable
    ("misconfigured", None when it is not)."""
    now = now or timezone.now()
    out: dict[str, dict[str, Any]] = {}
    for f in freshness(models, using=using, now=now):
        ok, failure = f.last_ok, f.last_failure
        out[f.label] = {
            "last_refresh": ok.started_at.isoformat() if ok else None,
            "age_seconds": round((now - ok.started_at).total_seconds(), 3) if ok else None,
            "duration": round(ok.duration, 6) if ok else None,
            "rows": ok.rows if ok else None,
            "mode": ok.mode if ok else None,
            "last_failure": (
                {
                    "at": failure.started_at.isoformat(),
                    "sqlstate": failure.sqlstate,
                    "message": failure.message,
                }
                if failure
                else None
            ),
            "stale": f.stale,
            "why": f.reasons,
            "refresh_interval": f.interval.total_seconds() if f.interval is not None else None,
            "due": f.due,
            "staleness": f.mode,
            "misconfigured": f.misconfigured,
        }
    return out


def rows_from_history(rows: Sequence[Any], report: dict[str, dict[str, Any]]) -> None:
    """A populated materialized view's rows are those its last successful refresh recorded,
    with ``rows_source`` "history": its data changes only when it is refreshed, while the
    server's estimate lags (reltuples is -1 until it is analyzed, a REFRESH of a view without
    an index keeps it so, and a concurrent REFRESH leaves the count of before). The estimate
    stays where no count is recorded (never refreshed by the package, or too large to count)."""
    for r in rows:
        item = report.get(r.label)
        if r.kind != "mat" or r.state in ("missing", "unpopulated") or not item:
            continue
        if item["rows"] is not None:
            r.rows, r.rows_source = item["rows"], "history"


def status_line(item: dict[str, Any]) -> str:
    """One line of text for a materialized view's freshness in pgviews_status."""
    if item["last_refresh"] is None:
        text = "never refreshed"
    else:
        text = f"refreshed {_age(item['age_seconds'])} ago in {item['duration']:.3f}s" + (
            f", {item['rows']} rows" if item["rows"] is not None else ""
        )
    if item["last_failure"]:
        text += f"; FAILED since: {item['last_failure']['sqlstate']} {item['last_failure']['message']}"
    text += "; stale: " + "; ".join(item["why"]) if item["stale"] else "; fresh"
    if item["due"]:
        text += " (due)"
    if item.get("misconfigured"):
        text += f"; misconfigured: {item['misconfigured']}"
    if item.get("staleness") == "exact":
        text += " [exact]"
    return text


def status_json(rows: Sequence[Any], report: dict[str, dict[str, Any]]) -> str:
    """pgviews_status --json: each row of the status table with its freshness (None for views)."""
    import dataclasses
    import json

    out = []
    for r in rows:
        item = (
            dataclasses.asdict(r)
            if dataclasses.is_dataclass(r) and not isinstance(r, type)
            else dict(vars(r))
        )
        item["freshness"] = report.get(r.label)
        out.append(item)
    return json.dumps(out, indent=2, default=str)
