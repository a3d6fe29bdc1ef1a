from __future__ import annotations

__all__ = ["ReadOnlyViewManager"]

from django.db import models

from django_pgviews_c.querysets import ReadOnlyViewQuerySet, T


class ReadOnlyViewManager(models.Manager[T]):
    def get_queryset(self) -> ReadOnlyViewQuerySet[T]:
        return ReadOnlyViewQuerySet(self.model, using=self._db)
