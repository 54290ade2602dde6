"""djsupervisor: run and control all of a Django project's processes with supervisord."""

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
    from .client.supervisor import ProcessInfo, Supervisor, UpdateResult
    from .protocol import State

# The Python API loads on first use: importing djsupervisor (which Django does for
# INSTALLED_APPS) must stay cheap and must not touch settings.
_LAZY = {
    "ProcessInfo": "client.supervisor",
    "State": "protocol",
    "StartOptions": "client.api",
    "Supervisor": "client.supervisor",
    "UpdateResult": "client.supervisor",
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
