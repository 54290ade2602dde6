"""Orchestration: depends_on, health checks, oneshot and essential programs, stop order.

The integration tests run real ``manage.py supervisor`` processes on throw-away projects;
their programs are a small script written into each project (``child.py``), gated by
files the test creates, so every state is observed on purpose rather than by timing.
The probe tests drive ``djsupervisor.health`` directly against real local servers.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import select
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from djsupervisor.config.rules import Healthcheck
from djsupervisor.server.health import CommandProbe, SocketProbe
from tests.utils import (
    LineReader,
    Project,
    Rpc,
    descendants,
    make_project,
    pid_alive,
    program,
    wait_dead,
)

CHILD_PY = '''\
"""A test program: wait for a gate file, then serve HTTP, exit or sleep; stamp SIGTERM."""

import argparse
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("name")
parser.add_argument("--gate", help="wait until this file exists")
parser.add_argument("--port", type=int, help="then serve HTTP on this port")
parser.add_argument("--fail", help="answer 500 while this file exists")
parser.add_argument("--exit", type=int, help="then exit with this status")
parser.add_argument("--stamps", help="on SIGTERM, append NAME TIME to this file")
parser.add_argument("--ready", help="once up (listening), write the time to this file")
args = parser.parse_args()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        failing = args.fail is not None and os.path.exists(args.fail)
        self.send_response(500 if failing else 200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def terminated(signum, frame):
    with open(args.stamps, "a") as stamps:
        stamps.write(f"{args.name} {time.time():.6f}\\n")
    sys.exit(0)


if args.stamps:
    signal.signal(signal.SIGTERM, terminated)
while args.gate and not os.path.exists(args.gate):
    time.sleep(0.02)
server = HTTPServer(("127.0.0.1", args.port), Handler) if args.port else None
if args.ready:
    with open(args.ready + ".tmp", "w") as ready:
        ready.write(repr(time.time()))
    os.replace(args.ready + ".tmp", args.ready)
print(f"{args.name} up", flush=True)
if args.exit is not None:
    sys.exit(args.exit)
if server is not None:
    server.serve_forever()
while True:
    time.sleep(3600)
'''

UPTIME = r"pid (\d+), uptime \d+:\d\d:\d\d"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child(root: Path, name: str, *options: str) -> str:
    """A ``command`` running the project's ``child.py`` (written by ``Lab.project``)."""
    return " ".join([f"{{{{ PYTHON }}}} -u {root / 'child.py'} {name}", *options])


class Orchestrated:
    """A running ``manage.py supervisor`` with its console output and an XML-RPC line."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.server = project.start("--noreload")
        self.console = LineReader(self.server)
        self.rpc = Rpc(project)

    def info(self) -> dict[str, dict[str, Any]]:
        return self.rpc.info()

    def wait(
        self, predicate: Callable[[dict[str, dict[str, Any]]], bool], what: str
    ) -> dict[str, dict[str, Any]]:
        """Poll process info until ``predicate`` holds; fail early if the server died."""
        deadline = time.monotonic() + 30
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            assert self.server.poll() is None, f"server exited; output:\n{self.console.text}"
            with contextlib.suppress(OSError, xmlrpc.client.Fault):
                seen = self.info()
                if predicate(seen):
                    return seen
            time.sleep(0.05)
        summary = {n: (i["statename"], i["description"]) for n, i in seen.items()}
        raise AssertionError(f"timed out waiting for {what}: {summary}\n{self.console.text}")

    def status(self) -> dict[str, tuple[str, str]]:
        """``manage.py supervisor status`` as ``{name: (state, description)}``."""
        out, err, code = self.project.manage("supervisor", "status")
        assert err == ""
        rows = {}
        for line in out.splitlines():
            name, state, *rest = line.split(None, 2)
            rows[name] = (state, rest[0].strip() if rest else "")
        # supervisorctl's status exits 3 when a program is not up (or on its way).
        running = all(state in ("RUNNING", "STARTING", "BACKOFF") for state, _ in rows.values())
        assert code == (0 if running else 3), out
        return rows

    def pid_of(self, name: str) -> int:
        """The pid ``name`` was last spawned with, from the console."""
        return int(re.findall(rf"spawned: '{name}' with pid (\d+)", self.console.text)[-1])

    def spawn_order(self) -> list[str]:
        return re.findall(r"spawned: '([^']+)' with pid", self.console.text)

    def line_index(self, needle: str) -> int:
        for i, line in enumerate(self.console.lines):
            if needle in line:
                return i
        raise AssertionError(f"{needle!r} not in output:\n{self.console.text}")

    def close(self) -> None:
        """Stop the server if it still runs, and read the rest of its output."""
        if self.server.poll() is None:
            self.server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.console.finish(timeout=20)


class Lab:
    """A test's project (with ``child.py``) and runs; ``close()`` ends every process."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "proj"
        self.projects: list[Project] = []
        self.runs: list[Orchestrated] = []

    def project(self, conf: str, **kwargs: Any) -> Project:
        project = make_project(self.root, conf, **kwargs)
        project.write("child.py", CHILD_PY)
        self.projects.append(project)
        return project

    def run(self, project: Project) -> Orchestrated:
        run = Orchestrated(project)
        self.runs.append(run)
        return run

    def close(self) -> None:
        try:
            for run in self.runs:
                run.close()
        finally:
            for project in self.projects:
                project.cleanup()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def status_of(info: dict[str, Any]) -> tuple[str, str]:
    return info["statename"], info["description"]


