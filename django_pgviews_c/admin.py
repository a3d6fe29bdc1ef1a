"""The admin: view models are read-only there, and a "Views" page shows and refreshes them.

``ViewAdmin`` refuses add, change and delete (the change page shows the row read-only, and the
bulk "delete selected" action is gone: on a view it could only fail). A view model registered
with any admin class that does not decide those permissions itself gets ``ViewAdmin`` mixed in
on registration, on every admin site, so ``admin.site.register(MyView)`` is read-only without
asking. ``PGVIEWS_ADMIN_READ_ONLY = False`` turns that off (``ViewAdmin`` still works).

The "Views" page (``ViewsPageAdmin``, listed under this app in the admin index) shows every view
model of each database with its kind, its state (pgviews_status's), and for materialized views
the last refresh with its age, duration and rows, whether the data is stale and why, and the
size. Holders of ``django_pgviews_c.refresh_materializedview`` get a Refresh button per
materialized view (concurrent when it has a concurrent_index) and "Refresh all stale"; staff who
may only view the refresh history see the page read-only. It never syncs: a view that is not in
sync is shown as such, for ``sync_pgviews`` or a deploy to fix.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.sites import AdminSite, all_sites
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from django_pgviews_c.models import DatabaseView, RefreshRecord
from django_pgviews_c.wording import plural

if TYPE_CHECKING:
    # ModelAdmin is generic in django-stubs only: Django's own class takes no subscript.
    _ModelAdmin = admin.ModelAdmin[Any]
    _DatabaseViewAdmin = admin.ModelAdmin[DatabaseView]
    _RefreshRecordAdmin = admin.ModelAdmin[RefreshRecord]
else:
    _ModelAdmin = _DatabaseViewAdmin = _RefreshRecordAdmin = admin.ModelAdmin

__all__ = ["ViewAdmin", "ViewsPageAdmin", "RefreshRecordAdmin", "make_views_read_only", "REFRESH_PERMISSION"]

#: Needed to press the Views page's refresh buttons (declared in RefreshRecord.Meta.permissions).
REFRESH_PERMISSION = "django_pgviews_c.refresh_materializedview"
_HISTORY_VIEW_PERMISSION = "django_pgviews_c.view_refreshrecord"

_PERMISSIONS = ("has_add_permission", "has_change_permission", "has_delete_permission")


class _ReadOnly:
    """No add, change or delete permission for anyone: the rows are the database's to write."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ViewAdmin(_ReadOnly, _ModelAdmin):
    """A ModelAdmin for view models: rows can be listed and looked at, never added, changed or
    deleted."""


def _decides_permissions(admin_class: type) -> bool:
    """Whether the class (not ModelAdmin itself) defines has_add/change/delete_permission."""
    for klass in admin_class.__mro__:
        if klass in (admin.ModelAdmin, admin.options.BaseModelAdmin, object):
            continue
        if any(name in vars(klass) for name in _PERMISSIONS):
            return True
    return False


def _read_only_class(admin_class: type[admin.ModelAdmin[Any]]) -> type[admin.ModelAdmin[Any]]:
    return type(admin_class.__name__, (ViewAdmin, admin_class), {"__module__": admin_class.__module__})


def make_views_read_only(site: AdminSite) -> None:
    """Give ``site``'s view models ViewAdmin, unless their admin decides permissions itself."""
    from django_pgviews_c.view import View

    if not getattr(settings, "PGVIEWS_ADMIN_READ_ONLY", True):
        return
    for model, model_admin in list(site._registry.items()):
        if (
            isinstance(model, type)
            and issubclass(model, View)
            and not isinstance(model_admin, ViewAdmin)
            and not _decides_permissions(type(model_admin))
        ):
            site._registry[model] = _read_only_class(type(model_admin))(model, site)


# -- the "Views" page -----------------------------------------------------------------------


@dataclass
class _Row:
    label: str
    kind: str  # "view" or "materialized view"
    state: str  # pgviews_status's state
    detail: str
    rows: int | None = None
    size: int | None = None
    matview: bool = False
    refreshable: bool = False  # a materialized view model of this database (not an orphan)
    exists: bool = True
    concurrent: bool = False  # refreshed concurrently when its button is pressed
    stale: bool | None = None  # None: not judged (plain views)
    why: str = ""
    last_refresh: dt.datetime | None = None
    age: str = ""
    duration: float | None = None
    mode: str = ""
    failure: str = ""
    failure_at: dt.datetime | None = None


@dataclass
class _Section:
    alias: str
    rows: list[_Row] = field(default_factory=list)
    error: str = ""

    @property
    def stale_count(self) -> int:
        return sum(1 for r in self.rows if r.stale and r.exists)


