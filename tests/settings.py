"""Settings for in-process unit tests (integration tests build their own projects)."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-secret-key"
DEBUG = False
INSTALLED_APPS = ["django.contrib.contenttypes", "djsupervisor"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
TIME_ZONE = "UTC"
SUPERVISOR_PROJECT_DIR = BASE_DIR / "demo"
