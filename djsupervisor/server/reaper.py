"""Keep every process supervisord starts within reach, and end them all (Linux).

Design: a /proc walk, not a cgroup. A cgroup holds a process tree reliably, but
creating one needs a delegated, writable cgroup hierarchy (root, or a systemd
delegation) that containers, CI runners and plain user shells usually lack, and it
would move ``manage.py`` itself; a second mechanism would also need a second set of
tests. /proc works unprivileged on every Linux, so there is one mechanism:

- supervisord is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``, Linux >= 3.4): an
  orphaned descendant (a ``setsid`` helper whose parent exited, the children of a
  ``stopasgroup=false`` program that stopped) is reparented to it, not to init, and
  reaped by its loop like any child.
- Every process supervisord starts (programs, ``cmd:`` health probes, and what they
  start in turn) inherits a marker variable unique to this supervisord,
  ``DJSUPERVISOR_FAMILY_<random>``. It finds them once the tree is broken: after
  supervisord is SIGKILLed, its children are reparented to init, and only the marker
  (and the program pids the watchdog was told about) still ties them to us.
- To kill, the family is found (marker, known pids, and every descendant of those),
  frozen with SIGSTOP, found again until no new member appears (a frozen process
  cannot fork, exit or be reparented), then SIGKILLed: nothing escapes by forking
  during the kill.

The sweep at shutdown looks for the marker too, not for every child of supervisord:
supervisord may run inside a host process (``call_command``) whose own children are
not ours to end.

Limits: a process that clears its environment *and* leaves the tree (``env -i``, then
its parent exits) escapes; a process of another user cannot be signalled unless
supervisord runs as root. Elsewhere than Linux every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
MARKER_PREFIX = "DJSUPERVISOR_FAMILY_"
#: After SIGKILL, how long the sweep waits for the kernel to end what it signalled.
KILL_WAIT = 1.0
#: How often the sweep looks for leftovers that ended without waking the loop.
POLL = 0.1

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PROC = "/proc"


def set_subreaper(on: bool) -> bool:
    """Make this process adopt its orphaned descendants (or stop); False if unsupported."""
    if _libc is None:
        return False
    return int(_libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0


def set_process_name(name: str) -> None:
    """Set this process's name as ``ps -o comm`` and ``top`` show it (15 bytes at most)."""
    if _libc is not None:
        _libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _read(path: str) -> bytes:
    """The whole file, or b"" if it cannot be read (the process is gone, or not ours)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return b"".join(chunks)


def start_time(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (0 if unknown)."""
    fields = _stat_fields(_read(f"{_PROC}/{pid}/stat"))
    return int(fields[19]) if len(fields) > 19 else 0


def _stat_fields(stat: bytes) -> list[bytes]:
    # From the state on: the command name before it, in parentheses, may hold anything.
    return stat[stat.rfind(b")") + 2 :].split()


def _scan(needle: bytes, since: int) -> tuple[dict[int, int], set[int]]:
    """``({pid: parent pid}, {pids carrying needle})`` of every live process.

    /proc is listed again until it shows no new pid: a process that forks and exits
    faster than one pass over /proc would otherwise always be born after the listing.
    Only processes started at ``since`` or later can carry the marker: the others'
    environments are not read.
    """
    parents: dict[int, int] = {}
    marked: set[int] = set()
    seen: set[int] = set()
    for _ in range(1000):
        try:
            names = os.listdir(_PROC)
        except OSError:
            break
        new = [pid for pid in map(int, filter(str.isdigit, names)) if pid not in seen]
        if not new:
            break
        seen.update(new)
        for pid in new:
            fields = _stat_fields(_read(f"{_PROC}/{pid}/stat"))
            if len(fields) <= 19 or fields[0] in (b"Z", b"X"):
                continue  # gone, or a zombie: nothing left to signal
            parents[pid] = int(fields[1])
            if int(fields[19]) >= since:
                environ = _read(f"{_PROC}/{pid}/environ")
                if environ.startswith(needle) or b"\0" + needle in environ:
                    marked.add(pid)
    return parents, marked