# --- a real chain: migrate (oneshot) -> web (runserver, http check) -> worker --------------

URLS_PY = """\
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("health/", lambda request: HttpResponse("ok"))]
"""


def test_oneshot_migrate_then_runserver_healthy_then_worker(lab: Lab) -> None:
    root = lab.root
    port = free_port()
    gate = root / "go"
    # The oneshot waits for the test's go-ahead, so the waiting states can be observed.
    wait_for_gate = f'while [ ! -e {gate} ]; do sleep 0.02; done; exec "$0" "$@"'
    migrate = f"sh -c '{wait_for_gate}' {{{{ PYTHON }}}} {root / 'manage.py'} migrate --noinput"
    project = lab.project(
        f"""
        [program:worker]
        command={child(root, "worker")}
        depends_on = web:healthy
        startsecs = 0
        priority = 1

        [program:web]
        command={{{{ PYTHON }}}} {root / "manage.py"} runserver 127.0.0.1:{port} --noreload
        depends_on = migrate:completed
        healthcheck = http://127.0.0.1:{port}/health/
        healthcheck_interval = 0.2
        startsecs = 0
        priority = 2

        [program:migrate]
        command={migrate}
        oneshot = true
        priority = 3
        """,
        extra_settings=(
            "INSTALLED_APPS += ['django.contrib.contenttypes']\n"
            "ROOT_URLCONF = 'testproj.urls'\nALLOWED_HOSTS = ['127.0.0.1']\n"
        ),
    )
    project.write("testproj/urls.py", URLS_PY)
    run = lab.run(project)
    run.wait(lambda i: i["migrate"]["statename"] == "RUNNING", "migrate RUNNING")
    # The priorities say worker first: the dependencies hold both back.
    status = run.status()
    assert status["migrate"][0] == "RUNNING"
    assert status["web"] == ("STARTING", "waiting for migrate:completed")
    assert status["worker"] == ("STARTING", "waiting for web:healthy")
    assert run.spawn_order() == ["migrate"]

    gate.touch()
    info = run.wait(
        lambda i: i["worker"]["statename"] == "RUNNING" and i["web"].get("health") == "healthy",
        "worker RUNNING",
    )
    assert info["migrate"]["statename"] == "EXITED"
    assert info["migrate"]["exitstatus"] == 0
    assert info["web"]["health"] == "healthy"
    assert "health" not in info["worker"]  # no health check, no health key
    status = run.status()
    assert status["migrate"][0] == "EXITED"
    web_state, web_description = status["web"]
    assert web_state == "RUNNING"
    assert re.fullmatch(UPTIME + ", healthy", web_description), web_description
    assert status["worker"][0] == "RUNNING"
    assert re.fullmatch(UPTIME, status["worker"][1])

    # The order of events on the console: each step only after the one it depends on.
    steps = [
        "spawned: 'migrate'",
        "exited: migrate (exit status 0; expected)",
        "spawned: 'web'",
        "health: web is healthy (HTTP 200)",
        "spawned: 'worker'",
    ]
    assert [run.line_index(step) for step in steps] == sorted(run.line_index(s) for s in steps)
    assert run.spawn_order() == ["migrate", "web", "worker"]
    # The oneshot ran once, to completion, and migrated the project's SQLite database.
    with contextlib.closing(sqlite3.connect(root / "db.sqlite3")) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "django_content_type" in tables
    assert "django_migrations" in tables
    assert run.console.text.count("spawned: 'migrate'") == 1

    run.server.terminate()
    assert run.console.finish() == 0, run.console.text
    # Stopped dependents first.
    assert run.line_index("stopped: worker") < run.line_index("stopped: web")


