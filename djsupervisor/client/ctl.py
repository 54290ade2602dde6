"""Drive supervisorctl in-process, against the project's running supervisord."""

from __future__ import annotations

import contextlib
import io
import sys
import xmlrpc.client
from collections.abc import Iterator, Sequence
from typing import IO, Any

from supervisor import supervisorctl
from supervisor.options import ClientOptions
from supervisor.supervisorctl import Controller

from ..protocol import CANT_REREAD
from .channel import ProjectClientOptions

# Where callers found them before the channel had a module of its own.
from .channel import client_options as client_options
from .channel import describe_channel as describe_channel
from .channel import is_up as is_up
from .channel import ping as ping
from .channel import server_proxy as server_proxy


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
            if fault.faultCode != CANT_REREAD:
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
