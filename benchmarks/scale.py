"""Many programs (issue 16): ``manage.py supervisor`` vs stock supervisord, same merged config.

Programs are ``sleep 600`` with ``startsecs=0``: 1,000 (300 with ``--quick``). Each
side runs alone while it is measured, the two taking turns; both read the same merged
config (the peer's re-homed to its own socket, log and pid file).
"""

from __future__ import annotations

import datetime
import http.client
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import console
from .harness import Pid, cpu_seconds, run_worker, stock_command
from .project import BenchProject
from .registry import Context, Figure, Target, Unit, benchmark
from .runtime import PEER, RUNNING_LINE, Side, _time_command, setup
from .speed import Manager, supervisord_sides

PROGRAMS_FULL = 1000
PROGRAMS_QUICK = 300
ROUND_COUNTS_FULL = (10, 100, 1000)
ROUND_COUNTS_QUICK = (10, 100, 300)
#: Requests whose server-side CPU is averaged, per program count.
ROUND_REQUESTS = 200

_SPAWNED = re.compile(rb"^(\S+ \S+) INFO spawned: '", re.MULTILINE)

FLOOR_WORKER = """\
import os, sys, time
count = int(sys.argv[1])
started = time.perf_counter()
pids = [os.posix_spawn("/bin/sleep", ["sleep", "600"], os.environ) for _ in range(count)]
elapsed = time.perf_counter() - started
for pid in pids:
    os.kill(pid, 9)
for pid in pids:
    os.waitpid(pid, 0)
print(elapsed)
"""


def _programs(ctx: Context) -> int:
    return PROGRAMS_QUICK if ctx.quick else PROGRAMS_FULL


def _spawn_times(log: Path, offset: int) -> list[float]:
    """Times of supervisord's "spawned:" lines past ``offset`` (millisecond stamps)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read()
    stamps = []
    for match in _SPAWNED.finditer(text):
        when = datetime.datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f")
        stamps.append(when.timestamp())
    return stamps


def _slowdown(stamps: list[float]) -> float:
    """Rate of the first 10 % of spawns over the rate of the last 10 % (1 = flat)."""
    tenth = max(2, len(stamps) // 10)
    first = stamps[tenth - 1] - stamps[0]
    last = stamps[-1] - stamps[-tenth]
    # Millisecond stamps: a burst faster than that counts as one millisecond.
    return max(last, 0.001) / max(first, 0.001)


def _stop_until_gone(ctx: Context, proc: subprocess.Popen[bytes], programs: list[Pid]) -> float:
    """SIGTERM the manager; seconds until it and every program have exited."""
    started = time.perf_counter()
    proc.terminate()
    deadline = time.monotonic() + 60
    while proc.poll() is None or any(p.alive() for p in programs):
        if time.monotonic() > deadline:
            raise RuntimeError("programs still alive 60 s after SIGTERM")
        time.sleep(0.002)
    return time.perf_counter() - started


def _floor(ctx: Context, project: BenchProject, count: int) -> float:
    """A bare posix_spawn loop of ``count`` sleeps, plus ``manage.py version`` (Django start-up)."""
    spawned = float(
        run_worker(
            [sys.executable, "-c", FLOOR_WORKER, str(count)],
            cwd=ctx.workdir,
            env=dict(os.environ),
            timeout=120,
        )
    )
    started = time.perf_counter()
    project.manage("version")
    return spawned + time.perf_counter() - started


def _timed_start(
    ctx: Context, side: Side, name: str, count: int
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Warm ``side`` up and start it; its process, its log's offset before the start,
    and the seconds until every program was RUNNING."""
    offset = side.logfile.stat().st_size if side.logfile.exists() else 0
    side.warm()
    started = time.perf_counter()
    proc = side.start(ctx.procs, name)
    done = ctx.procs.wait_logged(
        proc, side.logfile, RUNNING_LINE, count, offset=offset, timeout=300
    )
    return proc, offset, done - started


def _start_and_stop(ctx: Context, side: Side, key: str, count: int) -> float:
    """Start ``side``, wait for every program RUNNING, stop it; seconds to all RUNNING."""
    proc, _, seconds = _timed_start(ctx, side, f"scale-first-{key}", count)
    ctx.procs.stop(proc, timeout=60)
    return seconds