# --- a failing oneshot ------------------------------------------------------------------


FAILING_ONESHOT = """
[program:migrate]
command={migrate}
oneshot = true

[program:web]
command={web}
depends_on = migrate:completed
startsecs = 0

[program:worker]
command={worker}
depends_on = web
startsecs = 0

[program:side]
command={side}
startsecs = 0
"""


def failing_oneshot(lab: Lab) -> Orchestrated:
    root = lab.root
    project = lab.project(
        FAILING_ONESHOT.format(
            migrate=child(root, "migrate", "--exit", "3"),
            web=child(root, "web"),
            worker=child(root, "worker"),
            side=child(root, "side"),
        )
    )
    run = lab.run(project)
    run.wait(
        lambda i: i["migrate"]["statename"] == "EXITED" and i["side"]["statename"] == "RUNNING",
        "migrate EXITED",
    )
    return run


def test_failing_oneshot_keeps_its_dependents_from_starting(lab: Lab) -> None:
    run = failing_oneshot(lab)
    reason = "not started: dependency migrate failed (exit status 3)"
    run.wait(lambda i: i["web"]["description"] == reason, "web's reason")
    status = run.status()
    assert status["migrate"][0] == "EXITED"
    assert status["web"] == ("STOPPED", reason)
    assert status["side"][0] == "RUNNING"  # unrelated programs are unaffected
    # Not restarted, and the dependents never spawned.
    assert run.spawn_order().count("migrate") == 1
    assert "web" not in run.spawn_order()
    assert "worker" not in run.spawn_order()
    assert f"web: {reason}" in run.console.text
    # Starting it by hand is refused: its dependency will never complete.
    out, err, code = run.project.manage("supervisor", "start", "web")
    assert (out, err, code) == ("web: ERROR (spawn error)\n", "", 7)
    assert "web" not in run.spawn_order()


def test_failing_oneshot_reason_reaches_indirect_dependents(lab: Lab) -> None:
    run = failing_oneshot(lab)
    run.wait(lambda i: i["web"]["description"].startswith("not started"), "web's reason")
    state, description = status_of(run.info()["worker"])
    assert state == "STOPPED"
    assert description.startswith("not started: dependency web"), description


# --- essential programs ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["exited", "fatal"])
def test_essential_program_gone_stops_everything_and_fails(lab: Lab, how: str) -> None:
    root = lab.root
    if how == "exited":
        # Up and RUNNING, then exits unexpectedly with no restart allowed.
        db, startsecs = child(root, "db", "--gate", str(root / "die"), "--exit", "3"), 0
    else:
        # Exits within startsecs every time: BACKOFF, then FATAL.
        db, startsecs = child(root, "db", "--exit", "3"), 1
    project = lab.project(
        f"""
        [program:db]
        command={db}
        startsecs = {startsecs}
        startretries = 1
        autorestart = false
        essential = true

        [program:web]
        command={child(root, "web")}
        startsecs = 0

        [program:other]
        command={child(root, "other")}
        startsecs = 0
        """
    )
    run = lab.run(project)
    # Watched on the console only: with FATAL, the server may be gone within a second.
    run.console.wait_for("| web up")
    run.console.wait_for("| other up")
    if how == "exited":
        run.console.wait_for("success: db entered RUNNING state")
        (root / "die").touch()
    pids = [run.pid_of("web"), run.pid_of("other")]
    code = run.console.finish()
    assert code == 1, run.console.text
    last = run.console.lines[-1]
    if how == "exited":
        assert last == (
            "CommandError: essential program db is gone (exited: Bad exit code 3); "
            "stopped everything"
        )
    else:
        assert last == (
            "CommandError: essential program db is gone (FATAL: Exited too quickly "
            "(process log may have details)); stopped everything"
        )
        assert "gave up: db entered FATAL state" in run.console.text
    # Every other program was stopped by supervisord, and none outlives manage.py.
    assert "stopped: web (terminated by SIGTERM)" in run.console.text
    assert "stopped: other (terminated by SIGTERM)" in run.console.text
    wait_dead(pids, timeout=5)
    assert "Traceback" not in run.console.text


