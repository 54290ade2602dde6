"""The ``autoreload`` program gets the run's options through ``cli`` (issue 14).

A real ``manage.py supervisor`` runs with launch, nolaunch, exclude, autoreload and
env-file options; the running watcher's own argv, read from the kernel, parses back (with
the command's real parser) to the same options as the run's.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from djsupervisor import cli, config
from djsupervisor.management.commands.supervisor import Command
from tests.autoreload.test_autoreload import new_project, start, watching
from tests.utils import Project, sleeper

CONF = f"""
[program:web]
command={sleeper("web")}
startsecs=0
[program:db]
command={sleeper("db")}
startsecs=0
[program:job]
command={sleeper("job")}
startsecs=0
autostart=false
[program:gone]
command={sleeper("gone")}
"""


def parse(argv: list[str]) -> config.Options:
    """The run options ``manage.py supervisor ARGV`` runs with, by the command's parser."""
    parser = Command().create_parser("manage.py", "supervisor")
    return cli.options_from(vars(parser.parse_args(cli.hoist_options(parser, argv))))


def watcher_argv(project: Project, *args: str) -> list[str]:
    out, err, code = project.manage("supervisor", "getconfig", *args)
    assert (err, code) == ("", 0)
    command = config.parse(out, "getconfig").sections["program:autoreload"]["command"]
    # As supervisord reads a command: %(...)s expanded (here only %%), then shlex-split.
    words = shlex.split(command.replace("%%", "%"))
    assert words[2:4] == ["supervisor", "autoreload"], words
    return list(words[3:])


def run_options(project: Project) -> tuple[Path, list[str]]:
    """An env file and one run option of each kind (launch, nolaunch, exclude, env file, reload)."""
    # A path supervisord's command parsing would break: a space, a quote and a %.
    env = project.write("my env's 100%/dev.env", "GREETING=hi\n")
    return env, ["-l", "job", "-n", "db", "-x", "gone", "--env-file", str(env), "-r", "web"]


def test_getconfig_gives_the_watcher_every_run_option(
    tmp_path: Path, projects: list[Project]
) -> None:
    project = new_project(projects, tmp_path, CONF)
    env, run = run_options(project)
    run += ["--pidfile", str(tmp_path / "sd.pid"), "--logfile", str(tmp_path / "sd.log")]

    opts = parse(["getconfig", *run])
    assert opts.launch == ("job",) and opts.nolaunch == ("db",) and opts.env_files == (str(env),)
    assert parse(watcher_argv(project, *run)) == opts
    # Without options, none: the watcher runs with the defaults too.
    assert parse(watcher_argv(project)) == config.Options()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")
def test_the_running_watcher_runs_with_the_runs_options(
    tmp_path: Path, projects: list[Project]
) -> None:
    project = new_project(projects, tmp_path, CONF)
    env, run = run_options(project)

    running = watching(start(project, *run))
    pid = running.pid("autoreload")
    assert pid > 0
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    assert argv[2:4] == ["supervisor", "autoreload"], argv

    assert parse(argv[3:]) == parse(run)
    assert parse(run).launch == ("job",) and parse(run).env_files == (str(env),)
    # The run itself honoured them: job launched, db not, gone left out.
    running.wait(lambda: running.state("job") == "RUNNING", "job, launched by -l")
    assert (running.state("web"), running.state("db")) == ("RUNNING", "STOPPED")
    assert "gone" not in project.status()
