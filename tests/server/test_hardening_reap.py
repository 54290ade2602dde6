"""No process escapes (issue 13, Linux): after SIGKILL of supervisord's process, or a
clean stop, nothing it started is left, however the programs tried to get away.

Twenty programs of four kinds (tests/programs/escaper.py): a helper that daemonizes
itself with ``setsid``, a program ignoring SIGTERM, a ``stopasgroup=false`` program with
children (one ignoring SIGTERM), and a program whose ``cmd:`` health probe takes an hour.
Every process records its pid, so the test knows all of them without asking
supervisord; the fixture SIGKILLs whatever is left by those pids, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.utils import (
    PROGRAMS,
    LineReader,
    Project,
    daemon_pids,
    descendants,
    make_project,
    parent_pid,
    pid_alive,
    program,
    runtime_dirs,
    wait_dead,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Linux only: macOS keeps the process groups"
)

#: The target: nothing left this long after SIGKILL of supervisord's process.
GRACE = 2.0
STOPWAITSECS = 1
COPIES = 5
#: Per copy: setsid (program, helper), stubborn, parent (program, 2 children),
#: plain (program, probe).
PER_COPY = 2 + 1 + 3 + 2
EXPECTED = COPIES * PER_COPY


def escapers(pidlog: Path) -> str:
    def section(kind: str, extra: str = "") -> str:
        return textwrap.dedent(
            f"""\
            [program:{kind}]
            command={program("escaper.py", kind, str(pidlog))}
            process_name=%(program_name)s_%(process_num)d
            numprocs={COPIES}
            startsecs=0
            stopwaitsecs={STOPWAITSECS}
            """
        ) + textwrap.dedent(extra)

    probe = f"{sys.executable} {PROGRAMS / 'escaper.py'} probe {pidlog}"
    return "\n".join(
        [
            section("setsid"),
            section("stubborn"),
            section("parent", "stopasgroup=false\nkillasgroup=false\n"),
            section("plain", f"healthcheck=cmd:{probe}\nhealthcheck_timeout=3600\n"),
        ]
    )


@dataclass
class Setup:
    project: Project
    pidlog: Path
    others: list[subprocess.Popen[str]] = field(default_factory=list)

    def recorded(self) -> dict[int, str]:
        """``{pid: kind}`` of every process that recorded itself."""
        found = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.pidlog.read_text().splitlines():
                kind, pid = line.split()
                found[int(pid)] = kind
        return found

    def wait_recorded(self) -> dict[int, str]:
        deadline = time.monotonic() + 60
        while len(found := self.recorded()) < EXPECTED:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {EXPECTED} processes recorded: {found}")
            time.sleep(0.05)
        assert len(found) == EXPECTED, found
        return found

    def kill_recorded(self) -> None:
        """SIGKILL every recorded pid still running escaper.py with this pid log."""
        for pid in self.recorded():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if str(self.pidlog).encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    pidlog = tmp_path / "pids.log"
    project = make_project(tmp_path / "proj", escapers(pidlog))
    setup = Setup(project, pidlog)
    try:
        yield setup
    finally:
        for proc in setup.others:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
        project.cleanup()
        setup.kill_recorded()


def survivors(pids: set[int]) -> list[int]:
    return sorted(pid for pid in pids if pid_alive(pid))


def test_sigkill_of_the_foreground_process(setup: Setup) -> None:
    server = setup.project.start()
    output = LineReader(server)
    recorded = setup.wait_recorded()
    # The helpers were orphaned when their parent exited: supervisord adopted them.
    helpers = [pid for pid, kind in recorded.items() if kind == "setsid-helper"]
    assert {parent_pid(pid) for pid in helpers} == {server.pid}
    family = set(recorded) | set(descendants([server.pid]))
    watchdogs = [
        pid
        for pid in descendants([server.pid])
        if Path(f"/proc/{pid}/comm").read_text() == "djsupervisor-wd\n"
    ]
    assert len(watchdogs) == 1, output.text

    server.send_signal(signal.SIGKILL)
    assert output.finish() == -signal.SIGKILL
    wait_dead(family, timeout=GRACE)


def test_sigkill_of_the_daemon(setup: Setup) -> None:
    out, err, code = setup.project.manage("supervisor", "--daemonize")
    assert (err, code) == ("", 0)
    assert out.startswith("supervisord is running in the background (pid ")
    [daemon] = daemon_pids(setup.project.path)
    recorded = setup.wait_recorded()
    family = set(recorded) | set(descendants([daemon]))

    os.kill(daemon, signal.SIGKILL)
    wait_dead([daemon, *family], timeout=GRACE)


START_CALLER = """\
import sys, time
import djsupervisor

