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

Limits: a process that clears its environment *and* leaves the tree (``env -i`` then
``setsid`` and a double fork) escapes the watchdog, though not the shutdown sweep
while supervisord lives; a process of another user cannot be signalled unless
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
from collections.abc import Iterable

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


def _table() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, state)}`` for every process, zombies left out."""
    table: dict[int, tuple[int, str]] = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{_PROC}/{name}/stat", "rb") as stream:
                stat = stream.read()
        except OSError:
            continue  # gone meanwhile
        # The command name (in parentheses) may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] not in (b"Z", b"X"):
            table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def _carries(pid: int, marker: bytes) -> bool:
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as stream:
            environ = stream.read()
    except OSError:
        return False  # gone, or not ours to read
    return environ.startswith(marker) or b"\0" + marker in environ


def family(marker: str, roots: Iterable[int] = ()) -> set[int]:
    """Live processes carrying ``marker``, the live ``roots``, and all their descendants."""
    table = _table()
    needle = f"{marker}=".encode()
    found = {pid for pid in table if _carries(pid, needle)}
    found.update(pid for pid in roots if pid in table)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
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


def freeze_and_kill(marker: str, roots: Iterable[int] = (), spare: Iterable[int] = ()) -> set[int]:
    """SIGSTOP the whole family until it is complete, then SIGKILL it; return the pids."""
    spared = {os.getpid(), *spare}
    frozen: set[int] = set()
    roots = set(roots)
    # Each round freezes what the last one could not see yet (children forked meanwhile);
    # the bound only guards against a pathological fork rate.
    for _ in range(100):
        found = family(marker, roots | frozen) - spared - frozen
        if not found:
            break
        _signal(found, signal.SIGSTOP)
        frozen |= found
    _signal(frozen, signal.SIGKILL)
    return frozen


def _alive(pids: Iterable[int]) -> set[int]:
    table = _table()
    return {pid for pid in pids if pid in table}


class Family:
    """This supervisord's descendants: marked, adopted when orphaned, swept at shutdown.

    ``sweep()`` is called on every loop round once the programs have stopped: the first
    call sends SIGTERM to every remaining member; it answers the members still alive
    (the loop goes round again, woken by SIGCHLD or ``due()``) and SIGKILLs them once
    ``grace`` seconds have passed. It never waits itself.
    """

    def __init__(self) -> None:
        self.marker = MARKER_PREFIX + secrets.token_hex(8)
        self.adopting = False
        self._members: set[int] = set()
        self._kill_at: float | None = None
        self._give_up_at: float | None = None
        self.done = False

    def enter(self) -> None:
        """Mark what this process starts from now on, and adopt its orphans."""
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
        found = family(self.marker, self._members) - spared
        if self._kill_at is None:
            if not found:
                self.done = True
                return []
            self._kill_at = now + grace
        new = found - self._members
        self._members |= found
        _signal(new, signal.SIGTERM)
        if not found:
            self.done = True
            return []
        if now >= self._kill_at:
            self._members |= freeze_and_kill(self.marker, self._members, spared)
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
