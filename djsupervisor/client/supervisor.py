"""A typed client for a running supervisord: process info, control, shutdown."""

from __future__ import annotations

import contextlib
import os
import signal as signals
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import (
    NoSuchProcess,
    NotRunning,
    NotRunningProcess,
    StartError,
    SupervisorError,
)
from ..protocol import (
    NEVER_STARTS,
    STARTING_STATES,
    SUCCESS,
)
from .channel import Channel, fault_error
from .info import ProcessInfo, UpdateResult, with_stats
from .lifecycle import POLL, exit_reason, pid_alive, wait_for

#: How long a SIGTERMed supervisord gets to stop its programs before SIGKILL.
STOP_GRACE = 20.0


def _check_results(results: Iterable[dict[str, Any]]) -> None:
    """Raise for the first failure in a group call's results, naming every failure."""
    failures = [r for r in results if r["status"] != SUCCESS]
    if not failures:
        return
    first = fault_error(int(failures[0]["status"]), str(failures[0]["description"]))
    if len(failures) == 1:
        raise first
    names = ", ".join(f"{r['group']}:{r['name']} ({r['description']})" for r in failures)
    raise type(first)(f"{len(failures)} processes failed: {names}")


def _sig_name(sig: int | str) -> str:
    return str(int(sig)) if isinstance(sig, int) else sig