@benchmark("scale.start", "many programs: start, spawn rate, getAllProcessInfo, status, stop")
def start(ctx: Context) -> list[Figure]:
    count = _programs(ctx)
    project, _, names, ours, peer = setup(ctx, count)
    peer_ctl = ctx.workdir / "peer.conf"  # setup()'s re-homed copy, for supervisorctl
    status_argv = {
        "ours": project.manage_argv("supervisor", "status"),
        "peer": [*stock_command("supervisorctl"), "-c", str(peer_ctl), "status"],
    }
    runs = ctx.reps(1, 4)
    keys = ("starts", "slowdown", "info", "parsed", "status", "stop")
    samples: dict[str, dict[str, list[float]]] = {k: {"ours": [], "peer": []} for k in keys}
    floors: list[float] = []
    # An untimed first start per side. Ours then finds the logs of a previous run, as
    # every start of a project but its first does; its first start creates them all
    # (shown in its own row). Stock supervisord deletes and creates them each time.
    first = {
        key: _start_and_stop(ctx, side, key, count)
        for key, side in (("ours", ours), ("peer", peer))
    }
    for run in range(runs):
        order: tuple[tuple[str, Side], ...] = (("ours", ours), ("peer", peer))
        for key, side in order if run % 2 == 0 else order[::-1]:
            proc, offset, seconds = _timed_start(ctx, side, f"scale-{key}", count)
            samples["starts"][key].append(seconds)
            samples["slowdown"][key].append(_slowdown(_spawn_times(side.logfile, offset)))
            info: list[dict[str, Any]] = []
            for _ in range(ctx.reps(3, 5)):
                before = time.perf_counter()
                info, answered = side.channel.timed_call("supervisor.getAllProcessInfo", timeout=60)
                samples["info"][key].append(answered)
                samples["parsed"][key].append(time.perf_counter() - before)
            if len(info) != count:
                raise RuntimeError(f"{key}: getAllProcessInfo listed {len(info)} of {count}")
            pids = [p for p in map(Pid.of, (e["pid"] for e in info)) if p is not None]
            ctx.procs.adopt(p.pid for p in pids)
            _time_command(status_argv[key], project, names)  # warm-up: its own imports
            for _ in range(ctx.reps(2, 3)):
                samples["status"][key].append(_time_command(status_argv[key], project, names))
            samples["stop"][key].append(_stop_until_gone(ctx, proc, pids))
        ours.warm()  # the floor's Django start-up reads the same modules from the cache
        floors.append(_floor(ctx, project, count))
    floor = statistics.median(floors)
    n = f"{count:,} programs"

    def medians(
        key: str, label: str, unit: Unit, target: Target | None, peer_name: str = PEER
    ) -> Figure:
        """Our median of samples[key] beside the peer's, with the raw samples."""
        ours, peer = (statistics.median(samples[key][side]) for side in ("ours", "peer"))
        return Figure(f"{label}, {n}", unit, ours, peer, peer_name, target, samples[key])

    starts = medians("starts", "exec to all RUNNING", "s", Target("ratio", 0.5))
    return [
        starts,
        Figure(
            f"the same, first start in a new runtime directory (untimed above), {n}",
            "s",
            first["ours"],
            first["peer"],
            PEER,
            None,
            {key: [value] for key, value in first.items()},
        ),
        Figure(
            f"exec to all RUNNING vs posix_spawn loop + Django start-up, {n}",
            "s",
            starts.ours,
            floor,
            "posix_spawn loop + manage.py version",
            Target("ratio", 1.5),
            {"ours": samples["starts"]["ours"], "peer": floors},
        ),
        medians(
            "slowdown", "spawn slowdown: first-10% rate / last-10% rate", "x", Target("ours", 1.25)
        ),
        # The server's part: until the answer (1.3 MB of XML) is in. This process then
        # parses it with xmlrpc.client, its own cost (most of the total), shown next.
        medians(
            "info", "getAllProcessInfo over the unix socket, answered", "s", Target("ours", 0.1)
        ),
        medians("parsed", "the same, answered and parsed by xmlrpc.client", "s", None),
        medians(
            "status",
            "status, whole process",
            "s",
            Target("ours", 0.5),
            "supervisorctl status (its own server)",
        ),
        medians("stop", "SIGTERM to all gone", "s", Target("ours", 0.5)),
    ]


