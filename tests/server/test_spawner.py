"""The spawning threads: each its own small descriptor table, programs exactly as before.

The threads are Linux only (``unshare(CLONE_FILES)``); elsewhere, or when a thread is
gone, programs are spawned in supervisord's own thread with the same ``posix_spawn``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from djsupervisor.server.spawn import InheritedFds
from djsupervisor.server.spawner import (
    MAX_IN_FLIGHT,
    Spawner,
    Unavailable,
    collect_garbage,
    fork,
    posix_spawn,
    with_umask,
)

LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

REPORT = """\
import os, sys
open_fds = []
for fd in range(64):
    try:
        os.fstat(fd)
    except OSError:
        continue
    open_fds.append(fd)
umask = os.umask(0)
print(open_fds, os.getcwd(), oct(umask), os.getpgrp() == os.getpid(), sys.stdin.read())
print("to stderr", file=sys.stderr)
"""


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    spawner = Spawner(lanes=2)  # as on a machine of two cores or more
    yield spawner
    spawner.close()


def run(spawner: Spawner, argv: list[str], **kwargs: object) -> tuple[int, str, str]:
    """Spawn ``argv`` with fresh pipes; return its exit status, stdout and stderr."""
    child_in, parent_in = os.pipe()
    parent_out, child_out = os.pipe()
    parent_err, child_err = os.pipe()
    options = {"directory": None, "umask": None, **kwargs}
    try:
        ticket = spawner.submit(
            argv[0],
            argv,
            dict(os.environ),
            (child_in, child_out, child_err),
            reset_signals=[signal.SIGTERM],
            **options,  # type: ignore[arg-type]
        )
        pid = spawner.result(ticket)
    finally:
        for fd in (child_in, child_out, child_err):
            os.close(fd)
    with contextlib.suppress(BrokenPipeError):  # a program that exited without reading
        os.write(parent_in, b"stdin data")
    os.close(parent_in)
    with open(parent_out, "rb") as out, open(parent_err, "rb") as err:
        # Both reach EOF only if no copy of the write ends is left anywhere.
        stdout, stderr = out.read().decode(), err.read().decode()
    _, status = os.waitpid(pid, 0)  # our child, though another thread spawned it
    return os.waitstatus_to_exitcode(status), stdout, stderr


def test_programs_get_only_their_pipes_directory_umask_and_group(
    spawner: Spawner, tmp_path: Path
) -> None:
    held = [os.pipe() for _ in range(200)]  # supervisord's many descriptors
    try:
        code, out, err = run(
            spawner, [sys.executable, "-c", REPORT], directory=str(tmp_path), umask=0o027
        )
    finally:
        for pair in held:
            for fd in pair:
                os.close(fd)
    assert code == 0, err
    assert out == f"[0, 1, 2] {tmp_path} 0o27 True stdin data\n"
    assert err == "to stderr\n"
    # Our own directory and umask are untouched (the thread has its own).
    assert os.getcwd() != str(tmp_path)
    code, out, _ = run(spawner, [sys.executable, "-c", REPORT])
    # Without directory= and umask=: supervisord's own, as its fork would give.
    assert out.split()[3:5] == [os.getcwd(), oct(_umask())] and code == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def thread_ids(spawner: Spawner) -> list[int]:
    """The native ids of the spawning threads started so far."""
    return [
        lane.thread.native_id
        for lane in spawner._lanes
        if lane.thread is not None and lane.thread.native_id is not None
    ]


def test_each_thread_holds_almost_no_descriptors(spawner: Spawner) -> None:
    run(spawner, ["/bin/true"])
    run(spawner, ["/bin/true"])
    assert len(thread_ids(spawner)) == 2  # one per lane
    held = [os.pipe() for _ in range(100)]
    try:
        ours = os.listdir("/proc/self/fd")
        theirs = [os.listdir(f"/proc/self/task/{tid}/fd") for tid in thread_ids(spawner)]
    finally:
        for pair in held:
            for fd in pair:
                os.close(fd)
    assert len(ours) > 200
    for tid, table in zip(thread_ids(spawner), theirs, strict=True):
        assert sorted(map(int, table)) == [0, 1, 2, theirs_socket(tid)]


def theirs_socket(tid: int) -> int:
    numbers = [int(fd) for fd in os.listdir(f"/proc/self/task/{tid}/fd")]
    sockets = [fd for fd in numbers if "socket:" in os.readlink(f"/proc/self/task/{tid}/fd/{fd}")]
    assert len(sockets) == 1
    return sockets[0]


def test_exec_errors_are_raised_as_posix_spawn_raises_them(spawner: Spawner) -> None:
    with pytest.raises(FileNotFoundError):
        run(spawner, ["/nonexistent/program"])
    with pytest.raises(FileNotFoundError):
        run(spawner, ["/bin/true"], directory="/nonexistent/dir")
    assert run(spawner, ["/bin/true"])[0] == 0  # still serving


def test_a_closed_spawner_starts_a_new_thread(spawner: Spawner) -> None:
    assert run(spawner, ["/bin/true"])[0] == 0
    spawner.close()
    assert run(spawner, ["/bin/true"])[0] == 0


def test_a_gone_thread_is_reported_not_waited_for(spawner: Spawner) -> None:
    run(spawner, ["/bin/true"])
    lane = spawner._lanes[1]  # the next spawn's
    run(spawner, ["/bin/true"])
    assert lane.sock is not None
    lane.sock.shutdown(2)  # as if the thread had died: its end reads EOF
    run(spawner, ["/bin/true"])  # the other lane's turn
    with pytest.raises(Unavailable):
        run(spawner, ["/bin/true"])
    assert spawner.broken
    with pytest.raises(Unavailable):  # nothing more is handed over, to any lane
        run(spawner, ["/bin/true"])


def test_a_gone_thread_leaves_the_other_lanes_spawns_answered(spawner: Spawner) -> None:
    """Given up on, a spawn out on a healthy lane would be lost, or started twice."""
    fds = [os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC) for _ in range(3)]
    args = ("/bin/true", ["true"], dict(os.environ), tuple(fds), None, None, [signal.SIGTERM])
    try:
        first = spawner.submit(*args)  # type: ignore[arg-type]
        second = spawner.submit(*args)  # type: ignore[arg-type]
        pids = [spawner.result(second)]
        gone = spawner._lanes[second % 2]
        assert gone.sock is not None
        gone.sock.shutdown(2)  # as if its thread had died
        third = spawner.submit(*args)  # type: ignore[arg-type]  # the healthy lane's
        with pytest.raises(Unavailable):
            spawner.submit(*args)  # type: ignore[arg-type]  # the gone lane's turn
    finally:
        for fd in fds:
            os.close(fd)
    assert spawner.broken
    pids += [spawner.result(first), spawner.result(third)]  # out when it broke: answered
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_spawns_of_another_order_wait_for_those_out(spawner: Spawner) -> None:
    """supervisord's priority order: a program never execs beside one of another priority."""
    fds = [os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC) for _ in range(3)]
    try:
        args = ("/bin/true", ["true"], dict(os.environ), tuple(fds), None, None, [signal.SIGTERM])
        first = spawner.submit(*args, order=1)  # type: ignore[arg-type]
        second = spawner.submit(*args, order=1)  # type: ignore[arg-type]
        lanes = spawner._lanes
        out_before = sum(lane.submitted - lane.answered for lane in lanes)
        third = spawner.submit(*args, order=2)  # type: ignore[arg-type]
        out_after = sum(lane.submitted - lane.answered for lane in lanes)
    finally:
        for fd in fds:
            os.close(fd)
    # Two spawns of one order out at once (so the wait below is the order's doing) ...
    assert out_before == 2
    # ... and the third handed over only once both were answered.
    assert out_after == 1
    for ticket in (first, second, third):
        _, status = os.waitpid(spawner.result(ticket), 0)
        assert os.waitstatus_to_exitcode(status) == 0


