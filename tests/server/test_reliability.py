"""Reliability (issue 7): no orphans, no strangers, clear errors, faults survived, load.

Programs record their pids (and their own children's) in a pid log as they start,
so a test knows every process that must die without asking supervisord, and can
still kill them at teardown if supervisord failed to.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.utils import (
    LineReader,
    Project,
    Rpc,
    Terminal,
    ctl_section,
    daemon_pids,
    descendants,
    make_project,
    program,
    runtime_dirs,
    wait_dead,
)

#: How long a program may outlive the manage.py process that started it.
GRACE = 2.0
NOBODY = 65534


def family(pidlog: Path) -> str:
    """Two programs: one plain, one that forks a child of its own (stopped as a group)."""
    return textwrap.dedent(
        f"""\
        [program:plain]
        command={program("forker.py", "plain", str(pidlog), "nofork")}
        startsecs=0

        [program:family]
        command={program("forker.py", "family", str(pidlog))}
        startsecs=0
        stopasgroup=true
        killasgroup=true
        """
    )


def logged(pidlog: Path) -> dict[str, list[list[int]]]:
    """``{name: [[pid, grandchild pid or 0], ...]}`` in start order, from the pid log."""
    found: dict[str, list[list[int]]] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in pidlog.read_text().splitlines():
            name, pid, child = line.split()
            found.setdefault(name, []).append([int(pid), int(child)])
    return found


def wait_logged(pidlog: Path, names: tuple[str, ...], starts: int = 1) -> list[int]:
    """Wait until each program logged ``starts`` starts; return the latest start's pids."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = logged(pidlog)
        if all(len(found.get(name, [])) >= starts for name in names):
            return [pid for name in names for pid in found[name][starts - 1] if pid]
        time.sleep(0.05)
    raise AssertionError(f"{names} did not start {starts} time(s): {logged(pidlog)}")


def kill_logged(pidlog: Path) -> None:
    """The last line of defence: SIGKILL whatever the pid log names, orphans included.

    Only processes still running forker.py with this very log (a pid may be reused).
    """
    for starts in logged(pidlog).values():
        for pids in starts:
            for pid in filter(None, pids):
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if str(pidlog).encode() in cmdline:
                        os.kill(pid, signal.SIGKILL)


@dataclass
class Setup:
    project: Project
    pidlog: Path


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    pidlog = tmp_path / "pids.log"
    project = make_project(tmp_path / "proj", family(pidlog), extra_settings=CRASH_ON_USR1)
    try:
        yield Setup(project, pidlog)
    finally:
        project.cleanup()
        kill_logged(pidlog)


# --- 1. No orphans ---------------------------------------------------------------------

# A bug in the loop, in supervisord or in the user's code ends manage.py with an
# exception. The project's settings module arms one, fired by SIGUSR1 (a signal
# supervisord leaves alone): the handler raises in the main thread, inside the loop.
CRASH_ON_USR1 = """
import signal as _signal


def _crash(signum, frame):
    raise RuntimeError("simulated crash")


_signal.signal(_signal.SIGUSR1, _crash)
"""


@pytest.mark.parametrize(
    ("ending", "exit_code"),
    [
        ("SIGTERM", 0),
        ("SIGINT", 0),
        ("SIGHUP with a terminal", 0),
        ("terminal closed", 0),
        ("SIGKILL", -signal.SIGKILL),
        ("crash", 1),
    ],
)
def test_no_program_outlives_manage_py(setup: Setup, ending: str, exit_code: int) -> None:
    terminal = Terminal(setup.project) if "terminal" in ending else None
    watcher = terminal or LineReader(setup.project.start())
    server = watcher.proc
    programs = wait_logged(setup.pidlog, ("plain", "family"))
    assert len(programs) == 3  # plain, family and family's own child
    # The orphan watchdog too: it must not linger either.
    watched = set(programs) | set(descendants([server.pid]))

    if ending == "crash":
        server.send_signal(signal.SIGUSR1)
    elif terminal is not None and ending == "terminal closed":
        terminal.hang_up()
    else:
        server.send_signal(getattr(signal, ending.split()[0]))
    code = watcher.finish()
    text = watcher.text

    assert code == exit_code, text
    if ending == "crash":
        assert "RuntimeError: simulated crash" in text  # it did crash, and not otherwise
    if terminal is not None:
        # A closed terminal cannot show it: supervisord's log file has it.
        log = (runtime_dirs(setup.project.path)[0] / "supervisord.log").read_text()
        assert "received SIGHUP: the terminal closed, stopping everything" in log
    wait_dead(watched, timeout=GRACE)


