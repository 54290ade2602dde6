"""``manage.py supervisor`` in the foreground: in-process supervisord, reloads, stopping."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import (
    Project,
    descendants,
    make_project,
    parent_pid,
    pid_alive,
    program,
    runtime_dirs,
    sleeper,
    wait_dead,
)

ONE = f"""
[program:one]
command={sleeper("one")}
startsecs=0
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", ONE)
    yield proj
    proj.cleanup()


def stop(server: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, int]:
    """Signal the server; return its console output and exit code."""
    server.send_signal(sig)
    out, _ = server.communicate(timeout=20)
    return out, server.returncode


def pids(project: Project, *names: str) -> dict[str, int]:
    found = {}
    for name in names:
        out, err, code = project.manage("supervisor", "pid", name)
        assert (err, code) == ("", 0), (out, err)
        found[name] = int(out)
    return found


def test_foreground_runs_supervisord_in_the_manage_py_process(project: Project) -> None:
    server = project.start()
    project.wait_running("one")
    one = pids(project, "one")["one"]
    # supervisord's main loop is the manage.py process itself: it is the programs' parent.
    assert parent_pid(one) == server.pid
    assert project.manage("supervisor", "pid") == (f"{server.pid}\n", "", 0)
    assert server.poll() is None  # foreground: still running

    out, code = stop(server, signal.SIGINT)  # Ctrl-C
    assert code == 0
    # supervisord's own log and the programs' output, on the console.
    assert f"supervisor | supervisord started with pid {server.pid}" in out
    assert f"supervisor | spawned: 'one' with pid {one}" in out
    assert "one        | one started" in out
    assert "one        ! one stderr line" in out
    assert "Traceback" not in out
    wait_dead([one])


STOPPING = f"""
[program:polite]
command={program("trapper.py", "polite", "INT=exit")}
startsecs=0
stopsignal=INT

[program:stubborn]
command={program("trapper.py", "stubborn", "TERM=report")}
startsecs=0
stopwaitsecs=1

[program:plain]
command={sleeper("plain")}
startsecs=0
"""