def test_nonessential_program_gone_keeps_the_rest(lab: Lab) -> None:
    root = lab.root
    project = lab.project(
        f"""
        [program:flaky]
        command={child(root, "flaky", "--exit", "3")}
        autorestart = false
        startsecs = 0

        [program:web]
        command={child(root, "web")}
        startsecs = 0
        """
    )
    run = lab.run(project)
    run.wait(
        lambda i: i["flaky"]["statename"] == "EXITED" and i["web"]["statename"] == "RUNNING",
        "flaky EXITED, web RUNNING",
    )
    assert run.server.poll() is None


# --- tcp and cmd health checks, start of a waiting program ---------------------------------


def test_tcp_and_cmd_healthchecks(lab: Lab) -> None:
    root = lab.root
    port = free_port()
    flag = root / "flag"
    project = lab.project(
        f"""
        [program:db]
        command={child(root, "db", "--gate", str(root / "open"), "--port", str(port))}
        startsecs = 0
        healthcheck = tcp://127.0.0.1:{port}
        healthcheck_interval = 0.1
        healthcheck_start_period = 60

        [program:app]
        command={child(root, "app")}
        startsecs = 0
        depends_on = db:healthy

        [program:flagged]
        command={child(root, "flagged")}
        startsecs = 0
        healthcheck = cmd:test -e {flag}
        healthcheck_interval = 0.1
        healthcheck_retries = 1

        [program:late]
        command={child(root, "late")}
        startsecs = 0
        autostart = false
        depends_on = flagged:healthy

        [program:slow]
        command={child(root, "slow")}
        startsecs = 0
        healthcheck = cmd:sleep 30
        healthcheck_timeout = 0.3
        healthcheck_retries = 1
        """
    )
    run = lab.run(project)
    run.wait(
        lambda i: (
            i["flagged"].get("health") == "unhealthy" and i["slow"].get("health") == "unhealthy"
        ),
        "flagged and slow unhealthy",
    )
    # A command that outlives its timeout is killed; the loop never waited for it.
    assert "health: slow is unhealthy (command took longer than 0.3 s)" in run.console.text
    assert "health: flagged is unhealthy (command exited with 1)" in run.console.text

    # Start of a program whose dependency is not met: accepted, and it waits.
    out, err, code = project.manage("supervisor", "start", "late")
    assert (out, err, code) == ("late: started\n", "", 0)
    status = run.status()
    # Failures within the start period do not count: db is still "starting".
    assert status["db"][0] == "RUNNING"
    assert re.fullmatch(UPTIME + ", starting", status["db"][1]), status["db"]
    assert status["app"] == ("STARTING", "waiting for db:healthy")
    assert re.fullmatch(UPTIME + ", unhealthy", status["flagged"][1]), status["flagged"]
    assert status["late"] == ("STARTING", "waiting for flagged:healthy")
    assert not {"app", "late"} & set(run.spawn_order())

    (root / "open").touch()
    info = run.wait(lambda i: i["app"]["statename"] == "RUNNING", "app RUNNING")
    assert info["db"]["health"] == "healthy"
    assert "health: db is healthy (port open)" in run.console.text
    assert "late" not in run.spawn_order()

    flag.touch()
    info = run.wait(lambda i: i["late"]["statename"] == "RUNNING", "late RUNNING")
    assert info["flagged"]["health"] == "healthy"
    assert run.line_index("health: flagged is healthy (command exited with 0)") < run.line_index(
        "spawned: 'late'"
    )

    # Command probes (one every 0.1 s) are reaped as they end: no zombies pile up.
    def zombies() -> list[int]:
        return [pid for pid in descendants([run.server.pid]) if not pid_alive(pid)]

    project.wait_for(lambda: not zombies(), 5, "no zombie children")


