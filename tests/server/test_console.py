"""The live console: every program's output, prefixed, whole lines, never blocking.

Unit tests drive ``Console`` over a real pipe with an injected clock; integration
tests read a real foreground ``manage.py supervisor``'s stdout (a pipe, or a pty).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import itertools
import os
import pty
import random
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from djsupervisor.server import pipes
from djsupervisor.server.console import PARTIAL_DELAY, Console, use_color
from tests.utils import Project, Rpc, make_project

ANSI = re.compile(rb"\x1b\[[0-9;]*m")
# "HH:MM:SS name | text": stdout lines use "|", stderr lines "!".
LINE = re.compile(rb"^(\d\d:\d\d:\d\d) (\S+) +([|!]) (.*)$")


# --- helpers ---------------------------------------------------------------------------


class Reader:
    """Collect everything written to ``fd`` in a thread, with the time each chunk arrived."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, total length after)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: a pty's other side is closed
                chunk = b""
            if not chunk:
                return
            with self.lock:
                self.data += chunk
                self.arrivals.append((time.monotonic(), len(self.data)))

    def wait_for(self, needle: bytes, timeout: float = 15) -> float:
        """Wait until ``needle`` has arrived; return when its last byte did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                at = self.data.find(needle)
                if at != -1:
                    end = at + len(needle)
                    return next(t for t, total in self.arrivals if total >= end)
            time.sleep(0.01)
        raise AssertionError(f"{needle!r} not seen within {timeout} s; got:\n{self.text()}")

    def text(self) -> str:
        with self.lock:
            return self.data.decode(errors="backslashreplace")

    def lines(self) -> list[bytes]:
        with self.lock:
            return bytes(self.data).replace(b"\r\n", b"\n").split(b"\n")

    @classmethod
    def of(cls, proc: subprocess.Popen[bytes]) -> Reader:
        """Read ``proc``'s stdout pipe."""
        assert proc.stdout is not None
        return cls(proc.stdout.fileno())

    def join(self, timeout: float = 20) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the console output never ended"


