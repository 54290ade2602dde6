"""One run-options model (issue 14): the command, ``cli`` and ``djsupervisor.start()``.

The command's options and ``start()``'s parameters cannot drift apart, a command line
built from options parses back to the same options with the real parser, and
``start()``'s new options (``env_file``, ``pidfile``, ``logfile``, ``autoreload`` names)
reach a real supervisord.
"""

from __future__ import annotations

import inspect
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management.base import BaseCommand
from django.test import override_settings

import djsupervisor
from djsupervisor import cli, config
from djsupervisor.management.commands.supervisor import Command
from tests.utils import Project, descendants, make_project, pid_alive, wait_for


def option_names(command: BaseCommand) -> set[str]:
    return {a.dest for a in command.create_parser("manage.py", "supervisor")._actions}


def test_start_takes_every_option_of_the_foreground_command() -> None:
    own = option_names(Command()) - option_names(BaseCommand()) - {"help"}
    parameters = set(inspect.signature(djsupervisor.start).parameters) - {"wait", "timeout"}

    assert own - set(cli.NOT_FOR_START) == parameters
    # And get_merged_config() every one that shapes the configuration.
    merged = set(inspect.signature(djsupervisor.get_merged_config).parameters)
    assert merged == parameters
    # StartOptions (for code passing start()'s arguments around) lists them all.
    assert set(djsupervisor.StartOptions.__annotations__) == parameters | {"wait", "timeout"}


def test_a_command_line_built_from_options_parses_back_to_them(tmp_path: Path) -> None:
    opts = cli.run_options(
        launch=["a"],
        nolaunch=["b", "c"],
        exclude=["d"],
        include=["e"],
        autoreload=["web", "worker"],
        noreload=True,
        pidfile=tmp_path / "s.pid",
        logfile=tmp_path / "s.log",
        env_file=[tmp_path / ".env", "relative.env"],
    )
    parsed = Command().create_parser("manage.py", "supervisor").parse_args(cli.command_line(opts))

    again = cli.options_from(vars(parsed))
    assert again == opts
    assert opts.env_files == (str(tmp_path / ".env"), str(Path("relative.env").absolute()))
    assert cli.command_line(config.Options()) == []


def test_a_string_where_names_are_expected_is_refused() -> None:
    with pytest.raises(TypeError, match="sequence of program names, got the string 'web'"):
        cli.run_options(autoreload="web")
    with pytest.raises(TypeError, match="expected a sequence of paths, got 'dotenv'"):
        cli.run_options(env_file="dotenv")


CONF = """
[program:env]
command = {{ PYTHON }} -c "import os, time; open('env.out', 'w').write(os.environ['GREETING']); time.sleep(600)"
directory = {{ PROJECT_DIR }}
startsecs = 0
"""  # noqa: E501


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", CONF)
    yield proj
    proj.cleanup()


def test_start_passes_env_file_pidfile_logfile_and_autoreload_names(
    project: Project, tmp_path: Path
) -> None:
    env = project.write("greeting.env", "GREETING=hello from the env file\n")
    pidfile, logfile = tmp_path / "sd.pid", tmp_path / "sd.log"
    options = {
        "project_dir": project.path,
        "env_file": [env],
        "pidfile": pidfile,
        "logfile": logfile,
        "autoreload": ["env"],
    }

    with override_settings(DEBUG=True):  # the watcher program is on: it gets them too
        merged = djsupervisor.get_merged_config(**options)  # type: ignore[arg-type]
    assert f"pidfile = {pidfile}\n" in merged and f"logfile = {logfile}\n" in merged
    assert f"--autoreload=env --env-file={env}" in merged

    handle = djsupervisor.start(**options)  # type: ignore[arg-type]
    try:
        with handle:
            wait_for(lambda: (project.path / "env.out").exists(), 20, "env.out")
            assert (project.path / "env.out").read_text() == "hello from the env file"
            assert pidfile.read_text().strip() == str(handle.pid)
            assert logfile.is_file()
            # This process's settings (DEBUG off), which start() runs with: no watcher.
            assert [i.name for i in handle.status()] == ["env"]
    finally:
        assert handle.pid is not None
        for pid in [handle.pid, *descendants([handle.pid])]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
