"""Every supervisorctl action through ``manage.py supervisor ACTION``, against one server.

One foreground server runs for the whole module (started in its own session, cleaned up
by pid); each test leaves the programs as it found them.
"""

from __future__ import annotations

import gc
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.utils import (
    LineReader,
    Project,
    ctl_section,
    make_project,
    not_running_line,
    parent_pid,
    program,
    runtime_dirs,
    sleeper,
    wait_dead,
)

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0

[program:two]
command={sleeper("two")}
startsecs=0
autostart=false

[program:trap]
command={program("trapper.py", "trap", "USR1=report", "USR2=report")}
startsecs=0

[program:echo]
command={program("echoer.py", "echo")}
startsecs=0

[program:caller]
command={program("caller.py", "caller")}
startsecs=0
"""

RUNNING = ("one", "trap", "echo", "caller")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    proj = make_project(tmp_path_factory.mktemp("ctl") / "proj", CONF)
    try:
        proj.start()
        proj.wait_running(*RUNNING)
        yield proj
    finally:
        proj.cleanup()


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[str]]]:
    """Long-running control commands (``tail -f``, ``fg``) a test starts; killed by pid."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def ctl(project: Project, *args: str, input: str | None = None) -> tuple[str, str, int]:
    return project.manage("supervisor", *args, input=input)


def server_pid(project: Project) -> int:
    return project.started[0].pid


