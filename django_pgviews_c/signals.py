"""``view_synced(sender=view_cls, update, force, status, has_changed, using)`` after each view is
synced; ``all_views_synced(sender=None, using)`` after a whole sync."""

from django.dispatch import Signal

view_synced = Signal()
all_views_synced = Signal()