@benchmark("scale.idle", "idle CPU of the supervisord process with many programs, both at once")
def idle(ctx: Context) -> list[Figure]:
    count = _programs(ctx)
    _, _, _, ours, peer = setup(ctx, count)
    window = 5.0 if ctx.quick else 20.0
    procs = {"ours": ours.start(ctx.procs, "idle-ours"), "peer": peer.start(ctx.procs, "idle-peer")}
    for key, side in (("ours", ours), ("peer", peer)):
        ctx.procs.wait_logged(procs[key], side.logfile, RUNNING_LINE, count, timeout=300)
    time.sleep(2.0)  # the start-up burst's last rounds
    before = {key: cpu_seconds(proc.pid) for key, proc in procs.items()}
    started = time.monotonic()
    time.sleep(window)
    cpu = {key: cpu_seconds(proc.pid) - before[key] for key, proc in procs.items()}
    elapsed = time.monotonic() - started
    for proc in procs.values():
        ctx.procs.stop(proc, timeout=60)
    percent = {key: 100 * value / elapsed for key, value in cpu.items()}
    return [
        Figure(
            f"idle CPU over {window:.0f} s, {count:,} programs",
            "%",
            percent["ours"],
            percent["peer"],
            PEER,
            Target("ours", 0.5),
            {key: [value] for key, value in cpu.items()},
        )
    ]


@benchmark(
    "scale.rounds",
    "server CPU per trivial request (a few loop rounds) at 10, 100 and 1,000 idle programs",
)
def rounds(ctx: Context) -> list[Figure]:
    figures = []
    counts = ROUND_COUNTS_QUICK if ctx.quick else ROUND_COUNTS_FULL
    for count in counts:
        sub = Context(ctx.quick, ctx.workdir / f"n{count}", ctx.procs)
        sub.workdir.mkdir()
        _, _, _, ours, peer = setup(sub, count)
        cost = {}
        for key, side in (("ours", ours), ("peer", peer)):
            proc = side.start(ctx.procs, f"rounds-{key}-{count}")
            ctx.procs.wait_logged(proc, side.logfile, RUNNING_LINE, count, timeout=300)
            time.sleep(1.0)
            before = cpu_seconds(proc.pid)
            for _ in range(ROUND_REQUESTS):
                side.channel.call("supervisor.getAPIVersion")
            cost[key] = (cpu_seconds(proc.pid) - before) / ROUND_REQUESTS
            ctx.procs.stop(proc, timeout=60)
        figures.append(
            Figure(
                f"server CPU per getAPIVersion request, {count:,} idle programs",
                "s",
                cost["ours"],
                cost["peer"],
                PEER,
            )
        )
    return figures


MANY_PROGRAMS = 5000


def _poll_during_start(
    ctx: Context, manager: Manager, proc: subprocess.Popen[bytes], count: int, offset: int
) -> tuple[float, list[float], list[float]]:
    """Start-up time (log), and each getAllProcessInfo issued meanwhile: the seconds
    until its answer had arrived whole, and until it was also parsed (xmlrpc.client)."""
    started = time.perf_counter()
    latencies: list[float] = []
    answers: list[float] = []
    assert manager.logfile is not None and manager.channel is not None
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise ctx.procs.fail(proc, f"exited with status {proc.returncode}")
        try:
            with open(manager.logfile, "rb") as log:
                log.seek(offset)
                seen = log.read().count(RUNNING_LINE.encode())
        except FileNotFoundError:
            seen = 0  # not written yet
        if seen >= count:
            return time.perf_counter() - started, answers, latencies
        if time.monotonic() > deadline:
            raise ctx.procs.fail(proc, f"{seen} of {count} RUNNING after 600 s")
        before = time.perf_counter()
        try:
            _, answered = manager.channel.timed_call("supervisor.getAllProcessInfo", timeout=120)
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)  # not listening yet
            continue
        latencies.append(time.perf_counter() - before)
        answers.append(answered)
        time.sleep(0.1)


