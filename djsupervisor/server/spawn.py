"""Start a program with ``posix_spawn`` instead of ``fork``, where that is equivalent.

supervisord forks itself for every program. In a ``manage.py`` process, with Django
loaded, each fork copies a much larger address space than stock supervisord's: 100
forks took 5-10 times longer than 100 ``posix_spawn`` calls (vfork-based, no copy) on
the CI machine. This replays supervisord's child-side steps (process group, pipes on
0-2, environment, directory, umask, default signal handlers) through ``posix_spawn``
and returns the pid to supervisord as if its own fork had produced it. Programs with
``user=`` (setuid) and FastCGI programs keep supervisord's fork path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from supervisor.process import Subprocess

from ..protocol import GROUP_NAME_ENV, PROCESS_NAME_ENV, SERVER_URL_ENV
from .spawner import Spawner, Unavailable, posix_spawn, with_umask


def _inheritable_fds() -> list[int]:
    """Descriptors above 2 a spawned program would inherit (Python's own are CLOEXEC)."""
    try:
        names = os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                if os.get_inheritable(fd):
                    found.append(fd)
    return found


class InheritedFds:
    """The scan above, done at most once per loop round.

    Listing every descriptor costs O(programs) (each program holds three pipes), so a
    scan per spawn made a start of n programs O(n^2). Within one round only
    supervisord's own code runs, and Python opens every descriptor non-inheritable
    (PEP 446), so the scan made at a round's first spawn holds for the rest of it.
    """

    def __init__(self) -> None:
        self._fds: list[int] | None = None

    def get(self) -> list[int]:
        if self._fds is None:
            self._fds = _inheritable_fds()
        return self._fds

    def forget(self) -> None:
        self._fds = None


def child_environment(options: Any, proc: Any) -> dict[str, str]:
    """The environment supervisord gives a program (process.py ``_spawn_as_child``)."""
    config = proc.config
    env = os.environ.copy()
    env["SUPERVISOR_ENABLED"] = "1"
    serverurl = config.serverurl or options.serverurl
    if serverurl:
        env[SERVER_URL_ENV] = serverurl
    env[PROCESS_NAME_ENV] = config.name
    if proc.group:
        env[GROUP_NAME_ENV] = proc.group.config.name
    if config.environment is not None:
        env.update(config.environment)
    return env


@contextlib.contextmanager
def _in_directory(directory: str | None) -> Iterator[None]:
    # Safe because supervisord is single-threaded: nothing else sees the detour.
    if directory is None:
        yield
        return
    saved = os.open(".", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(directory)
        yield
    finally:
        os.fchdir(saved)
        os.close(saved)


def fast_spawn(
    options: Any, proc: Any, env: dict[str, str], reset_signals: Sequence[int]
) -> int | None:
    """Start ``proc``'s program; return its pid, or ``None`` to let supervisord fork."""
    config = proc.config
    if type(proc) is not Subprocess or config.uid is not None or not proc.pipes:
        return None
    try:
        filename, argv = proc.get_execv_args()
    except Exception:
        return None  # supervisord's own path reports it
    pipes = proc.pipes
    stderr = pipes["child_stdout"] if config.redirect_stderr else pipes["child_stderr"]
    stdio = (pipes["child_stdin"], pipes["child_stdout"], stderr)
    spawner: Spawner | None = getattr(options, "spawner", None)
    if spawner is not None and not spawner.broken:
        try:
            return spawner.spawn(
                filename, argv, env, stdio, config.directory, config.umask, reset_signals
            )
        except OSError:
            return None  # as below: supervisord's fork path reports it
        except Unavailable:
            pass  # spawn here instead
    # The loop keeps a per-round scan on the options; without one (no loop), scan now.
    inherited = getattr(options, "inherited_fds", None)
    fds = inherited.get() if inherited is not None else _inheritable_fds()
    try:
        with _in_directory(config.directory), with_umask(config.umask):
            return posix_spawn(filename, argv, env, stdio, reset_signals, close=fds)
    except OSError:
        return None  # a bad directory or exec error: supervisord's fork path reports it
