#!/usr/bin/env python
"""A small project for checking an installed django-pgviews-c: `python manage.py migrate`.

Used by tools/check_wheel.sh (an installed sdist or binary wheel) and tests/test_pgbouncer.py.
The database comes from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD) and
SMOKE_DB (its name); SMOKE_OPTIONS (JSON) is merged into the connection's OPTIONS and
SMOKE_DB_SETTINGS (JSON) into its settings.
"""

import os
import sys
from pathlib import Path


def main() -> None:
    # Only this folder goes on sys.path: django_pgviews_c must come from site-packages.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smoke.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
