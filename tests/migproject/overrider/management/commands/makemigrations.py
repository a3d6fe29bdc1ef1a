"""Django's own makemigrations, standing in for another app that replaces the command."""

from django.core.management.commands.makemigrations import Command  # noqa: F401
