"""Test helpers: views declared in an isolated app registry, synced on the test connection."""

from __future__ import annotations

import itertools
from typing import Any

from django.apps.registry import Apps
from django.db import connection, models

from django_pgviews_c import view as pg
from django_pgviews_c.sync import Syncer

_counter = itertools.count()


class ViewSet:
    """Views declared for one test, kept out of the project's registry."""

    def __init__(self) -> None:
        self.apps = Apps(["tests.viewtest"])
        self.models: dict[str, type[pg.View]] = {}

    def view(self, name: str, sql: str, *, materialized: bool = False, db_table: str | None = None,
             dependencies: tuple[str, ...] = (), indexes: list[Any] | None = None, **attrs: Any) -> type[pg.View]:
        meta_attrs = {"app_label": "viewtest", "apps": self.apps, "managed": False,
                      "db_table": db_table or f"t_{name.lower()}"}
        if indexes is not None:
            meta_attrs["indexes"] = indexes
        body = {"__module__": "tests.viewtest.models", "Meta": type("Meta", (), meta_attrs), "sql": sql,
                "dependencies": list(dependencies), **attrs}
        base = pg.MaterializedView if materialized else pg.View
        # A fresh class name each time: the same name may be declared again, changed.
        model = type(f"{name}", (base,), body) if name not in self.models else None
        if model is None:
            self.apps.all_models["viewtest"].pop(name.lower(), None)
            model = type(f"{name}", (base,), body)
        self.models[name] = model
        return model

    def sync(self, names: list[str] | None = None, **options: Any):
        chosen = [self.models[n] for n in (names or list(self.models))]
        known = {m._meta.label for m in self.models.values()}
        return Syncer(connection, chosen, known, **options).run()


def catalog_rows(sql: str, params: Any = None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def relkind(qualified: str) -> str | None:
    rows = catalog_rows("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", [qualified])
    return rows[0][0] if rows else None
