"""View models in the admin, through Django's test client on a real database (a small project
run in a subprocess: the admin needs its own settings)."""

from __future__ import annotations

from tests.test_testing import devproject, run  # noqa: F401  (the project fixture)


def test_view_models_are_read_only_in_the_admin(devproject):  # noqa: F811
    project, db = devproject
    done = run(project, db, "-m", "pytest", "-q", "inner_admin.py", "--create-db")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout


def test_an_admin_that_decides_permissions_itself_is_kept():
    from django.contrib import admin

    from django_pgviews_c.admin import ViewAdmin
    from tests.viewtest.models import DependantView, RelatedView, TestModel

    class Writable(admin.ModelAdmin):
        def has_delete_permission(self, request, obj=None):
            return True

    class Listed(admin.ModelAdmin):
        list_display = ["id"]

    site = admin.AdminSite(name="pgviews_test")
    site.register(RelatedView, Writable)
    site.register(DependantView, Listed)
    site.register(TestModel)
    assert not isinstance(site._registry[RelatedView], ViewAdmin)  # the user's decision stands
    listed = site._registry[DependantView]
    assert isinstance(listed, ViewAdmin) and isinstance(listed, Listed)
    assert listed.list_display == ["id"] and not listed.has_delete_permission(None)
    assert not isinstance(site._registry[TestModel], ViewAdmin)  # a table