@LINUX_ONLY
def test_stdin_closed_supervisord_still_wires_0_to_2(tmp_path: Path) -> None:
    """With fd 0 closed in supervisord, received pipes must not land on 0-2."""
    script = tmp_path / "closed_stdin.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            sys.path[:0] = {sys.path!r}
            from tests.server.test_spawner import run
            from djsupervisor.server.spawner import Spawner
            spawner = Spawner()
            print(run(spawner, ["/bin/sh", "-c", "cat; echo out; echo err >&2"]))
            spawner.close()
            """
        )
    )
    result = subprocess.run(
        f"exec {sys.executable} {script} 0<&-",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "(0, 'stdin dataout\\n', 'err\\n')\n"


def test_forking_beside_the_thread_is_quiet(spawner: Spawner) -> None:
    """supervisord's own fork path (``user=``) runs with the thread alive (3.12 warns)."""
    run(spawner, ["/bin/true"])
    thread = spawner._lanes[0].thread
    assert thread is not None and thread.is_alive()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = fork()
        if pid == 0:  # pragma: no cover  (the child)
            os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert [str(w.message) for w in caught] == []


def test_spawning_in_place_closes_what_it_is_told() -> None:
    """The path without the thread (macOS, or the thread gone) lists what must not leak."""
    child_in, parent_in = os.pipe()
    parent_out, child_out = os.pipe()
    leaked_r, leaked_w = os.pipe()
    for fd in (leaked_r, leaked_w):
        os.set_inheritable(fd, True)  # as a descriptor left inheritable in supervisord
    try:
        inherited = InheritedFds().get()  # what fast_spawn closes on this path
        assert {leaked_r, leaked_w} <= set(inherited)
        with with_umask(0o077):
            pid = posix_spawn(
                sys.executable,
                [sys.executable, "-c", REPORT],
                dict(os.environ),
                (child_in, child_out, child_out),
                [signal.SIGTERM],
                close=inherited,
            )
    finally:
        for fd in (child_in, child_out, leaked_r, leaked_w):
            os.close(fd)
    os.close(parent_in)
    with open(parent_out, "rb") as out:
        text = out.read().decode()
    os.waitpid(pid, 0)
    assert text.startswith(f"[0, 1, 2] {os.getcwd()} 0o77 True "), text
    assert _umask() != 0o077  # ours again after the block


