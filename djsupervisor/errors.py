"""Exceptions raised by djsupervisor; every one carries a one-line message."""

from __future__ import annotations


class SupervisorError(Exception):
    """Base class of every djsupervisor error."""


class ConfigError(SupervisorError):
    """The merged configuration cannot be built or is rejected by supervisord."""


class StartError(SupervisorError):
    """supervisord could not be started."""


class NotRunning(SupervisorError):
    """No supervisord answers on the project's control channel."""


class NoSuchProcess(SupervisorError):
    """A name matches no configured program."""


class AlreadyStarted(SupervisorError):
    """The program is already running."""


class NotRunningProcess(SupervisorError):
    """The program is not running."""