def test_dependent_starts_promptly_once_its_port_opens(lab: Lab) -> None:
    root = lab.root
    port = free_port()
    opened, started = root / "opened", root / "started"
    db = child(
        root, "db", "--gate", str(root / "open"), "--port", str(port), "--ready", str(opened)
    )
    project = lab.project(
        f"""
        [program:db]
        command={db}
        startsecs = 0
        healthcheck = tcp://127.0.0.1:{port}
        healthcheck_interval = 0.05

        [program:app]
        command={child(root, "app", "--ready", str(started))}
        startsecs = 0
        depends_on = db:healthy
        """
    )
    run = lab.run(project)
    run.console.wait_for("app: waiting for db:healthy")
    # From here on, no request to supervisord: one would wake its loop and hide the delay.
    (root / "open").touch()
    run.console.wait_for("| app up")
    delay = float(started.read_text()) - float(opened.read_text())
    # One probe interval, a spawn and a Python start-up; not the loop's 1 s fallback wake-up.
    assert delay < 0.5, f"app started {delay:.3f} s after db's port opened"


def test_stop_of_a_waiting_program_cancels_it(lab: Lab) -> None:
    root = lab.root
    flag = root / "flag"
    project = lab.project(
        f"""
        [program:base]
        command={child(root, "base")}
        startsecs = 0
        healthcheck = cmd:test -e {flag}
        healthcheck_interval = 0.1

        [program:dependent]
        command={child(root, "dependent")}
        startsecs = 0
        depends_on = base:healthy
        """
    )
    run = lab.run(project)
    run.wait(
        lambda i: i["dependent"]["description"] == "waiting for base:healthy", "dependent waits"
    )
    out, err, code = project.manage("supervisor", "stop", "dependent")
    assert (out, err, code) == ("dependent: stopped\n", "", 0)
    flag.touch()
    run.wait(lambda i: i["base"].get("health") == "healthy", "base healthy")
    # A few more loop rounds with the dependency met: still not started.
    time.sleep(0.5)
    assert status_of(run.info()["dependent"])[0] == "STOPPED", run.console.text
    assert "dependent" not in run.spawn_order(), run.console.text


# --- healthcheck_restart -------------------------------------------------------------------


def test_healthcheck_restart_replaces_a_program_that_turns_unhealthy(lab: Lab) -> None:
    root = lab.root
    fail = root / "fail"
    web_port, steady_port = free_port(), free_port()
    project = lab.project(
        f"""
        [program:__defaults__]
        healthcheck_interval = 0.1
        healthcheck_retries = 2
        startsecs = 0

        [program:web]
        command={child(root, "web", "--port", str(web_port), "--fail", str(fail))}
        healthcheck = http://127.0.0.1:{web_port}/
        healthcheck_restart = true

        [program:steady]
        command={child(root, "steady", "--port", str(steady_port), "--fail", str(fail))}
        healthcheck = http://127.0.0.1:{steady_port}/
        """
    )
    run = lab.run(project)
    info = run.wait(
        lambda i: all(i[n].get("health") == "healthy" for n in ("web", "steady")), "both healthy"
    )
    first, steady = info["web"]["pid"], info["steady"]["pid"]

    fail.touch()
    info = run.wait(
        lambda i: i["web"]["pid"] not in (0, first) and i["steady"].get("health") == "unhealthy",
        "web restarted",
    )
    fail.unlink()
    info = run.wait(lambda i: i["web"].get("health") == "healthy", "new web healthy")
    second = info["web"]["pid"]
    assert second != first
    assert not pid_alive(first)
    assert "health: web is unhealthy (HTTP 500)" in run.console.text
    assert "health: restarting web" in run.console.text
    # Without healthcheck_restart, unhealthy is reported, nothing more.
    assert info["steady"]["pid"] == steady
    assert "health: steady is unhealthy (HTTP 500)" in run.console.text
    assert "health: restarting steady" not in run.console.text
    assert run.console.text.count("spawned: 'steady'") == 1
    status = run.status()
    assert re.fullmatch(UPTIME + ", healthy", status["web"][1]), status["web"]
    assert status["web"][1].startswith(f"pid {second},")


