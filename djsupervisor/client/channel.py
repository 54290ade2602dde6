"""The control channel: supervisord's XML-RPC interface, and what its failures mean.

The one place that builds a proxy, reads the channel's address and credentials from
the merged config, and turns faults and socket errors into djsupervisor's errors
(with one wording for "not running"). ``ctl`` (supervisorctl), the typed
``Supervisor`` and the autoreload program all talk through it. It never imports
``supervisor.supervisorctl``: a script that only asks for status stays light.
"""

from __future__ import annotations

import errno
import http.client
import io
import os
import xmlrpc.client
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from supervisor.options import ClientOptions, UnhosedConfigParser, normalize_path

from .. import config
from ..errors import (
    AlreadyStarted,
    ConfigError,
    NoSuchProcess,
    NotRunning,
    NotRunningProcess,
    SupervisorError,
)
from ..protocol import ALREADY_STARTED, BAD_NAME, CANT_REREAD, NOT_RUNNING, SHUTDOWN_STATE
from . import answers

Loader = Callable[[], config.Merged]
#: ``(serverurl, username, password)``.
Address = tuple[str, "str | None", "str | None"]

_FAULT_HINTS = {
    "SPAWN_ERROR": "failed to start (see its status and log)",
    "ABNORMAL_TERMINATION": "exited before it was running (see its log)",
    "NO_FILE": "command not found",
    "NOT_EXECUTABLE": "command is not executable",
    "BAD_SIGNAL": "not a valid signal",
}
#: Nothing listens where the config says supervisord does.
_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED})


class ProjectClientOptions(ClientOptions):  # type: ignore[misc]
    """supervisorctl's options, read from the merged config instead of a file."""

    def __init__(self, load: Loader, configfile: str) -> None:
        super().__init__()
        self._load = load
        self.configfile = configfile
        self._proxies: list[Any] = []

    def getServerProxy(self) -> Any:
        # supervisorctl makes a proxy per call and never closes its connection: keep
        # them, so that an in-process caller (call_command) leaks no sockets.
        # supervisor's own proxy and transport, but reading answers with ElementTree.
        proxy = server_proxy(self.serverurl, self.username, self.password)
        self._proxies.append(proxy)
        return proxy

    @property
    def channel(self) -> tuple[str, str | None, str | None]:
        """``(serverurl, username, password)``, as ``ping`` and ``Supervisor`` take them."""
        return self.serverurl, self.username, self.password

    def close_proxies(self) -> None:
        for proxy in self._proxies:
            proxy("close")()
        self._proxies.clear()

    def read_config(self, fp: Any) -> Any:
        try:
            text = config.serialize(client_sections(self._load().sections))
        except ConfigError as error:
            raise ValueError(str(error)) from None
        stream = io.StringIO(text)
        stream.name = self.configfile
        return super().read_config(stream)

    def usage(self, msg: str) -> NoReturn:
        raise ConfigError(str(msg).splitlines()[0] if msg else "invalid supervisorctl options")


def client_sections(sections: config.Sections) -> config.Sections:
    """The sections supervisorctl reads (``ClientOptions.read_config``): its own, plugins.

    Parsing a thousand ``[program:x]`` sections the client never looks at took longer
    than rendering the whole config.
    """
    return {
        name: values
        for name, values in sections.items()
        if name == "supervisorctl" or name.startswith("ctlplugin:")
    }


def client_options(load: Loader, configfile: str, args: Sequence[str] = ()) -> ProjectClientOptions:
    """Build realized supervisorctl options for ``args`` (an action and its arguments)."""
    options = ProjectClientOptions(load, configfile)
    options.realize(args=list(args))
    return options


def address(load: Loader, configfile: str) -> tuple[str, str | None, str | None]:
    """The channel's ``(serverurl, username, password)``, read as supervisorctl reads them.

    With supervisor's own parser and expansions but not ``ClientOptions``, whose
    constructor imports ``supervisor.supervisorctl``: the typed client needs only this.
    """
    parser = UnhosedConfigParser()
    parser.expansions = {f"ENV_{key}": value for key, value in os.environ.items()}
    parser.mysection = "supervisorctl"
    parser.read_string(config.serialize(client_sections(load().sections)))
    here = os.path.dirname(os.path.abspath(configfile))
    serverurl = parser.getdefault("serverurl", "http://localhost:9001", expansions={"here": here})
    if serverurl.startswith("unix://"):
        serverurl = "unix://" + normalize_path(serverurl[len("unix://") :])
    return serverurl, parser.getdefault("username", None), parser.getdefault("password", None)


