"""Console throughput: one program's output shown live, vs honcho and plain supervisord.

One program writes 80-byte lines as fast as it can (200 MiB; ``--quick``: 20 MiB).
Each side's clock starts when the program starts writing (it records ``time.monotonic()``,
a system-wide clock on Linux), so start-up costs do not count, and stops when the last
line is where that side puts it:

- ours: ``manage.py supervisor`` (foreground, prefixed console redirected to a file;
  supervisord also writes the program's log file, as always);
- honcho: ``honcho start`` with a Procfile running the same program, redirected alike;
- supervisord: stock ``supervisord -n`` with the same merged config: the program's log
  file only, no console.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .harness import Processes, ProcessFailed, cpu_seconds, rss_mib, stock_command
from .project import REPO, BenchProject, getconfig, make_project
from .registry import Context, Figure, Target, benchmark

LINE = 80
BLOCK_LINES = 8192
MIB = 1024 * 1024
MARKER = b"END-OF-OUTPUT\n"
# Targets: at least honcho's throughput, within 1.5x of supervisord's log file alone.
HONCHO_RATIO = 1.0
SUPERVISORD_RATIO = 1.5

WRITER = f"""\
import sys
import time

blocks, started = int(sys.argv[1]), sys.argv[2]
filler = b"w" * {LINE - 10}
block = b"".join(b"%08d %s\\n" % (i, filler) for i in range({BLOCK_LINES}))
out = sys.stdout.buffer
with open(started, "w") as stamp:
    stamp.write(repr(time.monotonic()))
for _ in range(blocks):
    out.write(block)
out.write({MARKER!r})
out.flush()
"""

CONF = """\
[program:writer]
command={{{{ PYTHON }}}} {{{{ PROJECT_DIR }}}}/writer.py {blocks} {{{{ PROJECT_DIR }}}}/started
directory={{{{ PROJECT_DIR }}}}
startsecs=0
autorestart=false
stdout_logfile_maxbytes=0
"""


def redirected(argv: Sequence[str], output: Path) -> list[str]:
    """``argv`` with its stdout sent to ``output`` (``exec``: the pid stays the same)."""
    return ["sh", "-c", 'exec "$@" > "$0"', str(output), *argv]


@dataclass(frozen=True)
class Run:
    """One side's run: seconds from the first write until all was shown, and the CPU
    seconds its main process spent meanwhile (the writer and helpers not included)."""

    seconds: float
    cpu: float


def measure(
    proc: subprocess.Popen[bytes],
    procs: Processes,
    started: Path,
    done: Callable[[], bool],
    what: str,
    timeout: float,
) -> Run:
    """Poll every 2 ms for the writer's start stamp, then until ``done``."""
    deadline = time.monotonic() + timeout
    cpu_before: float | None = None
    while not done():
        if cpu_before is None and started.exists():
            cpu_before = cpu_seconds(proc.pid)
        if time.monotonic() > deadline:
            raise procs.fail(proc, f"no {what} after {timeout:.0f} s")
        if proc.poll() is not None and not done():
            raise procs.fail(proc, f"exited with status {proc.returncode} before {what}")
        # Fine-grained: 20 MiB take only tens of milliseconds.
        time.sleep(0.002)
    finished = time.monotonic()
    cpu = float("nan")
    if cpu_before is not None and proc.poll() is None:
        cpu = cpu_seconds(proc.pid) - cpu_before
    return Run(finished - float(started.read_text()), cpu)


def shows_marker(path: Path) -> Callable[[], bool]:
    """Whether the end of the file shows the writer's marker, its last line.

    Only a few lines (the runner's own: "exited", "stopped") may follow it.
    """
    needle = b"| " + MARKER

    def check() -> bool:
        try:
            with open(path, "rb") as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - 4096))
                return needle in file.read()
        except FileNotFoundError:
            return False

    return check


def has_size(path: Path, size: int) -> Callable[[], bool]:
    """Whether the file has at least ``size`` bytes."""

    def check() -> bool:
        try:
            return path.stat().st_size >= size
        except FileNotFoundError:
            return False

    return check


def count_lines(path: Path, needle: bytes) -> int:
    """How many times ``needle`` (a line prefix) occurs in ``path``."""
    return path.read_bytes().count(needle)