# --- start and stop order ------------------------------------------------------------------


def test_start_in_dependency_order_stop_in_reverse(lab: Lab) -> None:
    root = lab.root
    stamps = root / "stamps"

    def prog(name: str, priority: int, depends: str = "") -> str:
        return (
            f"[program:{name}]\ncommand={child(root, name, '--stamps', str(stamps))}\n"
            f"startsecs = 0\npriority = {priority}\n"
            + (f"depends_on = {depends}\n" if depends else "")
        )

    # Priorities alone would start c, b, d, a and stop a first: the dependencies win.
    project = lab.project(
        "\n".join(
            [
                prog("a", 900),
                prog("b", 200, "a"),
                prog("c", 100, "b"),
                prog("d", 300, "a"),
                prog("solo", 500),
            ]
        )
    )
    run = lab.run(project)
    run.wait(lambda i: all(e["statename"] == "RUNNING" for e in i.values()), "all RUNNING")
    order = run.spawn_order()
    assert order.index("a") < order.index("b") < order.index("c")
    assert order.index("a") < order.index("d")

    for name in ("a", "b", "c", "d", "solo"):
        run.console.wait_for(f"| {name} up")  # its SIGTERM handler is in place
    run.server.terminate()
    assert run.console.finish() == 0, run.console.text
    times = {
        name: float(when)
        for name, when in (line.split() for line in stamps.read_text().splitlines())
    }
    assert set(times) == {"a", "b", "c", "d", "solo"}
    assert times["c"] < times["b"] < times["a"]
    assert times["d"] < times["a"]


# --- bad input, from the command line -----------------------------------------------------


def test_cycle_is_refused_before_anything_starts(lab: Lab) -> None:
    root = lab.root
    marker = root / "started"
    project = lab.project(
        f"""
        [program:a]
        command=touch {marker}
        depends_on = b

        [program:b]
        command=touch {marker}
        depends_on = a

        [program:free]
        command=touch {marker}
        """
    )
    for args in (["getconfig"], ["--noreload"]):
        out, err, code = project.manage("supervisor", *args)
        assert (out, code) == ("", 1)
        # One line, naming where the cycle is defined.
        assert err.startswith("CommandError: ")
        assert err.endswith("depends_on cycle: a -> b -> a\n")
        assert err.count("\n") == 1
    assert not marker.exists()
    out, err, code = project.manage("supervisor", "status")
    assert out == ""
    assert "supervisord is not running" in err
    assert code == 1


def test_bad_condition_is_refused_naming_file_and_section(lab: Lab) -> None:
    root = lab.root
    project = lab.project(
        f"""
        [program:web]
        command={program("sleeper.py", "web")}

        [program:worker]
        command={program("sleeper.py", "worker")}
        depends_on = web:completed
        """
    )
    out, err, code = project.manage("supervisor", "--noreload")
    assert (out, code) == ("", 1)
    assert err == (
        f"CommandError: {root / 'supervisord.conf'}:5: [program:worker]: depends_on "
        "web:completed: only a oneshot=true program can complete\n"
    )


def test_dependencies_hold_for_programs_in_a_group(lab: Lab) -> None:
    root = lab.root
    project = lab.project(
        f"""
        [program:base]
        command={child(root, "base", "--gate", str(root / "never"), "--exit", "0")}
        oneshot = true

        [program:member]
        command={child(root, "member")}
        startsecs = 0
        depends_on = base:completed

        [group:grp]
        programs = member
        """
    )
    run = lab.run(project)
    run.wait(lambda i: i["base"]["statename"] == "RUNNING", "base RUNNING")
    time.sleep(0.5)
    assert "member" not in run.spawn_order()
    assert status_of(run.info()["member"]) == ("STARTING", "waiting for base:completed")


