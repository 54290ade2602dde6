"""The control channel (issue 14): one XML-RPC channel, one "not running", a light client.

A real ``manage.py supervisor`` serves a throw-away project; a separate Python process
asks it for status through ``djsupervisor.connect()`` under ``-X importtime``, which
lists every module that process loaded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import Project, make_project, not_running_line, sleeper

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0
"""

STATUS_SCRIPT = textwrap.dedent(
    """
    import djsupervisor
    print(sorted((i.name, i.state) for i in djsupervisor.connect().status()))
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", CONF)
    yield proj
    proj.cleanup()


def connect_status(project: Project) -> subprocess.CompletedProcess[str]:
    """Run ``djsupervisor.connect().status()`` in a fresh process, under ``-X importtime``."""
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", STATUS_SCRIPT],
        cwd=project.path,
        env=project.env(DJANGO_SETTINGS_MODULE="testproj.settings"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def loaded_modules(importtime: str) -> set[str]:
    """The module names of ``-X importtime``'s report ("import time: a | b | name")."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_connect_status_loads_no_server_module_and_no_supervisorctl(project: Project) -> None:
    project.start()
    project.wait_running("one")

    proc = connect_status(project)

    assert (proc.stdout, proc.returncode) == ("[('one', 'RUNNING')]\n", 0), proc.stderr
    modules = loaded_modules(proc.stderr)
    # The report is read right: the client side of the call is in it.
    assert {"djsupervisor.client.channel", "djsupervisor.client.supervisor"} <= modules
    assert sorted(m for m in modules if m.startswith("djsupervisor.server")) == []
    assert "supervisor.supervisorctl" not in modules


def test_the_api_and_the_command_say_not_running_the_same_way(project: Project) -> None:
    out, err, code = project.manage("supervisor", "status")
    assert (out, err, code) == ("", not_running_line(project), 1)

    proc = connect_status(project)

    assert proc.returncode == 1
    last = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")][-1]
    command_says = not_running_line(project).removeprefix("CommandError: ").strip()
    assert last == f"djsupervisor.errors.NotRunning: {command_says}"


def test_the_typed_clients_address_is_the_one_supervisorctl_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from djsupervisor import config
    from djsupervisor.client import channel

    monkeypatch.setenv("CHANNEL_USER", "alice")
    text = (
        "[supervisorctl]\n"
        "serverurl = unix://%(here)s/../run/./ctl.sock\n"
        "username = %(ENV_CHANNEL_USER)s\n"
        "password = secret\n"
    )
    merged = config.merge([config.parse(text, "supervisord.conf")])
    configfile = str(tmp_path / "site" / "supervisord.conf")

    light = channel.address(lambda: merged, configfile)

    assert light == channel.client_options(lambda: merged, configfile).channel
    assert light == (f"unix://{tmp_path}/run/ctl.sock", "alice", "secret")
