"""Orchestration: how long a dependency chain takes to come up, per edge.

A chain of 20 programs, each ``depends_on`` the previous one, with ``startsecs=0``:
the critical path's sum of startsecs is 0, so ideally the chain is up as fast as the
same 20 programs without ``depends_on`` (the "flat" run, measured alongside). The
difference, divided by the 19 edges, is what orchestration costs per edge.

Two chains: ``started`` (``sleep 600``; met when the previous program is RUNNING) and
``healthy`` (each program opens a TCP port, checked with ``tcp://`` every 10 ms; met
when a probe connects). For the healthy chain, the cost per edge also holds one program
start-up (a Python interpreter opening its port): the reaction figure isolates our
part, from the port being open (the program writes the time) to the next program's
spawn (from supervisord's log, millisecond timestamps). It is a mean: the chain's time
is the sum of its edges, so one slow edge in ten counts.

"All RUNNING" is read from supervisord's log file: a request to its socket would wake
the loop and hide a latency that only shows when nobody is watching.
"""

from __future__ import annotations

import datetime
import re
import statistics
import sys
import time
from pathlib import Path

from .harness import free_ports
from .project import BenchProject, getconfig, make_project
from .registry import Context, Figure, Target, benchmark

PROGRAMS = 20
EDGE_TARGET = 0.05
INTERVAL = 0.01
RUNNING_LINE = "entered RUNNING state"
PEER = "critical path: sum of startsecs (0 s)"

# Opens its port, then says when (wall clock) in a file named after the program;
# written whole or not at all: it may be stopped at any moment.
LISTENER = """\
import os, socket, sys, time
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(16)
with open(sys.argv[2] + ".tmp", "w") as out:
    out.write(repr(time.time()))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(600)
"""


def names() -> list[str]:
    return [f"p{i:02d}" for i in range(PROGRAMS)]