def popen(
    project: Project, procs: list[subprocess.Popen[str]], *args: str
) -> subprocess.Popen[str]:
    """Start ``manage.py supervisor ARGS`` with piped stdin and stdout (stderr merged)."""
    proc = subprocess.Popen(
        [sys.executable, str(project.path / "manage.py"), "supervisor", *args],
        cwd=project.path,
        env=project.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    procs.append(proc)
    return proc


def pid_of(project: Project, name: str) -> int:
    out, err, code = ctl(project, "pid", name)
    assert (err, code) == ("", 0), (out, err)
    return int(out)


# --- status ------------------------------------------------------------------------------


def test_status_all_exits_3_when_a_program_is_not_running(project: Project) -> None:
    out, err, code = ctl(project, "status")
    states = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert states == {**dict.fromkeys(RUNNING, "RUNNING"), "two": "STOPPED"}
    assert (err, code) == ("", 3)


def test_status_of_running_programs_exits_0(project: Project) -> None:
    out, err, code = ctl(project, "status", "one", "trap")
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [["one", "RUNNING"], ["trap", "RUNNING"]]
    assert f"pid {pid_of(project, 'one')}," in lines[0]
    assert (err, code) == ("", 0)


def test_status_of_stopped_program_exits_3(project: Project) -> None:
    out, err, code = ctl(project, "status", "two")
    assert out.split() == ["two", "STOPPED", "Not", "started"]
    assert (err, code) == ("", 3)


def test_status_of_unknown_program(project: Project) -> None:
    assert ctl(project, "status", "nosuch") == ("nosuch: ERROR (no such process)\n", "", 4)


# --- start, stop, restart, signal, pid ---------------------------------------------------


def test_start_restart_stop(project: Project) -> None:
    try:
        assert ctl(project, "start", "two") == ("two: started\n", "", 0)
        first = pid_of(project, "two")
        # The programs are children of the manage.py process that runs supervisord.
        assert parent_pid(first) == server_pid(project)
        assert ctl(project, "start", "two") == ("two: ERROR (already started)\n", "", 0)

        assert ctl(project, "restart", "two") == ("two: stopped\ntwo: started\n", "", 0)
        second = pid_of(project, "two")
        assert second != first
        wait_dead([first])

        assert ctl(project, "stop", "two") == ("two: stopped\n", "", 0)
        wait_dead([second])
        assert ctl(project, "stop", "two") == ("two: ERROR (not running)\n", "", 0)
        assert ctl(project, "status", "two")[2] == 3
    finally:
        ctl(project, "stop", "two")


def test_start_stop_unknown_program_exit_1(project: Project) -> None:
    assert ctl(project, "start", "nosuch") == ("nosuch: ERROR (no such process)\n", "", 1)
    assert ctl(project, "stop", "nosuch") == ("nosuch: ERROR (no such process)\n", "", 1)
    assert ctl(project, "restart", "nosuch") == (
        "nosuch: ERROR (no such process)\nnosuch: ERROR (no such process)\n",
        "",
        1,
    )


def test_signal(project: Project) -> None:
    assert ctl(project, "signal", "USR1", "trap") == ("trap: signalled\n", "", 0)
    project.wait_for(
        lambda: "trap got SIGUSR1" in ctl(project, "tail", "trap")[0], what="SIGUSR1 reported"
    )
    assert ctl(project, "signal", "USR1", "two") == ("two: ERROR (not running)\n", "", 7)
    out, err, code = ctl(project, "signal", "NOSUCHSIG", "trap")
    assert (out, err, code) == ("trap: ERROR (bad signal name)\n", "", 1)


def test_pid(project: Project) -> None:
    assert ctl(project, "pid") == (f"{server_pid(project)}\n", "", 0)
    one = pid_of(project, "one")
    assert parent_pid(one) == server_pid(project)
    assert ctl(project, "pid", "two") == ("0\n", "", 7)
    assert ctl(project, "pid", "nosuch") == ("No such process nosuch\n", "", 1)


def test_programs_get_the_server_url(project: Project) -> None:
    environ = Path(f"/proc/{pid_of(project, 'one')}/environ").read_bytes().split(b"\0")
    url = ctl_section(project)["serverurl"]
    assert f"SUPERVISOR_SERVER_URL={url}".encode() in environ


def test_child_calls_back_with_childutils(project: Project) -> None:
    # supervisor.childutils (superlance & co.) needs the credentials in the environment.
    assert ctl(project, "tail", "caller") == ("caller sees supervisord RUNNING\n\n", "", 0)


# --- logs: tail, tail -f, maintail, clear ------------------------------------------------


def test_tail(project: Project) -> None:
    # supervisorctl prints the log's bytes and then a newline of its own.
    assert ctl(project, "tail", "one") == ("one started\n\n", "", 0)
    assert ctl(project, "tail", "one", "stderr") == ("one stderr line\n\n", "", 0)
    assert ctl(project, "tail", "-8", "one") == ("started\n\n", "", 0)
    assert ctl(project, "tail", "nosuch") == ("nosuch: ERROR (no such process name)\n", "", 1)


def test_tail_f_follows_new_output(project: Project, spawned: list[subprocess.Popen[str]]) -> None:
    tail = LineReader(popen(project, spawned, "tail", "-f", "trap"))
    tail.wait_for("==> Press Ctrl-C to exit <==")
    tail.wait_for("trap started")  # the log's last bytes come first
    assert ctl(project, "signal", "USR2", "trap") == ("trap: signalled\n", "", 0)
    tail.wait_for("trap got SIGUSR2")
    tail.proc.terminate()
    assert tail.finish() == -signal.SIGTERM
    assert "Traceback" not in tail.text


def test_options_before_the_action(project: Project, spawned: list[subprocess.Popen[str]]) -> None:
    # The example of the spec: an option (with its value) before the action, and the
    # action's own dash arguments (-f) left to supervisorctl.
    tail = LineReader(popen(project, spawned, "-l", "one", "tail", "-f", "one"))
    tail.wait_for("one started")
    tail.proc.terminate()
    assert tail.finish() == -signal.SIGTERM
    assert tail.lines[0] == "==> Press Ctrl-C to exit <=="


@pytest.mark.parametrize(
    "args",
    [
        ("--project-dir", "{dir}", "status", "one"),
        ("status", "one", "--project-dir={dir}"),
    ],
    ids=["before-space", "after-equals"],
)
def test_option_values_before_or_after_the_action(
    project: Project, tmp_path: Path, args: tuple[str, ...]
) -> None:
    # Run from elsewhere, with a --project-dir that is honoured: the wrong directory
    # must name another socket.
    argv = [arg.format(dir=project.path) for arg in args]
    proc = subprocess.run(
        [sys.executable, str(project.path / "manage.py"), "supervisor", *argv],
        cwd=tmp_path,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.stdout.split()[:2], proc.stderr, proc.returncode) == (["one", "RUNNING"], "", 0)

    other = make_project(tmp_path / "other", CONF).path
    elsewhere = [arg.format(dir=other) for arg in args]
    out, err, code = ctl(project, *elsewhere)
    assert out == ""
    assert code == 1
    assert err.startswith("CommandError: supervisord is not running (control socket ")
    assert str(runtime_dirs(other)[0] / "supervisor.sock") in err


def test_maintail(project: Project) -> None:
    out, err, code = ctl(project, "maintail")
    assert f"supervisord started with pid {server_pid(project)}" in out
    assert "spawned: 'one' with pid" in out
    assert (err, code) == ("", 0)
    out, err, code = ctl(project, "maintail", "-50")
    assert (len(out.encode()), err, code) == (50 + 1, "", 0)  # and supervisorctl's newline


def test_clear(project: Project) -> None:
    assert ctl(project, "start", "two") == ("two: started\n", "", 0)
    try:
        # Earlier runs of two left their output in its logs too.
        project.wait_for(
            lambda: ctl(project, "tail", "two", "stderr")[0].endswith("two stderr line\n\n"),
            what="output",
            timeout=5,
        )
        assert ctl(project, "tail", "two")[0].endswith("two started\n\n")
        assert ctl(project, "clear", "two") == ("two: cleared\n", "", 0)
        assert ctl(project, "tail", "two") == ("\n", "", 0)
        assert ctl(project, "tail", "two", "stderr") == ("\n", "", 0)
        assert ctl(project, "clear", "nosuch") == ("nosuch: ERROR (no such process)\n", "", 1)
    finally:
        ctl(project, "stop", "two")


# --- config actions: avail, add, remove, reread, update ----------------------------------


def test_avail(project: Project) -> None:
    out, err, code = ctl(project, "avail")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert rows["one"] == ["in", "use", "auto", "999:999"]
    assert rows["two"] == ["in", "use", "manual", "999:999"]
    assert sorted(rows) == sorted([*RUNNING, "two"])
    assert (err, code) == ("", 0)


def test_remove_and_add(project: Project) -> None:
    assert ctl(project, "remove", "one") == ("ERROR: process/group still running: one\n", "", 1)
    assert ctl(project, "remove", "two") == ("two: removed process group\n", "", 0)
    assert "two" not in project.status()
    assert ctl(project, "avail")[0].count("two                              avail") == 1
    assert ctl(project, "add", "two") == ("two: added process group\n", "", 0)
    assert ctl(project, "add", "two") == ("ERROR: process group already active\n", "", 0)
    assert ctl(project, "add", "nosuch") == ("ERROR: no such process/group: nosuch\n", "", 1)
    assert project.status()["two"] == "STOPPED"


def test_reread_and_update_without_changes(project: Project) -> None:
    assert ctl(project, "reread") == ("No config updates to processes\n", "", 0)
    before = pid_of(project, "one")
    assert ctl(project, "update") == ("", "", 0)
    assert pid_of(project, "one") == before


# --- fg ----------------------------------------------------------------------------------


def test_fg_refuses_stopped_and_unknown_programs(project: Project) -> None:
    assert ctl(project, "fg", "two", input="") == ("ERROR: process not running\n", "", 1)
    assert ctl(project, "fg", "nosuch", input="") == ("ERROR: bad process name supplied\n", "", 1)
    out, err, code = ctl(project, "fg", input="")
    assert (out.splitlines()[0], err, code) == ("ERROR: no process name supplied", "", 1)


def test_fg_sends_stdin_and_shows_output(
    project: Project, spawned: list[subprocess.Popen[str]]
) -> None:
    fg = LineReader(popen(project, spawned, "fg", "echo"))
    assert fg.proc.stdin is not None
    fg.wait_for("==> Press Ctrl-C to exit <==")
    fg.proc.stdin.write("ping\n")
    fg.proc.stdin.flush()
    fg.wait_for("echo got ping")  # the program's stdout, streamed back by fg
    fg.proc.stdin.close()  # end of input ends fg
    assert fg.finish(timeout=10) == 0
    assert "Exiting foreground" in fg.lines
    assert "Traceback" not in fg.text
    assert "echo got ping" in ctl(project, "tail", "echo")[0]


def test_fg_with_piped_input_returns_at_its_end(project: Project) -> None:
    # Stock supervisorctl waits up to 30 s for its output thread here (and exits 1
    # if input ends before that thread connected).
    out, _, code = project.manage("supervisor", "fg", "echo", input="pong\n", timeout=10)
    assert out.splitlines()[0] == "==> Press Ctrl-C to exit <=="
    assert "Exiting foreground" in out.splitlines()
    assert "Traceback" not in out
    assert code == 0
    project.wait_for(
        lambda: "echo got pong" in ctl(project, "tail", "echo")[0], what="input delivered"
    )


# --- version, help, shell, unknown actions ----------------------------------------------


def test_version(project: Project) -> None:
    assert ctl(project, "version") == (version("supervisor") + "\n", "", 0)


def test_help(project: Project) -> None:
    out, err, code = ctl(project, "help")
    assert "default commands (type help <topic>):" in out
    listed = set(out.split())
    actions = "add avail clear fg maintail pid reload remove reread restart shutdown signal"
    assert set(actions.split()) | {"start", "status", "stop", "tail", "update", "version"} <= listed
    assert (err, code) == ("", 0)
    out, err, code = ctl(project, "help", "tail")
    assert "tail -f <name>" in out
    assert (err, code) == ("", 0)


def test_shell_reads_commands_from_stdin(project: Project) -> None:
    out, err, code = ctl(project, "shell", input="status one\nversion\nbogus\n")
    lines = out.splitlines()
    assert any(line.split()[:2] == ["one", "RUNNING"] for line in lines)
    assert version("supervisor") in lines
    assert "*** Unknown syntax: bogus" in lines
    assert (err, code) == ("", 0)


def test_unknown_action(project: Project) -> None:
    assert ctl(project, "bogus") == (
        "",
        "CommandError: unknown action 'bogus'; see 'manage.py supervisor help'\n",
        2,
    )


# --- in-process output capture and the stock supervisorctl -------------------------------


def test_call_command_captures_output(project: Project) -> None:
    frozen = gc.get_freeze_count()
    with override_settings(
        SECRET_KEY="integration-test-secret", SUPERVISOR_PROJECT_DIR=project.path
    ):
        buf = io.StringIO()
        call_command("supervisor", "status", "one", stdout=buf)
        assert buf.getvalue().split()[:2] == ["one", "RUNNING"]
        # Only manage.py's own process, which ends with the action, freezes its heap.
        assert gc.get_freeze_count() == frozen

        buf = io.StringIO()
        call_command("supervisor", "tail", "one", stdout=buf)
        assert buf.getvalue() == "one started\n\n"

    with override_settings(SECRET_KEY="integration-test-secret"):
        buf = io.StringIO()
        with pytest.raises(CommandError) as raised:
            call_command("supervisor", "status", project_dir=str(project.path), stdout=buf)
        assert raised.value.returncode == 3
        assert str(raised.value) == "supervisorctl status exited with status 3"
        assert buf.getvalue().count("RUNNING") == len(RUNNING)


# supervisor's SupervisorTransport drops an unread non-200 response, whose socket is then
# only closed by the garbage collector (supervisor/xmlrpc.py, request()).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_call_command_with_a_wrong_secret_key(project: Project) -> None:
    with (
        override_settings(SECRET_KEY="another-secret", SUPERVISOR_PROJECT_DIR=project.path),
        pytest.raises(CommandError) as raised,
    ):
        call_command("supervisor", "status", stdout=io.StringIO())
    assert "refused our credentials" in str(raised.value)
    gc.collect()  # that socket's warning, here, under this test's filter


def test_stock_supervisorctl(project: Project, tmp_path: Path) -> None:
    ctl_conf = ctl_section(project)
    supervisorctl = Path(sys.executable).with_name("supervisorctl")
    # Not from the project directory: supervisorctl would read its supervisord.conf.
    proc = subprocess.run(
        [
            str(supervisorctl),
            "-s",
            ctl_conf["serverurl"],
            "-u",
            ctl_conf["username"],
            "-p",
            ctl_conf["password"],
            "status",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")},
    )
    states = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()}
    assert states == {**dict.fromkeys(RUNNING, "RUNNING"), "two": "STOPPED"}
    assert (proc.stderr, proc.returncode) == ("", 3)


# --- no server ---------------------------------------------------------------------------


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "idle", CONF)
    yield proj
    proj.cleanup()


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("tail", "-f", "one"),
        ("fg", "echo"),
        ("shell",),
        ("shutdown",),
    ],
    ids=lambda args: "-".join(args),
)
def test_not_running(idle: Project, args: tuple[str, ...]) -> None:
    out, err, code = ctl(idle, *args, input="status\n")
    assert (out, err, code) == ("", not_running_line(idle), 1)


def test_help_works_without_a_server(idle: Project) -> None:
    out, err, code = ctl(idle, "help")
    assert "default commands (type help <topic>):" in out
    assert (err, code) == ("", 0)