class Sides:
    """The three ways of running the writer, each timed from its first write."""

    def __init__(self, ctx: Context, blocks: int) -> None:
        self.ctx = ctx
        self.lines = blocks * BLOCK_LINES
        self.payload = self.lines * LINE + len(MARKER)
        self.project: BenchProject = make_project(
            ctx.workdir / "proj", conf=CONF.format(blocks=blocks)
        )
        (self.project.path / "writer.py").write_text(WRITER)
        self.started = self.project.path / "started"
        merged = getconfig(self.project, "--noreload")
        peer_dir = ctx.workdir / "peer"
        peer_dir.mkdir(mode=0o700)
        # The same config, re-homed; the program's log file at a known path.
        self.peer_log = peer_dir / "writer.log"
        peer_conf = merged.rehomed(peer_dir).text.replace(
            "[program:writer]\n", f"[program:writer]\nstdout_logfile = {self.peer_log}\n", 1
        )
        self.peer_file = ctx.workdir / "peer.conf"
        self.peer_file.write_text(peer_conf)
        (self.project.path / "Procfile").write_text(
            f"writer: {sys.executable} writer.py {blocks} {self.started}\n"
        )
        self.output = ctx.workdir / "console.out"
        self.timeout = 30 + self.payload / MIB  # >= 1 MiB/s, or something is wrong

    def _run(self, argv: Sequence[str], name: str, done: Callable[[], bool], what: str) -> Run:
        # Start from a clean page cache: the previous run's hundreds of dirty MiB would
        # otherwise be written back during this one, slowing whoever comes next.
        old_logs = self.project.runtime_dir.glob("writer-*.log")
        for path in (self.output, self.started, self.peer_log, *old_logs):
            path.unlink(missing_ok=True)
        os.sync()
        env = {**self.project.env(), "NO_COLOR": "1"}
        proc = self.ctx.procs.start(argv, name=name, env=env, cwd=self.project.path)
        run = measure(proc, self.ctx.procs, self.started, done, what, self.timeout)
        self.ctx.procs.stop(proc)
        return run

    def ours(self) -> Run:
        argv = redirected(self.project.manage_argv("supervisor", "--noreload"), self.output)
        run = self._run(argv, "console-ours", shows_marker(self.output), "marker")
        self._check(b" writer     | ")
        return run

    def honcho(self) -> Run:
        honcho = Path(sys.executable).with_name("honcho")
        argv = redirected([str(honcho), "start", "--no-colour"], self.output)
        run = self._run(argv, "console-honcho", shows_marker(self.output), "marker")
        self._check(b" writer.1 | ")
        return run

    def supervisord(self) -> Run:
        argv = [*stock_command("supervisord"), "-n", "-c", str(self.peer_file)]
        full = has_size(self.peer_log, self.payload)
        run = self._run(argv, "console-supervisord", full, "full log")
        size = self.peer_log.stat().st_size
        if size != self.payload:
            raise ProcessFailed(f"{self.peer_log} has {size} bytes, not {self.payload}")
        return run

    def _check(self, prefix: bytes) -> None:
        """Every line arrived (checked after the clock stopped)."""
        shown = count_lines(self.output, prefix)
        if shown != self.lines + 1:
            raise ProcessFailed(f"{self.output} shows {shown} of {self.lines + 1} lines")


