"""``manage.py supervisor ACTION``: one supervisorctl action (or the shell, or JSON status)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import config
from ..config.project import Project, credentials, merged_sections
from ..errors import ConfigError, SupervisorError
from . import ctl

#: Actions djsupervisor handles itself; every other one goes to supervisorctl.
OWN_ACTIONS = ("getconfig", "shell")


class UnknownAction(SupervisorError):
    """Neither supervisorctl nor djsupervisor knows the action (exit status 2, a usage error)."""

    returncode = 2


def default_channel(project: Project) -> config.Merged:
    """Only the control channel djsupervisor adds when the config sets up none."""
    username, password = credentials(project)
    sections: config.Sections = {}
    config.add_control_channel(
        sections,
        socket_path=str(project.socket_path),
        username=username,
        password=password,
        password_hash="",  # the server side's: not needed to connect
    )
    return config.Merged(sections)


def control(
    project: Project,
    opts: config.Options,
    action: Sequence[str],
    *,
    as_json: bool,
    stats: bool = False,
    stdout: Any,
    warn: Callable[[str], object],
) -> int:
    """Run one action against the running supervisord; return its exit status."""

    def load() -> config.Merged:
        try:
            return merged_sections(project, opts)
        except ConfigError as error:
            # A config broken on disk must not lock the user out of the instance
            # still running the previous one (status, reread to see why, shutdown).
            warn(f"warning: {error}; using the default control channel")
            return default_channel(project)

    client = ctl.client_options(load, str(project.config_file))
    if as_json or stats:
        from . import status
        from .supervisor import Supervisor

        show = status.status_json if as_json else status.status_table
        text, code = show(Supervisor(*client.channel), action[1:])
        stdout.write(text)
        return code
    if action[0] not in OWN_ACTIONS and not ctl.is_action(client, action[0]):
        raise UnknownAction(f"unknown action {action[0]!r}; see 'manage.py supervisor help'")
    return ctl.run(client, action, stdout=stdout)