def test_a_killed_watchdog_is_replaced(setup: Setup) -> None:
    server = setup.project.start()
    output = LineReader(server)
    programs = wait_logged(setup.pidlog, ("plain", "family"))
    watchdogs = set(descendants([server.pid])) - set(descendants(programs)) - set(programs)
    assert len(watchdogs) == 1, watchdogs
    os.kill(watchdogs.pop(), signal.SIGKILL)
    setup.project.wait_for(
        lambda: "the orphan watchdog died; starting a new one" in output.text, what="a new one"
    )
    assert server.poll() is None
    # The new watchdog guards the running programs: SIGKILL takes them along.
    server.send_signal(signal.SIGKILL)
    assert output.finish() == -signal.SIGKILL
    wait_dead(programs, timeout=GRACE)


#: In the server's settings: hold 4,200 descriptors, so supervisord's own go above 4096.
HIGH_FDS = """
import os, resource
if os.environ.get("HOLD_FDS"):
    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(_soft, 8192), _hard))
    HELD_FDS = [os.open(os.devnull, os.O_RDONLY) for _ in range(4200)]
"""


def pipe_fds(pid: int) -> dict[int, str]:
    """``{fd: "pipe:[inode]"}`` for the pipes process ``pid`` holds."""
    found = {}
    for entry in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
            if target.startswith("pipe:"):
                found[int(entry)] = target
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc/PID/fd")
def test_a_new_watchdog_keeps_no_descriptor_above_4096(
    projects: list[Project], tmp_path: Path
) -> None:
    # 5,000 programs hold 25,000 descriptors. A watchdog forked again (the first one
    # was killed) got copies of all of them and closed those below 4096 only: a copy
    # of a program's pipe keeps it open (no EOF for a program reading it) and keeps an
    # epoll registration alive after supervisord closed its own.
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 8192:
        pytest.skip("needs a hard descriptor limit of 8192 or more")
    project = make_project(
        tmp_path / "proj",
        "[program:one]\ncommand=sleep 600\nstartsecs=0\n",
        extra_settings=HIGH_FDS,
    )
    projects.append(project)
    server = project.start("--noreload", HOLD_FDS="1")
    output = LineReader(server)
    rpc = Rpc(project)
    pid = rpc.wait_states({"one": "RUNNING"}, server)["one"]["pid"]
    stdout = os.readlink(f"/proc/{pid}/fd/1")
    ours = [fd for fd, target in pipe_fds(server.pid).items() if target == stdout]
    assert ours and min(ours) > 4096, ours  # the setup works: its pipes are up there
    (watchdog,) = set(descendants([server.pid])) - {pid}
    os.kill(watchdog, signal.SIGKILL)
    output.wait_for("the orphan watchdog died; starting a new one")
    fds: set[int] = set()

    def settled() -> bool:
        # stdin, stdout, stderr and its end of the pipe from supervisord: nothing else
        # (once it has closed the rest, right after the fork).
        nonlocal fds
        new = set(descendants([server.pid])) - {pid, watchdog}
        with contextlib.suppress(FileNotFoundError):
            fds = {int(fd) for fd in os.listdir(f"/proc/{new.pop()}/fd")} if new else set()
        return len(fds - {0, 1, 2}) == 1

    with contextlib.suppress(AssertionError):
        project.wait_for(settled, 5)
    assert len(fds - {0, 1, 2}) == 1, sorted(fds)
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text


def test_sighup_without_a_terminal_reloads(setup: Setup) -> None:
    server = setup.project.start()
    output = LineReader(server)
    first = wait_logged(setup.pidlog, ("plain", "family"))

    server.send_signal(signal.SIGHUP)  # own session, no controlling terminal
    second = wait_logged(setup.pidlog, ("plain", "family"), starts=2)
    assert not set(first) & set(second)
    wait_dead(first)  # family's child included: the old programs were stopped as groups
    assert server.poll() is None
    assert "received SIGHUP indicating restart request" in output.text

    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    wait_dead(second, timeout=GRACE)


