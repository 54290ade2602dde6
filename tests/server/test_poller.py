"""The epoll poller (issue 16): supervisor's poller interface, O(ready) per round.

The first tests drive the poller alone against real pipes, sockets and files: what it
reports, and that a registration left behind by a close (the file kept open by a copy,
as a fork holds one) is never reported and never makes it return at once forever.
The last ones run it inside a real supervisord with real programs.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from djsupervisor.server.poller import EpollPoller
from tests.utils import Project, Rpc, make_project, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="epoll is Linux only")


@pytest.fixture
def poller() -> Iterator[EpollPoller]:
    made = EpollPoller(SimpleNamespace())
    yield made
    made.close()


class Fds:
    """Descriptors a test opens, all closed after it, pass or fail."""

    def __init__(self) -> None:
        self.opened: list[int] = []

    def pipe(self) -> tuple[int, int]:
        read_end, write_end = os.pipe()
        for fd in (read_end, write_end):
            os.set_blocking(fd, False)
        self.opened += [read_end, write_end]
        return read_end, write_end

    def keep(self, fd: int) -> int:
        self.opened.append(fd)
        return fd

    def close_all(self) -> None:
        for fd in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def fds() -> Iterator[Fds]:
    made = Fds()
    yield made
    made.close_all()


def timed_poll(poller: EpollPoller, timeout: float) -> tuple[tuple[list[int], list[int]], float]:
    started = time.monotonic()
    result = poller.poll(timeout)
    return result, time.monotonic() - started


def reuse_number(fds: Fds, number: int) -> int:
    """Make ``number`` the read end of a new pipe (as the next os.pipe() would); return
    the new pipe's write end."""
    read_end, write_end = fds.pipe()
    if read_end != number:
        os.dup2(read_end, number)
        os.close(read_end)
    return write_end


# --- what is reported ------------------------------------------------------------------


def test_readable_until_unregistered(poller: EpollPoller, fds: Fds) -> None:
    read_end, write_end = fds.pipe()
    poller.register_readable(read_end)
    assert poller.poll(0) == ([], [])
    os.write(write_end, b"x")
    assert poller.poll(0) == ([read_end], [])
    poller.register_readable(read_end)  # again: no change
    assert poller.poll(0) == ([read_end], [])
    poller.unregister_readable(read_end)
    assert poller.poll(0) == ([], [])
    poller.unregister_readable(read_end)  # not registered: nothing to do


def test_one_descriptor_watched_for_both(poller: EpollPoller) -> None:
    # supervisor's PollPoller kept only the last registration: a channel registered for
    # reading and writing was not told about input while it had output to send.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        fd = ours.fileno()
        poller.register_readable(fd)
        poller.register_writable(fd)
        assert poller.poll(0) == ([], [fd])
        theirs.send(b"request")
        assert poller.poll(0) == ([fd], [fd])
        poller.unregister_writable(fd)
        assert poller.poll(0) == ([fd], [])
        poller.register_writable(fd)
        poller.unregister_readable(fd)
        assert poller.poll(0) == ([], [fd])


def test_a_hang_up_is_readable(poller: EpollPoller, fds: Fds) -> None:
    # A program's exit closes its end of the pipe: the dispatcher must read, see EOF.
    read_end, write_end = fds.pipe()
    poller.register_readable(read_end)
    os.close(write_end)
    assert poller.poll(0) == ([read_end], [])
    assert os.read(read_end, 10) == b""


def test_a_hang_up_is_readable_also_for_a_writer(poller: EpollPoller) -> None:
    # A client gone while its answer is being sent: as with PollPoller, the channel
    # reads (and sees the end of the connection); a writer that never reads (the
    # console on a closed terminal) is told as a writer.
    ours, theirs = socket.socketpair()
    with ours:
        poller.register_writable(ours.fileno())
        theirs.close()
        assert poller.poll(0) == ([ours.fileno()], [ours.fileno()])


