"""supervisord's poller on Linux: epoll, so a loop round costs O(ready descriptors).

supervisor's PollPoller hands the kernel every registered descriptor on every poll()
(two or three pipes per program), and Python rebuilds its pollfd array whenever a
registration changes. epoll keeps the interest list in the kernel: a round pays for
the descriptors that are ready, a registration for one ``epoll_ctl``.

Same interface and meaning as PollPoller: readable is data, urgent data or a hang-up
(a pipe's EOF, a client gone), writable is room to write; ``poll(timeout)`` takes
seconds. Two differences, both fixes: a descriptor registered for reading and for
writing is watched for both (PollPoller's second registration replaced the first:
rounds.py keeps what the loop relied on), and an error, or a hang-up of a descriptor
registered for writing, is also writable. PollPoller dropped POLLERR, so the write end
of a pipe whose reader was gone, with its buffer full, made poll() return at once
forever; and a dispatcher that only writes (the console on a closed terminal) was
told of the hang-up only as readable, which it ignores.

An epoll registration belongs to the open file description, not to the number.
supervisord closes descriptors without telling its poller, and a fork (the watchdog,
a program before exec) may hold a copy: the registration then outlives the close, is
reported under a number that may since name another pipe, and cannot be removed
(EPOLL_CTL_DEL looks the number up). So:

- descriptors are unregistered before they close (``forget``, from runtime.py's
  ``close_fd`` and from the control channels, httpchannel.py);
- registering a number registered before modifies it or, for a new file, adds it;
- what epoll reports is checked against the descriptor as it is now (one poll() over
  the reported ones): a report that is not confirmed is never returned, and the epoll
  instance is rebuilt from the registrations, which drops the stale entry;
- a forked child never changes the parent's instance; a daemon makes its own.

epoll refuses regular files and /dev/null (EPERM), which poll() reports always ready:
those are polled with poll(), as supervisor would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys
from typing import Any

from supervisor.poller import BasePoller, Poller

_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT
#: Always reported, whatever was asked for.
_TROUBLE = select.POLLHUP | select.POLLERR
#: A reader learns of an error by reading (a pipe's EOF comes with POLLHUP).
_READABLE = _READ | _TROUBLE


def make_poller(options: Any) -> Any:
    """The poller for supervisord's options: epoll on Linux, supervisor's elsewhere."""
    if sys.platform == "linux":
        return EpollPoller(options)
    return Poller(options)


def unregister_fd(poller: Any, fd: int) -> None:
    """Unregister ``fd`` from ``poller`` before it is closed (a no-op for other pollers)."""
    if isinstance(poller, EpollPoller):
        poller.forget(fd)


class EpollPoller(BasePoller):  # type: ignore[misc]
    """supervisor's poller interface over ``select.epoll`` (Linux only)."""

    readables: set[int]
    writables: set[int]

    def initialize(self) -> None:
        self.readables = set()
        self.writables = set()
        self._epoll: Any = None
        #: The process that made ``_epoll``: only it may change or wait on it.
        self._owner = 0
        #: Registered, but refused by epoll: polled with poll() instead.
        self._unpollable: set[int] = set()
        #: How often a stale registration made us rebuild the instance.
        self.rebuilds = 0

    # -- registrations ------------------------------------------------------------------

    def register_readable(self, fd: int) -> None:
        known = self._registered(fd)
        self.readables.add(fd)
        self._apply(fd, known)

    def register_writable(self, fd: int) -> None:
        known = self._registered(fd)
        self.writables.add(fd)
        self._apply(fd, known)

    def unregister_readable(self, fd: int) -> None:
        if fd in self.readables:
            self.readables.discard(fd)
            self._apply(fd, known=True)

    def unregister_writable(self, fd: int) -> None:
        if fd in self.writables:
            self.writables.discard(fd)
            self._apply(fd, known=True)

    def forget(self, fd: int) -> None:
        """Unregister ``fd`` for both directions: call it before closing ``fd``."""
        if self._registered(fd):
            self.readables.discard(fd)
            self.writables.discard(fd)
            self._apply(fd, known=True)

    def _registered(self, fd: int) -> bool:
        return fd in self.readables or fd in self.writables

    def _mask(self, fd: int) -> int:
        return (_READ if fd in self.readables else 0) | (_WRITE if fd in self.writables else 0)

    def _apply(self, fd: int, known: bool) -> None:
        """Make the kernel's registration of ``fd`` match ``readables``/``writables``."""
        epoll = self._instance()
        if epoll is None:
            return  # the parent's instance: leave it alone
        mask = self._mask(fd)
        if not mask:
            self._unpollable.discard(fd)
            # Gone already (EBADF, ENOENT) if it was closed first: nothing to undo.
            with contextlib.suppress(OSError):
                epoll.unregister(fd)
            return
        try:
            self._control(epoll, fd, mask, known and fd not in self._unpollable)
        except PermissionError:
            self._unpollable.add(fd)
        except OSError as error:
            if error.errno != errno.EBADF:
                raise
            # Not open: PollPoller would drop it at the next poll() (POLLNVAL).
            self._drop(fd)
        else:
            self._unpollable.discard(fd)

    @staticmethod
    def _control(epoll: Any, fd: int, mask: int, known: bool) -> None:
        # A number registered before may name a new file now (closed and reused): the
        # old entry went with the old file, so MODIFY finds nothing (ENOENT) and the new
        # one is added; a number we think new may still be registered (EEXIST).
        if known:
            try:
                epoll.modify(fd, mask)
            except FileNotFoundError:
                epoll.register(fd, mask)
        else:
            try:
                epoll.register(fd, mask)
            except FileExistsError:
                epoll.modify(fd, mask)

    def _drop(self, fd: int) -> None:
        self.readables.discard(fd)
        self.writables.discard(fd)
        self._unpollable.discard(fd)

    # -- the epoll instance -------------------------------------------------------------

    def _instance(self) -> Any:
        """The epoll instance (made on first use), or None in a fork of its maker.

        A fork shares the instance with its parent (a program's child before exec,
        closing every descriptor through ``close_fd``): a change there would be a
        change here.
        """
        if self._epoll is None:
            self._open()
        elif self._owner != os.getpid():
            return None
        return self._epoll

    def _open(self) -> None:
        """Make a fresh instance and register every descriptor registered so far."""
        self._epoll = select.epoll()
        self._owner = os.getpid()
        self._unpollable.clear()
        for fd in sorted(self.readables | self.writables):
            self._apply(fd, known=False)

    def _rebuild(self, why: str) -> None:
        """Drop stale registrations: a new instance holds only the current ones."""
        self.rebuilds += 1
        self._blather(f"epoll: {why}; rebuilding its registrations")
        self._epoll.close()
        self._open()

    def before_daemonize(self) -> None:
        # Parent and daemon must not share an instance: the daemon makes its own.
        self._close_instance()

    def after_daemonize(self) -> None:
        self._close_instance()
        self._open()

    def close(self) -> None:
        # This supervisord is done: a later run (a reload) registers from scratch, and
        # these numbers may by then name other files.
        self._close_instance()
        self.readables.clear()
        self.writables.clear()
        self._unpollable.clear()

    def _close_instance(self) -> None:
        if self._epoll is not None:
            self._epoll.close()  # in a fork, only our copy
            self._epoll = None

    # -- waiting ------------------------------------------------------------------------

    def poll(self, timeout: float) -> tuple[list[int], list[int]]:
        """Wait up to ``timeout`` seconds; return the readable and writable descriptors."""
        epoll = self._instance()
        if epoll is None:
            # A fork that waits on its own (none of supervisord's do): its own instance.
            self._close_instance()
            epoll = self._instance()
        ready: dict[int, int] = {}
        if self._unpollable:
            # poll() reports a regular file ready at once, so PollPoller never waited.
            ready = self._check(self._unpollable)
            if ready:
                timeout = 0
        events = epoll.poll(timeout)
        if events:
            reported = {fd for fd, _ in events}
            stale = len(reported) < len(events)  # two entries under one number
            stray = reported - self.readables - self.writables
            for fd in stray:
                # Not ours (any more): a stale entry, or one forgotten too late.
                with contextlib.suppress(OSError):
                    epoll.unregister(fd)
            confirmed = self._check(reported - stray)
            if stray or stale or len(confirmed) < len(reported) - len(stray):
                self._rebuild(f"unconfirmed events for descriptors {sorted(reported)}")
            ready.update(confirmed)
        readables: list[int] = []
        writables: list[int] = []
        for fd, revents in ready.items():
            if revents & select.POLLHUP or (fd in self.readables and revents & _READABLE):
                readables.append(fd)
            if fd in self.writables and revents & (_WRITE | _TROUBLE):
                writables.append(fd)
        return readables, writables

    def _check(self, fds: set[int]) -> dict[int, int]:
        """What ``fds`` are ready for now, as poll() sees them; closed ones are dropped."""
        checker = select.poll()
        for fd in fds:
            checker.register(fd, self._mask(fd))
        ready: dict[int, int] = {}
        for fd, revents in checker.poll(0):
            if revents & select.POLLNVAL:
                self._blather(f"epoll: descriptor {fd} was closed while registered")
                self._drop(fd)
            elif revents & (self._mask(fd) | _TROUBLE):
                ready[fd] = revents
        return ready

    def _blather(self, message: str) -> None:
        logger = getattr(self.options, "logger", None)
        if logger is not None:
            logger.blather(message)