djsupervisor.start(project_dir=sys.argv[1], timeout=60)
print("started", flush=True)
time.sleep(3600)
"""


def test_sigkill_of_a_start_caller(setup: Setup) -> None:
    project = setup.project
    caller = subprocess.Popen(
        [sys.executable, "-c", START_CALLER, str(project.path)],
        cwd=project.path,
        env=project.env(DJANGO_SETTINGS_MODULE="testproj.settings"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    setup.others.append(caller)
    output = LineReader(caller)
    output.wait_for("started", timeout=60)
    recorded = setup.wait_recorded()
    family = set(recorded) | set(descendants([caller.pid]))

    caller.send_signal(signal.SIGKILL)
    assert output.finish() == -signal.SIGKILL
    # supervisord gets SIGTERM and stops cleanly: SIGKILL reaches the stubborn programs
    # after their stopwaitsecs, then the stubborn leftovers after the largest one.
    wait_dead(family, timeout=GRACE + 2 * STOPWAITSECS)


def test_clean_stop_leaves_nothing(setup: Setup) -> None:
    server = setup.project.start()
    output = LineReader(server)
    recorded = setup.wait_recorded()
    family = set(recorded) | set(descendants([server.pid]))

    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    # Not "soon after": supervisord waited for all of them before it exited.
    assert survivors(family) == []
    # Adopted orphans are reaped quietly; the sweep says what it did.
    assert "reaped unknown pid" not in output.text
    assert "leftover process(es) with SIGTERM" in output.text, output.text
    # The stubborn children of the parents outlived the grace: SIGKILL, after a second.
    assert "leftover process(es) with SIGKILL" in output.text, output.text


def test_daemon_shutdown_leaves_nothing(setup: Setup) -> None:
    project = setup.project
    _, err, code = project.manage("supervisor", "--daemonize")
    assert (err, code) == ("", 0)
    [daemon] = daemon_pids(project.path)
    recorded = setup.wait_recorded()
    family = set(recorded) | set(descendants([daemon]))

    out, err, code = project.manage("supervisor", "shutdown")
    assert (err, code) == ("", 0), out
    wait_dead([daemon], timeout=30)
    assert survivors(family) == []
    log = (runtime_dirs(project.path)[0] / "supervisord.log").read_text()
    assert "leftover process(es) with SIGKILL" in log


def test_a_reload_sweeps_the_old_programs_leftovers(setup: Setup) -> None:
    server = setup.project.start()
    output = LineReader(server)
    first = setup.wait_recorded()

    server.send_signal(signal.SIGHUP)  # no terminal: reload
    deadline = time.monotonic() + 60
    while len(setup.recorded()) < 2 * EXPECTED:
        assert time.monotonic() < deadline, output.text
        time.sleep(0.05)
    # The second round started only once the first one's family was gone.
    assert survivors(set(first)) == []
    assert server.poll() is None

    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    assert survivors(set(setup.recorded())) == []


# --- The mechanism itself: find, freeze, kill ---------------------------------------------

#: A process that keeps leaving the tree: it forks, the child starts a session of its own
#: and carries on, the parent exits. At any moment one or two links of the chain live.
HOPPER = """\
import os, sys, time

def record():
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{os.getpid()}\\n".encode())
    os.close(fd)

record()
while True:
    if os.fork() == 0:
        os.setsid()
        record()
        continue
    time.sleep(0.005)
    os._exit(0)
"""


def test_freeze_and_kill_catches_a_process_that_keeps_escaping(tmp_path: Path) -> None:
    from djsupervisor.server import reaper

    marker = reaper.MARKER_PREFIX + "test" + os.urandom(4).hex()
    log = tmp_path / "hops.log"
    env = {**os.environ, marker: "1"}
    hopper = subprocess.Popen([sys.executable, "-c", HOPPER, str(log)], env=env)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def recorded() -> set[int]:
        with contextlib.suppress(FileNotFoundError):
            return {int(line) for line in log.read_text().split()}
        return set()

    try:
        wait_dead_or_many = time.monotonic() + 30
        while len(recorded()) < 20 and time.monotonic() < wait_dead_or_many:
            time.sleep(0.01)
        assert len(recorded()) >= 20  # it has hopped away from its parent many times
        killed = reaper.freeze_and_kill(marker)
        assert killed  # something carrying the marker was alive
        hopper.wait(timeout=10)
        wait_dead(recorded(), timeout=GRACE)
        # Not ours: a process without the marker, outside the family's tree, is left alone.
        assert stranger.poll() is None
    finally:
        reaper.freeze_and_kill(marker)
        for proc in (hopper, stranger):
            proc.kill()
            proc.wait()


def test_family_includes_descendants_that_dropped_the_marker() -> None:
    from djsupervisor.server import reaper

    marker = reaper.MARKER_PREFIX + "test" + os.urandom(4).hex()
    # A marked parent starts a child with an empty environment.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], env={}); "
            "print(c.pid, flush=True); time.sleep(60)",
        ],
        env={**os.environ, marker: "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert reaper.family(marker) == {parent.pid, child}
        # A known pid (a program the watchdog was told about) brings its descendants too.
        assert reaper.family("DJSUPERVISOR_FAMILY_nobody", [parent.pid]) == {parent.pid, child}
    finally:
        for pid in reaper.freeze_and_kill(marker):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
