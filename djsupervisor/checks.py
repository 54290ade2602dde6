"""System checks: the merged configuration must build and satisfy supervisord."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register


@register()
def check_config(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Build the merged configuration exactly as ``manage.py supervisor`` would."""
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