def start(
    project: Project,
    *args: str,
    stdout: int = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``manage.py supervisor ARGS`` in the foreground, its output read as bytes.

    The colour variables are cleared (empty means unset) unless ``env`` sets them.
    """
    proc = subprocess.Popen(
        [sys.executable, str(project.path / "manage.py"), "supervisor", "--noreload", *args],
        cwd=project.path,
        env=project.env(**{"NO_COLOR": "", "FORCE_COLOR": "", **(env or {})}),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    project.started.append(proc)  # type: ignore[arg-type]  # cleanup() stops it
    return proc


def stop(proc: subprocess.Popen[bytes], reader: Reader | None = None) -> int:
    """SIGTERM the foreground server; return its exit code once its output has ended."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=20)
    if reader is not None:
        reader.join()
    return code


def program_lines(output: list[bytes], name: str, mark: bytes = b"|") -> list[bytes]:
    """The text of ``name``'s console lines on one channel, in order."""
    found = []
    for line in output:
        match = LINE.match(line)
        if match and match[2] == name.encode() and match[3] == mark:
            found.append(match[4])
    return found


def script(project: Project, name: str, text: str) -> str:
    """Write a child program into the project; return its supervisord ``command``."""
    project.write(f"{name}.py", text)
    return f"{{{{ PYTHON }}}} {{{{ PROJECT_DIR }}}}/{name}.py"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj", None)
    yield proj
    proj.cleanup()


def configure(project: Project, programs: dict[str, str], extra: str = "") -> None:
    """Write supervisord.conf: one run-once program per ``name: command``."""
    conf = "".join(
        f"[program:{name}]\ncommand={command}\nstartsecs=0\nautorestart=false\n{extra}\n"
        for name, command in programs.items()
    )
    project.write("supervisord.conf", conf)


# --- use_color -------------------------------------------------------------------------


@pytest.fixture
def fds() -> Iterator[dict[str, int]]:
    """A pipe's write end and a pty's slave end."""
    read_end, write_end = os.pipe()
    master, slave = pty.openpty()
    yield {"pipe": write_end, "tty": slave}
    for fd in (read_end, write_end, master, slave):
        os.close(fd)


@pytest.mark.parametrize(
    ("kind", "environ", "flags", "expected"),
    [
        ("tty", {}, {}, True),
        ("pipe", {}, {}, False),
        ("tty", {"NO_COLOR": "1"}, {}, False),
        # no-color.org: an empty NO_COLOR does not count.
        ("tty", {"NO_COLOR": ""}, {}, True),
        ("pipe", {"FORCE_COLOR": "1"}, {}, True),
        ("pipe", {}, {"force_color": True}, True),
        ("tty", {}, {"no_color": True}, False),
        ("pipe", {"FORCE_COLOR": "1"}, {"no_color": True}, False),
        ("tty", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, {}, False),
    ],
)
def test_use_color(
    fds: dict[str, int], kind: str, environ: dict[str, str], flags: dict[str, bool], expected: bool
) -> None:
    options = {"no_color": False, "force_color": False, **flags}
    assert use_color(fds[kind], environ, **options) is expected


# --- Console, over a real pipe ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(fd)


def read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def stamp(clock: Clock) -> bytes:
    return time.strftime("%H:%M:%S", time.localtime(clock.now)).encode()


def test_console_assembles_whole_lines_with_padded_prefixes(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    clock = Clock()
    console = Console(write_end, clock=clock)
    console.add_names(["web", "a-long-worker"])
    console.output("web", "stdout", b"hel")
    assert read_all(read_end) == b""  # not a whole line yet
    console.output("web", "stdout", b"lo\nwor")
    console.output("a-long-worker", "stderr", b"oops\n")
    console.output("web", "stdout", b"ld\nbye\n")
    console.message("INFO", "spawned: 'web'")
    console.message("WARN", "stopped: web")
    t = stamp(clock)
    assert read_all(read_end) == (
        t
        + b" web           | hello\n"
        + t
        + b" a-long-worker ! oops\n"
        + t
        + b" web           | world\n"
        + t
        + b" web           | bye\n"
        + t
        + b" supervisor    | spawned: 'web'\n"
        + t
        + b" supervisor    | WARN stopped: web\n"
    )


def test_console_raw_passes_bytes_through_and_quiet_keeps_supervisor_only(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    raw = Console(write_end, prefix=False)
    raw.output("web", "stdout", b"a\xff\xfe b\n\x00c\n")
    assert read_all(read_end) == b"a\xff\xfe b\n\x00c\n"
    quiet = Console(write_end, quiet=True, clock=Clock())
    quiet.output("web", "stdout", b"hidden\n")
    quiet.output("web", "stdout", b"hidden partial")
    quiet.drain(timeout=0)
    quiet.message("INFO", "shown")
    assert read_all(read_end) == stamp(Clock()) + b" supervisor | shown\n"


def test_console_colours_the_label_only(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    clock = Clock()
    console = Console(write_end, color=True, clock=clock)
    console.add_names(["one", "two"])
    console.output("one", "stdout", b"x\n")
    console.output("two", "stderr", b"y\n")
    console.message("INFO", "z")
    lines = read_all(read_end).split(b"\n")
    codes = [re.search(rb"\x1b\[(\d+)m", line)[1] for line in lines[:3]]  # type: ignore[index]
    assert len(set(codes)) == 3, lines  # each program and supervisord: its own colour
    assert [ANSI.sub(b"", line) for line in lines] == [
        stamp(clock) + b" one        | x",
        stamp(clock) + b" two        ! y",
        stamp(clock) + b" supervisor | z",
        b"",
    ]
    for line, text in zip(lines[:3], (b"x", b"y", b"z"), strict=True):
        assert line.startswith(stamp(clock) + b" \x1b["), line  # the time is not coloured
        assert line.endswith(b"\x1b[0m " + text), line  # nor is the text


def test_console_shows_a_partial_line_after_the_delay(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    clock = Clock()
    console = Console(write_end, clock=clock, prefix=False)
    assert console.due() is None
    console.output("web", "stdout", b"done\nprompt> ")
    assert read_all(read_end) == b"done\n"
    assert console.due() == clock.now + PARTIAL_DELAY
    clock.now += PARTIAL_DELAY / 2
    console.output("web", "stdout", b"still ")  # the delay counts from the first piece
    console.flush_partials()
    assert read_all(read_end) == b""
    clock.now += PARTIAL_DELAY / 2
    console.flush_partials()
    assert read_all(read_end) == b"prompt> still \n"
    assert console.due() is None
    console.output("web", "stderr", b"at exit")
    console.drain(timeout=0)
    assert read_all(read_end) == b"at exit\n"


def test_console_never_blocks_and_keeps_order(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    console = Console(write_end, prefix=False)
    sent = [b"%07d %s\n" % (i, b"x" * 70) for i in range(20000)]  # 1.6 MB >> pipe buffer
    started = time.monotonic()
    for line in sent:
        console.output("web", "stdout", line)
    assert time.monotonic() - started < 5
    assert console.pending  # the pipe is full: the rest waits in memory
    received = b""
    while console.pending:
        received += read_all(read_end)
        console.flush()
    received += read_all(read_end)
    assert received == b"".join(sent)


def test_console_prefix_follows_the_clock_and_new_names(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    clock = Clock()
    console = Console(write_end, clock=clock)
    console.add_names(["web"])
    console.output("web", "stdout", b"one\n")
    first = stamp(clock)
    clock.now += 1  # the prefix is kept for a second: not a moment longer
    console.output("web", "stdout", b"two\n")
    console.output("web", "stderr", b"three\n")
    console.add_names(["a-long-worker"])  # every label widens at once
    console.output("web", "stdout", b"four\n")
    second = stamp(clock)
    assert first != second
    assert read_all(read_end) == (
        first
        + b" web        | one\n"
        + second
        + b" web        | two\n"
        + second
        + b" web        ! three\n"
        + second
        + b" web           | four\n"
    )


def formatted(calls: list[tuple[str, str, bytes, float]], width: int, *, prefix: bool) -> bytes:
    """What the console must show for ``calls``, the plain way: one line at a time."""
    partial: dict[tuple[str, str], bytes] = {}
    out = bytearray()
    for name, channel, data, now in calls:
        *lines, partial[name, channel] = (partial.get((name, channel), b"") + data).split(b"\n")
        stamp = time.strftime("%H:%M:%S", time.localtime(now)).encode()
        mark = b"|" if channel == "stdout" else b"!"
        for line in lines:
            if prefix:
                out += b"%s %s %s " % (stamp, name.ljust(width).encode(), mark)
            out += line + b"\n"
    return bytes(out)


@pytest.mark.parametrize(("kind", "prefix"), [("file", True), ("pipe", True), ("pipe", False)])
def test_console_shows_reads_of_any_size_cut_anywhere_whole_and_in_order(
    tmp_path: Path, kind: str, prefix: bool
) -> None:
    # A grown pipe gives reads of up to a megabyte, a slow program single bytes; lines are
    # cut wherever a read ends, and a busy console takes part of a write.
    rng = random.Random(16)
    streams = {
        key: b"".join(
            b"%s %06d %s\n" % (key[0].encode(), i, b"x" * rng.choice((0, 1, 70, 70, 900, 30000)))
            for i in range(3000)
        )
        for key in (("web", "stdout"), ("web", "stderr"), ("a-long-worker", "stdout"))
    }
    sizes = (1, 7, 80, 4096, 65536, 128 * 1024, 1024 * 1024)
    clock = Clock()
    calls = []
    while streams:
        key = rng.choice(sorted(streams))
        size = rng.choice((*sizes, rng.randrange(1, 1536 * 1024)))
        data, rest = streams[key][:size], streams[key][size:]
        if rest:
            streams[key] = rest
        else:
            del streams[key]
        clock.now += rng.random() * 0.4  # across seconds: the stamps change
        calls.append((key[0], key[1], data, clock.now))
    if kind == "file":
        write_end = os.open(tmp_path / "console", os.O_WRONLY | os.O_CREAT, 0o600)
    else:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        reader = Reader(read_end)
    console = Console(write_end, clock=clock, prefix=prefix, limit=1 << 30)
    console.add_names(["web", "a-long-worker"])
    for name, channel, data, clock.now in calls:
        console.output(name, channel, data)
    assert not console.partials
    console.close()
    if kind == "file":
        shown = (tmp_path / "console").read_bytes()
    else:
        reader.join()
        os.close(read_end)
        shown = bytes(reader.data)
    assert shown == formatted(calls, len("a-long-worker"), prefix=prefix)


def test_console_drain_waits_for_a_slow_but_steady_console(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    console = Console(write_end, prefix=False)
    sent = b"".join(b"%07d %s\n" % (i, b"x" * 70) for i in range(10000))  # 800 KB
    console.output("web", "stdout", sent)
    received = bytearray()
    drained = threading.Event()

    def read_slowly() -> None:
        # 64 KiB every 50 ms: about 0.6 s for all of it, never stalled for 0.2 s.
        while len(received) < len(sent):
            time.sleep(0.05)
            try:
                received.extend(os.read(read_end, 65536))
            except BlockingIOError:
                if drained.is_set():
                    return

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    console.drain(timeout=0.2)
    drained.set()
    reader.join(timeout=5)
    assert bytes(received) == sent


def test_console_swallows_a_closed_console(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.close(read_end)
    console = Console(write_end)
    console.output("web", "stdout", b"nobody reads this\n")  # EPIPE: no exception
    console.message("INFO", "nor this")
    assert not console.pending


# --- manage.py supervisor: the console on a pipe ---------------------------------------

INTERLEAVER = """\
import os
import sys
import time

name, count = sys.argv[1].encode(), int(sys.argv[2])
out = b"".join(b"%s out %05d %s\\n" % (name, i, b"o" * (i * 37 % 3000)) for i in range(count))
err = b"".join(b"%s err %05d %s\\n" % (name, i, b"e" * (i * 11 % 500)) for i in range(0, count, 7))
out += b"%s finished\\n" % name
# Raw writes of odd sizes, so that supervisord reads lines cut anywhere.
step = 0
while out or err:
    size = 1 + step * 7919 % 9973
    for fd, data in ((1, out[:size]), (2, err[: size // 4])):
        if data:
            os.write(fd, data)
    out, err = out[size:], err[size // 4 :]
    step += 1
    if step % 20 == 0:
        time.sleep(0.005)
"""


def test_interleaved_programs_keep_whole_lines_in_order(project: Project) -> None:
    count = 3000
    command = script(project, "interleaver", INTERLEAVER)
    configure(project, {"a": f"{command} a {count}", "bb": f"{command} bb {count}"})
    server = start(project)
    reader = Reader.of(server)
    reader.wait_for(b"a finished\n")
    reader.wait_for(b"bb finished\n")
    assert stop(server, reader) == 0
    output = reader.lines()
    # Every line of the console is one whole line: supervisor, a or bb, same width.
    for line in output[:-1]:
        match = LINE.match(line)
        assert match, line[:200]
        assert match[2] in (b"supervisor", b"a", b"bb"), line[:200]
        assert line[9:21] == match[2].ljust(10) + b" " + match[3], line[:40]
    assert output[-1] == b""
    for name in ("a", "bb"):
        assert program_lines(output, name) == [
            *(b"%s out %05d %s" % (name.encode(), i, b"o" * (i * 37 % 3000)) for i in range(count)),
            b"%s finished" % name.encode(),
        ]
        assert program_lines(output, name, b"!") == [
            b"%s err %05d %s" % (name.encode(), i, b"e" * (i * 11 % 500))
            for i in range(0, count, 7)
        ]
    # They did interleave: the console switches between them many times.
    names = [LINE.match(line)[2] for line in output[:-1]]  # type: ignore[index]
    programs = [name for name in names if name != b"supervisor"]
    switches = sum(1 for x, y in itertools.pairwise(programs) if x != y)
    assert switches >= 10, switches
    supervisor = program_lines(output, "supervisor")
    assert any(b"spawned: 'a'" in line for line in supervisor), supervisor


PARTIAL = """\
import signal
import sys
import time


def goodbye(signum, frame):
    sys.stdout.write("last words")
    sys.stdout.flush()
    sys.exit(0)


signal.signal(signal.SIGTERM, goodbye)
for piece in ("ha", "lf a li", "ne\\n"):  # one line, in pieces well within the delay
    sys.stdout.write(piece)
    sys.stdout.flush()
    time.sleep(0.05)
# CLOCK_MONOTONIC is system-wide: the test compares it with its own.
sys.stdout.write(f"ready at {time.monotonic()!r}\\nprompt> ")
sys.stdout.flush()
time.sleep(3600)
"""


def test_partial_line_shown_after_a_short_delay_and_at_exit(project: Project) -> None:
    configure(project, {"part": script(project, "partial", PARTIAL)})
    server = start(project)
    reader = Reader.of(server)
    prompt = reader.wait_for(b" part       | prompt> \n")
    ready = program_lines(reader.lines(), "part")[1]
    written = float(ready.removeprefix(b"ready at "))
    # Not before the delay; well within a second (a loaded machine may add a little).
    assert PARTIAL_DELAY <= prompt - written <= PARTIAL_DELAY + 0.7
    assert stop(server, reader) == 0
    assert program_lines(reader.lines(), "part") == [
        b"half a line",
        ready,
        b"prompt> ",
        b"last words",  # written as the program was stopped, without a newline
    ]


BADBYTES = """\
import sys
import time

out = sys.stdout.buffer
out.write(b"latin-1 caf\\xe9 and junk \\xff\\xfe\\x80 end\\n")
out.write(b"\\xf0\\x9f\\x98 cut emoji\\n")
out.flush()
time.sleep(0.3)
out.write("still alive \\u2713\\n".encode())
out.flush()
time.sleep(3600)
"""


def test_invalid_utf8_passes_through(project: Project) -> None:
    configure(project, {"bad": script(project, "badbytes", BADBYTES)})
    server = start(project)
    reader = Reader.of(server)
    reader.wait_for("still alive \u2713\n".encode())
    out, err, code = project.manage("supervisor", "status", "bad")
    assert (err, code) == ("", 0)
    assert out.split()[:2] == ["bad", "RUNNING"]
    assert stop(server, reader) == 0
    assert program_lines(reader.lines(), "bad") == [
        b"latin-1 caf\xe9 and junk \xff\xfe\x80 end",
        b"\xf0\x9f\x98 cut emoji",
        "still alive \u2713".encode(),
    ]


HELLO = """\
import sys
import time

print("hello out", flush=True)
print("hello err", file=sys.stderr, flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize(
    ("args", "env", "colored"),
    [
        ((), {}, False),
        ((), {"FORCE_COLOR": "1"}, True),
        (("--force-color",), {}, True),
        (("--no-color",), {"FORCE_COLOR": "1"}, False),
    ],
)
def test_colour_on_a_pipe(
    project: Project, args: tuple[str, ...], env: dict[str, str], colored: bool
) -> None:
    configure(project, {"hello": script(project, "hello", HELLO)})
    server = start(project, *args, env=env)
    reader = Reader.of(server)
    reader.wait_for(b"hello err")
    assert stop(server, reader) == 0
    output = reader.lines()
    assert (b"\x1b[" in b"\n".join(output)) is colored
    plain = [ANSI.sub(b"", line) for line in output]
    assert program_lines(plain, "hello") == [b"hello out"]
    assert program_lines(plain, "hello", b"!") == [b"hello err"]


@pytest.mark.parametrize(("env", "colored"), [({}, True), ({"NO_COLOR": "1"}, False)])
def test_colour_on_a_terminal(project: Project, env: dict[str, str], colored: bool) -> None:
    configure(project, {"hello": script(project, "hello", HELLO)})
    master, slave = pty.openpty()
    try:
        server = start(project, stdout=slave, env=env)
    finally:
        os.close(slave)
    try:
        reader = Reader(master)
        reader.wait_for(b"hello err")
        assert stop(server, reader) == 0
    finally:
        os.close(master)
    output = reader.lines()
    assert (b"\x1b[" in b"\n".join(output)) is colored
    plain = [ANSI.sub(b"", line) for line in output]
    assert program_lines(plain, "hello") == [b"hello out"]
    assert program_lines(plain, "hello", b"!") == [b"hello err"]


def test_raw_shows_program_output_unprefixed(project: Project) -> None:
    configure(project, {"hello": script(project, "hello", HELLO)})
    server = start(project, "--raw")
    reader = Reader.of(server)
    reader.wait_for(b"hello err\n")
    assert stop(server, reader) == 0
    output = reader.lines()
    assert b"hello out" in output
    assert b"hello err" in output
    assert not [line for line in output if LINE.match(line)]


def test_quiet_shows_supervisor_messages_only(project: Project) -> None:
    configure(project, {"hello": script(project, "hello", HELLO)})
    server = start(project, "--quiet")
    reader = Reader.of(server)
    reader.wait_for(b"hello entered RUNNING state")
    project.wait_for(lambda: project.status().get("hello") == "RUNNING", what="hello RUNNING")
    time.sleep(PARTIAL_DELAY + 0.2)  # anything the program printed would be out by now
    assert stop(server, reader) == 0
    output = reader.lines()
    assert b"hello" not in b"\n".join(line for line in output if b" supervisor | " not in line)
    assert not program_lines(output, "hello")
    assert not program_lines(output, "hello", b"!")
    assert any(b"spawned: 'hello'" in line for line in output)


TICKER = """\
import sys
import time

for i in range(400):
    print(f"tick {i:05d} " + "t" * 60)
    if i % 100 == 99:  # in a few pieces, so the log rotates more than once
        sys.stdout.flush()
        time.sleep(0.1)
i = 400
while True:
    print(f"tick {i:05d} " + "t" * 60, flush=True)
    i += 1
    time.sleep(0.03)
"""


def test_log_files_rotation_and_tail_keep_working(project: Project) -> None:
    configure(
        project,
        {"ticker": script(project, "ticker", TICKER)},
        extra=(
            "stdout_logfile={{ PROJECT_DIR }}/ticker.log\n"
            "stdout_logfile_maxbytes=8KB\nstdout_logfile_backups=2\n"
        ),
    )
    server = start(project)
    reader = Reader.of(server)
    reader.wait_for(b"| tick 00420 ")
    # Rotation as in supervisord: 400 lines of 72 bytes overflowed the 8 KiB file.
    assert (project.path / "ticker.log.1").stat().st_size >= 8192
    assert (project.path / "ticker.log").stat().st_size < 8192
    tails: list[list[str]] = []

    def tailed() -> bool:
        out, err, code = project.manage("supervisor", "tail", "ticker")
        assert (err, code) == ("", 0)
        assert out.endswith("\n\n")  # the log's last line, and supervisorctl's newline
        # The last 1600 bytes, whose first line may be cut: right after a rotation,
        # fewer. Rotation is supervisord's, at its own pace: ask again.
        tails.append(out.splitlines()[1:-1])
        return len(tails[-1]) >= 20

    project.wait_for(tailed, what="a tail of 20 lines")
    shown = program_lines(reader.lines(), "ticker")
    for text in tails[-1]:
        assert text.encode() in shown
    # tail -f follows the log while the console shows the same lines.
    follow = subprocess.Popen(
        [sys.executable, str(project.path / "manage.py"), "supervisor", "tail", "-f", "ticker"],
        cwd=project.path,
        env=project.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    project.started.append(follow)  # type: ignore[arg-type]
    followed = Reader.of(follow)
    last = int(shown[-1].split()[1])

    def followed_ticks() -> list[int]:
        # Whole lines only (the first may be cut, the last unfinished).
        lines = followed.lines()[1:-1]
        return [int(line.split()[1]) for line in lines if line.startswith(b"tick ")]

    # A few lines written after the tail began: under load tail -f may start late, so
    # wait for lines past whatever it saw first, not for one fixed number.
    project.wait_for(
        lambda: len(ticks := followed_ticks()) >= 2 and ticks[-1] > max(last, ticks[0]) + 5,
        what="tail -f to follow new lines",
    )
    later = b"tick %05d " % followed_ticks()[-1]
    follow.send_signal(signal.SIGINT)
    follow.wait(timeout=10)
    followed.join()
    reader.wait_for(b"| " + later)
    assert stop(server, reader) == 0
    shown = program_lines(reader.lines(), "ticker")
    numbers = [int(line.split()[1]) for line in shown]
    assert numbers == list(range(len(numbers)))
    assert all(line.endswith(b" " + b"t" * 60) for line in shown)
    # Its banner, a first line that may be cut, then whole lines (the program writes
    # whole lines); a blank line on Ctrl-C.
    banner, _, *whole = [line for line in followed.lines() if line]
    assert banner == b"==> Press Ctrl-C to exit <=="
    assert any(line.startswith(later) for line in whole)
    for line in whole:
        assert line in shown, line
    # The log files hold exactly what the console showed, in the same order.
    files = [project.path / f"ticker.log{suffix}" for suffix in (".2", ".1", "")]
    logged = b"".join(path.read_bytes() for path in files if path.exists()).splitlines()
    # The oldest kept file may begin mid-line: rotation cuts wherever a read ended, and the
    # line's start went with the deleted file. Every line after it is whole.
    logged = logged[1:]
    assert len(logged) > 100
    assert logged == shown[len(shown) - len(logged) :]


FLOOD = """\
import sys

count = int(sys.argv[1])
out = sys.stdout.buffer
filler = b"f" * 70
for start in range(0, count, 10000):
    block = range(start, min(count, start + 10000))
    out.write(b"".join(b"%08d %s\\n" % (i, filler) for i in block))
out.write(b"END\\n")
out.flush()
"""


def queued(fd: int) -> int:
    """Bytes waiting to be read from the pipe or socket ``fd``."""
    size = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, size)
    return size[0]


@pytest.mark.parametrize(
    "kind",
    ["pipe", "socket"],
)
def test_slow_console_blocks_neither_programs_nor_supervisord(project: Project, kind: str) -> None:
    count = 262144  # 20 MiB of 80-byte lines
    # Within the console's buffer limit nothing is lost (beyond it, see test_hardening_disk).
    with (project.path / "testproj/settings.py").open("a") as settings:
        settings.write("SUPERVISOR_CONSOLE_BUFFER = 64 * 1024 * 1024\n")
    configure(
        project,
        {"flood": f"{script(project, 'flood', FLOOD)} {count}"},
        extra="stdout_logfile={{ PROJECT_DIR }}/flood.log\nstdout_logfile_maxbytes=0\n",
    )
    if kind == "pipe":
        server = start(project)
        assert server.stdout is not None
        ours = server.stdout.fileno()
    else:
        ours_socket, theirs = socket.socketpair()
        with ours_socket, theirs:
            server = start(project, stdout=theirs.fileno())
            ours = os.dup(ours_socket.fileno())
    try:
        log = project.path / "flood.log"
        size = count * 80 + 4
        # Nobody reads the console: it fills up, yet the program writes everything
        # (supervisord keeps reading it into the log) and exits.
        project.wait_for(lambda: log.exists() and log.stat().st_size == size, 8, "flood.log full")
        started = time.monotonic()
        out, err, code = project.manage("supervisor", "status", "flood", timeout=10)
        assert time.monotonic() - started < 8
        assert (out.split()[:2], err, code) == (["flood", "EXITED"], "", 3)
        assert queued(ours) >= 32768, "the console should be full"
        time.sleep(1)
        # Now read it all: nothing lost, in order.
        reader = Reader(ours)
        reader.wait_for(b" flood      | END\n", timeout=30)
        assert stop(server, reader) == 0
    finally:
        if kind == "socket":
            os.close(ours)
    shown = program_lines(reader.lines(), "flood")
    assert len(shown) == count + 1
    filler = b"f" * 70
    assert shown == [*(b"%08d %s" % (i, filler) for i in range(count)), b"END"]


BURST = """\
import os
import sys
import time

go = sys.argv[1]
out = sys.stdout.buffer
filler = b"b" * 70


def lines(first, last):
    return b"".join(b"%08d %s\\n" % (i, filler) for i in range(first, last))


out.write(lines(0, 50000))  # 4 MB, as fast as it goes: the pipe fills up
out.flush()
open("flooded", "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
out.write(lines(50000, 62000) + b"END\\n")  # 960 kB: fits a grown pipe, then exit
out.flush()
"""


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


@pytest.mark.skipif(pipes.F_SETPIPE_SZ is None, reason="pipes cannot grow here")
def test_a_flooding_program_gets_a_big_pipe_and_its_last_megabyte_shows(
    project: Project,
) -> None:
    go = project.path / "go"
    configure(
        project,
        {"burst": f"{script(project, 'burst', BURST)} {go}"},
        extra="stdout_logfile={{ PROJECT_DIR }}/burst.log\nstdout_logfile_maxbytes=0\n",
    )
    server = start(project)
    reader = Reader.of(server)
    project.wait_for((project.path / "flooded").exists, what="the first burst")
    pid = Rpc(project).info()["burst"]["pid"]
    # The program's stdout, opened here too: the same pipe, to look into.
    pipe = os.open(f"/proc/{pid}/fd/1", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) == pipes.GROWN_SIZE  # type: ignore[attr-defined]
        reader.wait_for(b" burst      | 00049999 ")
        # supervisord stopped: the program writes its last 960 kB into the pipe and exits.
        os.kill(server.pid, signal.SIGSTOP)
        try:
            go.touch()
            project.wait_for(lambda: state(pid) == "Z", what="the program's exit")
            assert queued(pipe) > 900_000
        finally:
            os.kill(server.pid, signal.SIGCONT)
    finally:
        os.close(pipe)
    # supervisord reaps it, reads the pipe once more and closes it: all of it must come.
    reader.wait_for(b"exited: burst")
    assert stop(server, reader) == 0
    filler = b"b" * 70
    expected = [*(b"%08d %s" % (i, filler) for i in range(62000)), b"END"]
    assert program_lines(reader.lines(), "burst") == expected
    assert (project.path / "burst.log").read_bytes() == b"\n".join(expected) + b"\n"


def test_daemonized_output_goes_to_the_log_files_only(project: Project) -> None:
    configure(project, {"hello": script(project, "hello", HELLO)})
    out, err, code = project.manage("supervisor", "--daemonize", "--noreload")
    assert (err, code) == ("", 0)
    assert "hello" not in out
    project.wait_running("hello")

    def logged() -> bool:
        return project.manage("supervisor", "tail", "hello")[0] == "hello out\n\n"

    project.wait_for(logged, what="hello's log")
    assert project.manage("supervisor", "tail", "hello", "stderr") == ("hello err\n\n", "", 0)
    assert project.manage("supervisor", "shutdown") == ("Shut down\n", "", 0)
