"""Hardening (issue 13): a full disk never stops supervisord; the console's memory is bounded.

The full disk is a real one: a 1 MiB tmpfs holding the log directory, filled up by a
filler file. The unread console is a real pipe nobody reads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from djsupervisor.server.console import Console
from djsupervisor.server.logguard import DropMeter, LogGuard
from tests.utils import LineReader, Project, make_project, program, rss_kb, wait_for

TALKER = """\
import sys, time

# Talk on both channels, then exit: supervisord restarts it (autorestart). Lines are
# long: tmpfs takes appends into a file's last, partly used page even when full.
for i in range(10):
    print(f"talk {i} " + "t" * 1000, flush=True)
    print(f"oops {i} " + "o" * 1000, file=sys.stderr, flush=True)
    time.sleep(0.05)
"""

DROP_LINE = re.compile(r"WARN (\S+): (cannot write .*; dropped|writing logs again;) ")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A mounted 1 MiB tmpfs; unmounted at teardown, whatever happens."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory``; return the filler file."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as stream, contextlib.suppress(OSError):
        while True:
            stream.write(b"x" * 4096)
    with pytest.raises(OSError) as info, filler.open("ab", buffering=0) as stream:
        stream.write(b"x")
    assert info.value.errno == errno.ENOSPC
    return filler


# --- the guarded handlers, in this process, on a real full disk ------------------------


def test_a_full_disk_drops_writes_counts_them_and_resumes(full_disk: Path) -> None:
    reports: list[str] = []
    guard = LogGuard()
    guard.report = reports.append
    from supervisor import loggers

    for rotating in (False, True):
        logger = guard.logger(f"p{int(rotating)}")
        path = full_disk / f"p{int(rotating)}.log"
        loggers.handle_file(logger, str(path), "%(message)s", rotating, 100_000, 1)
        filler = fill(full_disk)
        for _ in range(100):
            logger.info(b"x" * 1000)  # neither raises nor prints a traceback
        logger.close()  # nor does closing with the disk full
        logger.handlers[0].reopen()
        assert reports == [
            f"p{int(rotating)}: cannot write {path}: No space left on device; "
            "dropped 1000 bytes of log output"
        ]
        assert guard.meters[f"p{int(rotating)}"].dropped == 99_000
        reports.clear()
        filler.unlink()
        logger.info(b"back\n")
        assert path.read_bytes().endswith(b"back\n")
        logger.close()


def test_a_rotating_log_rolls_over_on_a_full_disk_and_resumes(full_disk: Path) -> None:
    from supervisor import loggers

    reports: list[str] = []
    guard = LogGuard()
    guard.report = reports.append
    logger = guard.logger("r")
    path = full_disk / "r.log"
    loggers.handle_file(logger, str(path), "%(message)s", True, 5000, 1)
    logger.info(b"a" * 4500)
    filler = fill(full_disk)
    for _ in range(5):
        logger.info(b"b" * 1000)  # fits the file's last page, rolls over, then fails
    assert Path(f"{path}.1").read_bytes() == b"a" * 4500 + b"b" * 1000
    assert len(reports) == 1 and "No space left on device" in reports[0]
    filler.unlink()
    logger.info(b"c" * 10)
    logger.close()
    assert path.read_bytes() == b"c" * 10


def test_drop_reports_come_at_most_once_a_minute() -> None:
    now = [1000.0]
    reports: list[str] = []
    meter = DropMeter("p", reports.append, clock=lambda: now[0])
    error = OSError(errno.ENOSPC, "No space left on device")
    meter.failed(10, "/l", error)
    meter.failed(20, "/l", error)
    now[0] += 59
    meter.failed(30, "/l", error)
    meter.succeeded()
    full = "p: cannot write /l: No space left on device"
    assert reports == [f"{full}; dropped 10 bytes of log output"]
    now[0] += 1
    meter.succeeded()  # a minute on, and writing again: the rest is reported
    meter.succeeded()
    assert reports[1:] == ["p: writing logs again; 50 bytes of log output dropped"]
    meter.failed(1, "/l", error)
    now[0] += 59.9
    meter.failed(2, "/l", error)
    assert reports[2:] == []
    now[0] += 0.1
    meter.failed(3, "/l", error)
    assert reports[2:] == [f"{full}; dropped 6 bytes of log output"]


# --- supervisord with its log directory full --------------------------------------------


def make_full_disk_project(root: Path, logdir: Path) -> Project:
    project = make_project(
        root,
        f"""\
        [supervisord]
        logfile={logdir}/supervisord.log
        childlogdir={logdir}

        [program:talker]
        command={{{{ PYTHON }}}} -u {{{{ PROJECT_DIR }}}}/talker.py
        startsecs=0
        autorestart=true

        [program:quiet]
        command={{{{ PYTHON }}}} -c "import time; time.sleep(3600)"
        """,
    )
    project.write("talker.py", TALKER)
    return project


def drop_lines(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for match in DROP_LINE.finditer(text):
        counts[match[1]] = counts.get(match[1], 0) + 1
    return counts


@pytest.mark.parametrize("ending", ["shutdown", "SIGINT"])
def test_supervisord_runs_on_with_its_log_directory_full(
    tmp_path: Path, full_disk: Path, ending: str
) -> None:
    project = make_full_disk_project(tmp_path / "proj", full_disk)
    try:
        server = project.start("--noreload")
        output = LineReader(server)
        project.wait_running("quiet")
        filler = fill(full_disk)
        seen = len(output.lines)
        # The talker writes, exits and is restarted with every write failing.
        project.wait_for(
            lambda: sum("exited: talker" in line for line in output.lines[seen:]) >= 2,
            what="talker restarted twice",
        )
        # Its output still reaches the console, on both channels.
        assert any(re.search(r" talker +\| talk 9 t{1000}$", x) for x in output.lines[seen:])
        assert any(re.search(r" talker +! oops 9 o{1000}$", x) for x in output.lines[seen:])
        out, err, code = project.manage("supervisor", "restart", "quiet")
        assert (err, code) == ("", 0)
        assert "quiet: started" in out
        server.send_signal(signal.SIGHUP)
        output.wait_for("received SIGHUP indicating restart request")
        project.wait_running("quiet")
        assert server.poll() is None
        # Space comes back: logging resumes by itself.
        log = next(full_disk.glob("talker-stdout*.log"))
        filler.unlink()
        before = log.stat().st_size
        project.wait_for(lambda: log.stat().st_size > before + 100, what="talker logging again")
        assert f"talk 9 {'t' * 1000}\n" in log.read_text()
        fill(full_disk)
        if ending == "shutdown":
            out, err, code = project.manage("supervisor", "shutdown")
            assert (err, code) == ("", 0)
        else:
            server.send_signal(signal.SIGINT)
        assert output.finish() == 0, output.text
    finally:
        project.cleanup()
    assert "Traceback" not in output.text, output.text
    assert "OSError" not in output.text
    # Well under a minute: at most one line per program says what was dropped.
    counts = drop_lines(output.text)
    assert counts.get("talker") == 1, output.text
    assert all(count == 1 for count in counts.values()), counts


def test_a_daemon_with_its_log_directory_full_runs_on(tmp_path: Path, full_disk: Path) -> None:
    project = make_full_disk_project(tmp_path / "proj", full_disk)
    try:
        out, err, code = project.manage("supervisor", "--daemonize", "--noreload")
        assert (err, code) == ("", 0)
        project.wait_running("quiet")
        filler = fill(full_disk)
        log = full_disk / "supervisord.log"
        before = log.stat().st_size
        for _ in range(3):  # the talker exits with its writes failing, and comes back
            out, err, code = project.manage("supervisor", "restart", "talker", "quiet")
            assert (err, code) == ("", 0), out
        filler.unlink()
        project.wait_for(
            lambda: "bytes of log output" in log.read_text()[before:], what="the drop line"
        )
        fill(full_disk)
        out, err, code = project.manage("supervisor", "shutdown")
        assert (err, code) == ("", 0)
        project.wait_for(lambda: not project.status(), what="the daemon gone")
    finally:
        project.cleanup()
    text = log.read_text()
    assert "Traceback" not in text
    assert "talker: writing logs again" in text or "talker: cannot write" in text


def test_a_bad_console_buffer_setting_is_one_line(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        "[program:a]\ncommand=sleep 30\n",
        extra_settings="SUPERVISOR_CONSOLE_BUFFER = '16M'\n",
    )
    try:
        out, err, code = project.manage("supervisor", "--noreload")
    finally:
        project.cleanup()
    line = "SUPERVISOR_CONSOLE_BUFFER must be a number of bytes of at least 1024, got '16M'"
    assert (out, err, code) == ("", f"CommandError: {line}\n", 1)


# --- the console's buffer limit ------------------------------------------------------------


def read_back(console: Console, read_end: int) -> bytes:
    """Read the console's pipe until everything queued, and a whole last line, arrived."""
    received = bytearray()
    os.set_blocking(read_end, False)
    while console.pending or not received.endswith(b"\n"):
        with contextlib.suppress(BlockingIOError):
            received += os.read(read_end, 1 << 20)
        console.flush()
    return bytes(received)


