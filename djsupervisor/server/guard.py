"""Keep programs from outliving supervisord, however it ends (even SIGKILL)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys

from . import reaper, spawner

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def signal_on_parent_death(sig: int, parent_pid: int) -> bool:
    """Ask the kernel to send us ``sig`` when our parent dies (Linux only; else a no-op).

    Return False if ``parent_pid`` is already gone: it may have died before we asked.
    """
    if _libc is None:
        return True
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return os.getppid() == parent_pid


def die_with_parent(parent_pid: int) -> None:
    """In a child about to exec: ask the kernel to SIGKILL it when ``parent_pid`` dies.

    It must run after setuid (which clears it).
    """
    if not signal_on_parent_death(signal.SIGKILL, parent_pid):
        os._exit(1)


def open_max() -> int:
    """One more than the highest descriptor number this process can hold."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = os.sysconf("SC_OPEN_MAX")
    # Never below the old fixed bound: a descriptor opened before the limit was
    # lowered may sit above it. os.closerange() uses close_range(2) where it can.
    return max(soft, 4096)


class Watchdog:
    """A small forked process that kills every program's process group if we vanish.

    supervisord puts each program in its own process group. We tell the watchdog
    about each group as it is spawned and reaped; if our end of the pipe closes
    without a clean goodbye (we were SIGKILLed or crashed), it SIGKILLs the groups
    still listed, which reaches a program's own children too, on any POSIX system.
    On Linux, given this supervisord's family ``marker``, it first kills every
    descendant, however far it strayed from the tree (see ``reaper``).
    """

    def __init__(self, marker: str | None = None) -> None:
        read_fd, write_fd = os.pipe()
        pid = spawner.fork()
        if pid == 0:  # pragma: no cover  (runs in the forked watchdog)
            os.close(write_fd)
            self._serve(read_fd, marker)
        os.close(read_fd)
        self.pid = pid
        self._fd: int | None = write_fd

    @staticmethod
    def _serve(read_fd: int, marker: str | None) -> None:  # pragma: no cover  (forked)
        try:
            # Anything carrying the marker started after supervisord (our parent, now).
            since = reaper.start_time(os.getppid())
            os.setsid()
            # It is a fork of manage.py: tell it apart in ps and top.
            reaper.set_process_name("djsupervisor-wd")
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Every copy of supervisord's descriptors: a pipe kept open here would
            # never give its program EOF (and keep a stale epoll registration alive).
            # Up to the real limit, not a guess: 5,000 programs hold 25,000.
            os.closerange(3, read_fd)
            os.closerange(read_fd + 1, open_max())
            groups: set[int] = set()
            pending = b""
            clean = False
            while True:
                data = os.read(read_fd, 4096)
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line == b"bye":
                        clean = True
                    elif line[:1] == b"+":
                        groups.add(int(line[1:]))
                    elif line[:1] == b"-":
                        groups.discard(int(line[1:]))
            if not clean:
                if marker is not None:
                    # Every descendant (setsid helpers, probes, orphans), frozen first.
                    reaper.freeze_and_kill(marker, groups, since=since)
                for pgid in groups:
                    with contextlib.suppress(OSError):
                        os.killpg(pgid, signal.SIGKILL)
        finally:
            os._exit(0)

    def _send(self, message: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, message)
        except OSError:
            # The watchdog is gone; nothing more it can do for us.
            os.close(self._fd)
            self._fd = None

    def add(self, *pgids: int) -> None:
        # One write for many: each write lets go of the GIL, which the spawning thread
        # then holds for a while (spawner.py).
        self._send(b"".join(b"+%d\n" % pgid for pgid in pgids))

    def remove(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def close(self, clean: bool = True) -> None:
        """Reap the watchdog; unless ``clean``, it first kills the groups still listed."""
        if clean:
            self._send(b"bye\n")
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
