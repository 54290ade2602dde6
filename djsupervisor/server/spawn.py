"""Start a program with ``posix_spawn`` instead of ``fork``, where that is equivalent.

supervisord forks itself for every program. In a ``manage.py`` process, with Django
loaded, each fork copies a much larger address space than stock supervisord's: 100
forks took 5-10 times longer than 100 ``posix_spawn`` calls (vfork-based, no copy) on
the CI machine. This replays supervisord's child-side steps (process group, pipes on
0-2, environment, directory, umask, default signal handlers) through ``posix_spawn``
and returns the pid to supervisord as if its own fork had produced it. Programs with
``user=`` (setuid) and FastCGI programs keep supervisord's fork path.

The programs a loop round starts are handed to the spawning thread without waiting
(``SpawnBatch``): supervisord's ``Subprocess.spawn`` runs up to its fork, the fork
raises ``Pending``, and the rest of ``spawn`` (``_spawn_as_parent``) runs once the
thread has answered, before the round reaps or answers anything. Meanwhile supervisord
prepares the next programs while the thread execs this one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from supervisor.process import ProcessException, ProcessGroup, Subprocess
from supervisor.states import ProcessStates

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
    batch: SpawnBatch | None = getattr(options, "spawn_batch", None)
    env = batch.environ() if batch is not None else os.environ.copy()
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


class Pending(Exception):
    """Raised by the fork of a spawn handed to the thread: ``SpawnBatch`` finishes it."""

    def __init__(self, ticket: int) -> None:
        super().__init__(ticket)
        self.ticket = ticket


def fast_spawn(
    options: Any, proc: Any, env: dict[str, str], reset_signals: Sequence[int]
) -> int | Pending | None:
    """Start ``proc``'s program; return its pid, ``Pending`` if a batch is open and
    the thread took it, or ``None`` to let supervisord fork."""
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
        batch: SpawnBatch | None = getattr(options, "spawn_batch", None)
        args = (filename, argv, env, stdio, config.directory, config.umask, reset_signals)
        try:
            ticket = spawner.submit(*args, order=config.priority)
            if batch is not None and batch.defers(proc):
                return Pending(ticket)
            return spawner.result(ticket)
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


#: Handed-over spawns between two finishings of those the thread is done with: each
#: holds its child's pipe ends open here until then, and each finishing asks the
#: thread's socket (a system call lets the spawning thread take the GIL).
FINISH_EVERY = 32


class SpawnBatch:
    """Spawns a loop round hands to the thread, finished once it has answered.

    Between its fork and ``finish()`` a process is STARTING with no pid, its child's
    pipe ends still open here; nothing but other processes' transitions runs then.
    """

    def __init__(self, options: Any) -> None:
        self.options = options
        self.open = False
        self._pending: list[tuple[Any, int]] = []
        self._args: tuple[Any, tuple[str, list[str]]] | None = None
        self._spawning: Any = None
        self._handed_over = 0
        #: Programs spawned in this batch, for the watchdog (told once, at its end).
        self._spawned: list[int] = []
        #: ``os.stat`` results by path, for this batch: each program's command is looked
        #: up along PATH, a stat per entry, and each system call lets the spawning
        #: thread take the GIL.
        self._stats: dict[str, os.stat_result | OSError] = {}
        #: ``os.environ`` as a plain dict, for this batch: copying ``os.environ`` decodes
        #: every variable (31 ms per 1,000 programs), a dict's copy does not.
        self._environ: dict[str, str] | None = None

    def install(self, group: Any) -> None:
        """Catch ``Pending`` from the spawns of a plain group's programs."""
        if type(group) is not ProcessGroup:
            return
        for proc in group.processes.values():
            if type(proc) is Subprocess:
                proc.spawn = functools.partial(self._spawn, proc, proc.spawn)
                proc.get_execv_args = functools.partial(self._execv_args, proc, proc.get_execv_args)

    def _execv_args(self, proc: Any, get: Callable[[], tuple[str, list[str]]]) -> Any:
        # spawn() resolves the command (a stat per PATH entry) and fast_spawn() needs
        # it again: once per spawn is enough.
        if self._args is None or self._args[0] is not proc:
            self._args = (proc, get())
        return self._args[1]

    def defers(self, proc: Any) -> bool:
        """Whether ``proc``'s spawn, now running, may be handed over."""
        return self.open and self._spawning is proc

    def _spawn(self, proc: Any, spawn: Callable[[], Any]) -> Any:
        self._spawning = proc
        try:
            return spawn()
        except Pending as pending:
            self._pending.append((proc, pending.ticket))
            self._handed_over += 1
            if self._handed_over % FINISH_EVERY == 0:
                self._finish(wait=False)  # the ones the thread is done with
            return None
        finally:
            self._args = None
            self._spawning = None

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """Hand the block's spawns over; finish every one of them when it ends."""
        self.open = True
        try:
            yield
        finally:
            self.open = False
            self._stats.clear()
            self._environ = None
            self._finish(wait=True)
            watchdog = getattr(self.options, "watchdog", None)
            if watchdog is not None and self._spawned:
                watchdog.add(*self._spawned)
            self._spawned.clear()

    def environ(self) -> dict[str, str]:
        """A copy of ``os.environ``, the same for every program while the batch is open."""
        if not self.open:
            return os.environ.copy()
        if self._environ is None:
            self._environ = os.environ.copy()
        return self._environ.copy()

    def stat(self, path: str) -> os.stat_result:
        """``os.stat``, the same for the same path while the batch is open."""
        if not self.open:
            return os.stat(path)
        result = self._stats.get(path)
        if result is None:
            try:
                result = os.stat(path)
            except OSError as error:
                result = error
            self._stats[path] = result
        if isinstance(result, OSError):
            raise OSError(result.errno, result.strerror, path)  # a fresh traceback
        return result

    def settle(self, keep: int) -> None:
        """Finish the oldest handed-over spawns, waiting, until at most ``keep`` are out."""
        self._finish(wait=True, keep=keep)

    def _finish(self, wait: bool, keep: int = 0) -> None:
        spawner: Spawner = self.options.spawner
        while len(self._pending) > keep:
            proc, ticket = self._pending[0]
            if not wait and not spawner.answered(ticket):
                break
            del self._pending[0]
            try:
                pid = spawner.result(ticket)
            except (OSError, Unavailable):
                fork_instead(self.options, proc)  # supervisord's path reports the error
                continue
            self._spawned.append(pid)
            proc._spawn_as_parent(pid)


