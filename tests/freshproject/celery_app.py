"""The Celery app of the test project, as a Django project declares one."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.freshproject.settings")

app = Celery("freshproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_pgviews_c"])
