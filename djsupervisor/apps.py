from __future__ import annotations

from django.apps import AppConfig


class DjSupervisorConfig(AppConfig):
    name = "djsupervisor"
    verbose_name = "djsupervisor"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
