"""Shared machinery: start and always clean up processes, read /proc, talk raw XML-RPC."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessFailed(RuntimeError):
    """A process under measurement died, hung or misbehaved."""


def stock_command(name: str) -> list[str]:
    """The argv prefix of supervisor's own ``supervisord``/``supervisorctl``.

    The console script installed next to our interpreter is what a user runs; failing
    that, the same package through ``-m`` (never one found on PATH: another version).
    """
    script = Path(sys.executable).parent / name
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", f"supervisor.{name}"]


# --- /proc -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [0] is field 3 (state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _field(fields: list[str], number: int) -> int:
    """Field ``number`` as numbered in proc(5)."""
    return int(fields[number - 3])


@dataclass(frozen=True)
class Pid:
    """A process id with its start time, so a reused pid is never mistaken for ours."""

    pid: int
    starttime: int

    @classmethod
    def of(cls, pid: int) -> Pid | None:
        fields = _stat(pid)
        return None if fields is None else cls(pid, _field(fields, 22))

    def alive(self) -> bool:
        fields = _stat(self.pid)
        return fields is not None and fields[0] != "Z" and _field(fields, 22) == self.starttime


def _table() -> list[tuple[int, list[str]]]:
    rows = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                rows.append((int(entry.name), fields))
    return rows


def children(pid: int) -> list[int]:
    """Pids of the live children of ``pid``."""
    return [child for child, fields in _table() if _field(fields, 4) == pid]


def related(roots: Iterable[int]) -> set[Pid]:
    """Live descendants of ``roots`` and members of their sessions (orphans included)."""
    roots = set(roots)
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, fields in table:
        children.setdefault(_field(fields, 4), []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    # Each root leads its own session; a program orphaned by a killed supervisord
    # keeps that session id (unless it called setsid itself).
    members = {pid for pid, fields in table if _field(fields, 6) in roots} - found
    found |= members
    # ... and their descendants, which may have left the session (honcho's programs).
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    found -= roots
    return {p for p in map(Pid.of, found) if p is not None}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` itself."""
    fields = _stat(pid)
    if fields is None:
        raise ProcessFailed(f"process {pid} is gone")
    return (_field(fields, 14) + _field(fields, 15)) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of ``pid``, in MiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        raise ProcessFailed(f"process {pid} is gone") from None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ProcessFailed(f"no VmRSS for process {pid}")


