"""The app's own tables: the history of the refreshes it performed (django_pgviews_c.history),
and the counters of the exact staleness mode (django_pgviews_c.exact)."""

from __future__ import annotations

from django.db import models


class RefreshRecord(models.Model):
    """One refresh of one materialized view, in the database that holds the view.

    ``sources`` is what staleness compares against: for each relation the view reads (directly
    or through views), its relfilenode and write counter when the refresh started."""

    view = models.CharField(max_length=255, help_text="app_label.ModelName")
    db_table = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    duration = models.FloatField(help_text="seconds")
    rows = models.BigIntegerField(null=True, blank=True)
    concurrent = models.BooleanField(default=False)
    plain_reason = models.CharField(
        max_length=255, blank=True, default="", help_text="why plain when concurrent was asked"
    )
    ok = models.BooleanField(default=True)
    sqlstate = models.CharField(max_length=5, blank=True, default="")
    message = models.TextField(blank=True, default="")
    sources = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "django_pgviews_c_refresh"
        indexes = [models.Index(fields=["view", "-id"], name="pgviews_c_refresh_view")]
        verbose_name = "materialized view refresh"
        verbose_name_plural = "materialized view refreshes"
        # The admin's Views page (admin.ViewsPageAdmin) offers its Refresh buttons to holders of
        # django_pgviews_c.refresh_materializedview.
        permissions = [("refresh_materializedview", "Can refresh materialized views from the admin")]

    def __str__(self) -> str:
        return f"{self.view} at {self.started_at:%Y-%m-%d %H:%M:%S} ({'ok' if self.ok else 'failed'})"

    @property
    def mode(self) -> str:
        return "concurrent" if self.concurrent else "plain"


class DatabaseView(RefreshRecord):
    """No data of its own: the admin's "Views" page (admin.ViewsPageAdmin) is registered under
    this proxy, so it is listed in the admin index under this app."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "view"
        verbose_name_plural = "views"


class ExactCounter(models.Model):
    """Statements committed on one table that a materialized view in exact staleness mode reads,
    counted by the trigger the sync puts on that table (django_pgviews_c.exact). Written only by
    that trigger; a row goes when no exact view reads the table any more."""

    rel = models.BigIntegerField(primary_key=True, help_text="oid of the table")
    writes = models.BigIntegerField(default=0, help_text="statements committed on it")

    class Meta:
        db_table = "django_pgviews_c_exact"
        default_permissions = ()
        verbose_name = "exact staleness counter"

    def __str__(self) -> str:
        return f"table {self.rel}: {self.writes} statements"