def test_sigkilled_daemon_leaves_no_orphans_and_a_restart_works(setup: Setup) -> None:
    project = setup.project
    password = ctl_section(project)["password"]
    out, err, code = project.manage("supervisor", "--daemonize")
    assert (err, code) == ("", 0)
    assert out.startswith("supervisord is running in the background (pid ")
    assert password not in out
    [daemon] = daemon_pids(project.path)
    programs = wait_logged(setup.pidlog, ("plain", "family"))

    # While it runs: a second start and an unknown program are clear, one-line errors.
    out, err, code = project.manage("supervisor", "--daemonize")
    assert (out, code) == ("", 1)
    assert err.startswith("CommandError: supervisord is already running for this project")
    assert err.count("\n") == 1
    out, err, code = project.manage("supervisor", "start", "nope")
    assert (out, err, code) == ("nope: ERROR (no such process)\n", "", 1)
    assert len(logged(setup.pidlog)["plain"]) == 1  # nothing was restarted

    watched = set(programs) | set(descendants([daemon]))
    os.kill(daemon, signal.SIGKILL)
    wait_dead([daemon])
    wait_dead(watched, timeout=GRACE)

    # The stale socket, pidfile and lock of the killed instance do not block a restart.
    server = project.start()
    output = LineReader(server)
    again = wait_logged(setup.pidlog, ("plain", "family"), starts=2)
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    wait_dead(again, timeout=GRACE)


# --- 2. No strangers -------------------------------------------------------------------


def stranger_python(site_dir: str) -> str | None:
    """An interpreter user ``nobody`` can run and import supervisor with, if any.

    Not /tmp/venv/bin/supervisorctl: its interpreter lives under /root, so for nobody
    the exec itself fails with "Permission denied", which would prove nothing.
    """
    candidates = [sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3"]
    for python in dict.fromkeys(candidates):
        probe = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                "env",
                f"PYTHONPATH={site_dir}",
                python,
                "-c",
                "import supervisor.supervisorctl",
            ],
            capture_output=True,
            cwd="/",
        )
        if probe.returncode == 0:
            return python
    return None


def supervisorctl(
    python: str, site_dir: str, rpc: Rpc, password: str, *, as_nobody: bool
) -> tuple[str, int]:
    """Run the stock supervisorctl ``status``; return its output and exit code."""
    command = [
        "env",
        f"PYTHONPATH={site_dir}",
        python,
        "-m",
        "supervisor.supervisorctl",
        "-s",
        rpc.serverurl,
        "-u",
        rpc.username,
        "-p",
        password,
        "status",
    ]
    if as_nobody:
        command = ["runuser", "-u", "nobody", "--", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    # From /: supervisorctl would read a supervisord.conf in its working directory.
    proc = subprocess.run(command, capture_output=True, text=True, cwd="/", env=env, timeout=30)
    return proc.stdout + proc.stderr, proc.returncode


def test_control_channel_is_closed_to_other_users(setup: Setup) -> None:
    import supervisor

    site_dir = str(Path(supervisor.__file__).resolve().parent.parent)
    python = stranger_python(site_dir)
    if python is None:
        pytest.skip("no Python interpreter that user nobody can run supervisorctl with")
    project = setup.project
    # A permissive umask must not open the runtime directory or the socket up.
    server = project.start(preexec_fn=lambda: os.umask(0))
    output = LineReader(server)
    rpc = Rpc(project)
    rpc.wait_states({"plain": "RUNNING", "family": "RUNNING"}, server)

    runtime = runtime_dirs(project.path)[0]
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert runtime.stat().st_uid == os.getuid()
    # Our own user, with the password: the channel works (so the refusals below are
    # not the harness failing) ...
    text, code = supervisorctl(python, site_dir, rpc, rpc.password, as_nobody=False)
    assert (text.split()[:2], code) == (["family", "RUNNING"], 0), text
    # ... and without it, it does not.
    text, code = supervisorctl(python, site_dir, rpc, "wrong", as_nobody=False)
    assert "Server requires authentication" in text
    assert code != 0
    # Another user cannot even reach the socket, password or not.
    for password in ("wrong", rpc.password):
        text, code = supervisorctl(python, site_dir, rpc, password, as_nobody=True)
        assert "[Errno 13] Permission denied" in text, text  # connecting to the socket
        assert "RUNNING" not in text
        assert code != 0

    # The password is printed by getconfig alone.
    out, err, code = project.manage("supervisor", "status")
    assert (err, code) == ("", 0)
    assert "RUNNING" in out
    assert rpc.password not in out
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0
    assert rpc.password not in output.text


def test_runtime_dir_owned_by_another_user_is_refused(setup: Setup) -> None:
    runtime = runtime_dirs(setup.project.path)[0]
    shutil.rmtree(runtime, ignore_errors=True)
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)

    out, err, code = refused(setup)
    assert (out, code) == ("", 1)
    assert err == (
        f"CommandError: runtime directory {runtime} is unsafe: found a directory owned by "
        f"uid {NOBODY} (nobody) with mode 0700, expected a directory owned by uid {os.getuid()} "
        "(root) with mode 0700; remove it, or set SUPERVISOR_RUNTIME_DIR to a directory of "
        "yours with mode 0700\n"
    )
    assert runtime.stat().st_uid == NOBODY
    assert list(runtime.iterdir()) == []


