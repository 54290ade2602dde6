"""Exceptions raised by djsupervisor; every one carries a one-line message."""

from __future__ import annotations


class SupervisorError(Exception):
    """Base class of every djsupervisor error."""


class ConfigError(SupervisorError):
    """The merged configuration cannot be built or is rejected by supervisord."""


# Kinds of ConfigError, each reported under its own system check id (see checks.py).


class MissingConfigFile(ConfigError):
    """The project config file is missing, or no source defines a program."""


class TemplateError(ConfigError):
    """A config file does not render (syntax error, unknown variable)."""


class NoCommand(ConfigError):
    """A program section has no ``command``."""


class RejectedValue(ConfigError):
    """supervisord's own parser rejects a value of the merged configuration."""


class UnknownName(ConfigError):
    """A command-line option or setting names a program (or contrib app) that does not exist."""


class UnknownReference(ConfigError):
    """An option of the configuration (``depends_on``, a group) names no program."""


class EnvFileError(ConfigError):
    """An env file cannot be read, or one of its values cannot be passed on."""


class SettingError(ConfigError):
    """A ``SUPERVISOR_*`` setting has a value of the wrong type."""


class ImpossibleValue(ConfigError):
    """A value supervisord accepts but that cannot work (negative timeout, huge value)."""


class OpenControlChannel(ConfigError):
    """``[inet_http_server]`` binds beyond loopback without username and password."""


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
