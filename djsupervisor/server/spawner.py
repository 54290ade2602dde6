"""Start programs from threads whose descriptor tables hold almost nothing (Linux).

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

While the thread lives, the garbage collector runs only when supervisord's loop calls
``collect_garbage()`` in its own thread: a finalizer run by a collection on this thread
would close a descriptor number in the wrong table. The thread blocks every signal, so
the signal wake-up pipe (a number in supervisord's table) is only ever written from
supervisord's own thread.

The thread runs ``posix_spawn`` through ctypes, which lets go of the GIL for the call
(``os.posix_spawn`` holds it): while a program execs, supervisord's own thread goes on
with the next program's pipes, log files and state. A spawn may therefore be handed
over (``submit``) and its pid taken later (``result``); the loop does so for the
programs a round starts (spawn.py ``SpawnBatch``), anything else waits at once.

Where two cores are ours there are two such threads (lanes), taking turns: while one
waits in ``posix_spawn`` for its child's exec (vfork), the other execs the next program.
Bare loops of 1,000 spawns on 2 cores took 0.50-0.56 s from one thread, 0.37-0.45 s
from two, and no less from three; djsupervisor's 1,000-program spawn span went from
0.72-0.88 s to 0.62-0.73 s with two (three: 0.74-0.83 s, more waiting for the GIL).
"""

from __future__ import annotations

import array
import collections
import contextlib
import ctypes
import errno
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

    A fork copies only the calling thread, which holds the GIL: the spawning thread,
    if any, is then waiting (for a request, in ``posix_spawn`` or for the GIL) and holds
    no lock the child could need (supervisord's fork path for ``user=`` programs, a
    re-forked watchdog).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*multi-threaded.*fork", DeprecationWarning)
        return os.fork()


class Unavailable(Exception):
    """The thread could not start or has gone: spawn in supervisord's own thread."""


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


#: Spawns handed over and not yet answered, at most: their descriptors are in flight
#: (counted against the sender's descriptor limit) and their programs not yet known.
MAX_IN_FLIGHT = 64

#: The GIL switch interval while spawns are handed over: the thread needs the GIL back
#: after each exec, and at the default 5 ms it would wait that long for it while
#: supervisord's thread runs, i.e. one spawn per 5 ms.
SPAWNING_SWITCH_INTERVAL = 0.00005

# glibc's and musl's values (spawn.h); the thread exists on Linux only.
_POSIX_SPAWN_SETPGROUP = 0x02
_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSIGMASK = 0x08
#: Bytes reserved for posix_spawnattr_t, posix_spawn_file_actions_t and sigset_t:
#: more than any libc's (glibc's are 336, 80 and 128 bytes on 64-bit Linux).
_OPAQUE = 1024


class _Libc:
    """The libc calls the thread makes, through ctypes.

    ``posix_spawn`` through a CDLL, which releases the GIL for the call; every other
    call through a PyDLL, which keeps it: each release costs the thread a wait for the
    GIL while supervisord's thread runs.
    """

    def __init__(self) -> None:
        self.releasing = ctypes.CDLL(None, use_errno=True)
        self.holding = ctypes.PyDLL(None, use_errno=True)

    def check(self, result: int, what: str) -> None:
        """For a call that returns -1 and sets ``errno``."""
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")


def _check_returned(result: int, filename: str | None = None) -> None:
    """For the ``posix_spawn*`` calls, which return their error number."""
    if result != 0:
        raise OSError(result, os.strerror(result), filename)


_libc: _Libc | None = None


def _get_libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def _c_strings(items: Sequence[bytes]) -> Any:
    """A NULL-terminated ``char *[]``; a NUL inside an item would cut it short."""
    if any(b"\0" in item for item in items):
        raise OSError(errno.EINVAL, "embedded null byte")
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


_ENCODED: dict[tuple[str, str], bytes] = {}


def _encoded(item: tuple[str, str]) -> bytes:
    """``KEY=value`` as bytes: programs share most of their environment."""
    encoded = _ENCODED.get(item)
    if encoded is None:
        if len(_ENCODED) > 10_000:
            _ENCODED.clear()
        encoded = _ENCODED[item] = os.fsencode(f"{item[0]}={item[1]}")
    return encoded


