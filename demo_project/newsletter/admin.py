"""The demo's views in the admin: read-only without asking (django_pgviews_c.admin)."""

from django.contrib import admin

from newsletter.models import EventMatView, EventView, SeasonStats


@admin.register(SeasonStats)
class SeasonStatsAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "games", "points", "points_per_game"]
    search_fields = ["name", "team"]


admin.site.register(EventView)
admin.site.register(EventMatView)
