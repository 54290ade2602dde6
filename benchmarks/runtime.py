"""Running programs: ``manage.py supervisor`` vs stock supervisord with the same programs.

Each peer runs the config ``manage.py supervisor getconfig`` prints, re-homed to its
own socket, log and pid files. Autoreload is off on our side (``--noreload``): the
peer has none.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .harness import (
    Channel,
    Processes,
    ProcessFailed,
    cpu_seconds,
    pss_mib,
    related,
    rss_mib,
    run_worker,
    stock_command,
)
from .project import (
    SETTINGS_MODULE,
    BenchProject,
    MergedConfig,
    getconfig,
    make_project,
    sleep_programs,
)
from .registry import Context, Figure, Target, benchmark

START_PROGRAMS = 100
START_RATIO = 1.15
STATUS_PROGRAMS = 50
IDLE_PROGRAMS = 50
# Let the start-up burst (spawn logging, first ticks) pass before sampling idle CPU.
IDLE_SETTLE = 1.0

PEER = "supervisord -n -c merged"

#: What each side imports on its way up, read into the page cache before a timed start.
OURS_IMPORTS = (
    "djsupervisor.management.commands.supervisor",
    "djsupervisor.server.foreground",
    "djsupervisor.server.runtime",
    "djsupervisor.client.channel",
    "supervisor.supervisord",
    "supervisor.rpcinterface",
    "supervisor.web",
)
PEER_IMPORTS = (
    "supervisor.supervisord",
    "supervisor.supervisorctl",
    "supervisor.rpcinterface",
    "supervisor.web",
)

WARM_WORKER = """\
import importlib, os, sys
if sys.argv[1] == "django":
    import django
    from django.core import checks
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[2])
    django.setup()
    checks.run_checks()
if os.path.isdir(sys.argv[3]):  # the log directory's entries and inodes
    for entry in os.scandir(sys.argv[3]):
        entry.stat(follow_symlinks=False)
for name in sys.argv[4:]:
    importlib.import_module(name)
print("null")
"""


@dataclass(frozen=True)
class Side:
    """How to start one supervisord, and how to reach it."""

    argv: Sequence[str]
    channel: Channel
    logfile: Path
    project: BenchProject
    imports: Sequence[str]
    django: bool

    def warm(self) -> None:
        """Import what this side imports, and read its log directory (each entry's
        inode), in a throw-away interpreter: a warm-up start.

        Some machines give file pages back to their host within seconds: a start timed
        on such a machine would otherwise read a different, random part of its modules
        from disk each time, and the side importing more (Django) would pay more. Each
        start also reads the previous run's 2,000 logs (ours reuses them, stock
        supervisord deletes them): cold, that directory cost up to 0.2 s of a start.
        """
        mode = "django" if self.django else "plain"
        logs = str(self.logfile.parent)
        argv = [sys.executable, "-c", WARM_WORKER, mode, SETTINGS_MODULE, logs, *self.imports]
        run_worker(argv, cwd=self.project.path, env=self.project.env(), timeout=120)

    def start(self, procs: Processes, name: str) -> subprocess.Popen[bytes]:
        return procs.start(self.argv, name=name, env=self.project.env(), cwd=self.project.path)


def setup(ctx: Context, programs: int) -> tuple[BenchProject, MergedConfig, list[str], Side, Side]:
    """A project with ``programs`` sleepers; our side and the stock peer, each its own paths."""
    conf, names = sleep_programs(programs)
    project = make_project(ctx.workdir / "proj", conf=conf)
    merged = getconfig(project, "--noreload")
    peer_dir = ctx.workdir / "peer"
    # supervisord wants its log file's directory to exist; keep it private like ours.
    peer_dir.mkdir(mode=0o700)
    peer_conf = merged.rehomed(peer_dir)
    peer_file = peer_conf.write(ctx.workdir / "peer.conf")
    ours = Side(
        project.manage_argv("supervisor", "--noreload"),
        merged.channel(),
        merged.logfile(),
        project,
        OURS_IMPORTS,
        django=True,
    )
    peer = Side(
        [*stock_command("supervisord"), "-n", "-c", str(peer_file)],
        peer_conf.channel(),
        peer_conf.logfile(),
        project,
        PEER_IMPORTS,
        django=False,
    )
    if ours.channel.socket_path == peer.channel.socket_path or ours.logfile == peer.logfile:
        raise RuntimeError("the peer config was not re-homed")
    return project, merged, names, ours, peer


#: What supervisord logs when a program has been up for its startsecs.
RUNNING_LINE = "entered RUNNING state"


def _start_runs(
    ctx: Context, *, polled: bool
) -> tuple[int, dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Start and stop both sides ``runs`` times; return runs, start, answered, stop times."""
    _, _, names, ours, peer = setup(ctx, START_PROGRAMS)
    runs = ctx.reps(3, 7)
    starts: dict[str, list[float]] = {"ours": [], "peer": []}
    answered: dict[str, list[float]] = {"ours": [], "peer": []}
    stops: dict[str, list[float]] = {"ours": [], "peer": []}
    for run in range(runs):
        # Alternate who goes first, so drifting background load hits both alike.
        order = (("ours", ours), ("peer", peer))
        for key, side in order if run % 2 == 0 else reversed(order):
            offset = side.logfile.stat().st_size if side.logfile.exists() else 0
            side.warm()
            started = time.perf_counter()
            proc = side.start(ctx.procs, f"start-{key}")
            if polled:
                running = ctx.procs.wait_running(proc, side.channel, set(names))
                starts[key].append(running.running - started)
                answered[key].append(running.answered - started)
            else:
                done = ctx.procs.wait_logged(
                    proc, side.logfile, RUNNING_LINE, len(names), offset=offset
                )
                starts[key].append(done - started)
            stops[key].append(ctx.procs.stop(proc))
    return runs, starts, answered, stops


