"""djsupervisor's settings, read at call time so ``override_settings`` works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings as django_settings


class Settings:
    """One typed property per ``SUPERVISOR_*`` setting."""

    def _get(self, name: str, default: Any) -> Any:
        return getattr(django_settings, name, default)

    @property
    def SUPERVISOR_CONFIG_FILE(self) -> str | None:
        """The project config file, relative to the project directory."""
        value = self._get("SUPERVISOR_CONFIG_FILE", None)
        return None if value is None else str(value)

    @property
    def SUPERVISOR_PROJECT_DIR(self) -> Path | None:
        value = self._get("SUPERVISOR_PROJECT_DIR", None)
        return None if value is None else Path(value)

    @property
    def SUPERVISOR_RUNTIME_DIR(self) -> Path | None:
        value = self._get("SUPERVISOR_RUNTIME_DIR", None)
        return None if value is None else Path(value)

    @property
    def SUPERVISOR_AUTORELOAD_PATTERNS(self) -> list[str]:
        return list(self._get("SUPERVISOR_AUTORELOAD_PATTERNS", ["*.py"]))

    @property
    def SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS(self) -> list[str]:
        return list(self._get("SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS", [".*", "#*", "*~"]))


conf = Settings()