def _age(delta: dt.timedelta) -> str:
    seconds = max(delta.total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _view_aliases() -> list[str]:
    """The databases that hold at least one view model, in settings order."""
    from django_pgviews_c.declarations import view_models

    models = view_models()
    return [
        alias
        for alias in connections
        if any(m.get_view_connection(using=alias, restricted_mode=True) is not None for m in models)
    ]


def _materialized(alias: str, label: str) -> Any:
    """The materialized view model ``label`` of database ``alias``, or None."""
    from django_pgviews_c import view as pg
    from django_pgviews_c.declarations import view_models

    for model in view_models():
        if (
            model._meta.label == label
            and issubclass(model, pg.MaterializedView)
            and model.get_view_connection(using=alias, restricted_mode=True) is not None
        ):
            return model
    return None


def _server_message(exc: BaseException) -> str:
    from django_pgviews_c.dberrors import diag

    if isinstance(exc, DatabaseError):
        info = diag(exc)
        text = (info.get("message") or str(exc)).strip()
        return text + (f" (SQLSTATE {info['sqlstate']})" if info.get("sqlstate") else "")
    return str(exc).strip()


class ViewsPageAdmin(_DatabaseViewAdmin):
    """The "Views" page: state and freshness of every view model, and refresh buttons for
    holders of ``django_pgviews_c.refresh_materializedview``. Registered on the default admin
    site under the DatabaseView proxy (with the refresh history) unless
    ``PGVIEWS_ADMIN_VIEWS_PAGE = False``; ``register_views_page(site)`` adds both to another."""

    template_name = "admin/django_pgviews_c/views.html"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (user.has_perm(REFRESH_PERMISSION) or user.has_perm(_HISTORY_VIEW_PERMISSION))
        )

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return bool(
            request.user.is_active and request.user.is_staff and request.user.has_perm(REFRESH_PERMISSION)
        )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.views_page)
        # A refresh commits on its own (its outcome is recorded even when it fails): never
        # inside ATOMIC_REQUESTS' transaction.
        for alias in connections:
            view = transaction.non_atomic_requests(using=alias)(view)
        return [path("", view, name=f"{self.opts.app_label}_{self.opts.model_name}_changelist")]

    # -- GET ----------------------------------------------------------------------------------

    def sections(self) -> list[_Section]:
        from django_pgviews_c.exceptions import PGViewsError
        from django_pgviews_c.freshness import freshness
        from django_pgviews_c.status import view_status

        now = timezone.now()
        out = []
        for alias in _view_aliases():
            section = _Section(alias)
            out.append(section)
            try:
                states = view_status(alias)
                fresh = {f.label: f for f in freshness(using=alias, now=now)}
            except (PGViewsError, DatabaseError) as exc:  # say so, and show the other databases
                section.error = f"Could not read the views of database {alias!r}: {_server_message(exc)}"
                continue
            for state in states:
                row = _Row(
                    label=state.label,
                    kind="materialized view" if state.kind == "mat" else "view",
                    state=state.state,
                    detail=state.detail,
                    rows=state.rows if state.rows is not None and state.rows >= 0 else None,
                    size=state.size,
                    matview=state.kind == "mat",
                    exists=state.state != "missing",
                )
                item = fresh.get(state.label)
                if item is not None:
                    model = item.model
                    row.refreshable = True
                    row.concurrent = model._concurrent_index is not None and state.state != "unpopulated"
                    row.exists = item.exists
                    row.stale = item.stale
                    row.why = item.why
                    ok = item.last_ok
                    if ok is not None:
                        row.last_refresh = ok.started_at
                        row.age = _age(now - ok.started_at)
                        row.duration = ok.duration
                        row.mode = ok.mode
                        if ok.rows is not None:
                            row.rows = ok.rows
                    if item.last_failure is not None:
                        row.failure = " ".join(
                            p for p in (item.last_failure.sqlstate, item.last_failure.message.strip()) if p
                        )
                        row.failure_at = item.last_failure.started_at
                section.rows.append(row)
        return out

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self.views_page(request)

    def views_page(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self.refresh(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Views",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "sections": self.sections(),
            "can_refresh": self.has_refresh_permission(request),
            "history_url": self._history_url(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.template_name, context)

    def _history_url(self) -> str | None:
        if RefreshRecord not in self.admin_site._registry:
            return None
        return reverse(
            f"{self.admin_site.name}:django_pgviews_c_refreshrecord_changelist",
            current_app=self.admin_site.name,
        )

    # -- POST ---------------------------------------------------------------------------------

    def refresh(self, request: HttpRequest) -> HttpResponse:
        if not self.has_refresh_permission(request):
            raise PermissionDenied
        alias = request.POST.get("database") or DEFAULT_DB_ALIAS
        action = request.POST.get("action")
        if alias not in _view_aliases():
            messages.error(request, f"No database {alias!r} holds views: nothing was changed.")
        elif action == "refresh":
            self._refresh_one(request, alias, request.POST.get("view", ""))
        elif action == "refresh_stale":
            self._refresh_stale(request, alias)
        else:
            messages.error(request, f"Unknown action {action!r}: nothing was changed.")
        return HttpResponseRedirect(request.get_full_path())

    def _refresh_one(self, request: HttpRequest, alias: str, label: str) -> None:
        from django_pgviews_c.exceptions import PGViewsError, RefreshError
        from django_pgviews_c.refresh import refresh_views

        model = _materialized(alias, label)
        if model is None:
            name = label or "(no view)"
            messages.error(
                request, f"{name} is not a materialized view of database {alias!r}: nothing was changed."
            )
            return
        concurrently = model._concurrent_index is not None
        try:
            result = refresh_views([model], using=alias, concurrently=concurrently)
        except RefreshError as exc:
            reason = exc.failures.get(label) or str(exc)
            messages.error(request, f"Refreshing {label} failed: {reason}. It keeps the data it had.")
            return
        except (PGViewsError, DatabaseError) as exc:
            messages.error(
                request, f"Refreshing {label} failed: {_server_message(exc)}. It keeps the data it had."
            )
            return
        seconds = result.seconds.get(label, result.wall)
        how = "concurrently" if concurrently else "(plain refresh: it has no concurrent_index)"
        messages.success(request, f"Refreshed {label} {how} in {seconds:.3f} s.")

    def _refresh_stale(self, request: HttpRequest, alias: str) -> None:
        """Refresh the stale materialized views of ``alias`` in dependency order, each
        concurrently when it can; a failure skips the views that read it."""
        from django_pgviews_c.dependencies import get_views_dependants
        from django_pgviews_c.exceptions import PGViewsError, RefreshError
        from django_pgviews_c.freshness import freshness, plan_pass
        from django_pgviews_c.refresh import refresh_views

        try:
            order, skipped = plan_pass(freshness(using=alias))
        except (PGViewsError, DatabaseError) as exc:
            messages.error(
                request,
                f"Could not judge which views are stale: {_server_message(exc)}. Nothing was changed.",
            )
            return
        refreshed: list[str] = []
        failed: dict[str, str] = {}
        blocked: set[Any] = set()
        for model in order:
            label = model._meta.label
            if model in blocked:
                skipped[label] = "reads a view that failed"
                continue
            try:
                refresh_views([model], using=alias, concurrently=model._concurrent_index is not None)
            except RefreshError as exc:
                failed[label] = exc.failures.get(label) or str(exc)
            except (PGViewsError, DatabaseError) as exc:
                failed[label] = _server_message(exc)
            else:
                refreshed.append(label)
                continue
            blocked.update(get_views_dependants([model]))
        fresh = sorted(label for label, why in skipped.items() if why == "fresh")
        if refreshed:
            messages.success(
                request,
                f"Refreshed {plural(len(refreshed), 'stale materialized view')}: {', '.join(refreshed)}.",
            )
        elif not failed:
            messages.info(
                request, f"No materialized view of database {alias!r} is stale: nothing to refresh."
            )
        if fresh:
            messages.info(request, f"Skipped as fresh: {', '.join(fresh)}.")
        for label, why in skipped.items():
            if why != "fresh":
                messages.warning(request, f"Skipped {label}: {why}.")
        for label, why in failed.items():
            messages.error(request, f"Refreshing {label} failed: {why}. It keeps the data it had.")


class RefreshRecordAdmin(_ReadOnly, _RefreshRecordAdmin):
    """The refresh history, read-only: written by the refreshes themselves."""

    list_display = ["view", "started_at", "duration", "rows", "mode", "ok", "sqlstate", "message"]
    list_filter = ["ok", "concurrent", "view"]
    search_fields = ["view", "message"]
    date_hierarchy = "started_at"
    exclude = ["sources"]


def register_views_page(site: AdminSite) -> None:
    """Put the Views page and the refresh history on ``site`` (done for the default site)."""
    if DatabaseView not in site._registry:
        site.register(DatabaseView, ViewsPageAdmin)
    if RefreshRecord not in site._registry:
        site.register(RefreshRecord, RefreshRecordAdmin)


_original_register = AdminSite.register


def _register(self: AdminSite, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
    _original_register(self, model_or_iterable, admin_class, **options)
    make_views_read_only(self)


def install() -> None:
    """Make view models read-only on every admin site, those registered so far and later. Run
    when the admin autodiscovers this module and from the app's ready(), whichever comes first."""
    if AdminSite.register is not _register:
        _register.__doc__ = _original_register.__doc__
        AdminSite.register = _register  # type: ignore[method-assign]
    for site in list(all_sites):
        make_views_read_only(site)


install()
if apps.is_installed("django.contrib.admin") and getattr(settings, "PGVIEWS_ADMIN_VIEWS_PAGE", True):
    register_views_page(admin.site)
