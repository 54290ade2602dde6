"""Programs' output pipes: a pipe a program keeps filling is enlarged, and read whole.

A pipe holds 64 KiB by default. A program writing faster than that waits at every
64 KiB until supervisord has read, logged and shown them: one loop round per 64 KiB,
each with its fixed costs. Such a pipe is enlarged (``F_SETPIPE_SZ``, Linux) the first
time a read finds it full, so the program writes on while its previous output is
logged, and each round takes up to a megabyte.

Only pipes that filled up grow, and only so many at once: every byte a pipe may hold
counts against its user's pipe quota (``/proc/sys/fs/pipe-user-pages-soft``), and a
user beyond it gets tiny pipes everywhere, not only here. Reads always take as much as
the pipe can hold: at a program's exit supervisord reads each pipe once more and closes
it, so a smaller read would lose the rest.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

#: supervisord's own read size (``ServerOptions.readfd``).
READ_SIZE = 128 * 1024
#: A pipe's capacity as made (``pipe(7)``): a read this long found it full.
DEFAULT_SIZE = 64 * 1024
#: What a full pipe grows to (the default ``pipe-max-size``).
GROWN_SIZE = 1024 * 1024
#: At most this many bytes in all in grown pipes (eight): an eighth of the default quota.
GROWN_TOTAL = 8 * 1024 * 1024
#: Linux only; elsewhere pipes keep their size.
F_SETPIPE_SZ: int | None = getattr(fcntl, "F_SETPIPE_SZ", None)


def max_pipe_size(path: Path = Path("/proc/sys/fs/pipe-max-size")) -> int:
    """The largest pipe an unprivileged process may ask for (Linux)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return GROWN_SIZE


class OutputPipes:
    """Read programs' output pipes for supervisord, growing those that fill up.

    Keyed by the read end's descriptor: ``forget`` it when that is closed.
    """

    def __init__(self, *, grown_size: int | None = None, total: int = GROWN_TOTAL) -> None:
        if grown_size is None:
            grown_size = min(GROWN_SIZE, max_pipe_size()) if F_SETPIPE_SZ is not None else 0
        self.grown_size = grown_size
        self.total = total
        #: Descriptor -> its capacity once grown; 0 once growing it failed.
        self.sizes: dict[int, int] = {}

    def read(self, fd: int) -> bytes:
        """supervisord's ``readfd``: what the pipe holds (b"" at its end or when empty)."""
        size = self.sizes.get(fd, 0)
        try:
            data = os.read(fd, max(size, READ_SIZE))
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EBADF, errno.EINTR):
                raise
            return b""
        if len(data) == DEFAULT_SIZE and fd not in self.sizes and self.grown_size > DEFAULT_SIZE:
            self.grow(fd)
        return data

    def grow(self, fd: int) -> None:
        """Enlarge a pipe that was full, if the budget allows; never try it twice."""
        if sum(self.sizes.values()) + self.grown_size > self.total:
            return  # maybe later, once another grown pipe is closed
        try:
            self.sizes[fd] = fcntl.fcntl(fd, F_SETPIPE_SZ or 0, self.grown_size)
        except OSError:  # EPERM beyond the user's quota; not a pipe; not Linux
            self.sizes[fd] = 0

    def forget(self, fd: int) -> None:
        """``fd`` is closed (its number may come back for another pipe)."""
        self.sizes.pop(fd, None)
