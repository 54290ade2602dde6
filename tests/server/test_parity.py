"""Behaves like supervisord: parity fixes from issue 15 (bugs 1-9).

Each test runs a real ``manage.py supervisor`` on a throw-away project.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import supervisor

import djsupervisor
from djsupervisor import ConfigError
from tests.utils import LineReader, Project, daemon_pids, make_project, rss_kb, sleeper

FIXTURES = Path(supervisor.__file__).resolve().parent / "tests" / "fixtures"


# --- 1. event listeners never receive their own output ------------------------------------


LISTENER_CONF = f"""\
[program:hello]
command=sh -c 'echo hello-one; echo hello-two; exec sleep 3600'
stdout_events_enabled=true
startsecs=0

[program:quiet]
command=sh -c 'echo quiet-line; exec sleep 3600'
startsecs=0

[eventlistener:listener]
command={{{{ PYTHON }}}} -u {FIXTURES / "listener.py"}
events=PROCESS_LOG
"""


def test_process_log_listener_gets_no_feedback_loop(
    tmp_path: Path, projects: list[Project]
) -> None:
    """supervisor's issue-565 fixture: the listener echoes each event to its stderr."""
    project = make_project(tmp_path, LISTENER_CONF)
    projects.append(project)
    server = project.start()
    reader = LineReader(server)
    # The listener's stderr reaches the console: it got hello's event.
    reader.wait_for("processname:hello")
    reader.wait_for("quiet-line")
    first_size, first_rss = len(reader.text), rss_kb(server.pid)
    time.sleep(3)  # an observation window: a feedback loop prints megabytes in it
    size, rss = len(reader.text), rss_kb(server.pid)
    assert size - first_size < 4096, reader.text[-2000:]
    assert size < 64 * 1024
    assert rss - first_rss < 10 * 1024, (first_rss, rss)
    listener_lines = [line for line in reader.lines if " listener " in line]
    # What the listener receives is what supervisord would send: hello's stdout (events
    # enabled there), never quiet's output nor the listener's own stderr.
    assert any("processname:hello" in line for line in listener_lines), reader.text
    assert not any("processname:quiet" in line for line in listener_lines), reader.text
    assert not any("processname:listener" in line for line in listener_lines), reader.text


# --- 2 and 4. actions and a new start while supervisord is shutting down -------------------

SLOW_CONF = """\
[program:slow]
command=sh -c 'trap "sleep 4; exit 0" TERM; echo slow-up; while true; do sleep 0.1; done'
stopwaitsecs=20
startsecs=0
"""


def shutting_down(tmp_path: Path, projects: list[Project]) -> tuple[Project, subprocess.Popen[str]]:
    """A foreground supervisord told to shut down, its slow program still stopping (~4 s)."""
    project = make_project(tmp_path, SLOW_CONF)
    projects.append(project)
    server = project.start()
    project.wait_running("slow")
    out, err, code = project.manage("supervisor", "shutdown")
    assert code == 0, (out, err)
    return project, server


def test_actions_while_shutting_down_say_so_in_one_line(
    tmp_path: Path, projects: list[Project]
) -> None:
    project, server = shutting_down(tmp_path, projects)
    for action in (["status"], ["stop", "slow"], ["tail", "slow"]):
        out, err, code = project.manage("supervisor", *action)
        assert server.poll() is None, "the test needs supervisord still shutting down"
        assert (out, err, code) == ("", "CommandError: supervisord is shutting down\n", 1)
    server.wait(timeout=30)


def test_daemonize_right_after_shutdown_waits_for_the_previous_instance(
    tmp_path: Path, projects: list[Project]
) -> None:
    project, server = shutting_down(tmp_path, projects)
    out, err, code = project.manage("supervisor", "--daemonize")
    assert (err, code) == ("", 0), out
    assert "supervisord is running in the background" in out
    # It started only once the previous one had released the instance lock, which it
    # holds until every program has stopped; its process then exits cleanly (it may
    # still be finishing up, so wait rather than poll).
    assert server.wait(timeout=10) == 0
    project.wait_running("slow")


# --- 3. an action passed as one word, as supervisorctl joins its arguments ------------------


def test_action_with_its_arguments_in_one_word(tmp_path: Path, projects: list[Project]) -> None:
    project = make_project(
        tmp_path, "[program:web]\ncommand=sh -c 'echo web-says-hi; exec sleep 3600'\n"
    )
    projects.append(project)
    project.start()
    project.wait_running("web")
    project.wait_for(lambda: "web-says-hi" in project.manage("supervisor", "tail", "web")[0])
    out, err, code = project.manage("supervisor", "tail -100000", "web")
    assert (err, code) == ("", 0)
    assert "web-says-hi" in out


# --- 6 and 7. programs run in the project directory, with our scripts on PATH ---------------

WHERE_CONF = """\
[program:plain]
command=python -c "import os, sys; print('plain', os.getcwd(), sys.prefix, os.environ['PATH'])"
startsecs=0
autorestart=false

[program:own]
command=sh -c 'echo own "$(pwd)" "$PATH"'
directory=/
environment=PATH="/usr/bin:/bin"
startsecs=0
autorestart=false
"""


