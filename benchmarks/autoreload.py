"""Autoreload: from a saved file to the program's new process RUNNING, and idle cost.

The project runs with ``DEBUG = True``, so the built-in ``autoreload`` program watches
it. Each sample rewrites one module in the project at a random moment (the watcher's
poll phase is unknown to a user) and polls XML-RPC until ``web`` runs with a new pid.
The peer for idle CPU is Django's own ``runserver`` reloader process (StatReloader),
watching the same project over the same window.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .harness import (
    Channel,
    Processes,
    ProcessFailed,
    children,
    cpu_seconds,
    free_ports,
    stock_command,
)
from .project import BenchProject, getconfig, make_project
from .registry import Context, Figure, Target, benchmark

LATENCY_TARGET = 1.2
PEER = "runserver's StatReloader"
CONF = """\
[program:web]
command=sleep 600
startsecs=0
"""
READY_LINE = "watching for changes with "


def _debug_project(ctx: Context) -> BenchProject:
    project = make_project(ctx.workdir / "proj", conf=CONF)
    settings = project.path / "benchproj" / "settings.py"
    settings.write_text(settings.read_text() + "DEBUG = True\nALLOWED_HOSTS = ['127.0.0.1']\n")
    (project.path / "app").mkdir()
    (project.path / "app" / "__init__.py").write_text("")
    (project.path / "app" / "code.py").write_text("VALUE = 0\n")
    return project


def _env(project: BenchProject) -> dict[str, str]:
    # Keep the caller's PYTHONPATH too: it may carry the optional watchfiles backend.
    env = project.env()
    extra = os.environ.get("PYTHONPATH")
    if extra:
        env["PYTHONPATH"] += os.pathsep + extra
    return env


def _info(channel: Channel, name: str) -> dict[str, object]:
    info: dict[str, object] = channel.call("supervisor.getProcessInfo", name)
    return info


def _wait_ready(
    procs: Processes, proc: subprocess.Popen[bytes], channel: Channel, timeout: float = 30.0
) -> str:
    """Wait for the watcher's first-pass line; return the backend it names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = str(channel.call("supervisor.readProcessStdoutLog", "autoreload", 0, 65536))
        if READY_LINE in log:
            return log.split(READY_LINE, 1)[1].split()[0]
        time.sleep(0.05)
    raise procs.fail(proc, f"the watcher did not get ready within {timeout:.0f} s")


def _restart_latency(channel: Channel, module: Path, serial: int, timeout: float = 15.0) -> float:
    """Rewrite ``module``; return the seconds until ``web`` RUNNING with a new pid."""
    old = _info(channel, "web")["pid"]
    started = time.perf_counter()
    module.write_text(f"VALUE = {serial}\n")
    deadline = started + timeout
    while time.perf_counter() < deadline:
        info = _info(channel, "web")
        if info["pid"] != old and info["statename"] == "RUNNING":
            return time.perf_counter() - started
        time.sleep(0.005)
    raise ProcessFailed(f"web was not restarted within {timeout:.0f} s of a change")