def fork_instead(options: Any, proc: Any) -> None:
    """``Subprocess.spawn`` from its fork on, with supervisord's own fork.

    For a handed-over spawn the thread could not make: the forked child reports the
    reason as supervisord's always did (an exec error on the program's stderr).
    """
    name = proc.config.name
    try:
        filename, argv = proc.get_execv_args()
    except ProcessException as what:  # checked before the fork already: gone meanwhile
        proc.record_spawnerr(what.args[0])
        proc._assertInState(ProcessStates.STARTING)
        proc.change_state(ProcessStates.BACKOFF)
        options.close_parent_pipes(proc.pipes)
        options.close_child_pipes(proc.pipes)
        return
    try:
        pid = options.fork_here()
    except OSError as why:
        code = why.args[0]
        if code == errno.EAGAIN:
            msg = f"Too many processes in process table to spawn '{name}'"
        else:
            msg = f"unknown error during fork for '{name}': {errno.errorcode.get(code, code)}"
        proc.record_spawnerr(msg)
        proc._assertInState(ProcessStates.STARTING)
        proc.change_state(ProcessStates.BACKOFF)
        options.close_parent_pipes(proc.pipes)
        options.close_child_pipes(proc.pipes)
        return
    if pid != 0:
        proc._spawn_as_parent(pid)
    else:
        proc._spawn_as_child(filename, argv)
