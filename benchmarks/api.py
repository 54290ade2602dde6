"""The Python API and the control socket: djsupervisor vs stock supervisord, same programs.

``api.status`` times ``djsupervisor.connect(...).status()`` in a subprocess with Django
set up from the generated project's settings (``python -m benchmarks.api``), beside a
raw ``xmlrpc.client`` call to stock supervisord from the same subprocess. ``api.load``
puts 20 client threads on each control socket, in this process.

Both sides' clients make a fresh proxy (``supervisor.xmlrpc.SupervisorTransport`` over
the unix socket) for every call, and close it: the typed API does the same.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from .harness import Channel, run_worker
from .project import SETTINGS_MODULE
from .registry import Context, Figure, Target, benchmark
from .runtime import PEER, setup

PROGRAMS = 50
STATUS_RATIO = 1.2
LOAD_CLIENTS = 20
LOAD_CALLS = 1000
#: Per call: a server that stops answering fails the call instead of hanging the run.
CALL_TIMEOUT = 30.0
WARMUP = 5
#: For all of one side's load calls.
LOAD_DEADLINE = 300.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: p99 of 50 samples is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def supervisor_proxy(channel: Channel) -> Any:
    """A fresh proxy as supervisorctl builds one (supervisor's own transport)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(
        channel.username, channel.password, f"unix://{channel.socket_path}"
    )
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def all_process_info(channel: Channel) -> list[dict[str, Any]]:
    proxy = supervisor_proxy(channel)
    try:
        info: list[dict[str, Any]] = proxy.supervisor.getAllProcessInfo()
    finally:
        proxy("close")()
    return info


def check_running(info: list[dict[str, Any]], names: set[str], side: str) -> None:
    states = {entry["name"]: entry["statename"] for entry in info}
    wrong = sorted(name for name in names if states.get(name) != "RUNNING")
    if wrong:
        raise RuntimeError(f"{side}: {len(wrong)} programs not RUNNING: {', '.join(wrong[:5])}")


# --- api.status ----------------------------------------------------------------------------