def test_an_error_on_a_write_end_is_writable(poller: EpollPoller, fds: Fds) -> None:
    # stdin of a program that exited with its pipe full: only POLLERR, which PollPoller
    # dropped (poll() returned at once, forever, reporting nothing). Writing gives EPIPE,
    # on which supervisor's stdin dispatcher closes.
    read_end, write_end = fds.pipe()
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 65536)
    poller.register_writable(write_end)
    assert poller.poll(0) == ([], [])
    os.close(read_end)
    assert poller.poll(0) == ([], [write_end])
    with pytest.raises(BrokenPipeError):
        os.write(write_end, b"x")


def test_the_timeout_is_in_seconds(poller: EpollPoller, fds: Fds) -> None:
    read_end, _ = fds.pipe()
    poller.register_readable(read_end)
    result, elapsed = timed_poll(poller, 0.3)
    assert result == ([], [])
    assert 0.25 <= elapsed < 3, elapsed


def test_regular_files_are_always_ready(poller: EpollPoller, fds: Fds, tmp_path: Path) -> None:
    # epoll refuses them (EPERM); poll(), and so supervisor, reports them ready: a console
    # redirected to a file, or to /dev/null.
    path = tmp_path / "console"
    path.write_bytes(b"")
    file_fd = fds.keep(os.open(path, os.O_RDWR))
    null_fd = fds.keep(os.open(os.devnull, os.O_WRONLY))
    poller.register_writable(file_fd)
    poller.register_writable(null_fd)
    result, elapsed = timed_poll(poller, 5)
    assert (sorted(result[1]), result[0]) == (sorted([file_fd, null_fd]), [])
    assert elapsed < 1
    poller.unregister_writable(file_fd)
    poller.unregister_writable(null_fd)
    result, elapsed = timed_poll(poller, 0.3)
    assert result == ([], [])
    assert elapsed >= 0.25


# --- numbers closed and reused ---------------------------------------------------------


@pytest.mark.parametrize("unregistered_first", [True, False], ids=["forgotten", "not told"])
def test_a_reused_number_watches_the_new_pipe(
    poller: EpollPoller, fds: Fds, unregistered_first: bool
) -> None:
    # supervisord closes a program's pipes when it is reaped (close_fd: forgotten first),
    # and the next program's pipes get the same numbers.
    number, _ = fds.pipe()
    poller.register_readable(number)
    if unregistered_first:
        poller.forget(number)
    os.close(number)
    write_end = reuse_number(fds, number)
    poller.register_readable(number)
    assert poller.poll(0) == ([], [])
    os.write(write_end, b"x")
    assert poller.poll(0) == ([number], [])
    assert poller.rebuilds == 0


@pytest.mark.parametrize("event", ["data", "hang-up"])
def test_a_stale_registration_is_never_reported(poller: EpollPoller, fds: Fds, event: str) -> None:
    # The pipe was closed while registered, but a copy keeps it open (a fork's): its
    # registration lives on under the number, which now names another program's pipe.
    # A report would make that pipe's dispatcher read nothing, which supervisor takes
    # for EOF; and the stale entry, never removed, would make every poll return at once.
    number, old_write_end = fds.pipe()
    poller.register_readable(number)
    fds.keep(os.dup(number))  # the copy
    os.close(number)
    write_end = reuse_number(fds, number)
    poller.register_readable(number)
    if event == "data":
        os.write(old_write_end, b"for the old pipe")
    else:
        os.close(old_write_end)
    assert poller.poll(0) == ([], [])
    assert poller.rebuilds == 1
    result, elapsed = timed_poll(poller, 0.3)
    assert result == ([], [])
    assert elapsed >= 0.25, "the stale entry still wakes the poller"
    os.write(write_end, b"x")
    assert poller.poll(0) == ([number], [])
    assert poller.rebuilds == 1