def test_sigterm_stops_every_program_as_configured_and_exits_0(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", STOPPING)
    try:
        server = project.start()
        project.wait_running("polite", "stubborn", "plain")
        children = descendants([server.pid])  # the programs and the orphan watchdog
        programs = pids(project, "polite", "stubborn", "plain")
        assert set(programs.values()) <= set(children)

        out, code = stop(server, signal.SIGTERM)
        assert code == 0, out
        # stopsignal honoured; stopwaitsecs honoured before SIGKILL.
        assert "polite got SIGINT" in out
        assert "stopped: polite (exit status 0)" in out
        assert "stubborn got SIGTERM" in out
        assert f"killing 'stubborn' ({programs['stubborn']}) with SIGKILL" in out
        assert "stopped: stubborn (terminated by SIGKILL)" in out
        assert "stopped: plain (terminated by SIGTERM)" in out
        # Nothing outlives the manage.py process.
        assert not [pid for pid in children if pid_alive(pid)]
    finally:
        project.cleanup()


def test_sigkill_of_the_server_takes_the_programs_along(project: Project) -> None:
    server = project.start()
    project.wait_running("one")
    one = pids(project, "one")["one"]
    children = descendants([server.pid])
    server.kill()
    server.communicate(timeout=20)
    wait_dead([one, *children], timeout=10)


TWO_SOURCES_APP = f"""
[program:fromapp]
command={program("sleeper.py", "fromapp")}
startsecs=0
"""


def test_sighup_and_reload_reread_every_source_from_disk(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", ONE, apps={"workers": TWO_SOURCES_APP})
    try:
        server = project.start()
        project.wait_running("one", "fromapp")
        before = pids(project, "one")["one"]
        project.write("supervisord.conf", ONE + f"\n[program:added]\ncommand={sleeper('added')}\n")
        project.write(
            "workers/management/supervisord.conf",
            TWO_SOURCES_APP.replace("fromapp", "renamed"),
        )

        # No controlling terminal (own session): SIGHUP means reload, as in supervisord.
        server.send_signal(signal.SIGHUP)
        project.wait_running("one", "added", "renamed")
        assert set(project.status()) == {"one", "added", "renamed"}
        assert server.poll() is None
        wait_dead([before])  # a reload restarts every program

        project.write("supervisord.conf", ONE)
        project.write("workers/management/supervisord.conf", "")
        assert project.manage("supervisor", "reload") == ("Restarted supervisord\n", "", 0)
        project.wait_for(lambda: set(project.status()) == {"one"}, what="only one left")
        project.wait_running("one")
        assert project.manage("supervisor", "pid") == (f"{server.pid}\n", "", 0)

        out, code = stop(server)
        assert code == 0, out
        assert "received SIGHUP indicating restart request" in out
    finally:
        project.cleanup()


UPDATE_BEFORE = f"""
[program:keep]
command={sleeper("keep")}
startsecs=0

[program:change]
command={sleeper("change")}
startsecs=0

[program:gone]
command={sleeper("gone")}
startsecs=0
"""

UPDATE_AFTER = f"""
[program:keep]
command={sleeper("keep")}
startsecs=0

[program:change]
command={sleeper("changed")}
startsecs=0

[program:new]
command={sleeper("new")}
startsecs=0
"""


def test_reread_and_update_add_change_and_remove(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", UPDATE_BEFORE, apps={"workers": None})
    try:
        project.start()
        project.wait_running("keep", "change", "gone")
        before = pids(project, "keep", "change", "gone")
        project.write("supervisord.conf", UPDATE_AFTER)

        out, err, code = project.manage("supervisor", "reread")
        assert sorted(out.splitlines()) == [
            "change: changed",
            "gone: disappeared",
            "new: available",
        ]
        assert (err, code) == ("", 0)

        out, err, code = project.manage("supervisor", "update")
        assert sorted(out.splitlines()) == [
            "change: stopped",
            "change: updated process group",
            "gone: removed process group",
            "gone: stopped",
            "new: added process group",
        ]
        assert (err, code) == ("", 0)
        project.wait_running("keep", "change", "new")
        assert set(project.status()) == {"keep", "change", "new"}
        after = pids(project, "keep", "change", "new")
        assert after["keep"] == before["keep"]  # unchanged programs are left alone
        assert after["change"] != before["change"]
        cmdline = Path(f"/proc/{after['change']}/cmdline").read_bytes().split(b"\0")
        assert b"changed" in cmdline
        wait_dead([before["change"], before["gone"]])

        # An app's management/supervisord.conf is re-read as well.
        project.write("workers/management/supervisord.conf", TWO_SOURCES_APP)
        out, err, code = project.manage("supervisor", "update")
        assert (out, err, code) == ("fromapp: added process group\n", "", 0)
        project.wait_running("keep", "change", "new", "fromapp")
    finally:
        project.cleanup()


def test_shutdown_action(project: Project) -> None:
    server = project.start()
    project.wait_running("one")
    one = pids(project, "one")["one"]
    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    out, _ = server.communicate(timeout=20)
    assert server.returncode == 0, out
    wait_dead([one])
    assert not (runtime_dirs(project.path)[0] / "supervisor.sock").exists()


def test_pidfile_and_logfile_in_the_foreground(project: Project, tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "server.pid"
    logfile = tmp_path / "run" / "server.log"
    pidfile.parent.mkdir()
    server = project.start(f"--pidfile={pidfile}", "--logfile", str(logfile))
    project.wait_running("one")
    assert pidfile.read_text().strip() == str(server.pid)
    assert f"supervisord started with pid {server.pid}" in logfile.read_text()
    default = runtime_dirs(project.path)[0]
    assert not (default / "supervisord.pid").exists()
    assert not (default / "supervisord.log").exists()

    out, code = stop(server)
    assert code == 0, out
    assert not pidfile.exists()  # removed on a clean exit


def test_a_config_broken_on_disk_is_refused_and_control_still_works(project: Project) -> None:
    server = project.start()
    project.wait_running("one")
    one = pids(project, "one")["one"]
    project.write("supervisord.conf", ONE + "\n[program:bad]\ncommand={% if %}\n")
    warning = (
        f"warning: {project.path / 'supervisord.conf'}:7: template error: Unexpected end of "
        "expression in if tag.; using the default control channel\n"
    )

    out, err, code = project.manage("supervisor", "status")
    assert (out.split()[:2], err, code) == (["one", "RUNNING"], warning, 0)
    for action in ("reread", "update", "reload"):
        out, err, code = project.manage("supervisor", action)
        assert out.startswith("ERROR: CANT_REREAD: "), (action, out)
        assert "template error: Unexpected end of expression in if tag." in out
        assert (len(out.splitlines()), err, code) == (1, warning, 1)

    # SIGHUP (no terminal: a reload request) is refused the same way.
    server.send_signal(signal.SIGHUP)
    project.wait_for(
        lambda: "reload refused" in project.manage("supervisor", "maintail")[0],
        what="reload refused",
    )
    assert server.poll() is None
    # The running programs were kept.
    assert project.manage("supervisor", "pid", "one") == (f"{one}\n", warning, 0)

    project.write("supervisord.conf", ONE)
    assert project.manage("supervisor", "reload") == ("Restarted supervisord\n", "", 0)
    project.wait_running("one")
    out, code = stop(server)
    assert code == 0, out
