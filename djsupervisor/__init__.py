"""djsupervisor: run and control all of a Django project's processes with supervisord.

How it fits together (and in which process each part runs):

- ``config/``: find, render, merge and check the configuration; text in, text out.
  Runs in every process, imports neither ``server`` nor ``client``.
- ``server/``: runs only inside supervisord's process (``manage.py supervisor`` or
  ``python -m djsupervisor``): the in-process supervisord, loop, orchestrator, health
  checks, console, spawning, watchdog.
- ``client/``: runs in any process that talks to a running supervisord (control
  actions, the Python API): the control channel, supervisorctl, the typed client.
  Never imports ``server``.
- ``autoreload/``: the code watcher, run as the ``autoreload`` program; a client.
- ``export/``: the configuration for production hosts (systemd, Procfile, Compose,
  Kubernetes); runs in the ``manage.py`` process, starts nothing.
- ``protocol``: what server and client both say (states, faults, keys, env names).
- ``cli``: the command line and the run options, both ways.
- ``conf``, ``checks``, ``signals``, ``testing``, ``errors``: settings, system checks,
  Django signals sent inside supervisord, the pytest plugin, the exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AlreadyStarted,
    ConfigError,
    NoSuchProcess,
    NotRunning,
    NotRunningProcess,
    StartError,
    SupervisorError,
)

if TYPE_CHECKING:
    from .client.api import StartOptions, connect, get_merged_config, start
    from .client.info import ProcessInfo, UpdateResult
    from .client.supervisor import Supervisor
    from .protocol import State

# The Python API loads on first use: importing djsupervisor (which Django does for
# INSTALLED_APPS) must stay cheap and must not touch settings.
_LAZY = {
    "ProcessInfo": "client.info",
    "State": "protocol",
    "StartOptions": "client.api",
    "Supervisor": "client.supervisor",
    "UpdateResult": "client.info",
    "connect": "client.api",
    "get_merged_config": "client.api",
    "start": "client.api",
}

__all__ = [
    "AlreadyStarted",
    "ConfigError",
    "NoSuchProcess",
    "NotRunning",
    "NotRunningProcess",
    "ProcessInfo",
    "StartError",
    "StartOptions",
    "State",
    "Supervisor",
    "SupervisorError",
    "UpdateResult",
    "connect",
    "get_merged_config",
    "start",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'djsupervisor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
