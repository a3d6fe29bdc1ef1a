"""View models in the admin, through Django's test client on a real database (a small project
run in a subprocess: the admin needs its own settings)."""

from __future__ import annotations

from tests.test_testing import devproject, run  # noqa: F401  (the project fixture)


def test_view_models_are_read_only_in_the_admin(devproject):  # noqa: F811
    project, db = devproject
    done = run(project, db, "-m", "pytest", "-q", "inner_admin.py", "--create-db")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
