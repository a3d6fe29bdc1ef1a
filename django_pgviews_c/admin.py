"""The admin: view models are read-only there.

``ViewAdmin`` refuses add, change and delete (the change page shows the row read-only, and the
bulk "delete selected" action is gone: on a view it could only fail). A view model registered
with any admin class that does not decide those permissions itself gets ``ViewAdmin`` mixed in
on registration, on every admin site, so ``admin.site.register(MyView)`` is read-only without
asking. ``PGVIEWS_ADMIN_READ_ONLY = False`` turns that off (``ViewAdmin`` still works).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.sites import AdminSite, all_sites
from django.http import HttpRequest

__all__ = ["ViewAdmin", "make_views_read_only"]

_PERMISSIONS = ("has_add_permission", "has_change_permission", "has_delete_permission")


class ViewAdmin(admin.ModelAdmin):
    """A ModelAdmin for view models: rows can be listed and looked at, never added, changed or
    deleted."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _decides_permissions(admin_class: type) -> bool:
    """Whether the class (not ModelAdmin itself) defines has_add/change/delete_permission."""
    for klass in admin_class.__mro__:
        if klass in (admin.ModelAdmin, admin.options.BaseModelAdmin, object):
            continue
        if any(name in vars(klass) for name in _PERMISSIONS):
            return True
    return False


def _read_only_class(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
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