def test_credentials_change_with_secret_key(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    first = ctl_section(make_project(root, family(tmp_path / "pids.log"), secret_key="one"))
    second = ctl_section(make_project(root, family(tmp_path / "pids.log"), secret_key="two"))
    assert first["serverurl"] == second["serverurl"]
    assert first["username"] == second["username"]
    assert len(first["password"]) >= 16
    assert first["password"] != second["password"]


# --- 3. Clear errors -------------------------------------------------------------------


def refused(setup: Setup, *args: str) -> tuple[str, str, int]:
    """Run ``manage.py supervisor ARGS``, expecting it to give up; fail if it started.

    Started means a program logged its pid, or supervisord's socket appeared: then
    it is stopped at once rather than waited for.
    """
    project = setup.project
    proc = subprocess.Popen(
        [sys.executable, str(project.path / "manage.py"), "supervisor", *args],
        cwd=project.path,
        env=project.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    project.started.append(proc)
    sock = runtime_dirs(project.path)[0] / "supervisor.sock"
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if setup.pidlog.exists() or sock.exists():
            break
        time.sleep(0.05)
    started = setup.pidlog.exists() or sock.exists()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert not started, f"it started anyway; output:\n{out}{err}"
    return out, err, proc.returncode


def broken(setup: Setup, extra: str) -> int:
    """Append ``extra`` to the project's config; return the line number it starts on."""
    conf = setup.project.path / "supervisord.conf"
    text = conf.read_text()
    conf.write_text(text + extra)
    return text.count("\n") + 1


def case(name: str, extra: str, args: tuple[str, ...], code: int, expected: str) -> object:
    return pytest.param(extra, args, code, expected, id=name)


# Line 5 is [program:family], the section the appended options land in.
@pytest.mark.parametrize(
    ("extra", "args", "exit_code", "expected"),
    [
        case(
            "missing config file",
            "",
            ("--config-file=missing.conf",),
            1,
            "CommandError: {project}/missing.conf: config file not found",
        ),
        case(
            "template syntax",
            "{{% if %}}\n",
            (),
            1,
            "CommandError: {conf}:{line}: template error: Unexpected end of expression in if tag.",
        ),
        case(
            "unknown variable",
            "{{% if DEBUG %}}\nautostart=false\n{{% endif %}}\n",
            (),
            1,
            "CommandError: {conf}:{line}: unknown template variable 'DEBUG' (known: ",
        ),
        case(
            "no command",
            "\n[program:nocommand]\nstartsecs=0\n",
            (),
            1,
            "CommandError: {conf}:{next_line}: [program:nocommand] has no command",
        ),
        case(
            "bad startsecs",
            "startsecs=soon\n",
            (),
            1,
            "CommandError: {conf}:5: [program:family] (option startsecs = soon): "
            "invalid literal for int() with base 10: 'soon'",
        ),
        case(
            "unknown stopsignal",
            "stopsignal=FOO\n",
            (),
            1,
            "CommandError: {conf}:5: [program:family] (option stopsignal = FOO): "
            "value 'FOO' is not a valid signal name",
        ),
        case(
            "bad numprocs",
            "numprocs=two\n",
            (),
            1,
            "CommandError: {conf}:5: [program:family] (option numprocs = two): "
            "invalid literal for int() with base 10: 'two'",
        ),
        case(
            "numprocs without process_num",
            "numprocs=2\n",
            (),
            1,
            "CommandError: {conf}:5: [program:family]: %(process_num) must be present "
            "within process_name when numprocs > 1",
        ),
        case(
            "unknown action",
            "",
            ("frobnicate",),
            2,
            "CommandError: unknown action 'frobnicate'; see 'manage.py supervisor help'",
        ),
        case(
            "not running",
            "",
            ("status",),
            1,
            "CommandError: supervisord is not running (control socket "
            "{runtime}/supervisor.sock); start it with 'manage.py supervisor'",
        ),
        case(
            "port in use",
            "\n[inet_http_server]\nport=127.0.0.1:{port}\n",
            (),
            1,
            "CommandError: Another program is already listening on a port that one of our "
            "HTTP servers is configured to use.",
        ),
        case(
            "port in use, daemon",
            "\n[inet_http_server]\nport=127.0.0.1:{port}\n",
            ("--daemonize",),
            1,
            "CommandError: Another program is already listening on a port that one of our "
            "HTTP servers is configured to use.",
        ),
        case(
            "logfile in a missing directory",
            "",
            ("--logfile", "/proc/nope/x.log"),
            1,
            "CommandError: The directory named as part of the path /proc/nope/x.log does not exist",
        ),
        case(
            "logfile in a missing directory, daemon",
            "",
            ("--daemonize", "--logfile", "/proc/nope/x.log"),
            1,
            "CommandError: The directory named as part of the path /proc/nope/x.log does not exist",
        ),
        case(
            "pidfile in a missing directory",
            "",
            ("--pidfile", "/proc/nope/x.pid"),
            1,
            "CommandError: The directory named as part of the path /proc/nope/x.pid does not exist",
        ),
        case(
            "unwritable logfile",
            "",
            ("--logfile", "/proc/x.log"),
            1,
            "CommandError: cannot open log file /proc/x.log",
        ),
        case(
            "unwritable pidfile",
            "",
            ("--pidfile", "/proc/x.pid"),
            1,
            "CommandError: cannot write pid file /proc/x.pid",
        ),
    ],
)
def test_clear_errors(
    setup: Setup,
    busy_port: int,
    extra: str,
    args: tuple[str, ...],
    exit_code: int,
    expected: str,
) -> None:
    line = broken(setup, extra.format(port=busy_port))
    conf = setup.project.path / "supervisord.conf"
    first_line = expected.format(
        project=setup.project.path,
        conf=conf,
        line=line,
        next_line=line + 1,
        runtime=runtime_dirs(setup.project.path)[0],
    )

    out, err, code = refused(setup, *args)

    # One line, on stderr, and nothing else but supervisord's own start-up notices.
    assert err.startswith(first_line), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in out + err
    assert "spawned" not in out
    assert code == exit_code
    assert not setup.pidlog.exists()


# --- 4. Faults survived ----------------------------------------------------------------

FAULTS = """
[program:crasher]
command={crasher}
startsecs=1
startretries=1

[program:stubborn]
command={stubborn}
startsecs=0
stopwaitsecs=1
"""


def test_crashing_and_stubborn_programs(setup: Setup) -> None:
    conf = setup.project.path / "supervisord.conf"
    conf.write_text(
        conf.read_text()
        + FAULTS.format(
            crasher=program("crasher.py"),
            stubborn=program("trapper.py", "stubborn", "TERM=report"),
        )
    )
    server = setup.project.start()
    output = LineReader(server)
    rpc = Rpc(setup.project)
    expected = {"plain": "RUNNING", "family": "RUNNING", "stubborn": "RUNNING", "crasher": "FATAL"}
    info = rpc.wait_states(expected, server)
    output.wait_for("gave up: crasher entered FATAL state, too many start retries too quickly")
    assert output.text.count("spawned: 'crasher'") == 2  # startretries=1: one retry
    # The others kept running, untouched, all along.
    assert [start[0] for start in logged(setup.pidlog)["plain"]] == [info["plain"]["pid"]]
    assert len(logged(setup.pidlog)["family"]) == 1
    programs = wait_logged(setup.pidlog, ("plain", "family"))

    # stubborn ignores SIGTERM: after stopwaitsecs it is SIGKILLed and shutdown completes.
    output.wait_for("stubborn started")  # its handler is in place
    stubborn = info["stubborn"]["pid"]
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    assert "stubborn got SIGTERM" in output.text
    assert f"killing 'stubborn' ({stubborn}) with SIGKILL" in output.text
    assert "stopped: stubborn (terminated by SIGKILL)" in output.text
    wait_dead([*programs, stubborn], timeout=GRACE)


def pids_of(rpc: Rpc) -> dict[str, int]:
    return {name: entry["pid"] for name, entry in rpc.info().items()}


def test_broken_config_keeps_the_running_set(setup: Setup) -> None:
    project = setup.project
    server = project.start()
    output = LineReader(server)
    rpc = Rpc(project)
    rpc.wait_states({"plain": "RUNNING", "family": "RUNNING"}, server)
    before = pids_of(rpc)
    conf = project.path / "supervisord.conf"
    good = conf.read_text()

    # A broken template, then a bad option value (which only supervisord's parser sees).
    # Every way to ask supervisord to re-read is refused, naming the problem: reload and
    # update, stock supervisorctl's RPC calls, SIGHUP.
    line = broken(setup, "{% if %}\n")
    template_problem = f"{conf}:{line}: template error: Unexpected end of expression in if tag."
    option_problem = f"{conf}:5: [program:family] (option startsecs = soon): invalid literal"
    for problem in (template_problem, option_problem):
        if problem is option_problem:
            conf.write_text(good + "startsecs=soon\n")
        for action in ("reload", "update"):
            out, err, code = project.manage("supervisor", action)
            assert problem in out + err
            # (A template error may also come as a warning: the client renders the
            # config to find the control channel, and falls back to the default one.)
            assert "Traceback" not in out + err
            assert "<class" not in out + err  # no exception dressed up as a message
            assert code == 1
        for method in ("supervisor.reloadConfig", "supervisor.restart"):
            with pytest.raises(xmlrpc.client.Fault) as fault:
                rpc.call(method)
            assert problem in fault.value.faultString
        server.send_signal(signal.SIGHUP)
        output.wait_for(f"reload refused, keeping the running programs: {problem}")

    assert pids_of(rpc) == before
    assert {name: len(starts) for name, starts in logged(setup.pidlog).items()} == {
        "plain": 1,
        "family": 1,
    }
    assert server.poll() is None

    # Fixed: update applies the change, and leaves the unchanged programs alone.
    conf.write_text(
        good + f"\n[program:added]\ncommand={program('sleeper.py', 'added')}\nstartsecs=0\n"
    )
    out, err, code = project.manage("supervisor", "update")
    assert (out, err, code) == ("added: added process group\n", "", 0)
    info = rpc.wait_states({"plain": "RUNNING", "family": "RUNNING", "added": "RUNNING"})
    assert {name: info[name]["pid"] for name in before} == before
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text


# --- 5. Load ---------------------------------------------------------------------------

CLIENTS = 20
CALLS = 1000


def test_concurrent_xmlrpc_clients(setup: Setup) -> None:
    server = setup.project.start()
    output = LineReader(server)
    rpc = Rpc(setup.project)
    rpc.wait_states({"plain": "RUNNING", "family": "RUNNING"}, server)
    family = rpc.info()["family"]["pid"]
    errors: list[str] = []
    answers: list[bool] = []
    barrier = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        transport = rpc.transport()  # a fresh connection per client
        proxy: Any = xmlrpc.client.ServerProxy("http://127.0.0.1", transport)
        try:
            barrier.wait(timeout=30)
            for call in range(CALLS // CLIENTS):
                kind = (index + call) % 4
                if kind == 0:
                    ok = proxy.supervisor.getPID() == server.pid
                elif kind == 1:
                    ok = proxy.supervisor.getState()["statename"] == "RUNNING"
                elif kind == 2:
                    ok = proxy.supervisor.getProcessInfo("family")["pid"] == family
                else:
                    ok = len(proxy.supervisor.getAllProcessInfo()) == 2
                answers.append(ok)
        except Exception as error:  # every failure counts, whatever it is
            errors.append(f"client {index}: {type(error).__name__}: {error}")
        finally:
            transport.close()

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(answers) == CALLS
    assert all(answers)
    server.send_signal(signal.SIGTERM)
    assert output.finish() == 0
