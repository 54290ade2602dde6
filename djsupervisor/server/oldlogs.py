"""The previous run's AUTO child logs: listed at start, reused or removed later.

supervisord deletes them (``clear_autochildlogdir``) right before it creates this
run's, one pair per program. On ext4 a freshly freed inode is skipped when a new one
is allocated (``recently_deleted``, for a minute or more), and the skip is a scan
repeated for every new file: creating 2,000 logs took 35-50 ms, but 0.25-1.4 s when
starts followed each other within seconds (``perf``: ``find_inode_bit`` ->
``recently_deleted``). So the start only lists them, before any new log exists.

Where only we (and root) can create files in the directory, a new AUTO log takes an
old one's inode, emptied: the previous run's log of the same program and channel where
there is one, name and all (so a program's log keeps its path from run to run), or any
other, renamed to a new name like ``mkstemp``'s. No inode is allocated or freed, and no
directory entry changes for a program that ran before. The rest are removed by the loop
in short slices when it has nothing due (after the programs have been started), and
what is left when it ends.

What is removed, and when not at all (``nocleanup``), is supervisord's choice as
before; only the moment changes.
"""

from __future__ import annotations

import base64
import os
import random
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
        # Names need to be unique, not secret: mkstemp's own come from random.Random.
        self._names = random.Random()
        # Reusable logs by the prefix of their name (program, channel, identifier), and
        # rotated backups by the log they were rotated from; what reuse() took.
        self._named: dict[str, list[str]] = {}
        self._backups: dict[str, list[str]] = {}
        self._taken: set[str] = set()

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
            old._index()
        return old

    def _index(self) -> None:
        for path in self.reusable:
            log, dot, number = path.rpartition(".")
            if number == "log":
                # mkstemp's random part has no "-": the prefix is all up to the last one.
                name = os.path.basename(path)
                self._named.setdefault(name[: name.rfind("-") + 1], []).append(path)
            elif dot and number.isdigit():
                self._backups.setdefault(log, []).append(path)

    def __bool__(self) -> bool:
        return bool(self.paths or self.reusable)

    def reuse(self, prefix: str, suffix: str, directory: str) -> str | None:
        """A new AUTO log on an old log's inode, emptied; ``None`` if none can be taken.

        Nobody else can create, rename or replace an entry in ``directory``: what
        ``lstat`` saw stays true, and a name found free stays free. So the previous run's
        log of the same program and channel is taken as it is, name and all (one system
        call for an empty one); failing that, any old log is renamed to a name like
        ``mkstemp``'s. Only a regular file of ours with no other link is taken; any other
        is left to the removal, as is one that cannot be taken for any reason.
        """
        if suffix == ".log":
            same = self._named.get(prefix, [])
            while same:
                old = same.pop()
                self._taken.add(old)
                if not self._emptied(old):
                    self.paths.append(old)
                    continue
                # The previous run's rotated copies would pass for this run's: gone now.
                for backup in self._backups.pop(old, ()):
                    self._taken.add(backup)
                    self._remove(backup)
                return os.path.abspath(old)
        while self.reusable:
            old = self.reusable.pop()
            if old in self._taken:
                continue
            if not self._emptied(old):
                self.paths.append(old)
                continue
            for _ in range(100):
                # 40 random bits, as mkstemp's 8 of 37 characters: [a-z2-7]{8}.
                token = base64.b32encode(self._names.randbytes(5)).decode("ascii").lower()
                new = os.path.join(directory, f"{prefix}{token}{suffix}")
                if os.path.lexists(new):
                    continue
                try:
                    os.rename(old, new)
                except OSError:
                    break  # leave it, and all others, to the removal
                return os.path.abspath(new)
            self.paths.append(old)
            self._stop_reusing()
        return None

    def _stop_reusing(self) -> None:
        """Leave every old log not taken yet to the removal."""
        self.paths.extend(path for path in self.reusable if path not in self._taken)
        self.reusable = []

    @staticmethod
    def _emptied(path: str) -> bool:
        """Empty ``path``, 0600, if it is a regular file of ours with no other link."""
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
                return False
            if info.st_size:
                os.truncate(path, 0)
            if stat.S_IMODE(info.st_mode) != 0o600:
                os.chmod(path, 0o600)
        except OSError:
            return False
        return True

    def remove(self, budget: float) -> float:
        """Remove old logs for about ``budget`` seconds; return the seconds spent."""
        start = time.monotonic()
        self._stop_reusing()  # a new log no longer takes one: the rest go
        if self._keep is None:
            # Never this run's own: a name can come back once its old file is gone.
            self._keep = set(self._current())
        while self.paths:
            path = self.paths.pop()
            if path in self._keep or path.rpartition(".")[0] in self._keep:
                continue
            self._remove(path)
            if time.monotonic() - start >= budget:
                break
        return time.monotonic() - start

    def _remove(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError:
            self.warn(f"Failed to clean up {path!r}")  # supervisord's words


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
