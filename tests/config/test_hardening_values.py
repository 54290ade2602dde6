"""Hardening (issue 13): values that cannot work, unauthenticated TCP, file descriptor limits.

Each case runs the real ``manage.py`` of a throw-away project. Programs append a line to
a marker file when they start, so "nothing started" is checked without asking supervisord.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from djsupervisor.config import values
from djsupervisor.errors import ConfigError
from tests.utils import LineReader, Project, Rpc, make_project, site_settings, wait_for


def marking(marker: Path) -> str:
    """A command that records its start in ``marker``, then sleeps."""
    return f'/bin/sh -c "echo started >> {marker}; exec /bin/sleep 600"'


def refused(project: Project, marker: Path, *args: str) -> tuple[str, int]:
    """Run ``manage.py supervisor ARGS``; return its stderr and exit code, checking nothing ran."""
    out, err, code = project.manage("supervisor", *args)
    assert out == ""
    assert not marker.exists(), "a program started"
    return err, code


BAD = [
    pytest.param(
        "stopwaitsecs=-1", "[program:a] stopwaitsecs = -1: must be 0 or more", id="stopwait"
    ),
    pytest.param("startsecs=-5", "[program:a] startsecs = -5: must be 0 or more", id="startsecs"),
    pytest.param(
        "startretries=-1", "[program:a] startretries = -1: must be 0 or more", id="startretries"
    ),
    pytest.param("numprocs=0", "[program:a] numprocs = 0: must be 1 or more", id="numprocs"),
    pytest.param(
        "environment=BIG=" + "x" * 70_000,
        "[program:a] environment: value is 70004 bytes, over the limit of 65536 bytes (64 KiB)",
        id="big-environment",
    ),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_a_value_that_cannot_work_is_one_line_and_nothing_starts(
    tmp_path: Path, projects: list[Project], line: str, message: str
) -> None:
    marker = tmp_path / "started"
    conf = f"[program:a]\ncommand={marking(marker)}\n{line}\n"
    project = make_project(tmp_path / "p", conf)
    projects.append(project)
    err, code = refused(project, marker)
    assert err == f"CommandError: {project.path / 'supervisord.conf'}:1: {message}\n"
    assert code == 1
    # The same problem under its own id in manage.py check (so also runserver, migrate).
    out, err, code = project.manage("check")
    assert (out, code) == ("", 1)
    assert f"(djsupervisor.E010) {project.path / 'supervisord.conf'}:1: {message}" in err


def test_a_reload_with_a_value_that_cannot_work_keeps_the_programs(
    tmp_path: Path, projects: list[Project]
) -> None:
    marker = tmp_path / "started"
    good = f"[program:a]\ncommand={marking(marker)}\nstartsecs=0\n"
    project = make_project(tmp_path / "p", good)
    projects.append(project)
    server = project.start()
    output = LineReader(server)
    rpc = Rpc(project)
    before = rpc.wait_states({"a": "RUNNING"}, server)["a"]["pid"]
    project.write("supervisord.conf", good + "numprocs=0\n")
    problem = f"{project.path / 'supervisord.conf'}:1: [program:a] numprocs = 0: must be 1 or more"
    out, err, code = project.manage("supervisor", "reload")
    assert problem in out + err
    assert code == 1
    server.send_signal(signal.SIGHUP)
    output.wait_for(f"reload refused, keeping the running programs: {problem}")
    assert rpc.wait_states({"a": "RUNNING"}, server)["a"]["pid"] == before
    assert len(marker.read_text().splitlines()) == 1


def test_a_huge_command_is_refused_at_once(tmp_path: Path, projects: list[Project]) -> None:
    marker = tmp_path / "started"
    command = marking(marker) + " " + "x" * 10_000_000
    project = make_project(tmp_path / "p", f"[program:big]\ncommand={command}\n")
    projects.append(project)
    for args in ((), ("--daemonize",), ("getconfig",)):
        err, code = refused(project, marker, *args)
        assert (err, code) == (
            f"CommandError: {project.path / 'supervisord.conf'}:1: [program:big] command: "
            f"value is {len(command)} bytes, over the limit of 65536 bytes (64 KiB)\n",
            1,
        )


def test_a_value_at_the_limit_is_accepted(tmp_path: Path, projects: list[Project]) -> None:
    filler = "x" * (values.MAX_VALUE_BYTES - len("BIG="))
    conf = f"[program:a]\ncommand=/bin/true\nenvironment=BIG={filler}\n"
    project = make_project(tmp_path / "p", conf)
    projects.append(project)
    out, err, code = project.manage("supervisor", "getconfig")
    assert (err, code) == ("", 0)
    assert f"environment = BIG={filler}\n" in out


def test_start_api_refuses_a_value_that_cannot_work(tmp_path: Path) -> None:
    import djsupervisor

    with site_settings(tmp_path) as site:
        (site / "supervisord.conf").write_text("[program:a]\ncommand=/bin/true\nnumprocs=0\n")
        with pytest.raises(ConfigError, match=r"\[program:a\] numprocs = 0: must be 1 or more"):
            djsupervisor.start()


def test_check_warns_about_executables_that_are_not_found(
    tmp_path: Path, projects: list[Project]
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "mytool").write_text("#!/bin/sh\nexec sleep 600\n")
    (tools / "mytool").chmod(0o755)
    (tools / "plain").write_text("not executable\n")
    conf = f"""\
        [program:absent]
        command=/nonexistent/bin/server --port 1

        [program:notexec]
        command={tools / "plain"}

        [program:offpath]
        command=mytool --flag

        [program:onpath]
        command=mytool --flag
        environment=PATH="{tools}:/bin"

        [program:expanded]
        command=%(ENV_TOOLS)s/mytool

        [program:system]
        command=sleep 600

        [program:venvscript]
        command=django-admin --version
        """
    project = make_project(tmp_path / "p", textwrap.dedent(conf))
    projects.append(project)
    # django-admin lies beside the Python running manage.py, off this PATH: programs
    # find it there (programenv), so the check must too.
    out, err, code = project.manage("check", TOOLS=str(tools), PATH="/usr/bin:/bin")
    assert (out, code) == ("", 0)
    where = project.path / "supervisord.conf"
    assert (
        f"{where}:1: [program:absent] command: (djsupervisor.W003) program 'absent': "
        "executable /nonexistent/bin/server does not exist or is not executable" in err
    )
    assert f"{where}:4: [program:notexec] command: (djsupervisor.W003)" in err
    assert (
        f"{where}:7: [program:offpath] command: (djsupervisor.W003) program 'offpath': "
        "executable 'mytool' is not found on the program's PATH" in err
    )
    assert "System check identified 3 issues (0 silenced)." in err


def test_unauthenticated_tcp_on_loopback_is_a_warning(
    tmp_path: Path, projects: list[Project]
) -> None:
    conf = "[program:a]\ncommand=/bin/true\n\n[inet_http_server]\nport=127.0.0.1:9101\n"
    project = make_project(tmp_path / "p", conf)
    projects.append(project)
    out, err, code = project.manage("check")
    assert (out, code) == ("", 0)
    assert (
        f"{project.path / 'supervisord.conf'}:4: (djsupervisor.W004) [inet_http_server] "
        "port = 127.0.0.1:9101 has no username and password" in err
    )
    project.write("supervisord.conf", conf + "username=admin\npassword=s3cret\n")
    out, err, code = project.manage("check")
    assert (out, err, code) == ("System check identified no issues (0 silenced).\n", "", 0)


@pytest.mark.parametrize(
    "port", ["0.0.0.0:9101", "*:9101", "9101", "[::]:9101", "example.com:9101"]
)
def test_unauthenticated_tcp_beyond_loopback_is_refused(
    tmp_path: Path, projects: list[Project], port: str
) -> None:
    marker = tmp_path / "started"
    conf = f"[program:a]\ncommand={marking(marker)}\n\n[inet_http_server]\nport={port}\n"
    project = make_project(tmp_path / "p", conf)
    projects.append(project)
    err, code = refused(project, marker)
    assert code == 1
    assert err.startswith(
        f"CommandError: {project.path / 'supervisord.conf'}:4: [inet_http_server] "
        f"port = {port}: listens on "
    )
    assert err.endswith("set username and password, or bind 127.0.0.1\n")
    assert err.count("\n") == 1
    out, err, code = project.manage("check")
    assert (out, code) == ("", 1)
    assert "(djsupervisor.E011)" in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("*", False),
        ("", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert values.is_loopback(host) is loopback


# --- File descriptors ---------------------------------------------------------------------


def nofile(soft: int, hard: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return limit


def many(marker: Path, count: int) -> str:
    return textwrap.dedent(
        f"""\
        [program:many]
        command={marking(marker)}
        numprocs={count}
        process_name=%(program_name)s-%(process_num)03d
        startsecs=0
        """
    )


def test_a_hard_limit_too_low_is_refused_before_anything_starts(
    tmp_path: Path, projects: list[Project]
) -> None:
    marker = tmp_path / "started"
    project = make_project(tmp_path / "p", many(marker, 40))
    projects.append(project)
    proc = subprocess.run(
        [sys.executable, str(project.path / "manage.py"), "supervisor"],
        cwd=project.path,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=nofile(64, 128),
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("CommandError: not enough file descriptors: ")
    assert proc.stderr.endswith(
        " needed for 40 processes, 128 available (ulimit -n); "
        "raise the limit or configure fewer processes\n"
    )
    needed = int(proc.stderr.split(": ")[2].split()[0])
    assert needed >= 40 * 5
    assert not marker.exists()


def test_a_reload_needing_more_than_the_hard_limit_keeps_the_programs(
    tmp_path: Path, projects: list[Project]
) -> None:
    marker = tmp_path / "started"
    project = make_project(tmp_path / "p", many(marker, 10))
    projects.append(project)
    proc = project.start(preexec_fn=nofile(64, 1024))
    output = LineReader(proc)
    rpc = Rpc(project)
    names = {f"many-{n:03d}": "RUNNING" for n in range(10)}
    before = {name: info["pid"] for name, info in rpc.wait_states(names, proc).items()}
    project.write("supervisord.conf", many(marker, 400))
    out, err, code = project.manage("supervisor", "reload")
    assert "not enough file descriptors: " in out + err
    assert "needed for 400 processes, 1024 available (ulimit -n)" in out + err
    assert code == 1
    proc.send_signal(signal.SIGHUP)
    output.wait_for("reload refused, keeping the running programs: not enough file descriptors")
    after = {name: info["pid"] for name, info in rpc.wait_states(names, proc).items()}
    assert after == before
    assert len(marker.read_text().splitlines()) == 10


START_API = """\
import sys