@pytest.mark.parametrize("told", ["never", "after the close"])
def test_an_event_for_a_closed_descriptor_is_dropped(
    poller: EpollPoller, fds: Fds, told: str
) -> None:
    # As above, the number not reused: supervisor's loop would find no dispatcher, or
    # (if told after the close) the poller no longer tracks it.
    number, old_write_end = fds.pipe()
    poller.register_readable(number)
    fds.keep(os.dup(number))
    os.close(number)
    if told == "after the close":
        poller.unregister_readable(number)
    os.write(old_write_end, b"x")
    assert poller.poll(0) == ([], [])
    assert number not in poller.readables
    assert poller.rebuilds == 1
    result, elapsed = timed_poll(poller, 0.3)
    assert result == ([], [])
    assert elapsed >= 0.25


# --- forks -----------------------------------------------------------------------------


def run_child(body: object) -> None:
    """Fork; run ``body()`` in the child and exit 0 (1 on any error); wait for it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (the child)
        code = 1
        try:
            body()  # type: ignore[operator]
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_fork_leaves_the_parents_registrations_alone(poller: EpollPoller, fds: Fds) -> None:
    # supervisord's fork path (user=, event listeners): the child closes every inherited
    # descriptor through close_fd, which unregisters it first. The epoll instance is
    # shared with the parent: unregistering there would unregister here.
    read_end, write_end = fds.pipe()
    poller.register_readable(read_end)
    run_child(lambda: poller.forget(read_end))
    os.write(write_end, b"x")
    assert poller.poll(0) == ([read_end], [])


def test_a_daemon_polls_an_instance_of_its_own(poller: EpollPoller, fds: Fds) -> None:
    read_end, write_end = fds.pipe()
    poller.register_readable(read_end)
    poller.before_daemonize()

    def daemon() -> None:
        poller.after_daemonize()
        os.write(write_end, b"x")
        assert poller.poll(0) == ([read_end], [])
        os.read(read_end, 1)
        poller.unregister_readable(read_end)
        assert poller.poll(0) == ([], [])

    run_child(daemon)
    os.write(write_end, b"x")
    assert poller.poll(0) == ([read_end], [])


def test_after_close_it_starts_afresh(poller: EpollPoller, fds: Fds) -> None:
    # A reload runs supervisord again in the same process.
    read_end, write_end = fds.pipe()
    poller.register_readable(read_end)
    os.write(write_end, b"x")
    poller.close()
    assert poller.poll(0) == ([], [])
    poller.register_readable(read_end)
    assert poller.poll(0) == ([read_end], [])


# --- in supervisord --------------------------------------------------------------------

TICKER = (
    '{{ PYTHON }} -u -c "import itertools, time; '
    '[(print(i), time.sleep(0.02)) for i in itertools.count()]"'
)


@pytest.fixture(autouse=True)
def answers_in_time() -> Iterator[None]:
    # A supervisord that lost its registrations never answers: fail, do not hang.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    yield
    socket.setdefaulttimeout(previous)


def logged_lines(rpc: Rpc, name: str) -> int:
    text = rpc.call("supervisor.tailProcessStdoutLog", name, 0, 1_000_000)[0]
    return int(text.count("\n"))


def test_a_fork_path_spawn_keeps_every_pipe_watched(
    projects: list[Project], tmp_path: Path
) -> None:
    # user= starts a program through fork(): the child closes every descriptor it
    # inherited with close_fd, including the other programs' pipes, before exec.
    project = make_project(
        tmp_path / "proj",
        f"[program:ticker]\ncommand={TICKER}\nstartsecs=0\n\n"
        "[program:forked]\ncommand=sleep 600\nstartsecs=0\nautostart=false\nuser=root\n",
    )
    projects.append(project)
    server = project.start("--noreload")
    rpc = Rpc(project)
    rpc.wait_states({"ticker": "RUNNING"}, server)
    assert rpc.call("supervisor.startProcess", "forked") is True
    before = logged_lines(rpc, "ticker")
    wait_for(lambda: logged_lines(rpc, "ticker") > before + 50, 20, "ticker's output still read")
    assert server.poll() is None


def test_pipes_of_restarted_programs_are_read(projects: list[Project], tmp_path: Path) -> None:
    # Each run of blinker gets pipes with numbers its previous run's had; the ticker's
    # output must keep flowing meanwhile.
    project = make_project(
        tmp_path / "proj",
        f"[program:ticker]\ncommand={TICKER}\nstartsecs=0\n\n"
        "[program:blinker]\n"
        "command={{ PYTHON }} -u -c \"import os, time; print('run', os.getpid()); "
        'time.sleep(0.1)"\n'
        "startsecs=0\nautorestart=true\nstartretries=1000\n",
    )
    projects.append(project)
    server = project.start("--noreload")
    rpc = Rpc(project)
    rpc.wait_states({"ticker": "RUNNING"}, server)

    def runs() -> int:
        text = rpc.call("supervisor.tailProcessStdoutLog", "blinker", 0, 1_000_000)[0]
        return len(set(text.split()))

    before = logged_lines(rpc, "ticker")
    wait_for(lambda: runs() > 10, 30, "ten runs of blinker logged")
    assert logged_lines(rpc, "ticker") > before
    assert server.poll() is None


def test_the_loop_sleeps_when_idle(projects: list[Project], tmp_path: Path) -> None:
    # Nothing to do: a registration that keeps firing, or a wait in the wrong unit,
    # would make polls return at once (a wait of 1 ms instead of 1 s: 0.14 s of CPU
    # here); an idle supervisord uses next to nothing.
    conf = "".join(f"[program:s{i}]\ncommand=sleep 600\nstartsecs=0\n\n" for i in range(20))
    project = make_project(tmp_path / "proj", conf)
    projects.append(project)
    server = project.start("--noreload")
    Rpc(project).wait_states({f"s{i}": "RUNNING" for i in range(20)}, server)
    time.sleep(0.5)

    def cpu() -> float:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(2)
    assert cpu() - before < 0.06
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


BIG_LINES = 40_000  # 80-byte lines: 3.2 MB, many socket buffers

BIG_PY = f"""\\
import sys, time
sys.stdout.write(("x" * 79 + "\\n") * {BIG_LINES})
sys.stdout.flush()
time.sleep(600)
"""


def test_a_client_that_half_closes_gets_its_whole_answer(
    projects: list[Project], tmp_path: Path
) -> None:
    # A client may shut its side down once its request is sent (HTTP/1.0 allows it):
    # the channel then reads EOF, on which it closes. supervisord registers a channel
    # with an answer to send for writing only (PollPoller kept the last registration),
    # so it reads that EOF once the answer is out; so must we, though epoll watches
    # a descriptor for both when asked.
    script = tmp_path / "big.py"
    script.write_text(BIG_PY)
    project = make_project(
        tmp_path / "proj",
        f"[program:big]\ncommand={{{{ PYTHON }}}} -u {script}\nstartsecs=0\n"
        "stdout_logfile_maxbytes=0\n",
    )
    projects.append(project)
    server = project.start("--noreload")
    rpc = Rpc(project)
    rpc.wait_states({"big": "RUNNING"}, server)
    size = 80 * BIG_LINES
    wait_for(
        lambda: rpc.call("supervisor.tailProcessStdoutLog", "big", 0, 0)[1] >= size,
        30,
        "big's output logged",
    )
    body = xmlrpc.client.dumps(("big", 0, size), "supervisor.readProcessStdoutLog").encode()
    credentials = base64.b64encode(f"{rpc.username}:{rpc.password}".encode()).decode()
    request = (
        "POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Basic {credentials}\r\n\r\n"
    ).encode() + body
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(rpc.serverurl.removeprefix("unix://"))
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: client.recv(1 << 16), b""))
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert len(payload) > size, len(payload)
    (data,), _ = xmlrpc.client.loads(payload)
    assert data == ("x" * 79 + "\n") * BIG_LINES