def test_console_drops_whole_lines_beyond_its_limit_and_says_so_once() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    console = Console(write_end, prefix=False, limit=64 * 1024)
    try:
        line = b"y" * 99 + b"\n"
        for _ in range(20_000):  # 2 MB into a 64 KiB pipe and a 64 KiB limit
            console.output("w", "stdout", line * 10)
        assert len(console.pending) <= console.limit + 10 * len(line)
        console.output("w", "stdout", b"last\n")
        assert console.dropping
        # The console reads again: everything queued shows, then one marker line.
        received = read_back(console, read_end)
    finally:
        os.close(read_end)
        console.close()
    lines = bytes(received).split(b"\n")[:-1]
    markers = [x for x in lines if b"console: dropped" in x]
    assert len(markers) == 1
    shown = [x for x in lines if x == line[:-1]]
    dropped_lines = int(re.search(rb"dropped (\d+) lines", markers[0])[1])  # type: ignore[index]
    dropped_bytes = int(re.search(rb"\((\d+) bytes\)", markers[0])[1])  # type: ignore[index]
    assert len(shown) + dropped_lines == 200_001  # only whole lines, each shown or counted
    # "last" came while dropping, so it is among them.
    assert dropped_bytes == (dropped_lines - 1) * len(line) + len(b"last\n")
    assert lines[-1] == markers[0]