import djsupervisor

try:
    djsupervisor.start(project_dir=sys.argv[1], timeout=60)
except djsupervisor.StartError as error:
    print(f"StartError: {error}")
else:
    print("started")
"""


def test_start_api_reports_a_hard_limit_too_low(tmp_path: Path, projects: list[Project]) -> None:
    marker = tmp_path / "started"
    project = make_project(tmp_path / "p", many(marker, 40))
    projects.append(project)
    proc = subprocess.run(
        [sys.executable, "-c", START_API, str(project.path)],
        cwd=project.path,
        env=project.env(DJANGO_SETTINGS_MODULE="testproj.settings"),
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        preexec_fn=nofile(64, 128),
    )
    assert (proc.stderr, proc.returncode) == ("", 0)
    assert proc.stdout.startswith("StartError: ")
    assert "not enough file descriptors: " in proc.stdout
    assert "needed for 40 processes, 128 available (ulimit -n)" in proc.stdout
    assert not marker.exists()


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="reads the limit with prlimit (Linux)")
def test_the_soft_limit_is_raised_so_every_program_starts(
    tmp_path: Path, projects: list[Project]
) -> None:
    marker = tmp_path / "started"
    # ~300 x (3 pipe ends + 2 log files): more than supervisord's own minfds (1024).
    project = make_project(tmp_path / "p", many(marker, 300))
    projects.append(project)
    proc = project.start("--quiet", preexec_fn=nofile(64, 4096))
    output = LineReader(proc)
    names = [f"many:many-{n:03d}" for n in range(300)]

    def all_running() -> bool:
        assert proc.poll() is None, output.text
        states = project.status()
        return all(states.get(name) == "RUNNING" for name in names)

    wait_for(all_running, timeout=120, what="300 programs RUNNING")
    assert len(marker.read_text().splitlines()) == 300
    soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    assert 300 * 5 < soft <= hard == 4096
    out, err, code = project.manage("supervisor", "shutdown")
    assert (err, code) == ("", 0)
    assert "Shut down" in out
    assert output.finish(timeout=60) == 0
    assert "FATAL" not in output.text and "EMFILE" not in output.text