def test_programs_run_in_the_project_dir_with_our_scripts_first_on_path(
    tmp_path: Path, projects: list[Project]
) -> None:
    project = make_project(tmp_path / "proj", WHERE_CONF)
    projects.append(project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scripts = str(Path(sys.executable).parent)
    # No virtualenv on PATH, and typed from another directory.
    server = project.start(cwd=elsewhere, PATH="/usr/bin:/bin")
    reader = LineReader(server)
    reader.wait_for("| plain ")
    reader.wait_for("| own ")
    plain = next(line for line in reader.lines if "| plain " in line).split("| plain ", 1)[1]
    cwd, prefix, path = plain.split(" ", 2)
    assert cwd == str(project.path)
    assert prefix == sys.prefix  # the bare ``python`` was the one running manage.py
    assert path == f"{scripts}:/usr/bin:/bin"
    own = next(line for line in reader.lines if "| own " in line).split("| own ", 1)[1]
    assert own == "/ /usr/bin:/bin"  # explicit directory= and PATH win


# --- 5. start() raises ConfigError for every configuration problem -------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("depends_on=nope", r"\[program:web\].*nope"),
        ("healthcheck=ftp://localhost:1", r"\[program:web\].*healthcheck"),
        ("startsecs=abc", r"\[program:web\].*startsecs"),
    ],
)
def test_start_raises_config_error_for_a_bad_value(
    tmp_path: Path, projects: list[Project], extra: str, match: str
) -> None:
    project = make_project(tmp_path / "proj", f"[program:web]\ncommand={sleeper('web')}\n{extra}\n")
    projects.append(project)
    with pytest.raises(ConfigError, match=match):
        djsupervisor.start(project_dir=project.path, timeout=20)
    assert daemon_pids(project.path) == []


# --- 8. autoreload restarts each program on its own --------------------------------------


def test_autoreload_brings_a_fast_program_back_while_a_slow_one_stops(
    tmp_path: Path, projects: list[Project]
) -> None:
    from tests.autoreload.test_autoreload import new_project, start, watching

    project = new_project(
        projects,
        tmp_path,
        f"""
        [program:fast]
        command={sleeper("fast")}
        startsecs=0
        [program:slow]
        command=sh -c 'trap "sleep 4; exit 0" TERM; while true; do sleep 0.1; done'
        startsecs=0
        stopwaitsecs=20
        """,
    )
    running = watching(start(project))
    fast, slow = running.pid("fast"), running.pid("slow")
    project.write("app/views.py", "VIEW = 1\n")
    running.wait_new_pid("fast", fast)
    assert running.state("slow") == "STOPPING", running.log("autoreload")
    running.wait_new_pid("slow", slow)
    running.wait(lambda: running.restarts() == 1, "the restart to be reported")
    assert "restarted: fast, slow\n" in running.log("autoreload")


# --- 9. waiting until the programs with a health check are healthy ------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def late_listener_conf(port: int) -> str:
    """A web program that listens only 1.5 s after it is RUNNING (startsecs=0)."""
    code = (
        "import socket, time; time.sleep(1.5); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(3600)"
    )
    return (
        f'[program:web]\ncommand={{{{ PYTHON }}}} -c "{code}"\nstartsecs=0\n'
        f"healthcheck=tcp://127.0.0.1:{port}\nhealthcheck_interval=0.2\n"
    )


def test_start_waits_until_healthy(tmp_path: Path, projects: list[Project]) -> None:
    port = free_port()
    project = make_project(tmp_path / "proj", late_listener_conf(port))
    projects.append(project)
    with djsupervisor.start(project_dir=project.path, wait="healthy", timeout=30) as handle:
        project.started.append(handle._process)  # type: ignore[arg-type]
        # Listening right away, not merely RUNNING.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert [i.health for i in handle.status("web")] == ["healthy"]


def test_pytest_plugin_waits_until_healthy(tmp_path: Path, projects: list[Project]) -> None:
    port = free_port()
    project = make_project(tmp_path / "proj", late_listener_conf(port))
    projects.append(project)
    project.write(
        "test_site.py",
        f"""\
        import socket

        def test_web_listens(supervisor):
            socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
        """,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_site.py"],
        cwd=project.path,
        env=project.env(DJANGO_SETTINGS_MODULE="testproj.settings"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_a_previous_instance_that_never_finishes_is_named(tmp_path: Path) -> None:
    """The lock held past the longest stopwaitsecs: refuse, naming the holder's pid."""
    import fcntl

    from djsupervisor import config
    from djsupervisor.errors import NotRunning, StartError
    from djsupervisor.server import instance, succession

    lock_path, pidfile = tmp_path / "supervisord.lock", tmp_path / "supervisord.pid"
    pidfile.write_text("4242\n")
    merged = config.Merged(
        {
            "supervisord": {"pidfile": str(pidfile)},
            "program:slow": {"command": "x", "stopwaitsecs": "0"},
        }
    )

    def shutting_down() -> None:
        raise NotRunning("supervisord is shutting down")

    with open(lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StartError, match=r"\(pid 4242\) is still shutting down after 0.2 s"):
            succession.wait_for_previous(
                tmp_path, lock_path, lambda: merged, shutting_down, margin=0.2
            )
        # One that answers normally is left to the usual "already running" refusal.
        succession.wait_for_previous(tmp_path, lock_path, lambda: merged, lambda: None, margin=0.2)

    # Nobody holds the lock: nothing to wait for, and no config to render for it.
    def unread() -> config.Merged:
        raise AssertionError("rendered the config with no previous instance to wait for")

    succession.wait_for_previous(tmp_path, lock_path, unread, shutting_down, margin=0.2)
    if sys.platform.startswith("linux"):
        # The other half: an instance whose runtime dir (and lock file) was deleted
        # still holds its abstract socket, and is still waited for.
        lock_path.unlink()
        busy = instance.abstract_lock(tmp_path, "busy")
        with busy, pytest.raises(StartError, match="still shutting down"):
            succession.wait_for_previous(
                tmp_path, lock_path, lambda: merged, shutting_down, margin=0.2
            )
