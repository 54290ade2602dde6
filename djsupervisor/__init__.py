"""djsupervisor: run and control all of a Django project's processes with supervisord."""

from .errors import (
    AlreadyStarted,
    ConfigError,
    NoSuchProcess,
    NotRunning,
    NotRunningProcess,
    StartError,
    SupervisorError,
)

__all__ = [
    "AlreadyStarted",
    "ConfigError",
    "NoSuchProcess",
    "NotRunning",
    "NotRunningProcess",
    "StartError",
    "SupervisorError",
]
