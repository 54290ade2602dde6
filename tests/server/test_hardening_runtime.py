"""Issue 13: the runtime directory, supervisord's files and one instance, under attack.

A second local user (``nobody``, via ``runuser``) plants directories and symlinks in a
shared sticky directory; the runtime directory is deleted under a running daemon.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import (
    Project,
    descendants,
    make_project,
    runtime_dirs,
    sleeper,
    wait_dead,
    wait_for,
)

CONF = f"""
[program:one]
command={sleeper("one")}
startsecs=0

[program:two]
command={sleeper("two")}
startsecs=0
"""

STARTED_RE = re.compile(r"supervisord is running in the background \(pid (\d+)\)")
VICTIM_TEXT = "precious, not to be touched\n"


def _nobody() -> str | None:
    if shutil.which("runuser") is None:
        return "runuser is missing"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "there is no 'nobody' user"
    if os.getuid() != 0:
        return "runuser needs root"
    return None


needs_nobody = pytest.mark.skipif(_nobody() is not None, reason=str(_nobody()))


def as_nobody(script: str) -> None:
    """Run a shell script as the other local user."""
    subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-ec", script], check=True)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", CONF)
    yield proj
    proj.cleanup()


@pytest.fixture
def shared() -> Iterator[Path]:
    """A shared sticky directory (mode 1777) that another user can reach, like /tmp."""
    path = Path(tempfile.mkdtemp(prefix="djs-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of ours that a planted symlink points at."""
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    path.chmod(0o600)
    return path


def runtime_dir_in(shared: Path, project: Project) -> Path:
    """The project's default runtime directory with ``TMPDIR=shared``."""
    return shared / runtime_dirs(project.path)[0].name


def kill_later(request: pytest.FixtureRequest, pid: int) -> None:
    """SIGKILL ``pid`` and its descendants at teardown (a daemon cleanup() cannot find)."""

    def kill() -> None:
        for pid_ in [*descendants([pid]), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid_, signal.SIGKILL)

    request.addfinalizer(kill)


# --- the runtime directory ------------------------------------------------------------


@needs_nobody
@pytest.mark.parametrize("mode", ["0777", "0700"])
@pytest.mark.parametrize("daemonize", [False, True], ids=["foreground", "daemon"])
def test_a_runtime_dir_planted_by_another_user_is_refused(
    project: Project, shared: Path, victim: Path, mode: str, daemonize: bool
) -> None:
    runtime = runtime_dir_in(shared, project)
    as_nobody(
        f"mkdir -m {mode} {runtime}; "
        f"ln -s {victim} {runtime}/supervisord.pid; ln -s {victim} {runtime}/supervisord.log"
    )
    args = ["--daemonize"] if daemonize else []
    out, err, code = project.manage("supervisor", *args, TMPDIR=str(shared))
    nobody = pwd.getpwnam("nobody").pw_uid
    assert err == (
        f"CommandError: runtime directory {runtime} is unsafe: found a directory owned by "
        f"uid {nobody} (nobody) with mode {mode}, expected a directory owned by uid 0 (root) "
        "with mode 0700; remove it, or set SUPERVISOR_RUNTIME_DIR to a directory of yours "
        "with mode 0700\n"
    )
    assert (out, code) == ("", 1)
    assert victim.read_text() == VICTIM_TEXT
    info = runtime.lstat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (nobody, int(mode, 8))  # not chmodded


@needs_nobody
def test_a_shared_runtime_dir_setting_is_refused_and_never_chmodded(
    project: Project, shared: Path
) -> None:
    project.write(
        "testproj/settings.py",
        (project.path / "testproj/settings.py").read_text()
        + f"SUPERVISOR_RUNTIME_DIR = {str(shared)!r}\n",
    )
    out, err, code = project.manage("supervisor")
    assert err.startswith(
        f"CommandError: runtime directory {shared} is unsafe: found a directory owned by "
        "uid 0 (root) with mode 1777, expected"
    ), err
    assert (out, code) == ("", 1)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def daemonize_over_symlink(project: Project, victim: Path, name: str) -> tuple[Path, str, str, int]:
    """Plant ``name`` in our own runtime dir as a symlink to ``victim``, then --daemonize."""
    runtime = runtime_dirs(project.path)[0]
    runtime.mkdir(mode=0o700)
    (runtime / name).symlink_to(victim)
    out, err, code = project.manage("supervisor", "--daemonize")
    return runtime, out, err, code


def test_a_symlink_in_the_runtime_dir_is_not_followed(project: Project, victim: Path) -> None:
    runtime, out, err, code = daemonize_over_symlink(project, victim, "supervisord.log")
    assert err == (
        f"CommandError: logfile {runtime}/supervisord.log is a symlink in the runtime "
        "directory; remove it\n"
    )
    assert (out, code) == ("", 1)
    assert victim.read_text() == VICTIM_TEXT


def test_the_lock_file_is_not_opened_through_a_symlink(project: Project, victim: Path) -> None:
    runtime, out, err, code = daemonize_over_symlink(project, victim, "supervisord.lock")
    assert err == (
        f"CommandError: lock file {runtime}/supervisord.lock is a symlink; refusing to follow it\n"
    )
    assert (out, code) == ("", 1)
    assert victim.read_text() == VICTIM_TEXT


def test_start_does_not_write_its_console_log_through_a_symlink(
    project: Project, victim: Path
) -> None:
    import djsupervisor
    from djsupervisor.errors import StartError

    runtime = runtime_dirs(project.path)[0]
    runtime.mkdir(mode=0o700)
    (runtime / "console.log").symlink_to(victim)
    with pytest.raises(StartError) as raised:
        djsupervisor.start(project_dir=project.path)  # refused before anything is spawned
    assert str(raised.value) == (
        f"console log {runtime}/console.log is a symlink; refusing to follow it"
    )
    assert victim.read_text() == VICTIM_TEXT


