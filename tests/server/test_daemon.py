"""``manage.py supervisor --daemonize``: readiness, failures, a second start, stale files."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import (
    Project,
    descendants,
    make_project,
    not_running_line,
    parent_pid,
    pid_alive,
    runtime_dirs,
    sleeper,
    wait_dead,
)

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0
"""

STARTED_RE = re.compile(
    r"supervisord is running in the background \(pid (\d+)\); "
    r"see 'manage\.py supervisor status'\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", CONF)
    yield proj
    proj.cleanup()


def daemonize(project: Project, *args: str) -> int:
    """Start the daemon; return its pid (as it reports it)."""
    out, err, code = project.manage("supervisor", "--daemonize", *args)
    match = STARTED_RE.fullmatch(out)
    assert match is not None, (out, err)
    assert code == 0
    return int(match.group(1))


def kill_later(request: pytest.FixtureRequest, pid: int) -> None:
    """SIGKILL ``pid`` and its descendants at teardown (a pidfile cleanup() cannot find)."""

    def kill() -> None:
        for victim in [*descendants([pid]), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)

    request.addfinalizer(kill)


def test_daemonize_returns_once_supervisord_answers(project: Project) -> None:
    daemon = daemonize(project)
    # No waiting: the control channel answers as soon as --daemonize returned.
    out, err, code = project.manage("supervisor", "pid")
    assert (out, err, code) == (f"{daemon}\n", "", 0)
    runtime = runtime_dirs(project.path)[0]
    assert (runtime / "supervisord.pid").read_text().strip() == str(daemon)
    assert os.getsid(daemon) == daemon  # detached into its own session

    project.wait_running("one")
    one = int(project.manage("supervisor", "pid", "one")[0])
    assert parent_pid(one) == daemon
    assert f"supervisord started with pid {daemon}" in (runtime / "supervisord.log").read_text()

    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    wait_dead([daemon, one])
    assert not (runtime / "supervisord.pid").exists()


def test_daemonize_honours_pidfile_and_logfile(
    project: Project, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pidfile = tmp_path / "run" / "daemon.pid"
    logfile = tmp_path / "run" / "daemon.log"
    pidfile.parent.mkdir()
    out, err, code = project.manage(
        "supervisor", "--daemonize", "--pidfile", str(pidfile), f"--logfile={logfile}"
    )
    match = STARTED_RE.fullmatch(out)
    assert match is not None, (out, err)
    daemon = int(match.group(1))
    kill_later(request, daemon)
    assert (err, code) == ("", 0)

    assert pidfile.read_text().strip() == str(daemon)
    assert f"supervisord started with pid {daemon}" in logfile.read_text()
    runtime = runtime_dirs(project.path)[0]
    assert not (runtime / "supervisord.pid").exists()
    assert not (runtime / "supervisord.log").exists()
    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    wait_dead([daemon])


def test_daemonize_reports_a_bind_failure(project: Project, busy_port: int) -> None:
    project.write("supervisord.conf", CONF + f"\n[inet_http_server]\nport=127.0.0.1:{busy_port}\n")
    out, err, code = project.manage("supervisor", "--daemonize")
    assert out == ""
    assert err == (
        "CommandError: Another program is already listening on a port that one of our HTTP "
        "servers is configured to use.  Shut this program down first before starting "
        "supervisord.\n"
    )
    assert code == 1


def test_daemonize_reports_a_bad_logfile(project: Project, tmp_path: Path) -> None:
    logfile = tmp_path / "missing" / "x.log"
    out, err, code = project.manage("supervisor", "--daemonize", "--logfile", str(logfile))
    assert (out, code) == ("", 1)
    assert err == (
        f"CommandError: The directory named as part of the path {logfile} does not exist\n"
    )
    assert project.manage("supervisor", "status") == ("", not_running_line(project), 1)


def test_second_start_is_refused_and_leaves_the_first_intact(project: Project) -> None:
    daemon = daemonize(project)
    project.wait_running("one")
    runtime = runtime_dirs(project.path)[0]
    logs = sorted(runtime.glob("one-*.log"))
    assert len(logs) == 2  # AUTO stdout and stderr logs

    refused = (
        "CommandError: supervisord is already running for this project "
        f"({runtime / 'supervisor.sock'}); see 'manage.py supervisor status', "
        "or stop it with 'manage.py supervisor shutdown'\n"
    )
    assert project.manage("supervisor", "--daemonize", timeout=30) == ("", refused, 1)
    assert project.manage("supervisor", timeout=30) == ("", refused, 1)  # foreground too

    assert sorted(runtime.glob("one-*.log")) == logs
    assert project.manage("supervisor", "tail", "one") == ("one started\n\n", "", 0)
    assert project.manage("supervisor", "pid") == (f"{daemon}\n", "", 0)
    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    wait_dead([daemon])


def test_stale_socket_and_pidfile_do_not_prevent_a_start(project: Project) -> None:
    first = daemonize(project)
    project.wait_running("one")
    one = int(project.manage("supervisor", "pid", "one")[0])
    runtime = runtime_dirs(project.path)[0]

    os.kill(first, signal.SIGKILL)
    wait_dead([first])
    wait_dead([one])  # the watchdog takes the programs along
    assert (runtime / "supervisor.sock").exists()
    assert (runtime / "supervisord.pid").read_text().strip() == str(first)
    assert project.manage("supervisor", "status") == ("", not_running_line(project), 1)

    second = daemonize(project)
    assert second != first
    assert pid_alive(second)
    assert (runtime / "supervisord.pid").read_text().strip() == str(second)
    project.wait_running("one")
    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    wait_dead([second])
