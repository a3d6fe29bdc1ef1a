from django.contrib import admin

from shop.models import Item, ItemTotals, ItemView

admin.site.register(Item)
admin.site.register(ItemView)  # the plain ModelAdmin: read-only all the same


@admin.register(ItemTotals)
class ItemTotalsAdmin(admin.ModelAdmin):
    list_display = ["name", "total"]