def test_handed_over_spawns_are_each_answered(spawner: Spawner) -> None:
    """More spawns out at once than may be in flight; each program gets its own pipes."""
    count = MAX_IN_FLIGHT * 2 + 5
    started = []
    for i in range(count):
        parent_out, child_out = os.pipe()
        child_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ticket = spawner.submit(
                "/bin/sh",
                ["sh", "-c", f"echo program {i}"],
                dict(os.environ),
                (child_in, child_out, child_out),
                None,
                None,
                [signal.SIGTERM],
            )
        finally:
            os.close(child_in)
            os.close(child_out)  # the thread has its own copies in flight
        started.append((ticket, parent_out))
    pids = set()
    for i, (ticket, parent_out) in enumerate(started):
        pid = spawner.result(ticket)
        with open(parent_out, "rb") as out:
            assert out.read() == f"program {i}\n".encode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        pids.add(pid)
    assert len(pids) == count


def test_the_collector_runs_in_our_thread_only(spawner: Spawner) -> None:
    """A finalizer run on the spawning thread would close a number in its table."""
    enabled = gc.isenabled()
    gc.enable()
    try:
        run(spawner, ["/bin/true"])
        assert not gc.isenabled()  # no automatic collection, on any thread

        finalized_in: list[int] = []

        class Cycle:
            def __init__(self) -> None:
                self.me = self

            def __del__(self) -> None:
                finalized_in.append(threading.get_ident())

        Cycle()
        # Enough new containers for a generation-0 collection to be due.
        kept: list[list[object]] = [[] for _ in range(gc.get_threshold()[0] + 1)]
        collect_garbage()
        assert finalized_in == [threading.get_ident()]
        del kept
        spawner.close()
        assert gc.isenabled()
    finally:
        if not enabled:
            gc.disable()
