"""Start, stop and stop-while-starting: ``manage.py supervisor`` vs stock supervisord and honcho.

Both supervisord sides run the config ``manage.py supervisor getconfig`` prints (the
peer's re-homed to its own socket, log and pid file); honcho runs a Procfile with the
same commands. "All RUNNING" is read from supervisord's log file, never asked over the
socket (a request wakes stock supervisord's 1 s poll). Honcho has no RUNNING state:
its programs are up when every one of them exists, found in ``/proc`` below honcho
(honcho -> one forked helper per program -> the program, which ``sh -c`` execs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .harness import Channel, Pid, Processes, ProcessFailed, related, stock_command
from .project import getconfig, make_project, sleep_programs
from .registry import Context, Figure, Target, benchmark

START_PROGRAMS = 100
START_TARGET = 0.40
STOP_PROGRAMS = 100
STOP_TARGET = 0.5
RACE_STOPWAITSECS = 2
RUNNING_LINE = "entered RUNNING state"
#: What supervisord logs when a stopped program outlived stopwaitsecs.
SIGKILL_LINE = "with SIGKILL"
SUPERVISORD = "supervisord -n -c merged"
HONCHO = "honcho start (Procfile)"
HONCHO_MISSING = "honcho (not installed: pip install honcho)"
#: What honcho prints once it knows a program's pid.
HONCHO_STARTED = " started (pid="

SLEEP_ARGV = ["sleep", "600"]
PY_SLEEP = "import time; time.sleep(600)"
PY_SLEEP_ARGV = [sys.executable, "-c", PY_SLEEP]
# The same argv for supervisord (shlex) and honcho (sh -c).
PY_SLEEP_COMMAND = f'{sys.executable} -c "{PY_SLEEP}"'


# --- /proc: a manager's programs -----------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """Descendants of ``pid``, from each thread's ``children`` list: no full /proc scan.

    Cheap enough to poll while honcho starts 100 programs on a 2-core machine.
    """
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{parent}/task/{tid}/children").read_text()
            except OSError:
                continue
            for child in map(int, text.split()):
                found.append(child)
                stack.append(child)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _programs(root: int, argv: Sequence[str]) -> list[int]:
    """Descendants of ``root`` that run ``argv`` (exec'd: a forked copy has its parent's)."""
    wanted = list(argv)
    return [pid for pid in _tree(root) if _cmdline(pid) == wanted]


def _sweep(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL honcho and everything it started, by pid: freeze all first, then kill.

    Its helpers ignore SIGTERM and start programs in sessions of their own: once a
    helper is orphaned, its program is neither below honcho nor in honcho's session,
    where a generic cleanup looks. Stopped (SIGSTOP) processes cannot fork any more.
    """
    with contextlib.suppress(OSError):
        proc.send_signal(signal.SIGSTOP)
    frozen: set[Pid] = set()
    while True:
        found = related([proc.pid])  # below honcho, and its session's members
        for member in list(found):
            found.update(p for p in map(Pid.of, _tree(member.pid)) if p is not None)
        new = found - frozen
        if not new:
            break
        for pid in new:
            with contextlib.suppress(OSError):
                os.kill(pid.pid, signal.SIGSTOP)
        frozen |= new
    with contextlib.suppress(OSError):
        proc.kill()
    for pid in frozen:
        if pid.alive():
            with contextlib.suppress(OSError):
                os.kill(pid.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _sleeping(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S"
    except (OSError, IndexError):
        return False


# --- the three managers --------------------------------------------------------------------


@dataclass(frozen=True)
class Manager:
    """How to start one process manager, and how to see its programs up."""

    key: str
    argv: Sequence[str]
    cwd: Path
    env: dict[str, str]
    #: supervisord's log file; None for honcho (its programs are counted in /proc).
    logfile: Path | None = None
    channel: Channel | None = None

    def offset(self) -> int:
        """Where this run's lines will start in the log file."""
        if self.logfile is None or not self.logfile.exists():
            return 0
        return self.logfile.stat().st_size

    @contextlib.contextmanager
    def run(self, procs: Processes) -> Iterator[subprocess.Popen[bytes]]:
        """Start the manager; if the block fails while honcho runs, kill all of it now."""
        proc = procs.start(self.argv, name=self.key, env=self.env, cwd=self.cwd)
        try:
            yield proc
        except BaseException:
            if self.logfile is None:
                _sweep(proc)
            raise

    def ready_to_stop(
        self, procs: Processes, proc: subprocess.Popen[bytes], count: int, timeout: float = 30.0
    ) -> None:
        """Wait until honcho has logged every program's start (supervisord: nothing to wait).

        SIGTERMed before it has, honcho fails in its signal handler (KeyError) and
        leaves its helpers (which ignore SIGTERM) and their programs running.
        """
        if self.logfile is not None:
            return
        deadline = time.monotonic() + timeout
        while procs.log_tail(proc, lines=1_000_000).count(HONCHO_STARTED) < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise procs.fail(proc, f"honcho did not log {count} starts")
            time.sleep(0.01)

    def wait_up(
        self,
        procs: Processes,
        proc: subprocess.Popen[bytes],
        argv: Sequence[str],
        count: int,
        offset: int,
        timeout: float = 60.0,
    ) -> float:
        """Wait until ``count`` programs are up; return the ``perf_counter`` time they were."""
        if self.logfile is not None:
            return procs.wait_logged(proc, self.logfile, RUNNING_LINE, count, offset=offset)
        deadline = time.monotonic() + timeout
        found: list[int] = []
        try:
            while True:
                if proc.poll() is not None:
                    raise procs.fail(proc, f"exited with status {proc.returncode}")
                found = _programs(proc.pid, argv)
                if len(found) >= count:
                    return time.perf_counter()
                if time.monotonic() > deadline:
                    raise procs.fail(proc, f"{len(found)} of {count} programs after {timeout:g} s")
                time.sleep(0.01)
        finally:
            # Each runs in its own session: make sure cleanup knows them even if
            # honcho dies first.
            procs.adopt(found)


def supervisord_sides(ctx: Context, conf: str) -> tuple[Manager, Manager]:
    """Our ``manage.py supervisor --noreload`` and stock supervisord on the same config."""
    project = make_project(ctx.workdir / "proj", conf=conf)
    merged = getconfig(project, "--noreload")
    peer_dir = ctx.workdir / "peer"
    peer_dir.mkdir(mode=0o700)  # supervisord wants its log file's directory to exist
    peer_conf = merged.rehomed(peer_dir)
    peer_file = peer_conf.write(ctx.workdir / "peer.conf")
    env = project.env()
    ours = Manager(
        "ours",
        project.manage_argv("supervisor", "--noreload"),
        project.path,
        env,
        merged.logfile(),
        merged.channel(),
    )
    peer = Manager(
        "supervisord",
        [*stock_command("supervisord"), "-n", "-c", str(peer_file)],
        project.path,
        env,
        peer_conf.logfile(),
        peer_conf.channel(),
    )
    if ours.logfile == peer.logfile or ours.channel == peer.channel:
        raise RuntimeError("the peer config was not re-homed")
    return ours, peer


def honcho_command() -> list[str] | None:
    """honcho next to our interpreter, or as ``-m honcho``; None if it is not installed."""
    script = Path(sys.executable).parent / "honcho"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    if importlib.util.find_spec("honcho") is not None:
        return [sys.executable, "-m", "honcho"]
    return None


def honcho_side(ctx: Context, commands: dict[str, str], env: dict[str, str]) -> Manager | None:
    command = honcho_command()
    if command is None:
        return None
    root = ctx.workdir / "honcho"
    root.mkdir()
    procfile = root / "Procfile"
    procfile.write_text("".join(f"{name}: {cmd}\n" for name, cmd in commands.items()))
    argv = [*command, "start", "--no-colour", "-f", str(procfile), "-d", str(root)]
    return Manager("honcho", argv, root, env)


def conf_for(commands: dict[str, str], **options: object) -> str:
    extra = "".join(f"{key}={value}\n" for key, value in options.items())
    return "".join(
        f"[program:{name}]\ncommand={cmd}\nstartsecs=0\n{extra}\n" for name, cmd in commands.items()
    )


def rotations(managers: Sequence[Manager], run: int) -> list[Manager]:
    """Who goes first turns with each run, so drifting background load hits all alike."""
    shift = run % len(managers)
    return [*managers[shift:], *managers[:shift]]


def versus(
    label: str,
    samples: dict[str, list[float]],
    target: Target | None,
    honcho: bool,
    *,
    notes: dict[str, str] | None = None,
    extras: dict[str, object] | None = None,
) -> list[Figure]:
    """Our median beside stock supervisord's, and beside honcho's (``-`` if not installed).

    ``notes`` (by side) are added to the peer's name, ours to both rows.
    """
    notes = notes or {}
    peers = [("supervisord", SUPERVISORD), ("honcho", HONCHO if honcho else HONCHO_MISSING)]
    figures = []
    for key, name in peers:
        said = [
            f"{side if side != key else 'peer'}: {notes[side]}"
            for side in ("ours", key)
            if notes.get(side)
        ]
        figures.append(
            Figure(
                label=label,
                unit="s",
                ours=statistics.median(samples["ours"]),
                peer=statistics.median(samples[key]) if samples.get(key) else None,
                peer_name=f"{name} ({'; '.join(said)})" if said else name,
                target=target,
                samples={"ours": samples["ours"], "peer": samples.get(key, [])},
                extras=dict(extras or {}),
            )
        )
    return figures


# --- speed.start ---------------------------------------------------------------------------


@benchmark(
    "speed.start",
    f"exec until {START_PROGRAMS} sleep programs run (startsecs=0; RUNNING read from the log), "
    "vs stock supervisord and honcho",
)
def start(ctx: Context) -> list[Figure]:
    conf, names = sleep_programs(START_PROGRAMS)
    ours, peer = supervisord_sides(ctx, conf)
    honcho = honcho_side(ctx, dict.fromkeys(names, " ".join(SLEEP_ARGV)), ours.env)
    managers = [m for m in (ours, peer, honcho) if m is not None]
    runs = ctx.reps(3, 7)
    samples: dict[str, list[float]] = {m.key: [] for m in managers}
    for run in range(runs):
        for manager in rotations(managers, run):
            offset = manager.offset()
            started = time.perf_counter()
            with manager.run(ctx.procs) as proc:
                up = manager.wait_up(ctx.procs, proc, SLEEP_ARGV, START_PROGRAMS, offset)
                samples[manager.key].append(up - started)
                manager.ready_to_stop(ctx.procs, proc, START_PROGRAMS)
                ctx.procs.stop(proc)
    return versus(
        f"start to {START_PROGRAMS} running (median of {runs})",
        samples,
        Target("ours", START_TARGET),
        honcho is not None,
    )


# --- speed.stop ----------------------------------------------------------------------------


def _settled(
    procs: Processes, proc: subprocess.Popen[bytes], count: int, timeout: float = 60.0
) -> list[Pid]:
    """Wait until ``count`` Python sleepers exist and sleep (start-up done); return them."""
    deadline = time.monotonic() + timeout
    calm = 0
    while True:
        if proc.poll() is not None:
            raise procs.fail(proc, f"exited with status {proc.returncode}")
        found = _programs(proc.pid, PY_SLEEP_ARGV)
        procs.adopt(found)
        # Twice in a row, 50 ms apart: an interpreter reading a file can look asleep.
        calm = calm + 1 if len(found) >= count and all(map(_sleeping, found)) else 0
        if calm >= 2:
            pids = [p for p in map(Pid.of, found) if p is not None]
            if len(pids) >= count:
                return pids
        if time.monotonic() > deadline:
            raise procs.fail(proc, f"{len(found)} of {count} sleepers after {timeout:g} s")
        time.sleep(0.05)


def _stop_until_gone(
    procs: Processes, proc: subprocess.Popen[bytes], programs: list[Pid], cap: float
) -> tuple[float, float | None, int]:
    """SIGTERM the manager: seconds until ``programs`` are gone and until it exits (None:
    not within ``cap``), and how many programs outlived ``cap``.

    A program that has exited but not yet been reaped (a zombie) counts as gone. Stock
    supervisord stops one group (here: one program) per turn of its loop, which may
    wait out its 1 s poll each time: past ``cap`` seconds the run is cut short (the
    manager and what is left SIGKILLed by pid) and counted as ``cap``, a lower bound.
    """
    # Whatever else it started (our orphan watchdog), for cleanup if it fails to stop.
    procs.adopt(p.pid for p in related([proc.pid]))
    started = time.perf_counter()
    deadline = time.monotonic() + cap
    proc.send_signal(signal.SIGTERM)
    remaining = programs
    while remaining and time.monotonic() < deadline:
        time.sleep(0.002)
        remaining = [p for p in remaining if p.alive()]
    if remaining:
        _kill(proc, remaining)
        return cap, None, len(remaining)
    gone = time.perf_counter() - started
    exited: float | None = None
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
        exited = time.perf_counter() - started
    except subprocess.TimeoutExpired:
        _kill(proc, [])
    return gone, exited, 0


def _kill(proc: subprocess.Popen[bytes], programs: list[Pid]) -> None:
    """SIGKILL a manager that is too slow to stop, and its programs (they may be orphaned)."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait(10)
    for program in programs:
        if program.alive():
            with contextlib.suppress(OSError):
                os.kill(program.pid, signal.SIGKILL)


@benchmark(
    "speed.stop",
    f"SIGTERM to the manager until all {STOP_PROGRAMS} Python sleepers are gone, "
    "vs stock supervisord and honcho",
)
def stop(ctx: Context) -> list[Figure]:
    commands = {f"p{i:03d}": PY_SLEEP_COMMAND for i in range(STOP_PROGRAMS)}
    ours, peer = supervisord_sides(ctx, conf_for(commands))
    honcho = honcho_side(ctx, commands, ours.env)
    managers = [m for m in (ours, peer, honcho) if m is not None]
    runs = ctx.reps(3, 5)
    cap = ctx.reps(10, 30)
    gone: dict[str, list[float]] = {m.key: [] for m in managers}
    exited: dict[str, list[float | None]] = {m.key: [] for m in managers}
    #: Per run, how many programs were still alive when the run was cut short.
    left: dict[str, list[int]] = {m.key: [] for m in managers}
    for run in range(runs):
        for manager in rotations(managers, run):
            offset = manager.offset()
            with manager.run(ctx.procs) as proc:
                manager.wait_up(ctx.procs, proc, PY_SLEEP_ARGV, STOP_PROGRAMS, offset)
                programs = _settled(ctx.procs, proc, STOP_PROGRAMS)
                manager.ready_to_stop(ctx.procs, proc, STOP_PROGRAMS)
                seconds, exit_seconds, alive = _stop_until_gone(ctx.procs, proc, programs, cap)
            gone[manager.key].append(seconds)
            exited[manager.key].append(exit_seconds)
            left[manager.key].append(alive)
    notes = {}
    for key, counts in left.items():
        cut = [n for n in counts if n]
        if cut:
            notes[key] = (
                f"{len(cut)} of {runs} runs cut at {cap} s with {min(cut)}-{max(cut)} "
                f"of {STOP_PROGRAMS} left, counted as {cap} s"
            )
    return versus(
        f"SIGTERM to {STOP_PROGRAMS} python children gone (median of {runs})",
        gone,
        Target("ours", STOP_TARGET),
        honcho is not None,
        notes=notes,
        # The manager may outlive its programs (reaping, its own exit); None: not
        # within the cap.
        extras={"sigterm_to_manager_exit_seconds": exited, "cap_seconds": cap, "left_at_cap": left},
    )


# --- speed.race ----------------------------------------------------------------------------

RACER = "racer"
STOPPED_STATES = {"STOPPED", "EXITED", "FATAL"}


def _cycle(manager: Manager, timeout: float) -> float:
    """Start the racer and stop it in one multicall; return seconds until it is down."""
    assert manager.channel is not None
    started = time.perf_counter()
    results = manager.channel.call(
        "system.multicall",
        [
            {"methodName": "supervisor.startProcess", "params": [RACER, False]},
            {"methodName": "supervisor.stopProcess", "params": [RACER, False]},
        ],
    )
    faults = [r for r in results if isinstance(r, dict) and "faultCode" in r]
    if faults:
        raise ProcessFailed(f"{manager.key}: start+stop multicall failed: {faults}")
    deadline = time.monotonic() + timeout
    while True:
        info = manager.channel.call("supervisor.getProcessInfo", RACER)
        if info["statename"] in STOPPED_STATES:
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise ProcessFailed(f"{manager.key}: {RACER} still {info['statename']} after {timeout}")
        time.sleep(0.01)


def _kills(manager: Manager, offset: int) -> int:
    assert manager.logfile is not None
    with open(manager.logfile, "rb") as log:
        log.seek(offset)
        return log.read().count(SIGKILL_LINE.encode())


@benchmark(
    "speed.race",
    "start a Python program and stop it at once (one multicall), back to back: "
    "stops lost to the start-up window (SIGKILLed after stopwaitsecs), vs stock supervisord",
)
def race(ctx: Context) -> list[Figure]:
    conf = conf_for({RACER: PY_SLEEP_COMMAND}, autostart="false", stopwaitsecs=RACE_STOPWAITSECS)
    managers = supervisord_sides(ctx, conf)
    cycles = ctx.reps(10, 30)
    procs = {m.key: ctx.procs.start(m.argv, name=m.key, env=m.env, cwd=m.cwd) for m in managers}
    for manager in managers:
        assert manager.channel is not None
        ctx.procs.wait_running(procs[manager.key], manager.channel, set())  # it answers
    lost = {m.key: 0 for m in managers}
    durations: dict[str, list[float]] = {m.key: [] for m in managers}
    for cycle in range(cycles):
        for manager in rotations(managers, cycle):
            offset = manager.offset()
            durations[manager.key].append(_cycle(manager, RACE_STOPWAITSECS + 15))
            lost[manager.key] += _kills(manager, offset) > 0
    for manager in managers:
        ctx.procs.stop(procs[manager.key])
    percent = {key: 100 * count / cycles for key, count in lost.items()}
    return [
        Figure(
            label=f"lost stops, start+stop x{cycles} (% of cycles)",
            unit="%",
            ours=percent["ours"],
            peer=percent["supervisord"],
            peer_name=SUPERVISORD,
            target=Target("ours", 0.0),
            samples={"ours": durations["ours"], "peer": durations["supervisord"]},
            extras={"lost": lost, "cycles": cycles, "stopwaitsecs": RACE_STOPWAITSECS},
        )
    ]
