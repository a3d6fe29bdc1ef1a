__all__ = ["get_fields_by_name"]

from django.db import models


def get_fields_by_name(model_cls: type[models.Model], *field_names: str) -> dict[str, models.Field]:
    """``{name: field}`` for the named fields of a model; ``'*'`` means all of its fields."""
    if "*" in field_names:
        return {field.name: field for field in model_cls._meta.fields}
    return {field_name: model_cls._meta.get_field(field_name) for field_name in field_names}
