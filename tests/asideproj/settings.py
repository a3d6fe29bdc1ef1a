import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["ASIDE_DB"],
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    }
}
INSTALLED_APPS = ["django_pgviews_c", "shop"]
SECRET_KEY = "x"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
