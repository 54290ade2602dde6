"""The previous run's AUTO child logs: listed at start, reused or removed later.

supervisord deletes them (``clear_autochildlogdir``) right before it creates this
run's, one pair per program. On ext4 a freshly freed inode is skipped when a new one
is allocated (``recently_deleted``, for a minute or more), and the skip is a scan
repeated for every new file: creating 2,000 logs took 35-50 ms, but 0.25-1.4 s when
starts followed each other within seconds (``perf``: ``find_inode_bit`` ->
``recently_deleted``). So the start only lists them, before any new log exists.

Where only we (and root) can create files in the directory, a new AUTO log takes an
old one's inode: emptied, then linked under the new, unique name (``link`` fails on
an existing name, as ``O_EXCL`` does) and unlinked under the old. No inode is
allocated or freed. The rest are removed by the loop in short slices when it has
nothing due (after the programs have been started), and what is left when it ends.

What is removed, and when not at all (``nocleanup``), is supervisord's choice as
before; only the moment changes.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import time
from collections.abc import Callable, Iterable

#: supervisord's pattern for the AUTO logs it owns (``clear_autochildlogdir``).
AUTO_LOG = r".+?---{identifier}-\S+\.log\.{{0,1}}\d{{0,4}}"


class OldLogs:
    """AUTO child logs of a previous run, still to be removed."""

    def __init__(
        self,
        paths: Iterable[str],
        warn: Callable[[str], None],
        current: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.paths = list(paths)
        #: Old logs a new one may take the inode of (``listed(reusable=True)``).
        self.reusable: list[str] = []
        self.warn = warn
        # This run's logs, asked for at the first removal (they exist by then).
        self._current = current
        self._keep: set[str] | None = None

    @classmethod
    def listed(
        cls,
        childlogdir: str,
        identifier: str,
        warn: Callable[[str], None],
        current: Callable[[], Iterable[str]] = tuple,
        *,
        reusable: bool = False,
    ) -> OldLogs:
        """The AUTO logs in ``childlogdir`` now, as supervisord would find them.

        ``reusable``: nobody else can create files there, so an old log is ours to reuse.
        """
        pattern = re.compile(AUTO_LOG.format(identifier=identifier))
        try:
            names = os.listdir(childlogdir)
        except OSError:
            warn("Could not clear childlog dir")  # supervisord's words
            names = []
        paths = [os.path.join(childlogdir, name) for name in names if pattern.match(name)]
        old = cls(paths, warn, current)
        if reusable:
            old.reusable, old.paths = old.paths, []
        return old

    def __bool__(self) -> bool:
        return bool(self.paths or self.reusable)

    def reuse(self, prefix: str, suffix: str, directory: str) -> str | None:
        """A new AUTO log named like ``mkstemp``'s, on an old log's inode; ``None`` if none.

        Only an old log that is a regular file of ours with no other link is taken; any
        other is left to the removal, as is one that cannot be taken for any reason.
        """
        while self.reusable:
            old = self.reusable.pop()
            try:
                fd = os.open(old, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                self.paths.append(old)
                continue
            try:
                info = os.fstat(fd)
                if (
                    not stat.S_ISREG(info.st_mode)
                    or info.st_uid != os.geteuid()
                    or info.st_nlink != 1
                ):
                    self.paths.append(old)
                    continue
                os.ftruncate(fd, 0)
                os.fchmod(fd, 0o600)
            except OSError:
                self.paths.append(old)
                continue
            finally:
                os.close(fd)
            for _ in range(100):
                # 40 random bits, as mkstemp's 8 of 37 characters: [a-z2-7]{8}.
                token = base64.b32encode(os.urandom(5)).decode("ascii").lower()
                new = os.path.join(directory, f"{prefix}{token}{suffix}")
                try:
                    os.link(old, new)
                except FileExistsError:
                    continue
                except OSError:
                    break  # no hard links here: leave it, and all others, to the removal
                os.unlink(old)
                return os.path.abspath(new)
            self.paths.append(old)
            self.paths.extend(self.reusable)
            self.reusable = []
        return None

    def remove(self, budget: float) -> float:
        """Remove old logs for about ``budget`` seconds; return the seconds spent."""
        start = time.monotonic()
        self.paths.extend(self.reusable)  # a new log no longer takes one: the rest go
        self.reusable = []
        if self._keep is None:
            # Never this run's own: a name can come back once its old file is gone.
            self._keep = set(self._current())
        while self.paths:
            path = self.paths.pop()
            if path in self._keep or path.rpartition(".")[0] in self._keep:
                continue
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError:
                self.warn(f"Failed to clean up {path!r}")  # supervisord's words
            if time.monotonic() - start >= budget:
                break
        return time.monotonic() - start


def current_logs(process_group_configs: Iterable[object]) -> list[str]:
    """The log files of every configured process (AUTO ones resolved by now)."""
    paths = []
    for group in process_group_configs:
        for process in getattr(group, "process_configs", ()):
            for name in ("stdout_logfile", "stderr_logfile"):
                path = getattr(process, name, None)
                if isinstance(path, str):
                    paths.append(path)
    return paths