@benchmark("scale.many", "5,000 programs (full run only): start, status during start-up, status")
def many(ctx: Context) -> list[Figure]:
    if ctx.quick:
        return []
    count = MANY_PROGRAMS
    # Two descriptors per program (stdout+stderr in one pipe, one log file) plus stdin:
    # 5,000 programs fit a 20,000-descriptor limit on both sides.
    conf = "".join(
        f"[program:p{i:04d}]\ncommand=sleep 600\nstartsecs=0\nredirect_stderr=true\n\n"
        for i in range(count)
    )
    ours, peer = supervisord_sides(ctx, conf)
    names = [f"p{i:04d}" for i in range(count)]
    peer_ctl = ctx.workdir / "peer.conf"
    project = BenchProject(ours.cwd, ours.cwd / "run")
    status_argv = {
        "ours": project.manage_argv("supervisor", "status"),
        "supervisord": [*stock_command("supervisorctl"), "-c", str(peer_ctl), "status"],
    }
    result: dict[str, dict[str, float]] = {}
    during: dict[str, list[float]] = {}
    parsed: dict[str, list[float]] = {}
    for manager in (ours, peer):
        offset = manager.offset()
        proc = ctx.procs.start(
            manager.argv, name=f"many-{manager.key}", env=manager.env, cwd=manager.cwd
        )
        elapsed, answers, latencies = _poll_during_start(ctx, manager, proc, count, offset)
        assert manager.channel is not None
        info = manager.channel.call("supervisor.getAllProcessInfo", timeout=120)
        ctx.procs.adopt(e["pid"] for e in info if e["pid"])
        status = _time_command(status_argv[manager.key], project, names)
        if manager is ours:
            ctx.procs.stop(proc, timeout=120)
        # Stock supervisord stops 5,000 groups one per turn of its loop (minutes): the
        # run's cleanup kills it and its programs by pid instead.
        result[manager.key] = {"start": elapsed, "status": status}
        during[manager.key] = answers
        parsed[manager.key] = latencies
    n = f"{count:,} programs"

    def slowest(times: dict[str, list[float]], label: str, target: Target | None) -> Figure:
        """The slowest request of each side, with all of them."""
        mine, theirs = (max(times[key], default=0) for key in ("ours", "supervisord"))
        samples = {"ours": times["ours"], "peer": times["supervisord"]}
        return Figure(f"{label}, {n}", "s", mine, theirs, PEER, target, samples)

    return [
        Figure(
            f"exec to all RUNNING, {n}",
            "s",
            result["ours"]["start"],
            result["supervisord"]["start"],
            PEER,
        ),
        # The loop's responsiveness: until the answer is in, whole. Parsing 6 MB of XML
        # with xmlrpc.client is the client's own cost (half or more), shown next.
        slowest(
            during,
            "slowest getAllProcessInfo issued during the start-up, answered",
            Target("ours", 1.0),
        ),
        slowest(parsed, "the same, answered and parsed by xmlrpc.client", None),
        Figure(
            f"status, whole process, {n}",
            "s",
            result["ours"]["status"],
            result["supervisord"]["status"],
            "supervisorctl status (its own server)",
            Target("ours", 2.0),
        ),
    ]


CONSOLE_MIB = 20


@benchmark(
    "scale.console",
    "20 MiB of 80-byte lines: to the console and the log file vs stock supervisord's log "
    "file alone (issue 16's row; console.throughput has the 200 MiB and honcho rows)",
)
def console_row(ctx: Context) -> list[Figure]:
    sides = console.Sides(ctx, CONSOLE_MIB * console.MIB // (console.BLOCK_LINES * console.LINE))
    runs = ctx.reps(3, 9)
    seconds: dict[str, list[float]] = {"ours": [], "peer": []}
    for run in range(runs):
        # Alternate who goes first, so drifting background load hits both alike.
        pair = [("ours", sides.ours), ("peer", sides.supervisord)]
        for key, side in pair if run % 2 == 0 else reversed(pair):
            seconds[key].append(side().seconds)
    return [
        Figure(
            f"{CONSOLE_MIB} MiB of 80-byte lines: console and log file vs log file only "
            f"(median of {runs})",
            "s",
            statistics.median(seconds["ours"]),
            statistics.median(seconds["peer"]),
            "supervisord -n, log file",
            Target("ratio", console.SUPERVISORD_RATIO),
            seconds,
        )
    ]
