"""Drive supervisorctl in-process, against the project's running supervisord."""

from __future__ import annotations

import contextlib
import errno
import io
import sys
import xmlrpc.client
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, NoReturn

from supervisor import supervisorctl
from supervisor.options import ClientOptions
from supervisor.supervisorctl import Controller
from supervisor.xmlrpc import Faults, SupervisorTransport

from .. import config
from ..errors import ConfigError, NotRunning

Loader = Callable[[], config.Merged]


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
        proxy = super().getServerProxy()
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
            text = config.serialize(self._load().sections)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        stream = io.StringIO(text)
        stream.name = self.configfile
        return super().read_config(stream)

    def usage(self, msg: str) -> NoReturn:
        raise ConfigError(str(msg).splitlines()[0] if msg else "invalid supervisorctl options")


def client_options(load: Loader, configfile: str, args: Sequence[str] = ()) -> ProjectClientOptions:
    """Build realized supervisorctl options for ``args`` (an action and its arguments)."""
    options = ProjectClientOptions(load, configfile)
    options.realize(args=list(args))
    return options


def server_proxy(serverurl: str, username: str | None, password: str | None) -> Any:
    """Return a fresh XML-RPC proxy (a failed transport stays broken, so never reuse one)."""
    transport = SupervisorTransport(username, password, serverurl)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def describe_channel(serverurl: str) -> str:
    if serverurl.startswith("unix://"):
        return f"control socket {serverurl[len('unix://') :]}"
    return f"control URL {serverurl}"


def ping(serverurl: str, username: str | None, password: str | None) -> None:
    """Raise ``NotRunning`` unless supervisord answers on ``serverurl``."""
    where = describe_channel(serverurl)
    try:
        with server_proxy(serverurl, username, password) as proxy:  # closes the connection
            proxy.supervisor.getState()
    except xmlrpc.client.Fault as error:
        if error.faultCode != Faults.SHUTDOWN_STATE:
            raise
        # Stopping slow programs can take many seconds: say so, not a traceback.
        raise NotRunning("supervisord is shutting down") from None
    except xmlrpc.client.ProtocolError as error:
        if error.errcode == 401:
            raise NotRunning(
                f"supervisord at {where} refused our credentials (was SECRET_KEY changed "
                "since it started?)"
            ) from None
        raise NotRunning(f"supervisord at {where} answered HTTP {error.errcode}") from None
    except OSError as error:
        code = getattr(error, "errno", None)
        missing = code in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET)
        reason = "is not running" if missing else f"cannot be reached ({error})"
        raise NotRunning(
            f"supervisord {reason} ({where}); start it with 'manage.py supervisor'"
        ) from None


def is_up(serverurl: str, username: str | None, password: str | None) -> bool:
    try:
        ping(serverurl, username, password)
    except NotRunning:
        return False
    return True


class _Writer(io.TextIOBase):
    """Pass supervisorctl's output through unchanged (OutputWrapper would add newlines)."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def write(self, text: str) -> int:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if hasattr(self._out, "style_func"):
            self._out.write(text, ending="")
        else:
            self._out.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._out.flush()


class _DaemonFgThread(supervisorctl.fgthread):  # type: ignore[misc]
    """``fg``'s output thread, as a daemon thread that can be stopped at any time.

    When ``fg`` ends (stdin closed, Ctrl-C) the stock thread is only told to stop: it
    sits in its asyncore poll, and keeps the process alive, for up to 30 s more. And
    if stdin ends before the thread connected, the stock ``kill()`` fails on the
    unconnected handlers and ``fg`` exits 1 with an AttributeError.
    """

    def __init__(self, program: str, ctl: Any) -> None:
        super().__init__(program, ctl)
        self.daemon = True

    def kill(self) -> None:
        self.killed = True
        for handler in (self.output_handler, self.error_handler):
            with contextlib.suppress(Exception):  # not connected yet: nothing to close
                handler.close()


@contextlib.contextmanager
def _daemon_fg_thread() -> Iterator[None]:
    original = supervisorctl.fgthread
    supervisorctl.fgthread = _DaemonFgThread
    try:
        yield
    finally:
        supervisorctl.fgthread = original


class ProjectController(Controller):  # type: ignore[misc]
    """supervisorctl's controller, with a readable answer when a config reload is refused."""

    def _reread(self, action: str, arg: str) -> None:
        # With the config on disk broken, the server refuses reload and update
        # (CANT_REREAD); stock supervisorctl re-raises that fault and prints a raw
        # "error: <class 'xmlrpc.client.Fault'> ..." line. Answer as reread does.
        plugin = next(p for p in self.options.plugins if hasattr(p, f"do_{action}"))
        try:
            getattr(plugin, f"do_{action}")(arg)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.CANT_REREAD:
                raise
            self.output(f"ERROR: {fault.faultString}")
            self.exitstatus = supervisorctl.LSBInitExitStatuses.GENERIC

    def do_reload(self, arg: str) -> None:
        self._reread("reload", arg)

    def do_update(self, arg: str) -> None:
        self._reread("update", arg)


def is_action(options: ClientOptions, name: str) -> bool:
    """Tell whether supervisorctl (with its configured plugins) knows the action ``name``."""
    controller = Controller(options, stdout=io.StringIO())
    return name != "EOF" and controller._get_do_func(name) is not None


def run(
    options: ProjectClientOptions,
    args: Sequence[str],
    *,
    stdout: Any,
    stdin: IO[str] | None = None,
) -> int:
    """Run one supervisorctl action (or the interactive shell); return its exit status."""
    writer = _Writer(stdout)
    # realize() made it interactive (no args): that would make shutdown ask "y/N?".
    options.interactive = 1 if not args or args[0] == "shell" else 0
    if not args or args[0] != "help":
        ping(*options.channel)
    # tail -f writes to sys.stdout directly, not to the Controller's stdout.
    with contextlib.redirect_stdout(writer), _daemon_fg_thread():
        try:
            if args and args[0] != "shell":
                controller = ProjectController(options, stdout=writer)
                controller.onecmd(" ".join(args))
                return int(controller.exitstatus)
            stdin = stdin or sys.stdin
            controller = ProjectController(options, stdin=stdin, stdout=writer)
            if not stdin.isatty():
                controller.use_rawinput = False
                controller.prompt = ""
            controller.exec_cmdloop([], options)
            return 0
        finally:
            options.close_proxies()