def chain_conf(root: Path, kind: str, *, chained: bool) -> str:
    """``PROGRAMS`` programs, each depending on the previous one when ``chained``."""
    ports = free_ports(PROGRAMS)
    sections = []
    for i, name in enumerate(names()):
        lines = [f"[program:{name}]", "startsecs = 0"]
        if kind == "healthy":
            script = root / "listener.py"
            lines += [
                f"command = {sys.executable} -S {script} {ports[i]} {root / 'ready' / name}",
                f"healthcheck = tcp://127.0.0.1:{ports[i]}",
                # Short, so the wait for the next probe hardly counts in the reaction.
                f"healthcheck_interval = {INTERVAL}",
            ]
        else:
            lines.append("command = sleep 600")
        if chained and i:
            lines.append(f"depends_on = {names()[i - 1]}:{kind}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def setup(ctx: Context, kind: str, *, chained: bool) -> tuple[BenchProject, Path]:
    root = ctx.workdir / f"{kind}-{'chain' if chained else 'flat'}"
    project = make_project(root, conf=chain_conf(root, kind, chained=chained))
    (root / "listener.py").write_text(LISTENER)
    (root / "ready").mkdir()
    return project, getconfig(project, "--noreload").logfile()


def log_times(text: str, message: str) -> dict[str, float]:
    """``{program: epoch seconds}`` of supervisord log lines like ``spawned: 'p03' ...``."""
    pattern = re.compile(
        r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ " + message + r"$", re.MULTILINE
    )
    found = {}
    for match in pattern.finditer(text):
        when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        # supervisord logs local time.
        found[match.group(3)] = time.mktime(when.timetuple()) + int(match.group(2)) / 1000
    return found


def one_run(
    ctx: Context, project: BenchProject, logfile: Path
) -> tuple[float, list[float], list[float]]:
    """Exec to all RUNNING; per edge, port open to next spawn; per program, spawn to open."""
    offset = logfile.stat().st_size if logfile.exists() else 0
    for stale in (project.path / "ready").iterdir():
        stale.unlink()
    started = time.perf_counter()
    proc = ctx.procs.start(
        project.manage_argv("supervisor", "--noreload"),
        name=project.path.name,
        env=project.env(),
        cwd=project.path,
    )
    done = ctx.procs.wait_logged(proc, logfile, RUNNING_LINE, PROGRAMS, offset=offset)
    elapsed = done - started
    ctx.procs.stop(proc)
    with open(logfile) as log:
        log.seek(offset)
        text = log.read()
    spawned = log_times(text, r"spawned: '(\w+)' with pid \d+")
    ready = {
        path.name: float(path.read_text())
        for path in (project.path / "ready").iterdir()
        if path.suffix != ".tmp"
    }
    reactions = [
        spawned[after] - ready[before]
        for before, after in zip(names(), names()[1:], strict=False)
        if before in ready and after in spawned
    ]
    startups = [ready[name] - spawned[name] for name in names() if {name} <= ready.keys()]
    return elapsed, reactions, startups


def chain_figures(ctx: Context, kind: str) -> list[Figure]:
    runs = ctx.reps(3, 7)
    chain, flat = setup(ctx, kind, chained=True), setup(ctx, kind, chained=False)
    times: dict[str, list[float]] = {"chain": [], "flat": []}
    reactions: list[float] = []
    startups: list[float] = []
    for run in range(runs):
        # Alternate which goes first, so drifting background load hits both alike.
        order = [("chain", chain), ("flat", flat)]
        for key, (project, logfile) in order if run % 2 == 0 else reversed(order):
            elapsed, edge_reactions, program_startups = one_run(ctx, project, logfile)
            times[key].append(elapsed)
            if key == "chain":
                reactions.extend(edge_reactions)
                startups.extend(program_startups)
    edges = PROGRAMS - 1
    chain_time, flat_time = statistics.median(times["chain"]), statistics.median(times["flat"])
    per_edge = [(c - f) / edges for c, f in zip(times["chain"], times["flat"], strict=True)]
    figures = [
        Figure(
            label=f"{PROGRAMS}-program {kind} chain, exec to all RUNNING (median of {runs})",
            unit="s",
            ours=chain_time,
            peer=flat_time,
            peer_name=f"the same {PROGRAMS} programs without depends_on",
            samples=times,
        ),
        Figure(
            label=f"{kind} chain: overhead per edge, (chain - flat) / {edges}",
            unit="s",
            ours=statistics.median(per_edge),
            peer=0.0,
            peer_name=PEER,
            # For the healthy chain this holds a program start-up: the reaction is ours.
            target=Target("ours", EDGE_TARGET) if kind == "started" else None,
            samples={"ours": per_edge},
        ),
    ]
    if kind == "healthy":
        if len(reactions) < edges:
            raise RuntimeError(f"only {len(reactions)} edge reactions measured")
        figures.append(
            Figure(
                label=f"healthy chain: port open to next spawn, per edge (mean of "
                f"{len(reactions)})",
                unit="s",
                ours=statistics.mean(reactions),
                peer=0.0,
                peer_name=PEER,
                target=Target("ours", EDGE_TARGET),
                samples={"ours": reactions},
                extras={
                    "median": statistics.median(reactions),
                    "max": max(reactions),
                    "program_startup_median": statistics.median(startups),
                    "healthcheck_interval": INTERVAL,
                },
            )
        )
    return figures


@benchmark(
    "orchestration.chain_started",
    f"{PROGRAMS} programs, each depends_on the previous (started), startsecs=0",
)
def chain_started(ctx: Context) -> list[Figure]:
    return chain_figures(ctx, "started")


@benchmark(
    "orchestration.chain_healthy",
    f"{PROGRAMS} programs, each depends_on the previous (healthy: tcp://), startsecs=0",
)
def chain_healthy(ctx: Context) -> list[Figure]:
    return chain_figures(ctx, "healthy")
