#!/usr/bin/env python
"""The demo project's manage.py: `python demo_project/manage.py demo` (or `make demo`)."""

import os
import sys
from pathlib import Path


def main() -> None:
    # Runnable from any directory: the project's packages are found next to this file.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
