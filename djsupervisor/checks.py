"""Validation of the merged configuration, shared by ``manage.py supervisor`` and the checks.

``validate()`` is the one validation path: the command runs it before starting and for
``getconfig``; ``manage.py check`` runs it with the settings' options and reports each
kind of error under a stable id:

=====================  ==================================================================
``djsupervisor.E001``  the configuration cannot be built (syntax, runtime directory, ...)
``djsupervisor.E002``  the project config file is missing, or no source defines a program
``djsupervisor.E003``  a config file does not render (template error, with ``file:line``)
``djsupervisor.E004``  a program has no ``command``
``djsupervisor.E005``  supervisord rejects a value
``djsupervisor.E006``  a ``--launch``-style option or ``SUPERVISOR_CONTRIB`` names nothing
``djsupervisor.E007``  ``depends_on`` or a group's ``programs`` names no program
``djsupervisor.E008``  an env file is missing or unusable, or python-dotenv is missing
``djsupervisor.E009``  a ``SUPERVISOR_*`` setting has the wrong type
``djsupervisor.E010``  a value cannot work (negative timeout, ``numprocs`` < 1, over 64 KiB)
``djsupervisor.E011``  ``[inet_http_server]`` binds a non-loopback address without credentials
``djsupervisor.W001``  the ``autoreload`` program is enabled while ``DEBUG`` is off
``djsupervisor.W002``  ``SUPERVISOR_CONTRIB`` names an app that is not installed
``djsupervisor.W003``  a program's executable is not found (absolute path, or on its PATH)
``djsupervisor.W004``  ``[inet_http_server]`` has no username and password
=====================  ==================================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning

from .errors import (
    ConfigError,
    EnvFileError,
    ImpossibleValue,
    MissingConfigFile,
    NoCommand,
    OpenControlChannel,
    RejectedValue,
    SettingError,
    SupervisorError,
    TemplateError,
    UnknownName,
    UnknownReference,
)

if TYPE_CHECKING:
    from . import config
    from .config.project import Project

#: Check ids by kind of error; a kind not listed takes its nearest listed base class's.
ERROR_IDS: dict[type[SupervisorError], str] = {
    SupervisorError: "djsupervisor.E001",
    ConfigError: "djsupervisor.E001",
    MissingConfigFile: "djsupervisor.E002",
    TemplateError: "djsupervisor.E003",
    NoCommand: "djsupervisor.E004",
    RejectedValue: "djsupervisor.E005",
    UnknownName: "djsupervisor.E006",
    UnknownReference: "djsupervisor.E007",
    EnvFileError: "djsupervisor.E008",
    SettingError: "djsupervisor.E009",
    ImpossibleValue: "djsupervisor.E010",
    OpenControlChannel: "djsupervisor.E011",
}

_HINTS = {
    "djsupervisor.E002": "Create the file, or fix SUPERVISOR_CONFIG_FILE; "
    "'manage.py supervisor getconfig' shows the merged configuration.",
    "djsupervisor.E005": "See http://supervisord.org/configuration.html for the option.",
    "djsupervisor.E008": "Fix or remove the file in SUPERVISOR_ENV_FILES (or --env-file).",
}

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


def check_id(error: SupervisorError) -> str:
    """The system check id of ``error``'s kind."""
    for kind in type(error).__mro__:
        if kind in ERROR_IDS:
            return ERROR_IDS[kind]
    return ERROR_IDS[SupervisorError]


def _check_group_members(merged: config.Merged) -> None:
    # supervisord says this too, but without the file the group came from.
    from . import config

    names = set(config.process_names(merged.sections))
    for section, values in merged.sections.items():
        if not section.startswith("group:"):
            continue
        for program in values.get("programs", "").split(","):
            if program.strip() and program.strip() not in names:
                raise UnknownReference(
                    f"{merged.where(section)}: [{section}] programs names no program "
                    f"{program.strip()!r}"
                )


def validate(project: Project, opts: config.Options, *, supervisord: bool = True) -> config.Merged:
    """Merge the config and have supervisord's own option parser check it.

    Raises a ``ConfigError`` subclass per kind of problem (see ``ERROR_IDS``). Without
    ``supervisord``, the last step is left to the caller, which is about to run it anyway.
    """
    from .conf import conf
    from .config import parser, rules, rundir
    from .config.project import merged_sections

    conf.validate()  # every setting's type, also those this run would read only later
    merged = merged_sections(project, opts)
    rules.parse_rules(merged)
    _check_group_members(merged)
    # Only looks: a check creates nothing (an unsafe existing directory is an error).
    exists = rundir.check_runtime_dir(project.runtime_dir)
    if not supervisord:
        return merged
    # realize() insists that the log and socket directories exist: the runtime dir by
    # default. Until it does, check the same values against an existing directory.
    checked = merged if exists else rundir.standing_in(merged, project.runtime_dir)
    try:
        parser.parse_options(
            lambda: checked, str(project.config_file), runtime_dir=str(project.runtime_dir)
        )
    except ConfigError as error:
        # Everything djsupervisor checks itself was checked above: this is supervisord's.
        raise RejectedValue(str(error)) from None
    return merged


def _warnings(merged: config.Merged, here: str) -> list[CheckMessage]:
    from django.apps import apps
    from django.conf import settings

    from .conf import conf
    from .config import values
    from .config.project import contrib_labels

    found: list[CheckMessage] = values.warnings(merged, here)
    if "program:autoreload" in merged.sections and not settings.DEBUG:
        found.append(
            CheckWarning(
                "the autoreload program is enabled while DEBUG is off",
                hint="It restarts programs on every code change: leave it out in production "
                "(it is off by default without DEBUG; remove 'exclude=false' from "
                "[program:autoreload], or run with --noreload).",
                obj=merged.where("program:autoreload"),
                id="djsupervisor.W001",
            )
        )
    setting = conf.SUPERVISOR_CONTRIB
    if isinstance(setting, list):
        installed = {app.label for app in apps.get_app_configs()}
        for label in setting:
            if label in contrib_labels() and label not in installed:
                found.append(
                    CheckWarning(
                        f"SUPERVISOR_CONTRIB names {label!r}, which is not an installed app: "
                        "its programs are not added",
                        hint=f"Add the app to INSTALLED_APPS or remove {label!r}.",
                        id="djsupervisor.W002",
                    )
                )
    return found


@register()
def check_config(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Build the merged configuration exactly as ``manage.py supervisor`` would."""
    if _validated.get():
        return []
    from . import config
    from .config.project import locate

    try:
        project = locate()
        merged = validate(project, config.Options())
    except SupervisorError as error:
        ident = check_id(error)
        return [Error(str(error), hint=_HINTS.get(ident), id=ident)]
    return _warnings(merged, str(project.config_file.parent))
