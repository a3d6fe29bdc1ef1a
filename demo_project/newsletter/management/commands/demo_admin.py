"""``manage.py demo_admin`` (``make admin``): the demo's set-up (``manage.py demo``), a superuser
admin / admin, then the development server on 127.0.0.1 with the admin's Views page."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

USERNAME = PASSWORD = "admin"


class Command(BaseCommand):
    help = "Set up the demo, create the superuser admin/admin and serve the admin on 127.0.0.1."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Port on 127.0.0.1 (default 8000).")
        parser.add_argument(
            "--no-serve", action="store_true", help="Set up and create the user, do not start the server."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("demo", stdout=self.stdout)
        user, created = get_user_model().objects.get_or_create(
            username=USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(PASSWORD)  # a local demo: the same login every time
        user.save()
        url = f"http://127.0.0.1:{options['port']}/admin/django_pgviews_c/databaseview/"
        self.stdout.write("")
        self.stdout.write(f"Admin:  {url}")
        self.stdout.write(f"Login:  {USERNAME} / {PASSWORD}  (superuser {'created' if created else 'reset'})")
        if options["no_serve"]:
            return
        self.stdout.write("Serving on 127.0.0.1 only; stop with Ctrl-C.")
        # No autoreloader: it would run this command, and so the demo, again in a child process.
        # --insecure: the admin's static files, with DEBUG off.
        call_command("runserver", f"127.0.0.1:{options['port']}", use_reloader=False, insecure_serving=True)
