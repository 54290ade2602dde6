"""Every program's output, live on the console, one prefixed line at a time.

Fed in-process where supervisord logs each program's output (see ``capture``), so
per-program log files, rotation and ``tail`` work as usual. Writing never blocks
supervisord: the console gets its own non-blocking file description, and what the
terminal cannot take yet waits, in order, in memory until the poller says it can, up to a
limit: beyond it whole lines are dropped (the log files still get them) and one line says
so once the console reads.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# Partial lines (no newline yet) are shown after this long.
PARTIAL_DELAY = 0.5
#: A partial line longer than this is shown at once, so it cannot grow without end.
MAX_PARTIAL = 64 * 1024
#: Default for SUPERVISOR_CONSOLE_BUFFER: bytes waiting for the console, in all.
DEFAULT_LIMIT = 16 * 1024 * 1024
SUPERVISOR_NAME = "supervisor"
COLORS = (36, 33, 32, 35, 34, 91, 96, 93, 92, 95, 94)
RESET = b"\x1b[0m"


def use_color(fd: int, environ: Mapping[str, str], *, no_color: bool, force_color: bool) -> bool:
    """Colour rules: --no-color and NO_COLOR win, then --force-color and FORCE_COLOR, then a tty."""
    if no_color or environ.get("NO_COLOR"):
        return False
    if force_color or environ.get("FORCE_COLOR"):
        return True
    return os.isatty(fd)


def open_output(fd: int) -> int:
    """Return a non-blocking file description for ``fd``'s terminal or pipe.

    Setting O_NONBLOCK on fd 1 itself would change it for the shell that shares it;
    a fresh open of the same terminal or pipe is ours alone. Regular files never block.
    """
    mode = os.fstat(fd).st_mode
    path = None
    if os.isatty(fd):
        path = os.ttyname(fd)
    elif stat.S_ISFIFO(mode) and os.path.exists(f"/proc/self/fd/{fd}"):
        path = f"/proc/self/fd/{fd}"
    if path is not None:
        with contextlib.suppress(OSError):
            return os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    return os.dup(fd)


@dataclass
class Console:
    """Format and queue lines for the console; ``flush()`` writes what it can."""

    fd: int
    color: bool = False
    prefix: bool = True
    quiet: bool = False
    clock: Callable[[], float] = time.time
    width: int = len(SUPERVISOR_NAME)
    limit: int = DEFAULT_LIMIT
    pending: bytearray = field(default_factory=bytearray)
    partials: dict[tuple[str, str], tuple[bytes, float]] = field(default_factory=dict)
    colors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._socket: socket.socket | None = None
        self._head_cache: dict[tuple[str, bytes], tuple[int, bytes, bytes]] = {}
        self.dropping = False
        self.dropped_lines = 0
        self.dropped_bytes = 0
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.fstat(self.fd).st_mode):
                # A socket (systemd's journal) cannot be reopened like a pipe or a
                # terminal, and O_NONBLOCK on it would reach everyone sharing it:
                # MSG_DONTWAIT makes each send non-blocking on its own.
                self._socket = socket.socket(fileno=self.fd)

    def _write(self, data: memoryview) -> int:
        if self._socket is not None:
            return self._socket.send(data, socket.MSG_DONTWAIT)
        return os.write(self.fd, data)

    def _writev(self, parts: Sequence[bytes | memoryview]) -> int:
        if self._socket is not None:
            return self._socket.sendmsg(parts, (), socket.MSG_DONTWAIT)
        return os.writev(self.fd, parts)

    def _send(self, parts: Sequence[bytes | memoryview]) -> None:
        """Write ``parts`` now, in one call, if nothing waits; queue what the console refuses.

        Nothing is copied while the console keeps up, as a terminal or a file does.
        """
        if self.pending:
            for part in parts:
                self.pending += part
            self.flush()
            return
        try:
            written = self._writev(parts)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            return  # the console is gone: as in flush()
        for part in parts:
            if written >= len(part):
                written -= len(part)
                continue
            with memoryview(part) as view:
                self.pending += view[written:]
            written = 0

    def add_names(self, names: list[str]) -> None:
        self._head_cache.clear()  # a longer name widens every label
        for name in names:
            self.width = max(self.width, len(name))
            if name not in self.colors:
                self.colors[name] = COLORS[len(self.colors) % len(COLORS)]

    def _prefix(self, name: str, mark: bytes, now: float) -> bytes:
        return self._heads(name, mark, now)[0]

    def _heads(self, name: str, mark: bytes, now: float) -> tuple[bytes, bytes]:
        """``name``'s prefix at ``now``, and the same after a newline.

        Cached for the current second: a busy program's every read needs it.
        """
        if not self.prefix:
            return b"", b"\n"
        second = int(now)
        cached = self._head_cache.get((name, mark))
        if cached is not None and cached[0] == second:
            return cached[1], cached[2]
        stamp = time.strftime("%H:%M:%S", time.localtime(now)).encode()
        label = name.ljust(self.width).encode("utf-8", "replace")
        if self.color:
            code = self.colors.get(name, 0) if name != SUPERVISOR_NAME else 1
            head = b"%s \x1b[%dm%s %s%s " % (stamp, code, label, mark, RESET)
        else:
            head = b"%s %s %s " % (stamp, label, mark)
        self._head_cache[(name, mark)] = (second, head, b"\n" + head)
        return head, b"\n" + head

    def _full(self, incoming: int = 0) -> bool:
        """Whether to drop ``incoming`` bytes; once the console has read half, say what was lost.

        While the console is behind, the queue stays within the limit: a read can be a
        megabyte (see pipes.py). Half, not "below the limit": otherwise a console that
        reads a little at a time would alternate between taking and dropping, one marker
        line each time; so right after the marker line, what comes is taken.
        """
        if self.dropping:
            if len(self.pending) > self.limit // 2:
                return True
            self.dropping = False
            text = (
                f"WARN console: dropped {self.dropped_lines} lines ({self.dropped_bytes} bytes) "
                "of output it could not take in time; the log files have them"
            )
            self.pending += self._prefix(SUPERVISOR_NAME, b"|", self.clock()) + text.encode()
            self.pending += b"\n"
            self.dropped_lines = self.dropped_bytes = 0
            return False
        if self.pending and len(self.pending) + incoming > self.limit:
            self.dropping = True
        return self.dropping

    def _drop(self, lines: int, size: int) -> None:
        self.dropped_lines += lines
        self.dropped_bytes += size

    def output(self, name: str, channel: str, data: bytes) -> None:
        """Queue a program's output: whole lines now, a trailing partial line later."""
        if self.quiet or not data:
            return
        now = self.clock()
        key = (name, channel)
        previous, since = self.partials.pop(key, (b"", now))
        cut = data.rfind(b"\n")
        if cut == -1:
            if len(previous) + len(data) < MAX_PARTIAL:
                self.partials[key] = (previous + data, since)
                return
            previous, data = b"", previous + data + b"\n"
            cut = len(data) - 1
        # Shown: previous + data[: cut + 1]; the rest, a partial line, waits. Neither is
        # sliced off or joined: a read can be a megabyte, and every copy of it costs.
        tail = len(data) - cut - 1
        if tail:
            self.partials[key] = (data[cut + 1 :], now)
        if name not in self.colors:
            self.add_names([name])
        head, newline_head = self._heads(name, b"|" if channel == "stdout" else b"!", now)
        size = len(previous) + cut + 1
        if self.pending or self.dropping:  # behind: will it fit?
            lines = data.count(b"\n")
            if self._full(size + lines * len(head)):
                self._drop(lines, size)
                return
        if head:
            # One pass of bytes.replace: several times faster than split and join. It
            # prefixes the partial line too: that (and its prefix) is left out.
            body = data.replace(b"\n", newline_head)
            self._send((head, previous, memoryview(body)[: len(body) - len(head) - tail]))
        else:
            self._send((previous, memoryview(data)[: cut + 1]))

    def message(self, level: str, text: str) -> None:
        """Queue one of supervisord's own log messages."""
        text = text.rstrip("\n")
        if level not in ("INFO", "DEBG", "TRAC", "BLAT"):
            text = f"{level} {text}"
        raw = text.encode("utf-8", "replace")
        head = self._prefix(SUPERVISOR_NAME, b"|", self.clock())
        lines = text.count("\n") + 1
        if self._full(len(raw) + 1 + lines * len(head)):
            self._drop(lines, len(raw) + 1)
            return
        for line in text.split("\n"):
            self.pending += head + line.encode("utf-8", "replace") + b"\n"
        self.flush()

    def due(self) -> float | None:
        """When the oldest partial line must be shown, if any is waiting."""
        if not self.partials:
            return None
        return min(since for _, since in self.partials.values()) + PARTIAL_DELAY

    def flush_partials(self, *, force: bool = False) -> None:
        """Show partial lines that waited long enough (all of them with ``force``)."""
        now = self.clock()
        for key, (data, since) in list(self.partials.items()):
            if force or now >= since + PARTIAL_DELAY:
                del self.partials[key]
                self.output(key[0], key[1], data + b"\n")

    def flush(self) -> None:
        """Write as much as the console takes now, without blocking."""
        while self.pending:
            try:
                # A view, not a copy; the kernel takes what fits.
                with memoryview(self.pending) as view:
                    written = self._write(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # The console is gone (closed terminal, broken pipe): never let that
                # reach supervisord's dispatchers, which would close the child's pipe.
                self.pending.clear()
                return
            del self.pending[:written]
            if self.dropping and len(self.pending) <= self.limit // 2:
                self._full()  # the console reads again: add the marker line

    def drain(self, timeout: float = 5.0) -> None:
        """At exit: show everything left, waiting at most ``timeout`` for the console."""
        self.flush_partials(force=True)
        # Give up on a console that takes nothing for ``timeout`` (a stopped terminal),
        # not on one that is merely slow.
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                select.select([], [self.fd], [], max(0.0, deadline - time.monotonic()))
            left = len(self.pending)
            self.flush()
            if len(self.pending) < left:
                deadline = time.monotonic() + timeout

    def close(self) -> None:
        self.drain()
        if self._socket is not None:
            self._socket.detach()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class ConsoleDispatcher:
    """The console in supervisord's socket map: polled for writability only when needed."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return bool(self.console.pending)

    def handle_write_event(self) -> None:
        self.console.flush()

    def handle_read_event(self) -> None:
        pass

    def handle_error(self) -> None:
        self.console.pending.clear()

    def close(self) -> None:
        pass


class ConsoleLogHandler:
    """A supervisor logger handler that sends supervisord's messages to the console."""

    level = 0

    def __init__(self, console: Console) -> None:
        self.console = console

    def setLevel(self, level: int) -> None:
        self.level = level

    def setFormat(self, fmt: str) -> None:
        pass

    def emit(self, record: object) -> None:
        info = record.asdict()  # type: ignore[attr-defined]
        self.console.message(info["levelname"], info["message"])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def remove(self) -> None:
        pass


def make_console(
    *,
    no_color: bool = False,
    force_color: bool = False,
    prefix: bool = True,
    quiet: bool = False,
    fd: int | None = None,
    limit: int | None = None,
) -> Console:
    """Build the console for this process's stdout (``limit``: SUPERVISOR_CONSOLE_BUFFER)."""
    if limit is None:
        from ..conf import conf

        limit = conf.SUPERVISOR_CONSOLE_BUFFER
    fd = sys.stdout.fileno() if fd is None else fd
    color = use_color(fd, os.environ, no_color=no_color, force_color=force_color)
    return Console(open_output(fd), color=color, prefix=prefix, quiet=quiet, limit=limit)