def family(marker: str, roots: Iterable[int] = (), since: int = 0) -> set[int]:
    """Live processes carrying ``marker``, the live ``roots``, and all their descendants.

    ``since`` (clock ticks since boot, see ``start_time``) is when the marker was first
    given out, to skip reading older processes' environments.
    """
    parents, found = _scan(f"{marker}=".encode(), since)
    found.update(pid for pid in roots if pid in parents)
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def freeze_and_kill(
    marker: str, roots: Iterable[int] = (), spare: Iterable[int] = (), since: int = 0
) -> set[int]:
    """SIGSTOP the whole family until it is complete, then SIGKILL it; return the pids."""
    spared = {os.getpid(), *spare}
    frozen: set[int] = set()
    roots = set(roots)
    # Each round freezes what the last one could not see yet (children forked meanwhile);
    # the bound only guards against a pathological fork rate.
    for _ in range(100):
        found = family(marker, roots | frozen, since) - spared - frozen
        if not found:
            break
        _signal(found, signal.SIGSTOP)
        frozen |= found
    _signal(frozen, signal.SIGKILL)
    return frozen


def _alive(pids: Iterable[int]) -> set[int]:
    """Those of ``pids`` still running (not zombies)."""
    alive = set()
    for pid in pids:
        fields = _stat_fields(_read(f"{_PROC}/{pid}/stat"))
        if fields and fields[0] not in (b"Z", b"X"):
            alive.add(pid)
    return alive


class Family:
    """This supervisord's descendants: marked, adopted when orphaned, swept at shutdown.

    ``sweep()`` is called on every loop round once the programs have stopped: the first
    call sends SIGTERM to every remaining member; it answers the members still alive
    (the loop goes round again, woken by SIGCHLD or ``due()``) and SIGKILLs them once
    ``grace`` seconds have passed. It never waits itself.
    """

    def __init__(self, log: Callable[[str], None] = lambda message: None) -> None:
        self.log = log
        self.marker = MARKER_PREFIX + secrets.token_hex(8)
        self.adopting = False
        self._members: set[int] = set()
        self._kill_at: float | None = None
        self._give_up_at: float | None = None
        self.done = False
        self.since = 0

    def enter(self) -> None:
        """Mark what this process starts from now on, and adopt its orphans."""
        self.since = start_time(os.getpid())
        os.environ[self.marker] = "1"
        self.adopting = set_subreaper(True)

    def leave(self) -> None:
        os.environ.pop(self.marker, None)
        if self.adopting:
            set_subreaper(False)
            self.adopting = False

    def sweep(self, spare: Iterable[int], grace: float) -> list[int]:
        """Move the shutdown of the leftovers on; return those not gone yet."""
        if self.done or _libc is None:
            return []
        spared = {os.getpid(), *spare}
        now = time.monotonic()
        if self._give_up_at is not None:
            # Killed: wait only for the kernel (a process stuck in the kernel may never go).
            left = _alive(self._members) - spared
            if not left or now >= self._give_up_at:
                self.done = True
                return []
            return sorted(left)
        # The marker, not the pids seen before, is the root: one of those may have ended
        # and its pid gone to a stranger since.
        found = family(self.marker, (), self.since) - spared
        if self._kill_at is None:
            if not found:
                self.done = True
                return []
            self._kill_at = now + grace
        new = found - self._members
        self._members |= found
        if new:
            self.log(f"stopping {len(new)} leftover process(es) with SIGTERM: {sorted(new)}")
            _signal(new, signal.SIGTERM)
        if not found:
            self.done = True
            return []
        if now >= self._kill_at:
            killed = freeze_and_kill(self.marker, (), spared, self.since)
            self.log(f"killing {len(killed)} leftover process(es) with SIGKILL: {sorted(killed)}")
            self._members |= killed
            self._give_up_at = now + KILL_WAIT
        return sorted(found)

    def due(self) -> float | None:
        """When ``sweep()`` must run again without an event, as ``time.time()``.

        A leftover that is not our direct child ends without a SIGCHLD to wake us: look
        again every ``POLL`` seconds until the deadline.
        """
        if self.done:
            return None
        deadline = self._give_up_at if self._give_up_at is not None else self._kill_at
        if deadline is None:
            return None
        wait = min(deadline - time.monotonic(), POLL)
        return time.time() + max(wait, 0.0)