@benchmark(
    "runtime.start",
    f"exec until {START_PROGRAMS} programs (startsecs=0) are RUNNING, polled over XML-RPC",
)
def start_until_running(ctx: Context) -> list[Figure]:
    runs, starts, answered, stops = _start_runs(ctx, polled=True)
    return [
        Figure(
            label=f"start to {START_PROGRAMS} RUNNING (median of {runs})",
            unit="s",
            ours=statistics.median(starts["ours"]),
            peer=statistics.median(starts["peer"]),
            peer_name=PEER,
            target=Target("ratio", START_RATIO),
            samples=starts,
            extras={"socket_answered_seconds": answered},
        ),
        # Measured anyway on the way out: SIGTERM until the process has exited.
        Figure(
            label=f"stop {START_PROGRAMS} programs, SIGTERM to exit (median of {runs})",
            unit="s",
            ours=statistics.median(stops["ours"]),
            peer=statistics.median(stops["peer"]),
            peer_name=PEER,
            samples=stops,
        ),
    ]


@benchmark(
    "runtime.start_unpolled",
    f"exec until {START_PROGRAMS} programs are RUNNING, seen in the log file: no requests "
    "wake stock supervisord's 1 s poll",
)
def start_until_running_unpolled(ctx: Context) -> list[Figure]:
    runs, starts, _, _ = _start_runs(ctx, polled=False)
    return [
        Figure(
            label=f"start to {START_PROGRAMS} RUNNING, unpolled (median of {runs})",
            unit="s",
            ours=statistics.median(starts["ours"]),
            peer=statistics.median(starts["peer"]),
            peer_name=PEER,
            samples=starts,
        )
    ]


def _states(output: str) -> dict[str, str]:
    return {
        line.split()[0]: line.split()[1] for line in output.splitlines() if len(line.split()) > 1
    }


def _time_command(argv: Sequence[str], project: BenchProject, names: list[str]) -> float:
    """Run a status command to completion; check it saw every program RUNNING."""
    started = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        cwd=project.path,
        env=project.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    states = _states(proc.stdout)
    if proc.returncode != 0 or any(states.get(name) != "RUNNING" for name in names):
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}, stdout {proc.stdout[-500:]!r}, "
            f"stderr {proc.stderr[-1000:]!r}"
        )
    return elapsed