# --- the probes themselves, against real local servers -----------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/ok" else 503
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def drive(probe: SocketProbe, socket_map: dict[int, Any], result: list[tuple[bool, str]]) -> None:
    """Run the poll loop supervisord would, until the probe reports."""
    deadline = time.monotonic() + 5
    while not result:
        assert time.monotonic() < deadline, "probe never reported"
        readers = [fd for fd, d in socket_map.items() if d.readable()]
        writers = [fd for fd, d in socket_map.items() if d.writable()]
        r, w, _ = select.select(readers, writers, [], 0.1)
        for fd in w:
            if fd in socket_map:
                socket_map[fd].handle_write_event()
        for fd in r:
            if fd in socket_map:
                socket_map[fd].handle_read_event()
    assert socket_map == {}  # a finished probe leaves the loop's map


def probe(kind: str, port: int, path: str = "/") -> tuple[bool, str]:
    socket_map: dict[int, Any] = {}
    result: list[tuple[bool, str]] = []
    check = Healthcheck(kind, host="127.0.0.1", port=port, path=path)  # type: ignore[arg-type]
    sock_probe = SocketProbe(check, socket_map, lambda ok, detail: result.append((ok, detail)))
    drive(sock_probe, socket_map, result)
    return result[0]


def test_tcp_probe(http_server: http.server.HTTPServer) -> None:
    assert probe("tcp", http_server.server_address[1]) == (True, "port open")
    ok, detail = probe("tcp", free_port())
    assert not ok
    assert detail == "connect failed: Connection refused"


def test_http_probe(http_server: http.server.HTTPServer) -> None:
    port = http_server.server_address[1]
    assert probe("http", port, "/ok") == (True, "HTTP 200")
    assert probe("http", port, "/broken") == (False, "HTTP 503")
    assert probe("http", free_port(), "/ok")[0] is False


def test_http_probe_of_a_server_that_is_not_http() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        socket_map: dict[int, Any] = {}
        result: list[tuple[bool, str]] = []
        check = Healthcheck("http", host="127.0.0.1", port=port)
        sock_probe = SocketProbe(check, socket_map, lambda ok, d: result.append((ok, d)))
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH\r\n")
            drive(sock_probe, socket_map, result)
    assert result == [(False, "no HTTP status line")]


def test_probe_timeout_and_cancel() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        socket_map: dict[int, Any] = {}
        result: list[tuple[bool, str]] = []
        check = Healthcheck("http", host="127.0.0.1", port=listener.getsockname()[1], timeout=0.5)
        sock_probe = SocketProbe(check, socket_map, lambda ok, d: result.append((ok, d)))
        assert socket_map == {sock_probe.fd: sock_probe}
        # The orchestrator calls timeout() at the deadline: the probe reports and leaves.
        sock_probe.timeout()
        assert result == [(False, "no answer within 0.5 s")]
        assert socket_map == {}
        sock_probe.close()  # after reporting, nothing more is reported
        assert result == [(False, "no answer within 0.5 s")]


def test_https_probe_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=False,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate: {made.stderr!r}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert probe("https", port, "/ok") == (True, "HTTP 200")
        assert probe("https", port, "/nope") == (False, "HTTP 503")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("command", "expected"),
    [("true", (True, "command exited with 0")), ("exit 4", (False, "command exited with 4"))],
)
def test_command_probe(command: str, expected: tuple[bool, str]) -> None:
    result: list[tuple[bool, str]] = []
    check = Healthcheck("cmd", command=command)
    cmd_probe = CommandProbe(check, lambda ok, d: result.append((ok, d)), dict(os.environ))
    _, status = os.waitpid(cmd_probe.pid, 0)
    cmd_probe.exited(status)
    assert result == [expected]


def test_command_probe_timeout_kills_its_process_group() -> None:
    result: list[tuple[bool, str]] = []
    check = Healthcheck("cmd", command="sleep 30 & sleep 30", timeout=0.2)
    cmd_probe = CommandProbe(check, lambda ok, d: result.append((ok, d)), dict(os.environ))
    time.sleep(0.1)
    group = [cmd_probe.pid, *descendants([cmd_probe.pid])]
    assert len(group) >= 2
    cmd_probe.timeout()
    assert result == [(False, "command took longer than 0.2 s")]
    _, status = os.waitpid(cmd_probe.pid, 0)
    cmd_probe.exited(status)  # the late exit is not reported a second time
    assert result == [(False, "command took longer than 0.2 s")]
    wait_dead(group, timeout=5)
