"""supervisord runs inside the calling process: twice in a row, leaving nothing behind."""

from __future__ import annotations

import io
import os
import shutil
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from supervisor.medusa import asyncore_25 as asyncore

from djsupervisor.config.project import default_runtime_dir
from djsupervisor.server.spawner import Spawner
from tests.utils import PROGRAMS, descendants, pid_alive

# The program stops supervisord (its parent: this test process) once it is running.
STOPPER = "sh -c 'sleep 0.3; exec {{ PYTHON }} -c \"import os; os.kill(os.getppid(), 15)\"'"


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "supervisord.conf").write_text(
        textwrap.dedent(
            f"""
            [program:sleeper]
            command={{{{ PYTHON }}}} -u {PROGRAMS / "sleeper.py"} sleeper
            startsecs=0

            [program:stopper]
            command={STOPPER}
            startsecs=0
            autorestart=false
            """
        )
    )
    yield tmp_path
    for pid in descendants([os.getpid()]):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(default_runtime_dir(tmp_path.resolve()), ignore_errors=True)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to count fds")
def test_two_runs_in_one_process_leave_nothing_behind(project: Path) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    umask = os.umask(0o022)
    os.umask(umask)
    fds = open_fds()
    log = default_runtime_dir(project.resolve()) / "supervisord.log"
    for _ in range(2):
        call_command(
            "supervisor", "--project-dir", str(project), "--noreload", stdout=io.StringIO()
        )
        children = descendants([os.getpid()])
        assert children == [], f"programs outlived supervisord: {children}"
    text = log.read_text()
    assert text.count(f"supervisord started with pid {os.getpid()}") == 2
    assert text.count("spawned: 'sleeper'") == 2
    assert text.count("stopped: sleeper (terminated by SIGTERM)") == 2
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert os.umask(umask) == umask
    assert asyncore.socket_map == {}
    assert open_fds() - fds == set(), {
        fd: os.readlink(f"/proc/self/fd/{fd}") for fd in open_fds() - fds
    }
    assert all(not pid_alive(pid) for pid in descendants([os.getpid()]))


@pytest.fixture
def ranked_project(tmp_path: Path) -> Path:
    sleeper = f"{{{{ PYTHON }}}} -u {PROGRAMS / 'sleeper.py'}"
    (tmp_path / "supervisord.conf").write_text(
        "".join(
            f"[program:{name}]\ncommand={sleeper} {name}\nstartsecs=0\npriority={priority}\n"
            for name, priority in (("a", 1), ("b", 1), ("c", 2), ("d", 2))
        )
        + f"[program:stopper]\ncommand={STOPPER}\nstartsecs=0\nautorestart=false\npriority=3\n"
    )
    yield tmp_path
    for pid in descendants([os.getpid()]):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(default_runtime_dir(tmp_path.resolve()), ignore_errors=True)


def test_spawns_are_handed_over_with_their_priority(
    ranked_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spawning threads keep priorities apart only if each spawn says its priority."""
    orders: list[object] = []
    submit = Spawner.submit

    def recording(self: Spawner, *args: Any, **kwargs: Any) -> int:
        orders.append(kwargs.get("order"))
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(Spawner, "submit", recording)
    call_command(
        "supervisor", "--project-dir", str(ranked_project), "--noreload", stdout=io.StringIO()
    )
    assert orders == [1, 1, 2, 2, 3]
