"""Django's own migrate, standing in for another app that replaces the command."""

from django.core.management.commands.migrate import Command  # noqa: F401
