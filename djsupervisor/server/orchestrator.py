"""Dependencies, health checks, one-shot and essential programs, in supervisord's loop.

supervisord calls a process's ``spawn()`` when it wants it started; the orchestrator
wraps it so a program with unmet ``depends_on`` waits (it is started as soon as they are
met), runs health probes without blocking the loop, and stops everything when an
``essential`` program is gone for good.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.process import ProcessStates
from supervisor.states import SupervisorStates

from ..config.rules import Dependency, Rules
from ..protocol import NEVER_STARTS
from .health import CommandProbe, SocketProbe

Key = tuple[str, str]  # (group name, process name)
UP_STATES = (ProcessStates.STARTING, ProcessStates.RUNNING)


@dataclass
class Health:
    status: str = "starting"  # starting | healthy | unhealthy
    pid: int = 0
    started: float = 0.0
    failures: int = 0
    next_at: float = 0.0
    deadline: float = 0.0
    detail: str = ""
    probe: SocketProbe | CommandProbe | None = None


def _key(proc: Any) -> Key:
    group = proc.group.config.name if proc.group is not None else proc.config.name
    return (group, proc.config.name)


def _program(proc: Any) -> str:
    """The ``[program:x]`` name of ``proc``: its group's, unless a ``[group:g]`` lists it."""
    return getattr(proc.config, "program_name", None) or _key(proc)[0]


