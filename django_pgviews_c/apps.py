from __future__ import annotations

import logging
from typing import Any

from django import apps
from django.db.models import signals

logger = logging.getLogger("django_pgviews_c.sync_pgviews")


class ViewConfig(apps.AppConfig):
    """Syncs the views after ``migrate`` (post_migrate), unless
    ``MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE = True``."""

    name = "django_pgviews_c"
    verbose_name = "Django Postgres Views"
    # The id of RefreshRecord as its migration made it, whatever the project's
    # DEFAULT_AUTO_FIELD (startproject sets BigAutoField).
    default_auto_field = "django.db.models.AutoField"
    default = True

    def sync_pgviews(self, sender: Any, app_config: Any, using: str, plan: Any = None, **kwargs: Any) -> None:
        """post_migrate fires once per app, in app registry order; sync once, after the last
        one, on the database ``migrate`` ran on. An error leaves ``migrate`` with a non-zero
        status and the views as they were. Then, when the migrations applied can rename what a
        view reads, warn about the declarations that no longer build (buildcheck.py)."""
        with_models = [config for config in apps.apps.get_app_configs() if config.models_module is not None]
        if not with_models or app_config is not with_models[-1]:
            return

        from django.conf import settings

        from django_pgviews_c.aside import sync_after_migrate
        from django_pgviews_c.sync import sync_pgviews

        logger.info("All applications have migrated, time to sync")
        verbosity = kwargs.get("verbosity", 1)
        stdout = kwargs.get("stdout")
        results = sync_after_migrate(
            using,
            lambda: sync_pgviews(
                using,
                force=True,
                update=True,
                check_sql_changed=getattr(settings, "MATERIALIZED_VIEWS_CHECK_SQL_CHANGED", True),
                verbosity=verbosity,
                progress=(lambda text: stdout.write(text)) if stdout is not None else None,
            ),
            verbosity=verbosity,
            stdout=stdout,
        )
        # A rename PostgreSQL followed keeps the view working and its declaration unbuildable:
        # said now, after migrations that can rename (none: no query).
        from django_pgviews_c.buildcheck import warn_after_migrate

        warn_after_migrate(using, plan, results, verbosity=verbosity, stdout=stdout)

    def set_views_aside(
        self, sender: Any, app_config: Any, using: str, plan: Any = None, **kwargs: Any
    ) -> None:
        """pre_migrate, once per run (before the first app): drop the views that read what the
        pending migrations drop or retype, in the transaction the migrate command ends;
        post_migrate re-creates them in it (django_pgviews_c.aside)."""
        with_models = [config for config in apps.apps.get_app_configs() if config.models_module is not None]
        if not plan or not with_models or app_config is not with_models[0]:
            return
        from django_pgviews_c.aside import set_views_aside

        set_views_aside(using, plan, verbosity=kwargs.get("verbosity", 1), stdout=kwargs.get("stdout"))

    def ready(self) -> None:
        from django.conf import settings

        from django_pgviews_c import checks  # noqa: F401  (registers the system checks)

        if apps.apps.is_installed("django.contrib.admin"):
            from django_pgviews_c import admin  # noqa: F401  (view models are read-only there)

        if not getattr(settings, "MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE", False):
            signals.pre_migrate.connect(self.set_views_aside, dispatch_uid="django_pgviews_c.set_views_aside")
            signals.post_migrate.connect(self.sync_pgviews, dispatch_uid="django_pgviews_c.sync_pgviews")
