"""Django's own makemigrations, standing in for another app's command that wins over ours."""

from django.core.management.commands.makemigrations import Command  # noqa: F401