class _Attributes:
    """A posix_spawnattr_t as supervisord's fork sets a program up: its own process
    group, default dispositions for ``reset_signals``, nothing blocked."""

    def __init__(self, libc: _Libc, reset_signals: Sequence[int]) -> None:
        self.buffer = ctypes.create_string_buffer(_OPAQUE)
        self._sigdef = ctypes.create_string_buffer(_OPAQUE)
        self._empty = ctypes.create_string_buffer(_OPAQUE)
        c = libc.holding
        libc.check(c.sigemptyset(self._sigdef), "sigemptyset")
        for sig in reset_signals:
            libc.check(c.sigaddset(self._sigdef, int(sig)), "sigaddset")
        libc.check(c.sigemptyset(self._empty), "sigemptyset")
        _check_returned(c.posix_spawnattr_init(self.buffer))
        flags = _POSIX_SPAWN_SETPGROUP | _POSIX_SPAWN_SETSIGDEF | _POSIX_SPAWN_SETSIGMASK
        for result in (
            c.posix_spawnattr_setflags(self.buffer, ctypes.c_short(flags)),
            c.posix_spawnattr_setpgroup(self.buffer, 0),
            c.posix_spawnattr_setsigdefault(self.buffer, self._sigdef),
            c.posix_spawnattr_setsigmask(self.buffer, self._empty),
        ):
            _check_returned(result)


class _Request:
    """One spawn, its C arguments built in supervisord's thread."""

    __slots__ = ("argv", "attributes", "directory", "envp", "path", "ticket", "umask")

    def __init__(
        self,
        ticket: int,
        filename: str,
        argv: list[str],
        env: dict[str, str],
        directory: str,
        umask: int | None,
        attributes: _Attributes,
    ) -> None:
        self.ticket = ticket
        self.path = os.fsencode(filename)
        self.argv = _c_strings([os.fsencode(arg) for arg in argv])
        self.envp = _c_strings([_encoded(item) for item in env.items()])
        self.directory = os.fsencode(directory)
        self.umask = umask
        self.attributes = attributes


def _lane_count() -> int:
    """Spawning threads: two where two cores are ours (each exec keeps one busy)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 1


class _Lane:
    """One spawning thread, its socket, and the requests handed to it, in order."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.requests: collections.deque[_Request] = collections.deque()
        self.submitted = 0
        self.answered = 0  # acknowledgements read from the socket