class Orchestrator:
    """Owned by the supervisord instance; every method runs in its main loop."""

    def __init__(self, supervisord: Any) -> None:
        self.supervisord = supervisord
        self.health: dict[Key, Health] = {}
        self.waiting: dict[Key, str] = {}
        self.commands: dict[int, CommandProbe] = {}
        self.exit_reason: str | None = None
        #: tick() opened file descriptors (a probe socket, a spawned program's pipes)
        #: that the poll round which called it does not watch.
        self.opened = False

    @property
    def options(self) -> Any:
        return self.supervisord.options

    def rules(self, group: str) -> Rules:
        return self.options.rules.get(group) or Rules()

    def processes(self) -> list[Any]:
        return [p for g in self.supervisord.process_groups.values() for p in g.processes.values()]

    # -- dependencies -------------------------------------------------------------

    def install(self, group: Any) -> None:
        """Gate every process of a newly added group behind its dependencies."""
        for proc in group.processes.values():
            proc.spawn = self._gated(proc, proc.spawn)

    def _gated(self, proc: Any, spawn: Callable[[], Any]) -> Callable[[], Any]:
        def gated_spawn() -> Any:
            reason = self.blocked_by(proc)
            if reason is None:
                self.waiting.pop(_key(proc), None)
                self.options.spawning = proc
                try:
                    return spawn()
                finally:
                    self.options.spawning = None
            if self.waiting.get(_key(proc)) != reason:
                self.options.logger.info(f"{proc.config.name}: {reason}")
            self.waiting[_key(proc)] = reason
            return None

        return gated_spawn

    def _condition(self, dep: Dependency) -> tuple[bool, str | None]:
        """Whether ``dep`` is met, and why it never will be (if so)."""
        procs = [p for p in self.processes() if _program(p) == dep.name]
        if not procs:
            return False, f"dependency {dep.name} is not configured"
        met = True
        for proc in procs:
            state = proc.get_state()
            if state == ProcessStates.FATAL:
                return False, f"dependency {proc.config.name} is FATAL"
            reason = self.waiting.get(_key(proc), "")
            if state in (ProcessStates.STOPPED, ProcessStates.EXITED) and reason.startswith(
                NEVER_STARTS
            ):
                return False, f"dependency {proc.config.name} {reason}"
            if dep.condition == "completed":
                if state == ProcessStates.EXITED and proc.exitstatus not in proc.config.exitcodes:
                    return False, (
                        f"dependency {proc.config.name} failed (exit status {proc.exitstatus})"
                    )
                met = met and state == ProcessStates.EXITED
            elif dep.condition == "healthy":
                health = self.health.get(_key(proc))
                met = met and state in UP_STATES and health is not None
                met = met and health is not None and health.status == "healthy"
            else:
                met = met and state == ProcessStates.RUNNING
        return met, None

    def blocked_by(self, proc: Any) -> str | None:
        """Why ``proc`` may not start yet (``None``: it may)."""
        waiting = []
        for dep in self.rules(_program(proc)).depends_on:
            met, failure = self._condition(dep)
            if failure:
                return f"{NEVER_STARTS}: {failure}"
            if not met:
                waiting.append(str(dep))
        return f"waiting for {', '.join(waiting)}" if waiting else None

    def dependents(self, group: str) -> set[str]:
        return {
            name
            for name, rule in self.options.rules.items()
            if any(dep.name == group for dep in rule.depends_on)
        }

    def stop_candidates(self, groups: list[Any]) -> list[Any]:
        """Groups to stop now: highest priority among those no running group depends on."""
        live = {_program(p) for g in groups for p in g.get_unstopped_processes()}
        free = [
            g
            for g in groups
            if not any(self.dependents(_program(p)) & live for p in g.processes.values())
        ]
        free = free or groups  # never deadlock on a cycle that slipped through
        top = max(g.config.priority for g in free)
        return [g for g in free if g.config.priority == top]

    # -- the loop -----------------------------------------------------------------

    def tick(self) -> None:
        """Start what became startable, run due probes, react to essential programs."""
        if not (self.options.rules or self.waiting or self.health):
            return  # no orchestration configured: this runs on every loop round
        now = time.time()
        running = self.options.mood == SupervisorStates.RUNNING
        for proc in self.processes():
            key = _key(proc)
            state = proc.get_state()
            waiting = key in self.waiting and state in (ProcessStates.STOPPED, ProcessStates.EXITED)
            # spawn() gives None while still blocked: then nothing was opened.
            if running and waiting and proc.spawn() is not None:
                self.opened = True
            self._probe(proc, key, state, now)
            essential = self.rules(_program(proc)).essential
            if running and essential and self._gone_for_good(proc, state):
                self.exit_reason = (
                    f"essential program {proc.config.name} is gone "
                    f"({'FATAL' if state == ProcessStates.FATAL else 'exited'}: "
                    f"{proc.spawnerr or f'exit status {proc.exitstatus}'}); stopped everything"
                )
                self.options.logger.critical(self.exit_reason)
                self.options.mood = SupervisorStates.SHUTDOWN
                running = False

    @staticmethod
    def _gone_for_good(proc: Any, state: int) -> bool:
        if state == ProcessStates.FATAL:
            return True
        return (
            state == ProcessStates.EXITED
            and proc.exitstatus not in proc.config.exitcodes
            and not proc.config.autorestart
        )

    def _probe(self, proc: Any, key: Key, state: int, now: float) -> None:
        check = self.rules(_program(proc)).healthcheck
        health = self.health.get(key)
        if check is None or state not in UP_STATES:
            if health is not None and health.probe is not None:
                health.probe.close()
            self.health.pop(key, None)
            return
        if health is None or health.pid != proc.pid:
            if health is not None and health.probe is not None:
                health.probe.close()
            health = self.health[key] = Health(pid=proc.pid, started=now, next_at=now)
        if health.probe is not None:
            if now >= health.deadline:
                health.probe.timeout()
            return
        if now < health.next_at:
            return
        health.deadline = now + check.timeout

        def done(ok: bool, detail: str) -> None:
            self._probed(proc, key, health, ok, detail)

        if check.kind == "cmd":
            probe = CommandProbe(check, done, dict(os.environ))
            self.commands[probe.pid] = probe
            health.probe = probe
        else:
            health.probe = SocketProbe(
                check, self.options.get_socket_map(), done, forget=self.options.forget_fd
            )
            self.opened = True

    def _probed(self, proc: Any, key: Key, health: Health, ok: bool, detail: str) -> None:
        rules = self.rules(_program(proc))
        check = rules.healthcheck
        now = time.time()
        health.probe = None
        health.detail = detail
        health.next_at = now + (check.interval if check else 2.0)
        if ok:
            if health.status != "healthy":
                self.options.logger.info(f"health: {proc.config.name} is healthy ({detail})")
            health.status = "healthy"
            health.failures = 0
            return
        if check is None or now < health.started + check.start_period:
            return
        health.failures += 1
        if health.failures < check.retries or health.status == "unhealthy":
            return
        was_healthy = health.status == "healthy"
        health.status = "unhealthy"
        self.options.logger.warn(f"health: {proc.config.name} is unhealthy ({detail})")
        if was_healthy and rules.healthcheck_restart and proc.get_state() in UP_STATES:
            self.options.logger.warn(f"health: restarting {proc.config.name}")
            proc.stop()
            self.waiting[key] = "restarting after failed health checks"

    def reaped(self, pid: int, status: int) -> bool:
        """Take the exit of a command probe; False if ``pid`` is not one of ours."""
        probe = self.commands.pop(pid, None)
        if probe is None:
            return False
        probe.exited(status)
        return True

    def due(self) -> float | None:
        """The next time a probe must start or time out."""
        times = [h.deadline if h.probe is not None else h.next_at for h in self.health.values()]
        return min(times) if times else None

    def describe(self, proc: Any) -> tuple[str | None, str | None]:
        """(waiting reason, health status) of ``proc`` for status displays."""
        key = _key(proc)
        health = self.health.get(key)
        return self.waiting.get(key), health.status if health is not None else None

    def close(self) -> None:
        for health in self.health.values():
            if health.probe is not None:
                health.probe.close()
        self.health.clear()
