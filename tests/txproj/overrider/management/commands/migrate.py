"""Django's own migrate, standing in for another app's command that wins over ours."""

from django.core.management.commands.migrate import Command  # noqa: F401