@benchmark(
    "runtime.status",
    f"whole-process 'manage.py supervisor status' vs 'supervisorctl -c merged status', "
    f"{STATUS_PROGRAMS} programs, same running instance",
)
def status_command(ctx: Context) -> list[Figure]:
    project, merged, names, ours, _ = setup(ctx, STATUS_PROGRAMS)
    # The unmodified getconfig output points supervisorctl at *our* running instance.
    ctl_file = merged.write(ctx.workdir / "ctl.conf")
    argvs = {
        "ours": project.manage_argv("supervisor", "status"),
        "peer": [*stock_command("supervisorctl"), "-c", str(ctl_file), "status"],
    }
    server = ours.start(ctx.procs, "status-server")
    ctx.procs.wait_running(server, ours.channel, set(names))
    for argv in argvs.values():
        _time_command(argv, project, names)  # warm-up: page cache, .pyc files
    runs = ctx.reps(3, 10)
    samples: dict[str, list[float]] = {"ours": [], "peer": []}
    for run in range(runs):
        keys = ("ours", "peer") if run % 2 == 0 else ("peer", "ours")
        for key in keys:
            samples[key].append(_time_command(argvs[key], project, names))
    ctx.procs.stop(server)
    return [
        Figure(
            label=f"status, {STATUS_PROGRAMS} programs (median of {runs})",
            unit="s",
            ours=statistics.median(samples["ours"]),
            peer=statistics.median(samples["peer"]),
            peer_name="supervisorctl -c merged status",
            samples=samples,
        )
    ]


@benchmark(
    "runtime.idle",
    f"idle CPU and RSS of the supervisord process, {IDLE_PROGRAMS} programs, both at once",
)
def idle_cost(ctx: Context) -> list[Figure]:
    _, _, names, ours, peer = setup(ctx, IDLE_PROGRAMS)
    window = 5.0 if ctx.quick else 20.0
    procs = {"ours": ours.start(ctx.procs, "idle-ours"), "peer": peer.start(ctx.procs, "idle-peer")}
    program_pids: set[int] = set()
    for key, side in (("ours", ours), ("peer", peer)):
        program_pids |= ctx.procs.wait_running(procs[key], side.channel, set(names)).pids
    time.sleep(IDLE_SETTLE)
    # Both measured over the same wall-clock window: background load hits both alike.
    before = {key: cpu_seconds(proc.pid) for key, proc in procs.items()}
    started = time.monotonic()
    time.sleep(window)
    cpu = {key: cpu_seconds(proc.pid) - before[key] for key, proc in procs.items()}
    elapsed = time.monotonic() - started
    rss = {key: rss_mib(proc.pid) for key, proc in procs.items()}
    # Our helper processes (the orphan watchdog), reported apart: not supervisord itself.
    helpers = [p.pid for p in related([procs["ours"].pid]) if p.pid not in program_pids]
    helper_rss = {}
    for pid in helpers:
        with contextlib.suppress(ProcessFailed):  # it may exit meanwhile
            helper_rss[str(pid)] = rss_mib(pid)
    # VmRSS counts pages shared with the forked watchdog twice; PSS splits them.
    pss = {key: pss_mib(proc.pid) for key, proc in procs.items()}
    helper_pss = {str(pid): pss_mib(pid) for pid in helpers}
    for proc in procs.values():
        ctx.procs.stop(proc)
    percent = {key: 100 * value / elapsed for key, value in cpu.items()}
    return [
        Figure(
            label=f"idle CPU over {window:.0f} s, {IDLE_PROGRAMS} programs",
            unit="%",
            ours=percent["ours"],
            peer=percent["peer"],
            peer_name=PEER,
            samples={key: [value] for key, value in cpu.items()},
            extras={"window_seconds": elapsed, "cpu_seconds": cpu},
        ),
        Figure(
            label=f"RSS (VmRSS), {IDLE_PROGRAMS} programs",
            unit="MiB",
            ours=rss["ours"],
            peer=rss["peer"],
            peer_name=PEER,
            extras={"helper_rss_mib": helper_rss, "pss_mib": pss, "helper_pss_mib": helper_pss},
        ),
    ]