# --- side-effect-free checks ----------------------------------------------------------


def test_check_creates_no_runtime_dir(project: Project) -> None:
    runtime = runtime_dirs(project.path)[0]
    assert not runtime.exists()
    out, err, code = project.manage("check")
    assert (out, err, code) == ("System check identified no issues (0 silenced).\n", "", 0)
    assert not os.path.lexists(runtime)


def test_check_never_chmods_a_shared_runtime_dir(project: Project, shared: Path) -> None:
    project.write(
        "testproj/settings.py",
        (project.path / "testproj/settings.py").read_text()
        + f"SUPERVISOR_RUNTIME_DIR = {str(shared)!r}\n",
    )
    before = sorted(os.listdir(shared))
    out, err, code = project.manage("check")
    assert f"djsupervisor.E001) runtime directory {shared} is unsafe" in err, err
    assert (out, code) == ("", 1)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert sorted(os.listdir(shared)) == before


# --- pid and log files elsewhere ------------------------------------------------------


@needs_nobody
@pytest.mark.parametrize(
    ("args", "conf", "culprit"),
    [
        (["--pidfile", "{theirs}/x.pid"], "", "pidfile {theirs}/x.pid"),
        (["--logfile", "{theirs}/x.log"], "", "logfile {theirs}/x.log"),
        ([], "stdout_logfile={theirs}/x.out", "[program:one] stdout_logfile {theirs}/x.out"),
        ([], "stderr_logfile={theirs}/x.err", "[program:one] stderr_logfile {theirs}/x.err"),
    ],
    ids=["pidfile", "logfile", "stdout_logfile", "stderr_logfile"],
)
def test_a_symlink_another_user_planted_is_not_followed(
    project: Project, shared: Path, victim: Path, args: list[str], conf: str, culprit: str
) -> None:
    theirs = shared / "theirs"
    as_nobody(
        f"mkdir -m 0755 {theirs}; for n in pid log out err; do ln -s {victim} {theirs}/x.$n; done"
    )
    project.write(
        "supervisord.conf",
        CONF.replace("startsecs=0", f"startsecs=0\n{conf}", 1).format(theirs=theirs),
    )
    out, err, code = project.manage(
        "supervisor", "--daemonize", *(arg.format(theirs=theirs) for arg in args)
    )
    assert err == (
        f"CommandError: {culprit.format(theirs=theirs)} is a symlink in {theirs}, which another "
        "user can write; refusing to follow it (use a path in a directory only you can write)\n"
    )
    assert (out, code) == ("", 1)
    assert victim.read_text() == VICTIM_TEXT


@needs_nobody
def test_a_symlink_another_user_planted_in_a_sticky_dir_is_not_followed(
    project: Project, shared: Path, victim: Path
) -> None:
    as_nobody(f"ln -s {victim} {shared}/x.pid")
    out, err, code = project.manage("supervisor", "--daemonize", f"--pidfile={shared}/x.pid")
    assert err.startswith(f"CommandError: pidfile {shared}/x.pid is a symlink in {shared}, "), err
    assert (out, code) == ("", 1)
    assert victim.read_text() == VICTIM_TEXT


# --- one instance, whatever happens to the runtime directory -------------------------


@pytest.mark.parametrize("second_start", [True, False], ids=["second-start", "alone"])
def test_deleting_the_runtime_dir_lets_no_second_instance_start(
    project: Project, request: pytest.FixtureRequest, second_start: bool
) -> None:
    out, err, code = project.manage("supervisor", "--daemonize")
    match = STARTED_RE.match(out)
    assert match is not None, (out, err)
    daemon = int(match.group(1))
    kill_later(request, daemon)
    project.wait_running("one", "two")
    programs = [int(project.manage("supervisor", "pid", name)[0]) for name in ("one", "two")]

    runtime = runtime_dirs(project.path)[0]
    shutil.rmtree(runtime)  # what an age-based tmp cleaner does

    if second_start:  # (which makes the runtime directory again, empty, before it is refused)
        out, err, code = project.manage("supervisor", "--daemonize")
        assert err.startswith("CommandError: supervisord is already running for this project")
        assert (out, code) == ("", 1)

    # The running daemon recreates its directory and control socket on its own.
    wait_for(lambda: project.manage("supervisor", "pid")[0] == f"{daemon}\n", 10, "status back")
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert project.status() == {"one": "RUNNING", "two": "RUNNING"}
    assert (runtime / "supervisord.pid").read_text() == f"{daemon}\n"
    assert "vanished; recreated it" in (runtime / "supervisord.log").read_text()

    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
    wait_dead([daemon, *programs])


# --- which symlinks are followed ---------------------------------------------------------


def test_a_symlink_only_you_could_have_made_is_followed(tmp_path: Path) -> None:
    from djsupervisor.config import rundir

    private = tmp_path / "private"
    private.mkdir(mode=0o755)
    (private / "x.log").symlink_to("/dev/null")
    rundir.check_link("logfile", str(private / "x.log"))  # yours alone: followed

    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "x.log").symlink_to("/dev/null")
    rundir.check_link("logfile", str(sticky / "x.log"))  # yours, and nobody can replace it

    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    (loose / "x.log").symlink_to("/dev/null")
    with pytest.raises(ValueError, match=r"^logfile .*/loose/x\.log is a symlink in .*/loose, "):
        rundir.check_link("logfile", str(loose / "x.log"))
    with pytest.raises(ValueError, match=r"is a symlink in the runtime directory; remove it$"):
        rundir.check_link("logfile", str(private / "x.log"), private_dir=str(private))