def test_console_queue_stays_within_its_limit_with_megabyte_reads() -> None:
    # A grown pipe gives reads of up to a megabyte: the queue must not exceed the
    # limit by one of them (the unread-console memory bound), nor lose whole-line order.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    limit = 1024 * 1024
    console = Console(write_end, limit=limit)
    console.add_names(["w"])
    lines = [b"%07d %s\n" % (i, b"z" * 72) for i in range(80_000)]  # 6.4 MB
    try:
        for start in range(0, len(lines), 9000):  # 720 kB reads, 920 kB on the console
            console.output("w", "stdout", b"".join(lines[start : start + 9000]))
            assert len(console.pending) <= limit
        received = read_back(console, read_end)
    finally:
        os.close(read_end)
        console.close()
    shown = [x.partition(b" | ")[2] for x in bytes(received).split(b"\n")[:-1]]
    markers = [x for x in shown if x.startswith(b"WARN console: dropped")]
    assert len(markers) == 1
    assert shown[-1] == markers[0]
    dropped = int(re.search(rb"dropped (\d+) lines", markers[0])[1])  # type: ignore[index]
    kept = shown[:-1]
    assert kept == [line[:-1] for line in lines[: len(kept)]]  # in order, none cut
    assert len(kept) + dropped == len(lines)


CAP = 1024 * 1024


def test_an_unread_console_pipe_keeps_memory_bounded(tmp_path: Path) -> None:
    go = tmp_path / "go"
    flood = program("flood.py", str(go), "10")
    project = make_project(
        tmp_path / "proj",
        f"""\
        [program:flood]
        command={flood}
        startsecs=0
        stdout_logfile={{{{ PROJECT_DIR }}}}/flood.log
        stdout_logfile_maxbytes=20MB
        stdout_logfile_backups=1
        """,
        extra_settings=f"SUPERVISOR_CONSOLE_BUFFER = {CAP}\n",
    )
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [sys.executable, str(project.path / "manage.py"), "supervisor", "--noreload"],
        cwd=project.path,
        env=project.env(),
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    project.started.append(server)  # type: ignore[arg-type]
    os.close(write_end)
    received = bytearray()
    try:
        project.wait_running("flood")
        time.sleep(1)
        idle = rss_kb(server.pid) * 1024
        go.touch()
        peak = idle
        log = project.path / "flood.log"
        ended = False
        while not ended:
            peak = max(peak, rss_kb(server.pid) * 1024)
            with contextlib.suppress(OSError), log.open("rb") as stream:
                stream.seek(-4, os.SEEK_END)
                ended = stream.read() == b"END\n"
            time.sleep(0.05)
        assert peak < idle + 2 * CAP, f"RSS {peak} > idle {idle} + 2 x {CAP}"
        assert server.poll() is None

        # Read the console now: the marker line comes once it has drained.
        def reader() -> None:
            while chunk := os.read(read_end, 1 << 20):
                received.extend(chunk)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        wait_for(lambda: b"console: dropped" in received, what="the marker line")
        wait_for(lambda: received.endswith(b"\n"))
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        thread.join(timeout=10)
    finally:
        project.cleanup()
        os.close(read_end)
    text = received.decode(errors="replace")
    assert text.count("console: dropped") == 1, text[-2000:]
    match = re.search(r"console: dropped (\d+) lines \((\d+) bytes\)", text)
    assert match is not None
    # The log file got every line; the console lost over 50 MB of them, and said so.
    assert int(match[2]) > 50_000_000
    assert int(match[2]) == int(match[1]) * 80 + 4 - 80  # whole lines; "END" among them
    assert "Traceback" not in text
