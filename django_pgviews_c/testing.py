"""Views in tests: every test database gets every view, and helpers to refresh them.

With pytest-django the plugin (``django_pgviews_c.pytest_plugin``, loaded through its entry
point) does this by itself. With Django's test runner use ``PGViewsDiscoverRunner``, or call
``prepare_test_databases()`` before the test databases are set up and ``sync_test_views()``
after, from your own runner.

Settings read in test databases only:

``PGVIEWS_TEST_WITH_DATA`` (default ``True``)
    ``False`` creates materialized views empty (``WITH NO DATA``); a test that reads one
    refreshes it first (``refresh_materialized_views``).
``PGVIEWS_TEST_MATERIALIZED_AS_VIEWS`` (default ``False``)
    ``True`` creates materialized views as plain views: tests read current data with no refresh,
    ``refresh()`` does nothing, and there is no concurrent index and no ``Meta.indexes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, router

if TYPE_CHECKING:
    from django_pgviews_c.sync import SyncResult
    from django_pgviews_c.view import View

__all__ = [
    "PGViewsDiscoverRunner",  # noqa: F822 (built on first use, see __getattr__)
    "PGViewsTestMixin",
    "end_test_database_setup",
    "materialized_as_views",
    "prepare_test_databases",
    "refresh_materialized_views",
    "sync_test_views",
    "in_test_databases",
]

_active = False
#: Between prepare_test_databases() and the end of sync_test_views(): the syncs that build the
#: test databases leave no refresh history (every test would start with records it never made).
_setting_up = False


def in_test_databases() -> bool:
    """Whether this process runs tests against test databases (set by prepare_test_databases)."""
    return _active


def setting_up() -> bool:
    """Whether the test databases are being built (their syncs record no refresh history)."""
    return _setting_up


def materialized_as_views() -> bool:
    """Whether materialized views are plain views here (PGVIEWS_TEST_MATERIALIZED_AS_VIEWS)."""
    return _active and bool(getattr(settings, "PGVIEWS_TEST_MATERIALIZED_AS_VIEWS", False))


def materialized_with_data() -> bool:
    """Whether a materialized view created here is populated (PGVIEWS_TEST_WITH_DATA)."""
    return not _active or bool(getattr(settings, "PGVIEWS_TEST_WITH_DATA", True))


def prepare_test_databases() -> None:
    """Call before the test databases are created. From then on this process's syncs use the
    test settings above, and until ``sync_test_views()`` each test database is synced when
    ``migrate`` builds it (also when ``MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE`` turns the
    usual post_migrate sync off), so the copies Django's parallel runner clones from it hold
    the views too."""
    global _active, _setting_up
    _active = _setting_up = True
    from django.db.models import signals

    signals.post_migrate.connect(_after_migrate, dispatch_uid="django_pgviews_c.testing.post_migrate")


def end_test_database_setup() -> None:
    """Setting up is over (``sync_test_views()`` calls this): a later ``migrate``, a test's own,
    gets the project's behaviour."""
    global _setting_up
    _setting_up = False
    from django.db.models import signals

    signals.post_migrate.disconnect(dispatch_uid="django_pgviews_c.testing.post_migrate")


# The databases ``migrate`` built or brought up to date while setting up tests.
_migrated: set[str] = set()


def _after_migrate(sender: Any, app_config: Any, using: str, **kwargs: Any) -> None:
    from django.apps import apps

    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if not with_models or app_config is not with_models[-1]:
        return
    _migrated.add(using)
    if getattr(settings, "MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE", False):
        _sync(using, verbosity=kwargs.get("verbosity", 1))


def _sync(alias: str, verbosity: int) -> list[SyncResult]:
    from django_pgviews_c.sync import sync_pgviews

    return sync_pgviews(alias, force=True, update=True, verbosity=verbosity)


def sync_test_views(aliases: Iterable[str] | None = None, verbosity: int = 0) -> list[SyncResult]:
    """Sync every view on the test databases (``aliases``, default: those set up since
    ``prepare_test_databases()``). Call after the test databases are set up: a kept database
    (``--keepdb``, ``--reuse-db``) gets the views changed since it was kept. Warm, it costs one
    catalog query per database."""
    global _setting_up
    end_test_database_setup()
    _setting_up = True  # these syncs still build the test databases
    results: list[SyncResult] = []
    try:
        for alias in aliases if aliases is not None else sorted(_migrated):
            connection = connections[alias]
            if connection.vendor != "postgresql" or connection.settings_dict.get("TEST", {}).get("MIRROR"):
                continue
            results += _sync(alias, verbosity)
    finally:
        _setting_up = False
    return results


def refresh_materialized_views(*models: type[View], using: str | None = None) -> list[type[View]]:
    """Refresh ``models`` (default: every materialized view) and the materialized views they
    read, each after what it depends on, on Django's connection: inside a test's transaction,
    the refresh sees the test's rows. A no-op when materialized views are plain views
    (PGVIEWS_TEST_MATERIALIZED_AS_VIEWS). Returns the views refreshed, in order."""
    from django_pgviews_c.dependencies import get_views_dependencies, reorder_by_dependencies
    from django_pgviews_c.sync import view_models
    from django_pgviews_c.view import MaterializedView, run_refresh

    if materialized_as_views():
        return []
    chosen = list(models) if models else view_models()
    wanted = [*chosen, *get_views_dependencies(chosen)]
    refreshed: list[type[View]] = []
    for model in reorder_by_dependencies(wanted):
        if not issubclass(model, MaterializedView):
            continue
        alias = using or router.db_for_write(model) or DEFAULT_DB_ALIAS
        if using is None or model.get_view_connection(using=alias, restricted_mode=True) is not None:
            run_refresh(connections[alias], model._meta.db_table, False)
            refreshed.append(model)
    return refreshed


class PGViewsTestMixin:
    """For ``TestCase`` classes: ``self.refresh_materialized_views(Model, ...)``."""

    def refresh_materialized_views(self, *models: type[View], using: str | None = None) -> list[type[View]]:
        return refresh_materialized_views(*models, using=using)


def _discover_runner() -> type:
    from django.test.runner import DiscoverRunner

    class PGViewsDiscoverRunner(DiscoverRunner):
        """Django's test runner, with every view synced on the test databases
        (``TEST_RUNNER = "django_pgviews_c.testing.PGViewsDiscoverRunner"``)."""

        def setup_databases(self, **kwargs: Any) -> Any:
            prepare_test_databases()
            try:
                old_config = super().setup_databases(**kwargs)
            except BaseException:
                end_test_database_setup()
                raise
            sync_test_views(verbosity=max(self.verbosity - 1, 0))
            return old_config

    PGViewsDiscoverRunner.__module__ = __name__
    return PGViewsDiscoverRunner


def __getattr__(name: str) -> Any:
    # The runner class is built on first use: sync imports this module in every process, and
    # Django's test runner (django.test) has no business being imported outside tests.
    if name == "PGViewsDiscoverRunner":
        runner = _discover_runner()
        globals()[name] = runner
        return runner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
