from __future__ import annotations

__all__ = ["ReadOnlyViewManager"]

from django.db import models

from django_pgviews_c.querysets import ReadOnlyViewQuerySet


class ReadOnlyViewManager(models.Manager):
    def get_queryset(self) -> ReadOnlyViewQuerySet:
        return ReadOnlyViewQuerySet(self.model, using=self._db)
