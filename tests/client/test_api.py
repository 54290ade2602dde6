"""The Python API against real supervisord instances: start, control, errors, shutdown.

Most tests call the API in this process (Django set up with tests/settings.py) on a
throw-away project; ``start()`` runs supervisord in a child with the same settings
module and ``--project-dir``. Tests that need the project's own settings run a script.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

import djsupervisor
from djsupervisor import (
    AlreadyStarted,
    ConfigError,
    NoSuchProcess,
    NotRunning,
    NotRunningProcess,
    ProcessInfo,
    StartError,
    Supervisor,
    SupervisorError,
    UpdateResult,
)
from tests.utils import (
    PROGRAMS,
    REPO,
    Project,
    descendants,
    make_project,
    pid_alive,
    sleeper,
    wait_for,
)

PROJECT_SECRET = "integration-test-secret"
PYTEST = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider"]

SIGNAL_PROGRAM = """\
import signal
import time

def report(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)

signal.signal(signal.SIGUSR1, report)
print("sig ready", flush=True)
while True:
    time.sleep(3600)
"""

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0

[program:idle]
command={sleeper("idle")}
startsecs=0
autostart=false

[program:sig]
command={{{{ PYTHON }}}} -u {{{{ PROJECT_DIR }}}}/sigprog.py
startsecs=0

[program:a]
command={sleeper("a")}
startsecs=0

[program:b]
command={sleeper("b")}
startsecs=0

[group:pair]
programs=a,b

[program:crash]
command={{{{ PYTHON }}}} {PROGRAMS / "crasher.py"}
startsecs=1
startretries=0
autostart=false
autorestart=false
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", CONF)
    proj.write("sigprog.py", SIGNAL_PROGRAM)
    yield proj
    proj.cleanup()


@pytest.fixture
def start(project: Project) -> Iterator[Callable[..., Supervisor]]:
    """``djsupervisor.start`` on ``project``; whatever it started is killed afterwards."""
    handles: list[Supervisor] = []

    def start(**options: Any) -> Supervisor:
        options.setdefault("project_dir", project.path)
        handle = djsupervisor.start(**options)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        assert handle.pid is not None
        left = descendants([handle.pid])
        handle.terminate(left)
        for pid in left:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def states(handle: Supervisor) -> dict[str, str]:
    return {info.namespec: info.state for info in handle.status()}


def program_pids(handle: Supervisor) -> list[int]:
    return [info.pid for info in handle.status() if info.pid]


def test_start_runs_autostart_programs_and_the_block_stops_everything(
    project: Project, start: Callable[..., Supervisor]
) -> None:
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
    handlers = {sig: signal.getsignal(sig) for sig in handled}
    handle = start(exclude=["crash"])

    with handle:
        # start() waited for the autostart programs to leave STARTING.
        assert states(handle) == {
            "idle": "STOPPED",
            "one": "RUNNING",
            "pair:a": "RUNNING",
            "pair:b": "RUNNING",
            "sig": "RUNNING",
        }
        one = handle.status("one")[0]
        assert isinstance(one, ProcessInfo)
        assert (one.name, one.group, one.namespec, one.exitstatus) == ("one", "one", "one", 0)
        assert one.pid is not None and pid_alive(one.pid)
        assert one.description.startswith(f"pid {one.pid}, uptime ")
        assert isinstance(one.started_at, datetime.datetime) and one.started_at.tzinfo
        assert one.stopped_at is None
        assert one.stdout_logfile is not None and one.stdout_logfile.is_file()
        assert one.stderr_logfile is not None and one.stderr_logfile.is_file()
        idle = handle.status("idle")[0]
        assert (idle.pid, idle.started_at, idle.description) == (None, None, "Not started")
        a = handle.status("pair:a")[0]
        assert (a.name, a.group, a.namespec) == ("a", "pair", "pair:a")

        runtime = Path(handle.serverurl[len("unix://") :]).parent
        assert handle.serverurl == f"unix://{runtime / 'supervisor.sock'}"
        assert handle.console_log == runtime / "console.log"
        # supervisord runs in its own session; the caller keeps its signal handlers.
        assert handle.pid is not None and os.getsid(handle.pid) == handle.pid != os.getsid(0)
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
        pids = [handle.pid, *program_pids(handle)]
        assert len(pids) == 5

    assert [pid for pid in pids if pid_alive(pid)] == []
    with pytest.raises(NotRunning, match="supervisord is not running"):
        handle.status()


def test_status_selects_names_groups_and_all(start: Callable[..., Supervisor]) -> None:
    with start(exclude=["crash"]) as handle:
        assert [i.namespec for i in handle.status("pair:*")] == ["pair:a", "pair:b"]
        assert [i.namespec for i in handle.status("one", "pair:b", "one")] == ["one", "pair:b"]
        assert len(handle.status("all")) == len(handle.status()) == 5
        with pytest.raises(NoSuchProcess, match="no such process: nope"):
            handle.status("nope")
        with pytest.raises(NoSuchProcess, match="no such group: nope:"):
            handle.status("nope:*")


def test_start_stop_restart_by_name_group_and_all(start: Callable[..., Supervisor]) -> None:
    with start(exclude=["crash"]) as handle:
        old = handle.status("one")[0].pid
        handle.stop("one")
        assert handle.status("one")[0].state == "STOPPED"
        assert old is not None and not pid_alive(old)
        handle.start("one", "idle")
        assert states(handle)["one"] == states(handle)["idle"] == "RUNNING"

        handle.stop("pair:*")
        assert [i.state for i in handle.status("pair:*")] == ["STOPPED", "STOPPED"]
        handle.start("pair:*")
        assert [i.state for i in handle.status("pair:*")] == ["RUNNING", "RUNNING"]

        before = {i.namespec: i.pid for i in handle.status()}
        handle.restart("one", "pair:*")
        after = {i.namespec: i.pid for i in handle.status()}
        assert all(after[n] != before[n] for n in ("one", "pair:a", "pair:b"))
        assert after["sig"] == before["sig"]
        handle.stop("idle")
        handle.restart("idle")  # restarting a stopped process starts it
        assert states(handle)["idle"] == "RUNNING"

        handle.stop("all")
        assert set(states(handle).values()) == {"STOPPED"}
        handle.stop("all")  # all skips stopped processes, as supervisorctl does
        handle.start("all", wait=False)
        handle.wait_running(timeout=10)
        handle.start("all")  # and skips running ones


def test_errors_are_typed_never_raw_faults(start: Callable[..., Supervisor]) -> None:
    with start() as handle:
        for call in (
            lambda: handle.start("nope"),
            lambda: handle.stop("nope"),
            lambda: handle.start("nope:*"),
            lambda: handle.stop("pair:nope"),
            lambda: handle.tail("nope"),
            lambda: handle.signal("nope", "HUP"),
            lambda: handle.wait_running("nope"),
        ):
            with pytest.raises(NoSuchProcess, match="no such "):
                call()
        with pytest.raises(AlreadyStarted, match=r"^one: already started$"):
            handle.start("one")
        with pytest.raises(NotRunningProcess, match=r"^idle: not running$"):
            handle.stop("idle")
        with pytest.raises(NotRunningProcess, match=r"^idle: not running$"):
            handle.signal("idle", signal.SIGHUP)
        with pytest.raises(SupervisorError, match="not a valid signal") as bad_signal:
            handle.signal("one", "NOSUCHSIG")
        assert type(bad_signal.value) is SupervisorError

        # crash exits before its startsecs: supervisord reports an abnormal termination.
        with pytest.raises(SupervisorError, match=r"^crash: (failed to start|exited before)"):
            handle.start("crash")
        assert handle.status("crash")[0].state == "FATAL"
        with pytest.raises(SupervisorError, match="crash is FATAL"):
            handle.wait_running("crash", timeout=10)
        assert "crasher failing" in handle.tail("crash", stderr=True)
        with pytest.raises(SupervisorError, match="crash") as in_all:
            handle.start("all")
        assert type(in_all.value) is SupervisorError
        assert states(handle)["idle"] == "RUNNING"  # the others started

        with pytest.raises(ValueError, match="name at least one process"):
            handle.stop()
        for base in (AlreadyStarted, NotRunningProcess, NoSuchProcess, NotRunning, ConfigError):
            assert issubclass(base, SupervisorError)


def test_signal_and_tail(start: Callable[..., Supervisor]) -> None:
    with start(exclude=["crash"]) as handle:
        wait_for(lambda: "sig ready" in handle.tail("sig"), what="sig ready")
        handle.signal("sig", signal.SIGUSR1)
        wait_for(lambda: "got SIGUSR1" in handle.tail("sig"), what="SIGUSR1")
        handle.signal("sig", "USR1")
        # One at a time: a pending signal is not queued, two sent at once may arrive as one.
        wait_for(lambda: handle.tail("sig").count("got SIGUSR1") == 2, what="2 signals")
        handle.signal("sig", int(signal.SIGUSR1))
        wait_for(lambda: handle.tail("sig").count("got SIGUSR1") == 3, what="3 signals")
        assert handle.status("sig")[0].state == "RUNNING"

        wait_for(lambda: "one started" in handle.tail("one"), what="one started")
        assert handle.tail("one") == "one started\n"
        assert handle.tail("one", stderr=True) == "one stderr line\n"
        assert handle.tail("one", length=8) == "started\n"
        assert handle.tail("idle") == ""

        wait_for(lambda: "a started" in handle.tail("pair:a"), what="a started")
        handle.signal("pair:*", "TERM")  # a group; they exit and are restarted
        wait_for(lambda: handle.tail("pair:a").count("a started") == 2, what="a restarted")


def test_update_adds_changes_and_removes_groups(
    project: Project, start: Callable[..., Supervisor]
) -> None:
    with start(exclude=["crash"]) as handle:
        one_pid = handle.status("one")[0].pid
        handle.stop("sig")  # an autostart program stopped by hand stays stopped
        conf = CONF.replace("[group:pair]\nprograms=a,b\n", "")  # a and b: own groups now
        conf = conf.replace(sleeper("idle"), sleeper("idle2"))
        conf += f"\n[program:three]\ncommand={sleeper('three')}\nstartsecs=0\n"
        project.write("supervisord.conf", conf)

        result = handle.update()

        assert isinstance(result, UpdateResult)
        assert (sorted(result.added), result.changed, result.removed) == (
            ["a", "b", "three"],
            ("idle",),
            ("pair",),
        )
        assert states(handle) == {
            "a": "RUNNING",
            "b": "RUNNING",
            "idle": "STOPPED",
            "one": "RUNNING",
            "sig": "STOPPED",
            "three": "RUNNING",
        }
        assert handle.status("one")[0].pid == one_pid  # unchanged groups are left alone
        assert handle.update() == UpdateResult()

        project.write("supervisord.conf", conf + "\n[program:broken]\nstartsecs=abc\ncommand=x\n")
        with pytest.raises(ConfigError, match="startsecs"):
            handle.update()
        assert "broken" not in states(handle)


def test_reload_restarts_supervisord_with_fresh_config(
    project: Project, start: Callable[..., Supervisor]
) -> None:
    with start(exclude=["crash"]) as handle:
        before = handle.status("one")[0].pid
        project.write("supervisord.conf", CONF + f"\n[program:extra]\ncommand={sleeper('x')}\n")

        handle.reload()

        assert handle.status("one")[0].pid != before
        assert before is not None and not pid_alive(before)
        # extra has the default startsecs=1: reload() waited for it to leave STARTING.
        assert states(handle)["extra"] == "RUNNING"
        assert handle.pid is not None and pid_alive(handle.pid)

        # A broken config is refused up front: the running programs are kept.
        project.write("supervisord.conf", CONF + "\n[program:broken]\nstartsecs=abc\ncommand=x\n")
        running = {i.namespec: i.pid for i in handle.status()}
        with pytest.raises(ConfigError, match=r"\[program:broken\].*startsecs"):
            handle.reload()
        assert {i.namespec: i.pid for i in handle.status()} == running


def test_start_waits_for_dependents_but_not_for_what_never_starts(
    project: Project, start: Callable[..., Supervisor]
) -> None:
    project.write(
        "supervisord.conf",
        f"""
        [program:db]
        command={sleeper("db")}
        startsecs=0
        healthcheck=cmd:{sys.executable} -c "pass"
        healthcheck_interval=0.2

        [program:web]
        command={sleeper("web")}
        startsecs=0
        depends_on=db:healthy

        [program:broken]
        command={{{{ PYTHON }}}} {PROGRAMS / "crasher.py"}
        startsecs=1
        startretries=0
        autorestart=false

        [program:after]
        command={sleeper("after")}
        depends_on=broken
        """,
    )
    began = time.monotonic()
    with start(timeout=20) as handle:
        # web waited (shown STARTING) for db to be healthy; start() waited for web.
        assert states(handle) == {
            "after": "STOPPED",
            "broken": "FATAL",
            "db": "RUNNING",
            "web": "RUNNING",
        }
        assert time.monotonic() - began < 10  # after never starts: not waited for
        assert handle.status("db")[0].health == "healthy"
        assert handle.status("web")[0].health is None
        assert handle.status("after")[0].description.startswith("not started: ")


def test_wait_running(start: Callable[..., Supervisor]) -> None:
    with start(exclude=["crash"]) as handle:
        infos = handle.wait_running("one", "pair:*")
        assert [i.namespec for i in infos] == ["one", "pair:a", "pair:b"]
        with pytest.raises(SupervisorError, match=r"not RUNNING after 0.2 s: idle STOPPED"):
            handle.wait_running("idle", timeout=0.2)
        handle.start("idle", wait=False)
        assert handle.wait_running("idle", timeout=10)[0].state == "RUNNING"


def test_a_block_that_raises_still_leaves_no_process(start: Callable[..., Supervisor]) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), start(exclude=["crash"]) as handle:
        assert handle.pid is not None
        pids = [handle.pid, *program_pids(handle)]
        raise RuntimeError("boom")
    assert len(pids) == 5
    assert [pid for pid in pids if pid_alive(pid)] == []
    handle.shutdown()  # shutting down what is already gone is no error for start()'s handle


def test_shutdown_waits_until_every_program_is_gone(start: Callable[..., Supervisor]) -> None:
    handle = start(exclude=["crash"])
    pids = program_pids(handle)
    handle.shutdown(timeout=20)
    assert handle.pid is not None and not pid_alive(handle.pid)
    assert [pid for pid in pids if pid_alive(pid)] == []
    with pytest.raises(NotRunning):
        handle.start("one")


def test_start_errors(project: Project, start: Callable[..., Supervisor]) -> None:
    with start(exclude=["crash"]) as handle:
        with pytest.raises(StartError, match="already running for this project"):
            start()
        assert handle.status("one")[0].state == "RUNNING"

    # supervisord itself rejects the value: a ConfigError, with its reason.
    project.write("supervisord.conf", CONF + "\n[program:bad]\ncommand=x\nstartsecs=abc\n")
    with pytest.raises(ConfigError, match=r"\[program:bad\].*startsecs") as error:
        start()
    assert "CommandError" not in str(error.value)

    # What djsupervisor can tell before starting anything is a ConfigError.
    with pytest.raises(ConfigError, match="no program named 'nope'"):
        start(launch=["nope"])
    project.write("supervisord.conf", "")
    with pytest.raises(ConfigError, match="no programs configured"):
        start()
    with pytest.raises(TypeError, match="sequence of program names"):
        start(exclude="crash")


def test_start_times_out_while_a_program_is_starting(
    project: Project, start: Callable[..., Supervisor]
) -> None:
    project.write("supervisord.conf", f"[program:slow]\ncommand={sleeper('slow')}\nstartsecs=30\n")
    began = time.monotonic()
    with pytest.raises(StartError, match=r"still starting after .*: slow STARTING"):
        start(timeout=1.5)
    assert time.monotonic() - began < 15
    # start() stopped what it had started; a new start works at once.
    with start(wait=False) as handle:
        assert states(handle) in ({"slow": "STARTING"}, {"slow": "STOPPED"})


def test_connect_to_a_daemonized_instance(project: Project) -> None:
    out, err, code = project.manage("supervisor", "--daemonize", "--exclude=crash")
    assert (err, code) == ("", 0)
    assert "running in the background" in out
    daemon = int(out.split("(pid ")[1].split(")")[0])

    # The daemon's credentials derive from the project's SECRET_KEY, not ours.
    with pytest.raises(NotRunning, match="refused our credentials"):
        djsupervisor.connect(project_dir=project.path).status()

    with override_settings(SECRET_KEY=PROJECT_SECRET):
        handle = djsupervisor.connect(project_dir=project.path)
        assert handle.pid is None
        assert states(handle)["one"] == "RUNNING"
        handle.stop("one")
        handle.start("one")
        pids = program_pids(handle)
        assert len(pids) == 4
        with handle:
            pass
    assert [pid for pid in [daemon, *pids] if pid_alive(pid)] == []
    with pytest.raises(NotRunning, match="supervisord is not running"):
        handle.shutdown()


def test_connect_when_nothing_runs(project: Project) -> None:
    handle = djsupervisor.connect(project_dir=project.path)
    for call in (handle.status, lambda: handle.start("one"), handle.update, handle.shutdown):
        with pytest.raises(NotRunning, match="supervisord is not running"):
            call()
    with handle:  # leaving the block is fine when nothing runs
        pass


def test_get_merged_config(project: Project) -> None:
    text = djsupervisor.get_merged_config(
        project_dir=project.path, exclude=["crash"], nolaunch=["one"], launch=["idle"]
    )
    assert "[program:crash]" not in text
    one = text.split("[program:one]\n")[1].split("\n\n")[0]
    idle = text.split("[program:idle]\n")[1].split("\n\n")[0]
    assert "autostart = false" in one
    assert "autostart = true" in idle
    assert "[unix_http_server]" in text
    other = project.write("other.conf", f"[program:solo]\ncommand={sleeper('solo')}\n")
    solo = djsupervisor.get_merged_config(project_dir=project.path, config_file=other)
    assert "[program:solo]" in solo and "[program:one]" not in solo
    with pytest.raises(ConfigError, match="no program named 'nope'"):
        djsupervisor.get_merged_config(project_dir=project.path, exclude=["nope"])


def test_start_from_a_script_uses_its_settings_module_and_path(project: Project) -> None:
    # The project is importable only through the script's sys.path, not PYTHONPATH.
    script = project.write(
        "script.py",
        f"""
        import sys
        sys.path.insert(0, {str(project.path)!r})
        import djsupervisor

        with djsupervisor.start(exclude=["crash"]) as handle:
            print(sorted(i.namespec for i in handle.status() if i.state == "RUNNING"))
            print(handle.pid, *(i.pid for i in handle.status() if i.pid))
        print("done")
        """,
    )
    env = project.env(DJANGO_SETTINGS_MODULE="testproj.settings", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.stderr, proc.returncode) == ("", 0)
    running, pids, done = proc.stdout.splitlines()
    assert (running, done) == ("['one', 'pair:a', 'pair:b', 'sig']", "done")
    assert len(pids.split()) == 5
    assert [pid for pid in map(int, pids.split()) if pid_alive(pid)] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_supervisord_stops_when_the_caller_is_killed(project: Project) -> None:
    code = """
        import djsupervisor, sys
        handle = djsupervisor.start(exclude=["crash"])
        print(handle.pid, *(i.pid for i in handle.status() if i.pid), flush=True)
        sys.stdin.read()
    """
    script = project.write("script.py", code)
    caller = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=project.path,
        env=project.env(DJANGO_SETTINGS_MODULE="testproj.settings"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    project.started.append(caller)
    assert caller.stdout is not None
    pids = [int(pid) for pid in caller.stdout.readline().split()]
    assert len(pids) == 5 and all(pid_alive(pid) for pid in pids)

    caller.kill()
    caller.wait()

    # supervisord got SIGTERM from the kernel (parent death) and stopped cleanly.
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), what="supervisord and programs gone")


def test_pytest_plugin_runs_programs_for_the_session(project: Project) -> None:
    project.write("pytest.ini", "[pytest]\n")
    project.write(
        "conftest.py",
        """
        import pytest

        @pytest.fixture(scope="session")
        def supervisor_options():
            return {"exclude": ["crash"], "launch": ["idle"]}
        """,
    )
    project.write(
        "test_with_programs.py",
        """
        def test_programs_run(supervisor):
            supervisor.wait_running("idle")
            assert {i.name: i.state for i in supervisor.status()}["one"] == "RUNNING"
            print("PIDS", supervisor.pid, *(i.pid for i in supervisor.status() if i.pid))

        def test_same_instance(supervisor):
            supervisor.stop("idle")
        """,
    )
    proc = subprocess.run(
        [*PYTEST, "-p", "djsupervisor.testing"],
        cwd=project.path,
        # Load exactly this plugin, whether or not the entry point is installed.
        env=project.env(
            DJANGO_SETTINGS_MODULE="testproj.settings", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    pids = [int(p) for p in proc.stdout.split("PIDS ")[1].split("\n")[0].split()]
    assert len(pids) == 6 and [pid for pid in pids if pid_alive(pid)] == []


def test_pytest_plugin_is_registered_as_an_entry_point() -> None:
    import configparser

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    entry = setup["options.entry_points"]["pytest11"].strip()
    assert entry == "djsupervisor = djsupervisor.testing"
    import djsupervisor.testing

    assert callable(djsupervisor.testing.supervisor)


def test_importing_djsupervisor_does_not_touch_settings() -> None:
    code = textwrap.dedent(
        """
        import sys
        import djsupervisor
        conf = sys.modules.get("django.conf")
        assert conf is None or not conf.settings.configured
        assert "djsupervisor.client.api" not in sys.modules
        assert djsupervisor.start.__module__ == "djsupervisor.client.api"
        from django.conf import settings
        print(settings.configured)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert (proc.stdout, proc.stderr, proc.returncode) == ("False\n", "", 0)