class Supervisor:
    """A handle on a project's supervisord; as a context manager, shuts it down on exit.

    Get one from ``djsupervisor.start()`` (which owns the supervisord process) or
    ``djsupervisor.connect()``. Every call opens a fresh connection; calls raise
    ``NotRunning`` when no supervisord answers.
    """

    def __init__(
        self,
        serverurl: str,
        username: str | None = None,
        password: str | None = None,
        *,
        process: subprocess.Popen[bytes] | None = None,
        console_log: Path | None = None,
        console_offset: int = 0,
    ) -> None:
        self._serverurl = serverurl
        self._username = username
        self._password = password
        self._process = process
        #: Where a supervisord this handle started writes its own messages.
        self.console_log = console_log
        self._console_offset = console_offset

    @property
    def serverurl(self) -> str:
        """Where supervisord listens (``unix:///...`` or ``http://host:port``)."""
        return self._serverurl

    @property
    def pid(self) -> int | None:
        """The pid of the supervisord process this handle started, if it started one."""
        return self._process.pid if self._process is not None else None

    def __repr__(self) -> str:
        return f"<Supervisor {self._serverurl}>"

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Already gone is what leaving the block asks for.
        with contextlib.suppress(NotRunning):
            self.shutdown()

    # -- the XML-RPC channel ------------------------------------------------

    def _call(self, method: str, *args: Any) -> Any:
        """Call ``method``; translate faults and connection failures into our errors."""
        return Channel(self._serverurl, self._username, self._password).call(method, *args)

    def _answers(self) -> bool:
        try:
            self._call("supervisor.getState")
        except SupervisorError:
            return False
        return True

    # -- process info -------------------------------------------------------

    def status(self, *names: str, stats: bool = False) -> list[ProcessInfo]:
        """Return every process (no names, or ``all``), or those ``names`` select.

        A name is ``name``, ``group:name`` or ``group:*``, as in supervisorctl. With
        ``stats``, also measure ``cpu_percent`` and ``rss`` (over a fifth of a second).
        """
        infos = [ProcessInfo.from_rpc(i) for i in self._call("supervisor.getAllProcessInfo")]
        if not names or "all" in names:
            return with_stats(infos) if stats else infos
        selected: list[ProcessInfo] = []
        for name in names:
            group, _, process = name.partition(":") if ":" in name else (name, "", name)
            matches = [
                info for info in infos if info.group == group and process in ("", "*", info.name)
            ]
            if not matches:
                what = "group" if process in ("", "*") else "process"
                raise NoSuchProcess(f"no such {what}: {name}")
            selected.extend(m for m in matches if m not in selected)
        return with_stats(selected) if stats else selected

    def commands(self) -> dict[str, str]:
        """Return each process's command line, by namespec (``getAllConfigInfo``)."""
        return {
            (c["name"] if c["group"] == c["name"] else f"{c['group']}:{c['name']}"): str(
                c["command"]
            )
            for c in self._call("supervisor.getAllConfigInfo")
        }

    def log_since(
        self, name: str, offset: int, *, limit: int = 16384, stderr: bool = False
    ) -> tuple[str, int, bool]:
        """Return what a process's log gained after byte ``offset``, for following it.

        Returns the text, the offset to ask from next time, and whether bytes were
        skipped: more than ``limit`` new bytes give the last ``limit``, and a log that
        shrank (rotated) starts again from its tail. ``offset=0`` gives the last bytes.
        """
        kind = "Stderr" if stderr else "Stdout"
        # A zero length reads nothing and answers the log's size.
        _, size, _ = self._call(f"supervisor.tailProcess{kind}Log", name, 0, 0)
        size = int(size)
        if offset > size or size - offset > limit:
            text, size, _ = self._call(f"supervisor.tailProcess{kind}Log", name, 0, limit)
            return str(text), int(size), offset > 0 or size > limit
        if size == offset:
            return "", size, False
        # Exactly the new bytes (tailProcessLog would re-send old ones).
        text = self._call(f"supervisor.readProcess{kind}Log", name, offset, size - offset)
        return str(text), size, False

    def tail(self, name: str, *, stderr: bool = False, length: int = 1600) -> str:
        """Return the last ``length`` bytes of a process's stdout (or stderr) log."""
        method = "tailProcessStderrLog" if stderr else "tailProcessStdoutLog"
        text, _offset, _overflow = self._call(f"supervisor.{method}", name, 0, length)
        return str(text)

    # -- control ------------------------------------------------------------

    def _each(self, names: Sequence[str], one: str, group: str, every: str, *args: Any) -> None:
        if not names:
            raise ValueError("name at least one process, 'group:*' or 'all'")
        for name in names:
            if name == "all":
                _check_results(self._call(f"supervisor.{every}", *args))
            elif name.endswith(":*"):
                _check_results(self._call(f"supervisor.{group}", name[:-2], *args))
            else:
                self._call(f"supervisor.{one}", name, *args)

    def start(self, *names: str, wait: bool = True) -> None:
        """Start processes (``name``, ``group:name``, ``group:*`` or ``all``).

        With ``wait``, return once each has reached RUNNING (after its ``startsecs``).
        Starting a running process raises ``AlreadyStarted``; ``group:*`` and ``all``
        skip running ones, as supervisorctl does.
        """
        self._each(names, "startProcess", "startProcessGroup", "startAllProcesses", wait)

    def stop(self, *names: str, wait: bool = True) -> None:
        """Stop processes; with ``wait``, return once each has stopped.

        Stopping a stopped process raises ``NotRunningProcess``; ``group:*`` and
        ``all`` skip stopped ones.
        """
        self._each(names, "stopProcess", "stopProcessGroup", "stopAllProcesses", wait)

    def restart(self, *names: str) -> None:
        """Stop (where running) and start processes, waiting for them to run."""
        for name in names:
            with contextlib.suppress(NotRunningProcess):
                self.stop(name)
        self.start(*names)

    def signal(self, name: str, sig: int | str) -> None:
        """Send ``sig`` (a number, ``signal.SIGHUP``, or a name like ``"HUP"``) to processes."""
        sig_arg = _sig_name(sig)
        self._each([name], "signalProcess", "signalProcessGroup", "signalAllProcesses", sig_arg)

    def wait_running(self, *names: str, timeout: float = 30.0) -> list[ProcessInfo]:
        """Wait until the processes (default: all) are RUNNING; return their info.

        Raises ``SupervisorError`` at once if one is FATAL, or when ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            infos = self.status(*names)
            fatal = [i for i in infos if i.state == "FATAL"]
            if fatal:
                raise SupervisorError(f"{fatal[0].namespec} is FATAL: {fatal[0].description}")
            if all(info.state == "RUNNING" for info in infos):
                return infos
            if time.monotonic() >= deadline:
                late = ", ".join(f"{i.namespec} {i.state}" for i in infos if i.state != "RUNNING")
                raise SupervisorError(f"not RUNNING after {timeout:g} s: {late}")
            time.sleep(POLL)

    def wait_healthy(self, *names: str, timeout: float = 30.0) -> list[ProcessInfo]:
        """Wait until every process (of ``names``) with a health check is healthy.

        Returns their info. Raises ``SupervisorError`` at once if one of them is FATAL,
        or when ``timeout`` passes (naming the ones not healthy yet).
        """
        deadline = time.monotonic() + timeout
        while True:
            # A RUNNING process's health is known from the loop round after it got there:
            # every answer comes after that round.
            infos = self.status(*names)
            checked = [i for i in infos if i.health is not None]
            fatal = [i for i in infos if i.state == "FATAL"]
            if fatal:
                raise SupervisorError(f"{fatal[0].namespec} is FATAL: {fatal[0].description}")
            late = [i for i in checked if i.health != "healthy"]
            if not late:
                return checked
            if time.monotonic() >= deadline:
                verdicts = ", ".join(f"{i.namespec} {i.health}" for i in late)
                raise SupervisorError(f"not healthy after {timeout:g} s: {verdicts}")
            time.sleep(POLL)

    def _wait_autostarted(self, timeout: float) -> None:
        """Wait until every autostart process has left STARTING (and BACKOFF)."""
        deadline = time.monotonic() + timeout
        while True:
            autostart = {
                (c["group"], c["name"])
                for c in self._call("supervisor.getAllConfigInfo")
                if c["autostart"] and c["inuse"]
            }
            pending = [
                info
                for info in self.status()
                if (info.group, info.name) in autostart
                and (
                    info.state in STARTING_STATES
                    # Not spawned yet (one stopped after it ran, or one whose dependency
                    # failed, is not on its way up).
                    or (
                        info.state == "STOPPED"
                        and info.started_at is None
                        and not info.description.startswith(NEVER_STARTS)
                    )
                )
            ]
            if not pending:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(f"{i.namespec} {i.state}" for i in pending)
                raise SupervisorError(f"programs still starting after {timeout:g} s: {names}")
            time.sleep(POLL)

    def update(self, *, wait: bool = True, timeout: float = 30.0) -> UpdateResult:
        """Re-read the configuration and apply it, as ``supervisorctl update`` does.

        Removed groups are stopped and removed, changed ones stopped and re-added,
        added ones added; with ``wait``, returns once their autostart programs have
        left STARTING. A configuration that no longer builds raises ``ConfigError``
        and changes nothing.
        """
        deadline = time.monotonic() + timeout
        [[added, changed, removed]] = self._call("supervisor.reloadConfig")
        for name in removed:
            _check_results(self._call("supervisor.stopProcessGroup", name))
            self._call("supervisor.removeProcessGroup", name)
        for name in changed:
            _check_results(self._call("supervisor.stopProcessGroup", name))
            self._call("supervisor.removeProcessGroup", name)
            self._call("supervisor.addProcessGroup", name)
        for name in added:
            self._call("supervisor.addProcessGroup", name)
        if wait:
            self._wait_autostarted(max(deadline - time.monotonic(), 0.0))
        return UpdateResult(tuple(added), tuple(changed), tuple(removed))

    def reload(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Restart supervisord: stop everything, re-read the config, start afresh.

        Returns once the new round answers and (with ``wait``) its autostart programs
        have left STARTING. A configuration that no longer builds raises ``ConfigError``
        and changes nothing; if supervisord does not come back, ``StartError``.
        """
        deadline = time.monotonic() + timeout
        self._call("supervisor.restart")
        # The old round answers RESTARTING until it closes its socket; only the new
        # round says RUNNING.
        while True:
            try:
                if self._call("supervisor.getState")["statename"] == "RUNNING":
                    break
                last = "it is still restarting"
            except SupervisorError as error:  # between two rounds, nobody answers
                last = str(error)
            self._raise_if_exited("supervisord exited while reloading")
            if time.monotonic() >= deadline:
                raise StartError(f"supervisord did not come back within {timeout:g} s: {last}")
            time.sleep(POLL)
        if wait:
            self._wait_autostarted(max(deadline - time.monotonic(), 0.0))

    # -- shutdown -----------------------------------------------------------

    def _raise_if_exited(self, what: str) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise StartError(self._exit_reason(what))

    def _exit_reason(self, what: str) -> str:
        """Why our supervisord exited: the last line it printed, or its exit status."""
        code = self._process.returncode if self._process is not None else None
        return exit_reason(code, self.console_log, what, self._console_offset)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every program and supervisord; return once all of them are gone.

        For a supervisord this handle started, one that does not stop within
        ``timeout`` is terminated (its programs with it) and ``SupervisorError``
        raised. For a connected one, ``NotRunning`` if nothing runs.
        """
        deadline = time.monotonic() + timeout
        pids: list[int] = []
        server_pid: int | None = self.pid
        try:
            pids = [i.pid for i in self.status() if i.pid]
            server_pid = int(self._call("supervisor.getPID"))
            self._call("supervisor.shutdown")
        except NotRunning:
            if self._process is None:
                raise
        if self._process is not None:
            try:
                self._process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                self.terminate(pids)
                raise SupervisorError(
                    f"supervisord did not stop within {timeout:g} s; killed it"
                ) from None
        elif server_pid is not None and not wait_for(lambda: not pid_alive(server_pid), deadline):
            raise SupervisorError(f"supervisord (pid {server_pid}) still runs after {timeout:g} s")
        if not wait_for(lambda: not any(pid_alive(p) for p in pids), deadline):
            alive = [p for p in pids if pid_alive(p)]
            if self._process is None:
                raise SupervisorError(f"processes still running after {timeout:g} s: {alive}")
            self.terminate(alive)
            raise SupervisorError(f"programs did not stop within {timeout:g} s; killed {alive}")

    def terminate(self, pids: Iterable[int] = ()) -> None:
        """Terminate our supervisord (SIGTERM, then SIGKILL), then the ``pids`` left."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signals.SIGTERM)
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                # Its watchdog then SIGKILLs every program's process group.
                process.kill()
                process.wait()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signals.SIGKILL)