@benchmark(
    "console.throughput",
    "one program writes 200 MiB of 80-byte lines (--quick: 20 MiB): until all of it is "
    "on the console (a file) vs honcho, and vs stock supervisord's log file alone",
)
def throughput(ctx: Context) -> list[Figure]:
    if shutil.which("honcho", path=str(Path(sys.executable).parent)) is None:
        raise RuntimeError(f"honcho is not installed next to {sys.executable}")
    mib = 20 if ctx.quick else 200
    sides = Sides(ctx, mib * MIB // (BLOCK_LINES * LINE))
    runs = ctx.reps(3, 5)
    results: dict[str, list[Run]] = {"ours": [], "honcho": [], "supervisord": []}
    # honcho is about a hundred times slower (a queue message per line): one run of it.
    results["honcho"].append(sides.honcho())
    for run in range(runs):
        # Alternate who goes first, so drifting background load hits both alike.
        pair = [("ours", sides.ours), ("supervisord", sides.supervisord)]
        for key, side in pair if run % 2 == 0 else reversed(pair):
            results[key].append(side())
    seconds = {key: [r.seconds for r in values] for key, values in results.items()}
    median = {key: statistics.median(values) for key, values in seconds.items()}
    extras = {
        "mib": mib,
        "mib_per_second": {key: mib / value for key, value in median.items()},
        "cpu_seconds": {key: [r.cpu for r in values] for key, values in results.items()},
        "loadavg": os.getloadavg(),
    }
    return [
        Figure(
            label=f"{mib} MiB of 80-byte lines shown (median of {runs}; honcho: 1 run)",
            unit="s",
            ours=median["ours"],
            peer=median["honcho"],
            peer_name="honcho start",
            target=Target("ratio", HONCHO_RATIO),
            samples={"ours": seconds["ours"], "peer": seconds["honcho"]},
            extras=extras,
        ),
        Figure(
            label=f"{mib} MiB: console and log file vs log file only (median of {runs})",
            unit="s",
            ours=median["ours"],
            peer=median["supervisord"],
            peer_name="supervisord -n, log file",
            target=Target("ratio", SUPERVISORD_RATIO),
            samples={"ours": seconds["ours"], "peer": seconds["supervisord"]},
            extras=extras,
        ),
    ]


# --- memory under an unread console ----------------------------------------------------

#: The flooder the unread-console test uses too (tests/programs/flood.py): both flood alike.
FLOOD = REPO / "tests" / "programs" / "flood.py"

FLOOD_CONF = """\
[program:flood]
command={{{{ PYTHON }}}} {flood} go {seconds} ready
directory={{{{ PROJECT_DIR }}}}
startsecs=0
autorestart=false
stdout_logfile={{{{ PROJECT_DIR }}}}/flood.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=1
"""


def peak_rss(
    ctx: Context, argv: Sequence[str], name: str, project: BenchProject, env: dict[str, str]
) -> tuple[float, float]:
    """Start ``argv``, sample its RSS idle, then every 20 ms under the flood: (idle, peak)."""
    for stale in ("ready", "go", "flood.log", "flood.log.1"):
        (project.path / stale).unlink(missing_ok=True)
    proc = ctx.procs.start(argv, name=name, env=env, cwd=project.path)
    ready, go, log = project.path / "ready", project.path / "go", project.path / "flood.log"
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ctx.procs.fail(proc, "the flood program never started")
        time.sleep(0.02)
    time.sleep(1.0)  # settle: start-up garbage collected, the loop idle
    idle = rss_mib(proc.pid)
    peak = idle
    go.touch()
    while not shows_end(log):
        if time.monotonic() > deadline + 60:
            raise ctx.procs.fail(proc, "the flood never ended")
        peak = max(peak, rss_mib(proc.pid))
        time.sleep(0.02)
    ctx.procs.stop(proc)
    return idle, peak


def shows_end(log: Path) -> bool:
    try:
        with open(log, "rb") as file:
            file.seek(-4, os.SEEK_END)
            return file.read() == b"END\n"
    except OSError:
        return False


@benchmark(
    "console.unread",
    "stdout a pipe nobody reads, one program writing 50 MB/s (--quick: 5 s, a 1 MiB "
    "SUPERVISOR_CONSOLE_BUFFER; else 10 s, the 16 MiB default): manage.py's RSS growth "
    "beside the limit, and its peak beside stock supervisord's with the same program",
)
def unread(ctx: Context) -> list[Figure]:
    seconds, cap = (5, 1 * MIB) if ctx.quick else (10, 16 * MIB)
    conf = FLOOD_CONF.format(flood=FLOOD, seconds=seconds)
    project = make_project(ctx.workdir / "unread", conf=conf)
    with (project.path / "benchproj" / "settings.py").open("a") as settings:
        settings.write(f"SUPERVISOR_CONSOLE_BUFFER = {cap}\n")
    merged = getconfig(project, "--noreload")
    peer_dir = ctx.workdir / "unread-peer"
    peer_dir.mkdir(mode=0o700)
    peer_file = merged.rehomed(peer_dir).write(ctx.workdir / "unread-peer.conf")
    # A FIFO whose read end we hold open and never read: the console's stdout.
    fifo = ctx.workdir / "unread.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    env = {**project.env(), "NO_COLOR": "1"}
    try:
        argv = redirected(project.manage_argv("supervisor", "--noreload"), fifo)
        idle, peak = peak_rss(ctx, argv, "unread-ours", project, env)
    finally:
        os.close(reader)
    stock = [*stock_command("supervisord"), "-n", "-c", str(peer_file)]
    stock_idle, stock_peak = peak_rss(ctx, stock, "unread-supervisord", project, env)
    extras = {"idle_mib": idle, "peak_mib": peak, "cap_mib": cap / MIB, "seconds": seconds}
    extras.update({"supervisord_idle_mib": stock_idle, "supervisord_peak_mib": stock_peak})
    return [
        Figure(
            label=f"RSS growth, unread console, 50 MB/s for {seconds} s, "
            f"buffer {cap // MIB} MiB (limit: 2x the buffer)",
            unit="MiB",
            ours=peak - idle,
            peer=None,
            peer_name="-",
            target=Target("ours", 2 * cap / MIB),
            extras=extras,
        ),
        Figure(
            label=f"peak RSS, unread console, 50 MB/s for {seconds} s",
            unit="MiB",
            ours=peak,
            peer=stock_peak,
            peer_name="supervisord -n, log file only",
            extras=extras,
        ),
    ]
