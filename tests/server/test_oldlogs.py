"""The previous run's AUTO child logs go once this run's exist, not before (oldlogs.py)."""

from __future__ import annotations

import contextlib
import os
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from djsupervisor.config import Options, project
from djsupervisor.server import oldlogs, runtime
from tests.utils import Project, make_project, runtime_dirs, site_settings, sleeper, wait_dead

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0
"""

STARTED_RE = re.compile(r"supervisord is running in the background \(pid (\d+)\)")


def plant_old_logs(directory: Path) -> list[Path]:
    """Logs a previous run left: a pair, a rotated backup; and a file not supervisord's."""
    names = [
        "gone-stdout---supervisor-abcd1234.log",
        "gone-stderr---supervisor-efgh5678.log",
        "gone-stdout---supervisor-abcd1234.log.1",
    ]
    for name in [*names, "mine.log"]:
        (directory / name).write_text("old\n")
    return [directory / name for name in names]


@contextlib.contextmanager
def server_options(tmp_path: Path, conf: str = "") -> Iterator[runtime.ProjectServerOptions]:
    """supervisord's options for a one-program project, its logger open, as at start."""
    with site_settings(tmp_path) as site:
        (site / "supervisord.conf").write_text(textwrap.dedent(CONF) + conf)
        located = project.locate()
        project.ensure_runtime_dir(located.runtime_dir)
        options = runtime.build_options(
            lambda: project.merged_sections(located, Options()),
            str(located.config_file),
            runtime_dir=str(located.runtime_dir),
        )
        options.make_logger()
        try:
            yield options
        finally:
            options.close_logger()


def plant_linked_log(directory: Path) -> tuple[Path, Path]:
    """An old AUTO log name that is a second link to another file: not ours alone."""
    precious = directory / "precious.txt"
    precious.write_text("keep me\n")
    linked = directory / "gone-stderr---supervisor-zzzz9999.log"
    os.link(precious, linked)
    return precious, linked


def test_a_log_with_another_link_is_never_emptied_nor_reused(tmp_path: Path) -> None:
    with server_options(tmp_path) as options:
        precious, linked = plant_linked_log(Path(options.childlogdir))
        options.clear_autochildlogdir()
        for group in options.process_group_configs:
            group.after_setuid()
        (process,) = options.process_group_configs[0].process_configs
        ours = [Path(process.stdout_logfile), Path(process.stderr_logfile)]
        assert precious.stat().st_ino not in {path.stat().st_ino for path in ours}
        assert precious.read_text() == "keep me\n"
        assert options.old_logs is not None
        options.old_logs.remove(float("inf"))
        assert not linked.exists()
        assert precious.read_text() == "keep me\n"


def test_old_logs_are_only_listed_until_this_runs_logs_exist(tmp_path: Path) -> None:
    with server_options(tmp_path) as options:
        logdir = Path(options.childlogdir)
        old = plant_old_logs(logdir)
        precious, linked = plant_linked_log(logdir)
        inodes = {path.stat().st_ino for path in old}
        options.clear_autochildlogdir()
        # Listed, not removed: this run's logs are not created yet.
        assert all(path.exists() for path in [*old, linked])
        for group in options.process_group_configs:
            group.after_setuid()  # what supervisord's add_process_group does first
        (process,) = options.process_group_configs[0].process_configs
        ours = [Path(process.stdout_logfile), Path(process.stderr_logfile)]
        # The runtime dir is private: this run's logs took old ones' inodes, emptied.
        assert {path.stat().st_ino for path in ours} <= inodes
        assert [path.read_text() for path in ours] == ["", ""]
        assert [oct(path.stat().st_mode & 0o777) for path in ours] == ["0o600"] * 2

        assert options.old_logs is not None
        options.old_logs.remove(float("inf"))
        assert not any(path.exists() for path in [*old, linked])
        assert all(path.exists() for path in ours)
        assert (logdir / "mine.log").exists()
        assert precious.read_text() == "keep me\n"


def test_logs_in_a_directory_others_can_write_to_are_not_reused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with server_options(tmp_path, f"\n[supervisord]\nchildlogdir={shared}\n") as options:
        old = plant_old_logs(shared)
        inodes = {path.stat().st_ino for path in old}
        options.clear_autochildlogdir()
        for group in options.process_group_configs:
            group.after_setuid()
        (process,) = options.process_group_configs[0].process_configs
        ours = [Path(process.stdout_logfile), Path(process.stderr_logfile)]
        # Someone else's file could be planted there: supervisord's mkstemp, new inodes.
        assert not {path.stat().st_ino for path in ours} & inodes
        assert all(path.exists() for path in old)
        assert options.old_logs is not None
        options.old_logs.remove(float("inf"))
        assert not any(path.exists() for path in old)
        assert all(path.exists() for path in ours)


def start_and_stop(project: Project) -> None:
    out, err, code = project.manage("supervisor", "--daemonize")
    match = STARTED_RE.match(out)
    assert match is not None and code == 0, (out, err)
    project.wait_running("one")
    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    wait_dead([int(match.group(1))])


@pytest.mark.parametrize("nocleanup", [False, True], ids=["cleanup", "nocleanup"])
def test_a_start_removes_the_previous_runs_auto_logs(
    projects: list[Project], tmp_path: Path, nocleanup: bool
) -> None:
    conf = CONF + ("\n[supervisord]\nnocleanup=true\n" if nocleanup else "")
    proj = make_project(tmp_path / "proj", conf)
    projects.append(proj)
    start_and_stop(proj)
    runtime_dir = runtime_dirs(proj.path)[0]
    first = sorted(runtime_dir.glob("one-*.log"))
    assert len(first) == 2  # AUTO stdout and stderr logs
    for path in first:
        path.write_text("run 1\n")
    backup = Path(f"{first[0]}.1")  # run 1 rotated its log once
    backup.write_text("run 1, rotated\n")
    planted = plant_old_logs(runtime_dir)

    start_and_stop(proj)
    now = sorted(runtime_dir.glob("one-*.log"))
    assert (runtime_dir / "mine.log").exists()
    if nocleanup:
        # supervisord's choice: every old log stays, this run's are new files.
        assert len(now) == 4 and set(first) < set(now)
        assert all(path.exists() for path in [*planted, backup])
        assert [path.read_text() for path in first] == ["run 1\n"] * 2
    else:
        # The program's logs keep their paths, emptied for this run; the rest are gone.
        assert now == first
        assert "run 1" not in "".join(path.read_text() for path in now)
        assert not any(path.exists() for path in [*planted, backup])


def test_a_programs_own_old_log_is_reused_in_place_only_when_ours_alone(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir(mode=0o700)
    prefix = "one-stdout---supervisor-"
    own = logdir / f"{prefix}abcd1234.log"
    own.write_text("run 1\n")
    own.chmod(0o644)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    linked = logdir / "two-stdout---supervisor-efgh5678.log"
    os.link(precious, linked)
    old = oldlogs.OldLogs.listed(str(logdir), "supervisor", pytest.fail, reusable=True)

    assert old.reuse(prefix, ".log", str(logdir)) == str(own)
    assert own.read_text() == "" and oct(own.stat().st_mode & 0o777) == "0o600"
    # Program two's old log is a second link to someone's file: never emptied, and the
    # new log is a fresh file (supervisord's own mkstemp) since no other inode is left.
    assert old.reuse("two-stdout---supervisor-", ".log", str(logdir)) is None
    assert precious.read_text() == "keep me\n"
    old.remove(float("inf"))
    assert own.exists()  # taken: never in the removal
    assert not linked.exists() and precious.read_text() == "keep me\n"