def _runserver_reloader(ctx: Context, project: BenchProject) -> subprocess.Popen[bytes]:
    """Start runserver; return once its reloading child (the StatReloader) is up."""
    argv = project.manage_argv("runserver", f"127.0.0.1:{free_ports(1)[0]}", "--skip-checks")
    proc = ctx.procs.start(argv, name="runserver", env=_env(project), cwd=project.path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ctx.procs.fail(proc, f"runserver exited with status {proc.returncode}")
        if "Quit the server" in ctx.procs.log_tail(proc, 40):
            return proc
        time.sleep(0.05)
    raise ctx.procs.fail(proc, "runserver did not start within 30 s")


def _child_of(pid: int) -> int:
    """The reloading child of runserver's outer process (Linux /proc)."""
    found = children(pid)
    if not found:
        raise ProcessFailed(f"runserver (pid {pid}) has no reloading child")
    return found[0]


@benchmark(
    "autoreload.restart",
    "file write to the program's new pid RUNNING (startsecs=0); idle CPU of the watcher",
)
def restart_and_idle(ctx: Context) -> list[Figure]:
    project = _debug_project(ctx)
    channel = getconfig(project).channel()
    server = ctx.procs.start(
        project.manage_argv("supervisor"), name="supervisor", env=_env(project), cwd=project.path
    )
    ctx.procs.wait_running(server, channel, {"web", "autoreload"})
    backend = _wait_ready(ctx.procs, server, channel)
    module = project.path / "app" / "code.py"
    rng = random.Random(5)
    runs = ctx.reps(6, 25)
    samples = []
    for serial in range(1, runs + 1):
        # A random moment: a user's save does not wait for the watcher's poll phase.
        time.sleep(rng.uniform(0.3, 1.3))
        samples.append(_restart_latency(channel, module, serial))
    watcher = int(str(_info(channel, "autoreload")["pid"]))
    ctx.procs.adopt([watcher])

    peer = _runserver_reloader(ctx, project)
    reloader = _child_of(peer.pid)
    ctx.procs.adopt([reloader])
    time.sleep(1.0)  # past start-up work on both sides
    window = 5.0 if ctx.quick else 30.0
    pids = {"ours": watcher, "peer": reloader}
    before = {key: cpu_seconds(pid) for key, pid in pids.items()}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    if peer.poll() is not None:
        raise ctx.procs.fail(peer, f"runserver exited with status {peer.returncode}")
    if _info(channel, "autoreload")["pid"] != watcher:
        raise ctx.procs.fail(server, "the watcher was restarted while idle")
    percent = {key: 100 * (cpu_seconds(pid) - before[key]) / elapsed for key, pid in pids.items()}
    ctx.procs.stop(peer)
    ctx.procs.stop(server)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    extras = {"backend": backend}
    return [
        Figure(
            label=f"save to new pid RUNNING, median of {runs} ({backend})",
            unit="s",
            ours=statistics.median(samples),
            peer=None,
            peer_name="-",
            target=Target("ours", LATENCY_TARGET),
            samples={"ours": samples},
            extras=extras,
        ),
        Figure(
            label=f"save to new pid RUNNING, p95 of {runs} ({backend})",
            unit="s",
            ours=p95,
            peer=None,
            peer_name="-",
            extras=extras,
        ),
        Figure(
            label=f"watcher idle CPU over {window:.0f} s ({backend})",
            unit="%",
            ours=percent["ours"],
            peer=percent["peer"],
            peer_name=PEER,
            samples={key: [value] for key, value in percent.items()},
            extras={**extras, "window_seconds": elapsed},
        ),
    ]


MIXED_CONF = """\
[program:web]
command=sleep 600
startsecs=0

[program:slow]
command=sh -c 'trap "sleep 5; exit 0" TERM; while true; do sleep 0.1; done'
startsecs=0
stopwaitsecs=20
"""


def _back(
    channel: Channel, old: dict[str, object], started: float, timeout: float = 30.0
) -> dict[str, float]:
    """Seconds from ``started`` until each program in ``old`` RUNNING with a new pid."""
    back: dict[str, float] = {}
    deadline = started + timeout
    while len(back) < len(old) and time.perf_counter() < deadline:
        for name, pid in old.items():
            info = _info(channel, name)
            if name not in back and info["pid"] != pid and info["statename"] == "RUNNING":
                back[name] = time.perf_counter() - started
        time.sleep(0.01)
    if len(back) < len(old):
        raise ProcessFailed(f"not restarted within {timeout:.0f} s: {set(old) - set(back)}")
    return back


@benchmark(
    "autoreload.mixed",
    "one program stopping at once, one taking 5 s: file write (ours) or "
    "'supervisorctl restart web slow' (stock supervisord) to each one's new pid RUNNING",
)
def restart_mixed(ctx: Context) -> list[Figure]:
    project = make_project(ctx.workdir / "proj", conf=MIXED_CONF)
    settings = project.path / "benchproj" / "settings.py"
    settings.write_text(settings.read_text() + "DEBUG = True\n")
    (project.path / "app").mkdir()
    (project.path / "app" / "__init__.py").write_text("")
    module = project.path / "app" / "code.py"
    module.write_text("VALUE = 0\n")
    names = ("web", "slow")
    channel = getconfig(project).channel()
    peer_dir = ctx.workdir / "peer"
    peer_dir.mkdir(mode=0o700)
    peer_conf = getconfig(project, "--noreload").rehomed(peer_dir)
    peer_file = peer_conf.write(ctx.workdir / "peer.conf")
    server = ctx.procs.start(
        project.manage_argv("supervisor"), name="supervisor", env=_env(project), cwd=project.path
    )
    peer = ctx.procs.start(
        [*stock_command("supervisord"), "-n", "-c", str(peer_file)],
        name="stock-supervisord",
        env=project.env(),
        cwd=project.path,
    )
    peer_channel = peer_conf.channel()
    ctx.procs.wait_running(server, channel, {*names, "autoreload"})
    ctx.procs.wait_running(peer, peer_channel, set(names))
    _wait_ready(ctx.procs, server, channel)
    runs = ctx.reps(2, 5)
    samples: dict[str, dict[str, list[float]]] = {name: {"ours": [], "peer": []} for name in names}
    for serial in range(1, runs + 1):
        old = {name: _info(channel, name)["pid"] for name in names}
        started = time.perf_counter()
        module.write_text(f"VALUE = {serial}\n")
        for name, seconds in _back(channel, old, started).items():
            samples[name]["ours"].append(seconds)
        old = {name: _info(peer_channel, name)["pid"] for name in names}
        started = time.perf_counter()
        subprocess.run(
            [*stock_command("supervisorctl"), "-c", str(peer_file), "restart", *names],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for name, seconds in _back(peer_channel, old, started).items():
            samples[name]["peer"].append(seconds)
        time.sleep(0.5)  # the watcher's next poll starts afresh
    ctx.procs.stop(peer)
    ctx.procs.stop(server)
    return [
        Figure(
            label=f"{name} back after a change, median of {runs} ({what})",
            unit="s",
            ours=statistics.median(samples[name]["ours"]),
            peer=statistics.median(samples[name]["peer"]),
            peer_name="supervisorctl restart, stock supervisord",
            samples=samples[name],
        )
        for name, what in (("web", "stops at once"), ("slow", "takes 5 s to stop"))
    ]


if __name__ == "__main__":
    # Standalone: ``python -m benchmarks.autoreload [--quick]`` (registered as run here).
    from .__main__ import table
    from .registry import Benchmark, run

    outcome = run(
        Benchmark("autoreload.restart", "", restart_and_idle), quick="--quick" in sys.argv
    )
    print(table([outcome]))
    sys.exit(1 if outcome.error else 0)
