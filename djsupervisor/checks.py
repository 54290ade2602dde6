"""System checks: the merged configuration must build and satisfy supervisord."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.core.checks import CheckMessage, Error, register

# Set while ``manage.py supervisor`` runs the system checks: it has already validated
# the config of *this* run (its --config-file, --project-dir, ...).
_validated: ContextVar[bool] = ContextVar("djsupervisor_config_validated", default=False)


@contextlib.contextmanager
def config_already_validated() -> Iterator[None]:
    """Skip the config check inside this block (the caller validated the config)."""
    token = _validated.set(True)
    try:
        yield
    finally:
        _validated.reset(token)


@register()
def check_config(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Build the merged configuration exactly as ``manage.py supervisor`` would."""
    if _validated.get():
        return []
    from . import config, runtime
    from .errors import SupervisorError
    from .project import ensure_runtime_dir, locate, merged_sections

    try:
        project = locate()
        ensure_runtime_dir(project.runtime_dir)
        runtime.build_options(
            lambda: merged_sections(project, config.Options()), str(project.config_file)
        )
    except SupervisorError as error:
        return [Error(str(error), id="djsupervisor.E001")]
    return []
