from __future__ import annotations

__all__ = ["get_fields_by_name"]

from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    from django.contrib.contenttypes.fields import GenericForeignKey
    from django.db.models.fields.reverse_related import ForeignObjectRel

    # What Options.get_field() returns: a field, a reverse relation, or a generic foreign key.
    AnyField = models.Field[Any, Any] | ForeignObjectRel | GenericForeignKey


def get_fields_by_name(model_cls: type[models.Model], *field_names: str) -> dict[str, AnyField]:
    """``{name: field}`` for the named fields of a model; ``'*'`` means all of its fields."""
    if "*" in field_names:
        return {field.name: field for field in model_cls._meta.fields}
    return {field_name: model_cls._meta.get_field(field_name) for field_name in field_names}
