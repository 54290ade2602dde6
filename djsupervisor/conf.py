"""djsupervisor's settings, read at call time so ``override_settings`` works."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from .errors import SettingError


def _names(name: str, value: Any) -> list[str]:
    """A list of strings, or a one-line error naming the setting."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SettingError(f"{name} must be a list of strings, got {value!r}")
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        raise SettingError(f"{name} must be a list of strings; {bad[0]!r} is not one")
    return list(value)


def _path(name: str, value: Any) -> Path | None:
    """A path (``str`` or ``os.PathLike``) or None, or a one-line error naming the setting."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise SettingError(f"{name} must be a path, got {value!r}")
    return Path(value)


class Settings:
    """One typed property per ``SUPERVISOR_*`` setting."""

    def _get(self, name: str, default: Any) -> Any:
        return getattr(django_settings, name, default)

    @property
    def SUPERVISOR_CONFIG_FILE(self) -> str | None:
        """The project config file, relative to the project directory."""
        path = _path("SUPERVISOR_CONFIG_FILE", self._get("SUPERVISOR_CONFIG_FILE", None))
        return None if path is None else str(path)

    @property
    def SUPERVISOR_PROJECT_DIR(self) -> Path | None:
        return _path("SUPERVISOR_PROJECT_DIR", self._get("SUPERVISOR_PROJECT_DIR", None))

    @property
    def SUPERVISOR_RUNTIME_DIR(self) -> Path | None:
        return _path("SUPERVISOR_RUNTIME_DIR", self._get("SUPERVISOR_RUNTIME_DIR", None))

    @property
    def SUPERVISOR_AUTORELOAD_PATTERNS(self) -> list[str]:
        # A string would pass list() as one pattern per character: refused instead.
        value = self._get("SUPERVISOR_AUTORELOAD_PATTERNS", ["*.py"])
        return _names("SUPERVISOR_AUTORELOAD_PATTERNS", value)

    @property
    def SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS(self) -> list[str]:
        value = self._get("SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS", [".*", "#*", "*~"])
        return _names("SUPERVISOR_AUTORELOAD_IGNORE_PATTERNS", value)

    @property
    def SUPERVISOR_CONTRIB(self) -> bool | list[str]:
        """Which shipped contrib configs apply: all (True), none (False) or these app labels."""
        value = self._get("SUPERVISOR_CONTRIB", True)
        if isinstance(value, bool):
            return value
        return _names("SUPERVISOR_CONTRIB", value)

    @property
    def SUPERVISOR_ENV_FILES(self) -> list[Path]:
        """dotenv files for every program, relative to the project directory."""
        value = self._get("SUPERVISOR_ENV_FILES", [])
        if isinstance(value, (str, Path)) or not isinstance(value, Sequence):
            raise SettingError(f"SUPERVISOR_ENV_FILES must be a list of paths, got {value!r}")
        bad = [item for item in value if not isinstance(item, (str, Path))]
        if bad:
            raise SettingError(
                f"SUPERVISOR_ENV_FILES must be a list of paths; {bad[0]!r} is not one"
            )
        return [Path(item) for item in value]

    @property
    def SUPERVISOR_CELERY_APP(self) -> str | None:
        """The Celery app (``celery -A``) of the contrib ``celerybeat`` program."""
        value = self._get("SUPERVISOR_CELERY_APP", None)
        if value is not None and not isinstance(value, str):
            raise SettingError(f"SUPERVISOR_CELERY_APP must be a string, got {value!r}")
        return value

    @property
    def SUPERVISOR_CONSOLE_BUFFER(self) -> int:
        """Bytes of output that may wait, in all, for a slow or unread console."""
        value = self._get("SUPERVISOR_CONSOLE_BUFFER", 16 * 1024 * 1024)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
            raise SettingError(
                f"SUPERVISOR_CONSOLE_BUFFER must be a number of bytes of at least 1024, "
                f"got {value!r}"
            )
        return value

    def validate(self) -> None:
        """Read every setting once: raise ``SettingError`` naming the first of a wrong type."""
        for name in dir(type(self)):
            if name.startswith("SUPERVISOR_"):
                getattr(self, name)


conf = Settings()