def server_proxy(serverurl: str, username: str | None, password: str | None) -> Any:
    """Return a fresh XML-RPC proxy (a failed transport stays broken, so never reuse one)."""
    transport = answers.Transport(username, password, serverurl)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def describe_channel(serverurl: str) -> str:
    if serverurl.startswith("unix://"):
        return f"control socket {serverurl[len('unix://') :]}"
    return f"control URL {serverurl}"


def fault_error(code: int, text: str) -> SupervisorError:
    """Translate a supervisord fault (code and ``"NAME: detail"`` text) into our errors."""
    kind, _, detail = text.partition(": ")
    if code == BAD_NAME:
        return NoSuchProcess(f"no such process or group: {detail or text}")
    if code == ALREADY_STARTED:
        return AlreadyStarted(f"{detail}: already started")
    if code == NOT_RUNNING:
        return NotRunningProcess(f"{detail}: not running")
    if code == CANT_REREAD:
        return ConfigError(detail or text)
    if code == SHUTDOWN_STATE:
        # Stopping slow programs can take many seconds: say so, not a traceback.
        return NotRunning("supervisord is shutting down")
    if kind in _FAULT_HINTS and detail:
        return SupervisorError(f"{detail}: {_FAULT_HINTS[kind]} ({kind})")
    return SupervisorError(text)


def connection_error(serverurl: str, error: Exception) -> SupervisorError:
    """Say why the channel to ``serverurl`` failed."""
    where = describe_channel(serverurl)
    if isinstance(error, xmlrpc.client.ProtocolError):
        if error.errcode == 401:
            return NotRunning(
                f"supervisord at {where} refused our credentials (was SECRET_KEY changed "
                "since it started?)"
            )
        return NotRunning(f"supervisord at {where} answered HTTP {error.errcode}")
    if isinstance(error, OSError) and error.errno in _GONE_ERRNOS:
        return NotRunning(
            f"supervisord is not running ({where}); start it with 'manage.py supervisor'"
        )
    if isinstance(error, ConnectionError):
        # It hung up mid-call: it is going away (shutdown, reload).
        return NotRunning(f"supervisord closed the connection ({where})")
    return SupervisorError(f"cannot talk to supervisord at {where}: {error!r}")


class Channel:
    """supervisord's XML-RPC interface: a fresh proxy per call, closed after it."""

    def __init__(self, serverurl: str, username: str | None, password: str | None) -> None:
        self.args = (serverurl, username, password)

    def _call(self, method: str, *params: Any) -> Any:
        proxy = server_proxy(*self.args)
        try:
            return getattr(proxy, method)(*params)
        finally:
            proxy("close")()

    def __call__(self, method: str, *params: Any) -> Any:
        """Call ``supervisor.<method>``; faults and socket errors come through as raised."""
        return self._call(f"supervisor.{method}", *params)

    def multicall(self, calls: Iterable[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run calls in one request; a failed one gives a ``{"faultString": ...}`` dict."""
        batch = [{"methodName": f"supervisor.{m}", "params": list(p)} for m, p in calls]
        return list(self._call("system.multicall", batch)) if batch else []

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` (full name); raise djsupervisor's errors for faults and failures."""
        try:
            return self._call(method, *params)
        except xmlrpc.client.Fault as fault:
            raise fault_error(fault.faultCode, fault.faultString) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as error:
            raise connection_error(self.args[0], error) from None


def ping(serverurl: str, username: str | None, password: str | None) -> None:
    """Raise ``NotRunning`` unless supervisord answers on ``serverurl``."""
    try:
        Channel(serverurl, username, password).call("supervisor.getState")
    except NotRunning:
        raise
    except SupervisorError as error:
        raise NotRunning(str(error)) from None


def is_up(serverurl: str, username: str | None, password: str | None) -> bool:
    try:
        ping(serverurl, username, password)
    except NotRunning:
        return False
    return True
