"""pytest plugin (entry point ``pytest11``): views in pytest-django's test databases.

When pytest-django sets up the test databases (its ``django_db_setup`` fixture, with or without
``--nomigrations``, ``--reuse-db`` or ``--create-db``), every view is synced on them: created in
a new database, brought up to date in a reused one. ``PGVIEWS_TEST_WITH_DATA`` and
``PGVIEWS_TEST_MATERIALIZED_AS_VIEWS`` apply (see ``django_pgviews_c.testing``).

Fixture ``refresh_materialized_views``: call it with view models to refresh them (and the
materialized views they read) in dependency order, inside the test's transaction.

Disable with ``-p no:django_pgviews_c``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Any:
    if fixturedef.argname != "django_db_setup":
        return (yield)
    from django_pgviews_c import testing

    testing.prepare_test_databases()
    try:
        result = yield
    except BaseException:  # setting up the databases failed: nothing to sync
        testing.end_test_database_setup()
        raise
    with request.getfixturevalue("django_db_blocker").unblock():
        testing.sync_test_views(verbosity=max(request.config.get_verbosity() - 1, 0))
    return result


@pytest.fixture
def refresh_materialized_views() -> Callable[..., list[Any]]:
    """``refresh_materialized_views(*models, using=None)``: refresh in dependency order on
    Django's connection (the test's transaction); no models means every materialized view."""
    from django_pgviews_c.testing import refresh_materialized_views as refresh

    return refresh