@benchmark(
    "api.status",
    f"djsupervisor.connect().status() round trip, {PROGRAMS} programs, vs a raw "
    "getAllProcessInfo() to stock supervisord",
)
def status(ctx: Context) -> list[Figure]:
    project, _, names, ours, peer = setup(ctx, PROGRAMS)
    servers = {"ours": ours.start(ctx.procs, "api-ours"), "peer": peer.start(ctx.procs, "api-peer")}
    ctx.procs.wait_running(servers["ours"], ours.channel, set(names))
    ctx.procs.wait_running(servers["peer"], peer.channel, set(names))
    calls = ctx.reps(50, 200)
    env = {**project.env(), "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE}
    argv = [
        sys.executable,
        "-m",
        "benchmarks.api",
        f"--calls={calls}",
        f"--project-dir={project.path}",
        f"--programs={','.join(names)}",
        f"--peer={json.dumps(vars(peer.channel))}",
        f"--ours={json.dumps(vars(ours.channel))}",
    ]
    result = run_worker(argv, cwd=project.path, env=env, timeout=300)
    for server in servers.values():
        ctx.procs.stop(server)
    samples = {"ours": result["ours"], "peer": result["peer"]}
    peer_name = "raw getAllProcessInfo() to supervisord -n -c merged"
    return [
        Figure(
            label=f"status(), {PROGRAMS} programs (median of {calls})",
            unit="s",
            ours=statistics.median(samples["ours"]),
            peer=statistics.median(samples["peer"]),
            peer_name=peer_name,
            target=Target("ratio", STATUS_RATIO),
            samples=samples,
        ),
        Figure(
            label=f"status(), {PROGRAMS} programs (p99 of {calls})",
            unit="s",
            ours=percentile(samples["ours"], 99),
            peer=percentile(samples["peer"], 99),
            peer_name=peer_name,
        ),
        # The same raw call to both servers: what our server adds, without the API.
        Figure(
            label=f"raw getAllProcessInfo(), {PROGRAMS} programs (median of {calls})",
            unit="s",
            ours=statistics.median(result["raw_ours"]),
            peer=statistics.median(samples["peer"]),
            peer_name=peer_name,
            samples={"ours": result["raw_ours"], "peer": samples["peer"]},
        ),
    ]


def worker(argv: list[str]) -> None:
    """In the benchmark subprocess: time both sides, alternating; print JSON on one line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--project-dir", type=Path, required=True)
    parser.add_argument("--programs", required=True)
    parser.add_argument("--peer", type=json.loads, required=True, help="its Channel, as JSON")
    parser.add_argument("--ours", type=json.loads, required=True, help="its Channel, as JSON")
    args = parser.parse_args(argv)
    names = set(args.programs.split(","))
    peer = Channel(**args.peer)
    ours_raw = Channel(**args.ours)
    socket.setdefaulttimeout(CALL_TIMEOUT)

    import django

    django.setup()
    import djsupervisor

    api = djsupervisor.connect(project_dir=args.project_dir)

    def ours() -> None:
        api.status()

    def theirs() -> None:
        all_process_info(peer)

    def raw() -> None:
        all_process_info(ours_raw)

    # Warm-up, and proof that both see every program RUNNING.
    infos = api.status()
    check_running(
        [{"name": i.name, "statename": i.state} for i in infos], names, "djsupervisor.status()"
    )
    check_running(all_process_info(peer), names, "stock supervisord")
    for _ in range(WARMUP):
        ours()
        theirs()
        raw()
    times: dict[str, list[float]] = {"ours": [], "peer": [], "raw_ours": []}
    sides = (("ours", ours), ("peer", theirs), ("raw_ours", raw))
    for call in range(args.calls):
        # Who goes first turns with each call.
        shift = call % len(sides)
        for key, func in sides[shift:] + sides[:shift]:
            started = time.perf_counter()
            func()
            times[key].append(time.perf_counter() - started)
    print(json.dumps(times))


# --- api.load ------------------------------------------------------------------------------


def _load(channel: Channel, names: set[str], calls: int, clients: int) -> dict[str, Any]:
    """``clients`` threads make ``calls`` getAllProcessInfo calls in all, each a fresh proxy.

    A call that raises, or answers without every program RUNNING, is an error.
    """
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(clients)
    share = [calls // clients + (i < calls % clients) for i in range(clients)]

    def client(count: int) -> None:
        barrier.wait()
        for _ in range(count):
            started = time.perf_counter()
            try:
                check_running(all_process_info(channel), names, "answer")
            except Exception as error:  # every kind of failure is counted, none stops the run
                errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - started)  # list.append is atomic

    threads = [threading.Thread(target=client, args=(count,), daemon=True) for count in share]
    started = time.perf_counter()
    deadline = time.monotonic() + LOAD_DEADLINE
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    wall = time.perf_counter() - started
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a load client is still running (a call hangs)")
    return {"latencies": latencies, "errors": errors, "wall": wall}


@benchmark(
    "api.load",
    f"{LOAD_CLIENTS} client threads, {LOAD_CALLS} getAllProcessInfo calls in all (fresh "
    f"proxy each), {PROGRAMS} programs: errors and latency, vs stock supervisord",
)
def load(ctx: Context) -> list[Figure]:
    _, _, names, ours, peer = setup(ctx, PROGRAMS)
    servers = {
        "ours": ours.start(ctx.procs, "load-ours"),
        "peer": peer.start(ctx.procs, "load-peer"),
    }
    channels = {"ours": ours.channel, "peer": peer.channel}
    for key, server in servers.items():
        ctx.procs.wait_running(server, channels[key], set(names))
    results: dict[str, dict[str, Any]] = {}
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(CALL_TIMEOUT)  # SupervisorTransport sets none of its own
    try:
        for key in ("ours", "peer"):
            results[key] = _load(channels[key], set(names), LOAD_CALLS, LOAD_CLIENTS)
    finally:
        socket.setdefaulttimeout(previous)
    for server in servers.values():
        ctx.procs.stop(server)
    errors = {key: len(result["errors"]) for key, result in results.items()}
    latencies: dict[str, list[float]] = {k: r["latencies"] for k, r in results.items()}
    for key, values in latencies.items():
        if not values:
            raise RuntimeError(f"{key}: all {LOAD_CALLS} calls failed: {results[key]['errors'][0]}")
    extras = {
        "errors": errors,
        "error_samples": {key: result["errors"][:5] for key, result in results.items()},
        "calls_per_second": {key: LOAD_CALLS / result["wall"] for key, result in results.items()},
    }
    what = f"{LOAD_CALLS} calls, {LOAD_CLIENTS} clients"
    return [
        Figure(
            label=f"errors in {what} (% of calls)",
            unit="%",
            ours=100 * errors["ours"] / LOAD_CALLS,
            peer=100 * errors["peer"] / LOAD_CALLS,
            peer_name=PEER,
            target=Target("ours", 0.0),
            extras=extras,
        ),
        Figure(
            label=f"getAllProcessInfo under load (median, {what})",
            unit="s",
            ours=statistics.median(latencies["ours"]),
            peer=statistics.median(latencies["peer"]),
            peer_name=PEER,
            samples=latencies,
        ),
        Figure(
            label=f"getAllProcessInfo under load (p99, {what})",
            unit="s",
            ours=percentile(latencies["ours"], 99),
            peer=percentile(latencies["peer"], 99),
            peer_name=PEER,
        ),
    ]


if __name__ == "__main__":
    worker(sys.argv[1:])
