"""The commands' summary lines count in English: "1 view", "2 views"."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from tests.routers import DBRouter


class OneWeatherView(DBRouter):
    """weather_db holds one view only: MonthlyObservation stays off it."""

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if model_name == "monthlyobservation":
            return False
        return super().allow_migrate(db, app_label, model_name=model_name, **hints)


def run(*args: str, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.mark.django_db(databases=["default", "weather_db"])
def test_sync_and_clear_say_1_view():
    with override_settings(DATABASE_ROUTERS=[OneWeatherView()]):
        out = run("sync_pgviews", "--database", "weather_db")
        assert "1 view on 'weather_db': 0 changed, 1 unchanged" in out, out
        out = run("clear_pgviews", "--database", "weather_db", interactive=False)
        assert "dropped 1 view of database 'weather_db'" in out, out
        out = run("sync_pgviews", "--database", "weather_db", "--plan")
        assert "weather_db: 1 of 1 view changes, 2 actions," in out, out
        run("sync_pgviews", "--database", "weather_db", verbosity=0)


@pytest.mark.django_db(databases=["default", "weather_db"])
def test_several_views_keep_their_plural():
    out = run("sync_pgviews", "--database", "weather_db")
    assert "2 views on 'weather_db': 0 changed, 2 unchanged" in out, out