def pss_mib(pid: int) -> float | None:
    """Proportional set size of ``pid`` (shared pages split among sharers), if available."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return None


def run_worker(argv: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float) -> Any:
    """Run a benchmark's measuring subprocess; return the JSON of its last stdout line."""
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_ports(count: int) -> list[int]:
    """Local TCP ports free right now (held open together so they differ)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


# --- raw XML-RPC over a unix socket -------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Channel:
    """supervisord's control socket and credentials, for raw XML-RPC calls.

    Deliberately not supervisor's or djsupervisor's client: both sides are measured
    by the same, minimal one. Every call uses a fresh connection.
    """

    socket_path: str
    username: str
    password: str

    def call(self, method: str, *params: Any, timeout: float = 5.0) -> Any:
        return self.timed_call(method, *params, timeout=timeout)[0]

    def timed_call(self, method: str, *params: Any, timeout: float = 5.0) -> tuple[Any, float]:
        """The call's result, and the seconds until its answer was read whole (unparsed)."""
        body = xmlrpc.client.dumps(params, method).encode()
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        headers = {"Content-Type": "text/xml", "Authorization": f"Basic {token}"}
        started = time.perf_counter()
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            conn.request("POST", "/RPC2", body, headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        answered = time.perf_counter() - started
        if response.status != 200:
            raise ProcessFailed(f"{method}: HTTP {response.status} {response.reason}")
        (result,), _ = xmlrpc.client.loads(data)
        return result, answered


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """What ``wait_running`` saw: the final process info, and when (``perf_counter``)."""

    info: list[dict[str, Any]]
    #: The first time the control socket answered.
    answered: float
    #: The time every program was seen RUNNING.
    running: float

    @property
    def pids(self) -> set[int]:
        return {entry["pid"] for entry in self.info if entry["pid"]}


class Processes:
    """Every process a benchmark starts; ``cleanup()`` kills them and theirs, by pid."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._started: list[subprocess.Popen[bytes]] = []
        self._known: set[Pid] = set()
        self._logs: dict[int, Path] = {}

    def start(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, its output going to a log file."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = self.logdir / f"{len(self._started):03d}-{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started.append(proc)
        self._logs[proc.pid] = log
        root = Pid.of(proc.pid)
        if root is not None:
            self._known.add(root)
        return proc

    def log_tail(self, proc: subprocess.Popen[bytes], lines: int = 12) -> str:
        try:
            text = self._logs[proc.pid].read_text(errors="replace")
        except (KeyError, OSError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, proc: subprocess.Popen[bytes], message: str) -> ProcessFailed:
        """An error for ``proc`` that carries the end of its output."""
        tail = self.log_tail(proc)
        return ProcessFailed(
            f"{message}\n--- last output of {proc.args!r}:\n{tail}" if tail else message
        )

    def adopt(self, pids: Iterable[int]) -> None:
        """Remember more processes to kill at cleanup (e.g. programs reported over RPC)."""
        self._known.update(p for p in map(Pid.of, pids) if p is not None)

    def wait_running(
        self,
        proc: subprocess.Popen[bytes],
        channel: Channel,
        names: set[str],
        *,
        timeout: float = 60.0,
        interval: float = 0.02,
    ) -> Running:
        """Poll ``getAllProcessInfo`` until every program in ``names`` is RUNNING."""
        deadline = time.monotonic() + timeout
        answered: float | None = None
        while True:
            if proc.poll() is not None:
                raise self.fail(
                    proc, f"exited with status {proc.returncode} before all were RUNNING"
                )
            try:
                info: list[dict[str, Any]] | None = channel.call("supervisor.getAllProcessInfo")
            except (OSError, http.client.HTTPException, xmlrpc.client.Fault):
                info = None  # not listening yet
            if info is not None:
                now = time.perf_counter()
                answered = now if answered is None else answered
                states = {entry["name"]: entry["statename"] for entry in info}
                if all(states.get(name) == "RUNNING" for name in names):
                    self.adopt(entry["pid"] for entry in info if entry["pid"])
                    return Running(info, answered, now)
                fatal = sorted(n for n in names if states.get(n) == "FATAL")
                if fatal:
                    raise self.fail(proc, f"programs went FATAL: {', '.join(fatal[:5])}")
            if time.monotonic() > deadline:
                raise self.fail(
                    proc, f"not all {len(names)} programs RUNNING after {timeout:.0f} s"
                )
            time.sleep(interval)

    def wait_logged(
        self,
        proc: subprocess.Popen[bytes],
        path: Path,
        needle: str,
        count: int,
        *,
        offset: int = 0,
        timeout: float = 60.0,
        interval: float = 0.01,
    ) -> float:
        """Watch ``path`` past ``offset`` until ``needle`` occurs ``count`` times.

        Return the ``perf_counter`` time it did. Unlike a request to its socket,
        reading its log file never wakes supervisord.
        """
        wanted = needle.encode()
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise self.fail(
                    proc, f"exited with status {proc.returncode} before {needle!r} x{count}"
                )
            try:
                with open(path, "rb") as log:
                    log.seek(offset)
                    seen = log.read().count(wanted)
            except FileNotFoundError:
                seen = 0
            if seen >= count:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise self.fail(
                    proc, f"{path} has {seen} of {count} {needle!r} after {timeout:.0f} s"
                )
            time.sleep(interval)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> float:
        """SIGTERM ``proc`` (a supervisord) and wait for it to exit; return the seconds taken."""
        self._known.update(related([proc.pid]))
        started = time.perf_counter()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.fail(proc, f"did not exit within {timeout:.0f} s of SIGTERM") from None
        return time.perf_counter() - started

    def cleanup(self) -> None:
        """Stop everything started here, and everything they started; SIGKILL what lingers."""
        roots = [p.pid for p in self._started]
        self._known.update(related(roots))
        for proc in self._started:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        # Orphans of a root that died before we saw its children.
        self._known.update(related(roots))
        for pid in self._known:
            if pid.alive():
                with contextlib.suppress(OSError):
                    os.kill(pid.pid, signal.SIGKILL)
        for proc in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._started.clear()
        self._known.clear()
