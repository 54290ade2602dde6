"""Start programs from a thread whose descriptor table holds almost nothing (Linux).

``posix_spawn`` copies the caller's whole descriptor table into the child, and the
child's ``exec`` then closes every close-on-exec descriptor in it: a spawn costs
O(open descriptors). supervisord holds about five per program (three pipes, two log
files), so with a thousand programs the last spawns took twice as long as the first
(0.9 ms with no descriptors, 1.5 ms with 4,000, measured here), and a start of n
programs cost O(n^2).

On Linux a thread can get a descriptor table of its own (``unshare(CLONE_FILES)``);
this one closes every copied descriptor but its socket, so its spawns cost the same
whatever supervisord holds. Each program's three pipe ends reach it over the socket
(``SCM_RIGHTS``), land in its table, and are dup'ed onto 0-2 by the spawn; the child
is still supervisord's child (a thread's children belong to the whole process), so
``waitpid``, ``SIGCHLD`` and the subreaper work as before.

The thread runs only while the loop waits for its answer, with the garbage collector
off: a finalizer collected on this thread would close a descriptor number in the wrong
table. It blocks every signal, so the signal wake-up pipe (a number in supervisord's
table) is only ever written from supervisord's own thread.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import gc
import os
import resource
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

_CLONE_FS = 0x200  # its own working directory and umask, changed freely per spawn
_CLONE_FILES = 0x400


def fork() -> int:
    """``os.fork()`` without Python 3.12's warning about the spawning thread.

    A fork copies only the calling thread; the spawning thread, if any, is then waiting
    in ``recvmsg`` and holds no lock the child could need (supervisord's fork path for
    ``user=`` programs, a re-forked watchdog).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*multi-threaded.*fork", DeprecationWarning)
        return os.fork()


class Unavailable(Exception):
    """The thread could not start or has gone: spawn in supervisord's own thread."""


def _unshare() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_FILES | _CLONE_FS) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def posix_spawn(
    filename: str,
    argv: list[str],
    env: dict[str, str],
    stdio: tuple[int, int, int],
    reset_signals: Sequence[int],
    close: Sequence[int] = (),
) -> int:
    """Start a program as supervisord's own fork would set it up.

    ``stdio`` on 0-2, its own process group, default dispositions for the signals
    supervisord handles, nothing blocked, and the descriptors in ``close`` closed.
    """
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_DUP2, stdio[0], 0),
        (os.POSIX_SPAWN_DUP2, stdio[1], 1),
        (os.POSIX_SPAWN_DUP2, stdio[2], 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in close]
    return os.posix_spawn(
        filename,
        argv,
        env,
        file_actions=actions,
        setpgroup=0,
        setsigdef=reset_signals,
        setsigmask=(),
    )


@contextlib.contextmanager
def with_umask(umask: int | None) -> Iterator[None]:
    """Set the umask for the block (``None``: leave it)."""
    if umask is None:
        yield
        return
    previous = os.umask(umask)
    try:
        yield
    finally:
        os.umask(previous)


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One request byte and its three descriptors, close-on-exec from the start.

    Not ``socket.recv_fds``: it drops its ``flags``, and a descriptor received without
    MSG_CMSG_CLOEXEC would be inherited by the program as a second copy of its stdout
    (it would never see EOF on it, nor would we).
    """
    size = array.array("i").itemsize
    msg, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_LEN(3 * size), socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % size])
    return msg, list(fds)


class Spawner:
    """A spawning thread, started at the first ``spawn()``; ``close()`` ends it."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._request: tuple[Any, ...] = ()
        self._result: int | BaseException | None = None
        self.broken = not sys.platform.startswith("linux")

    def spawn(
        self,
        filename: str,
        argv: list[str],
        env: dict[str, str],
        stdio: tuple[int, int, int],
        directory: str | None,
        umask: int | None,
        reset_signals: Sequence[int],
    ) -> int:
        """``posix_spawn`` the program with ``stdio`` on 0-2; OSError as posix_spawn's."""
        if self.broken:
            raise Unavailable
        with _collector_off():
            if self._sock is None:
                self._start()
            assert self._sock is not None
            self._request = (filename, argv, env, os.getcwd(), directory, umask, reset_signals)
            try:
                socket.send_fds(self._sock, [b"s"], list(stdio))
                answered = self._sock.recv(1)
            except OSError:
                answered = b""
            result, self._result = self._result, None
        if not answered:
            self.broken = True
            raise Unavailable
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, int)
        return result

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self._sock = ours
        self._thread = threading.Thread(
            target=self._serve, args=(theirs.fileno(),), name="djsupervisor-spawner", daemon=True
        )
        self._thread.start()
        ready = ours.recv(1)
        # The thread has its own copy now (or failed before closing anything of ours).
        theirs.close()
        if ready != b"r":
            self.close()
            self.broken = True
            raise Unavailable

    def _serve(self, fd: int) -> None:  # runs in the spawning thread
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            _unshare()
        except OSError:
            os.write(fd, b"!")  # nothing was closed: fd is still ours to write to
            return
        # From here on every descriptor number refers to this thread's own table.
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        high = limit if limit != resource.RLIM_INFINITY else 1 << 20
        os.closerange(3, fd)
        os.closerange(fd + 1, max(high, fd + 1))
        # Programs' pipes arrive at the lowest free numbers: keep 0-2 taken (a
        # supervisord started with stdin closed), so no dup onto 0-2 clobbers another.
        spare = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        while spare <= 2:
            spare = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        os.close(spare)
        sock = socket.socket(fileno=fd)
        try:
            sock.send(b"r")
            while True:
                msg, fds = _receive(sock)
                if not msg:
                    return  # supervisord closed its end
                try:
                    if len(fds) != 3:
                        raise Unavailable(f"received {len(fds)} descriptors, not 3")
                    self._result = self._spawn(fds)
                except BaseException as error:  # handed to the caller, raised there
                    self._result = error
                finally:
                    for received in fds:
                        os.close(received)
                sock.send(b"d")
        except OSError:
            return
        finally:
            sock.close()

    def _spawn(self, fds: list[int]) -> int:  # runs in the spawning thread
        filename, argv, env, cwd, directory, umask, reset_signals = self._request
        os.chdir(cwd)
        if directory is not None:
            os.chdir(directory)  # relative to supervisord's, as its own fork does
        with with_umask(umask):
            return posix_spawn(filename, argv, env, (fds[0], fds[1], fds[2]), reset_signals)

    def close(self) -> None:
        """End the thread (it sees its socket close) and wait for it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