class Spawner:
    """Spawning threads, started at the first ``submit()``; ``close()`` ends them.

    Ticket ``t`` goes to lane ``t % lanes``, which answers its requests in order. With
    two lanes two programs exec at once, each thread's ``posix_spawn`` waiting for its
    own child's exec (vfork); programs of different ``order`` (supervisord's priority)
    never overlap: a submit of another order waits until every spawn out is answered.
    """

    def __init__(self, lanes: int | None = None) -> None:
        self._lanes = [_Lane() for _ in range(lanes or _lane_count())]
        #: Answers by ticket, put there by the threads, taken by ``result()``.
        self._answers: dict[int, int | BaseException] = {}
        self._order: object = None
        self._attributes: dict[tuple[int, ...], _Attributes] = {}
        self._saved_interval: float | None = None
        self._collector_was_on = False
        self.broken = not sys.platform.startswith("linux")

    def submit(
        self,
        filename: str,
        argv: list[str],
        env: dict[str, str],
        stdio: tuple[int, int, int],
        directory: str | None,
        umask: int | None,
        reset_signals: Sequence[int],
        order: object = None,
    ) -> int:
        """Hand a spawn (``stdio`` on 0-2) to a thread; its ticket, for ``result()``.

        ``stdio`` may be closed once this returns (the thread has its own copies in
        flight). Unavailable: the threads are gone or cannot start (spawn in place);
        OSError: the arguments cannot be passed to ``posix_spawn``.
        """
        if self.broken:
            raise Unavailable
        key = tuple(reset_signals)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = _Attributes(_get_libc(), key)
        if directory and os.path.isabs(directory):
            target = directory
        else:  # relative to supervisord's directory, as its own fork's chdir is
            target = os.path.join(os.getcwd(), directory) if directory else os.getcwd()
        ticket = sum(lane.submitted for lane in self._lanes)  # the next, in order
        request = _Request(ticket, filename, argv, env, target, umask, attributes)
        if order != self._order:
            self._order = order
            self._drain()
        self._busy()
        lane = self._lanes[ticket % len(self._lanes)]
        if lane.sock is None:
            self._start(lane)
        assert lane.sock is not None
        while lane.submitted - lane.answered >= MAX_IN_FLIGHT:
            self._take_answers(lane, block=True)
        if self.broken:
            raise Unavailable
        lane.requests.append(request)
        try:
            socket.send_fds(lane.sock, [b"s"], list(stdio))
        except OSError:
            lane.requests.pop()
            self._gone(lane)
            raise Unavailable from None
        lane.submitted += 1
        return ticket

    def _place(self, ticket: int) -> tuple[_Lane, int]:
        """The lane of a ticket, and the ticket's place in that lane's order."""
        count = len(self._lanes)
        return self._lanes[ticket % count], ticket // count

    def answered(self, ticket: int) -> bool:
        """Whether ``result(ticket)`` would not wait."""
        lane, place = self._place(ticket)
        if place >= lane.answered:
            self._take_answers(lane, block=False)
        return place < lane.answered

    def result(self, ticket: int) -> int:
        """The pid of a submitted spawn (waiting for it); OSError as posix_spawn's.

        Unavailable: its thread went away before it answered (spawn in place).
        """
        lane, place = self._place(ticket)
        while place >= lane.answered:
            self._take_answers(lane, block=True)
        answer = self._answers.pop(ticket, None)
        self._idle_when_done()
        if answer is None:
            raise Unavailable
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _drain(self) -> None:
        """Wait until every lane has answered everything handed to it."""
        for lane in self._lanes:
            while lane.answered < lane.submitted:
                self._take_answers(lane, block=True)

    def _take_answers(self, lane: _Lane, block: bool) -> None:
        assert lane.sock is not None
        try:
            data = lane.sock.recv(MAX_IN_FLIGHT, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone(lane)
        lane.answered += len(data)

    def _gone(self, lane: _Lane) -> None:
        """A thread has gone: its unanswered spawns are lost (each is then spawned in
        place), and nothing more is handed over. Another lane's spawns out are still
        answered: given up on, a program spawned there would be started twice."""
        self.broken = True
        lane.answered = lane.submitted
        lane.requests.clear()
        self._idle_when_done()

    def _idle_when_done(self) -> None:
        """Back to the usual switch interval once no spawn is out on any lane."""
        if all(lane.answered >= lane.submitted for lane in self._lanes):
            self._idle()

    def _busy(self) -> None:
        """Quick GIL hand-overs while spawns are out."""
        if self._saved_interval is None:
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(SPAWNING_SWITCH_INTERVAL)

    def _idle(self) -> None:
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None

    def _start(self, lane: _Lane) -> None:
        if not any(other.thread for other in self._lanes):
            self._collector_was_on = gc.isenabled()
        gc.disable()  # collect_garbage() instead, from supervisord's thread
        ours, theirs = socket.socketpair()
        lane.sock = ours
        lane.thread = threading.Thread(
            target=self._serve,
            args=(theirs.fileno(), lane.requests),
            name="djsupervisor-spawner",
            daemon=True,
        )
        try:
            lane.thread.start()
        except RuntimeError:  # no thread to be had
            ready = b""
        else:
            ready = ours.recv(1)
        # The thread has its own copy now (or failed before closing anything of ours).
        theirs.close()
        if ready != b"r":
            # Only this lane: another one's spawns out are still to be answered.
            ours.close()
            if lane.thread.is_alive():
                lane.thread.join(timeout=5)
            lane.sock = lane.thread = None
            self.broken = True
            raise Unavailable

    def _serve(self, fd: int, requests: collections.deque[_Request]) -> None:
        # Runs in a spawning thread, which takes ``requests`` in the order they were sent.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            libc = _get_libc()
            libc.check(libc.holding.unshare(_CLONE_FILES | _CLONE_FS), "unshare")
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
        cwd = b""
        actions = _FileActions(libc)
        try:
            sock.send(b"r")
            while True:
                msg, fds = _receive(sock)
                if not msg:
                    return  # supervisord closed its end
                try:
                    request = requests.popleft()
                except IndexError:
                    return  # supervisord gave up on us (its send failed)
                answer: int | BaseException
                try:
                    if len(fds) != 3:
                        raise Unavailable(f"received {len(fds)} descriptors, not 3")
                    if request.directory != cwd:
                        cwd = b""
                        libc.check(libc.holding.chdir(request.directory), "chdir")
                        cwd = request.directory
                    answer = _spawn(libc, request, actions.get((fds[0], fds[1], fds[2])))
                except BaseException as error:  # handed to the caller, raised there
                    answer = error
                finally:
                    for received in fds:
                        libc.holding.close(received)
                self._answers[request.ticket] = answer
                if libc.holding.write(fd, b"d", 1) != 1:
                    return
        except OSError:
            return
        finally:
            actions.clear()
            sock.close()

    def close(self) -> None:
        """End the threads (each sees its socket close) and wait for them."""
        for lane in self._lanes:
            if lane.sock is not None:
                lane.sock.close()
                lane.sock = None
            if lane.thread is not None:
                lane.thread.join(timeout=5)
                lane.thread = None
            lane.requests.clear()
            lane.submitted = lane.answered = 0
        self._answers.clear()
        self._order = None
        self._idle()
        if self._collector_was_on:
            self._collector_was_on = False
            gc.enable()


def collect_garbage() -> None:
    """Collect as the collector would have by now, in the calling thread.

    Called by supervisord's loop once per round while the spawning thread keeps
    automatic collection off; the same thresholds, without the full collection's
    extra condition (the objects loaded before the loop are frozen anyway).
    """
    if gc.isenabled():
        return
    threshold0, threshold1, threshold2 = gc.get_threshold()
    count0, count1, count2 = gc.get_count()
    if threshold0 == 0 or count0 < threshold0:
        return
    if count1 >= threshold1:
        gc.collect(2 if count2 >= threshold2 else 1)
    else:
        gc.collect(0)


class _FileActions:
    """posix_spawn_file_actions_t putting three descriptors on 0-2.

    Received descriptors land at the thread's lowest free numbers, the same few each
    time: one set of actions per distinct triple, built once.
    """

    def __init__(self, libc: _Libc) -> None:
        self._libc = libc
        self._built: dict[tuple[int, int, int], Any] = {}

    def get(self, fds: tuple[int, int, int]) -> Any:
        actions = self._built.get(fds)
        if actions is None:
            c = self._libc.holding
            actions = ctypes.create_string_buffer(_OPAQUE)
            _check_returned(c.posix_spawn_file_actions_init(actions))
            try:
                for target, fd in enumerate(fds):
                    _check_returned(c.posix_spawn_file_actions_adddup2(actions, fd, target))
            except OSError:
                c.posix_spawn_file_actions_destroy(actions)
                raise
            if len(self._built) >= 16:
                self.clear()
            self._built[fds] = actions
        return actions

    def clear(self) -> None:
        for actions in self._built.values():
            self._libc.holding.posix_spawn_file_actions_destroy(actions)
        self._built.clear()


def _spawn(libc: _Libc, request: _Request, actions: Any) -> int:  # in the thread
    pid = ctypes.c_int()
    previous = None if request.umask is None else os.umask(request.umask)
    try:
        result = libc.releasing.posix_spawn(
            ctypes.byref(pid),
            request.path,
            actions,
            request.attributes.buffer,
            request.argv,
            request.envp,
        )
    finally:
        if previous is not None:
            os.umask(previous)
    _check_returned(result, os.fsdecode(request.path))
    return pid.value
