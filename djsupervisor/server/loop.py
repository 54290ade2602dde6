"""supervisord's main loop, made event-driven: wake on signals, stop in parallel.

Stock supervisord polls with a fixed 1 s timeout that signals do not interrupt (Python
retries an interrupted poll), so the first spawn, every state change and every reaped
child during shutdown wait up to a second; and it stops programs one at a time. Here
the loop sleeps exactly until the next thing supervisord would act on, and any signal
(SIGCHLD included) wakes it through ``signal.set_wakeup_fd``. On Linux it waits with
epoll (poller.py), registering only what changed since the last round (rounds.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor import events
from supervisor.datatypes import RestartUnconditionally
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.process import ProcessStates
from supervisor.states import SupervisorStates
from supervisor.supervisord import Supervisor

from .. import signals
from . import httpchannel, instance, reaper, rounds
from .activity import Activity
from .console import ConsoleDispatcher
from .guard import Watchdog
from .orchestrator import Orchestrator, _key
from .spawn import InheritedFds, SpawnBatch
from .spawner import Spawner, collect_garbage

# After this many back-to-back zero timeouts, assume a due time that supervisord will
# never act on and sleep a little, rather than spin.
_MAX_ZERO_TIMEOUTS = 20
_SPIN_GUARD = 0.01
# The longest an idle round spends removing the previous run's logs (oldlogs.py): a
# request arriving meanwhile waits at most this long.
_CLEANUP_SLICE = 0.005


class WakeupDispatcher:
    """The read end of the signal wake-up pipe, in supervisord's socket map.

    supervisord polls every dispatcher in its map; this one only drains the pipe.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        # Must be False, or the poller would return at once, every time.
        return False

    def handle_read_event(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self.fd, 512):
                pass

    def handle_error(self) -> None:
        pass

    def close(self) -> None:
        pass


def close_logs(dispatchers: Iterable[Any]) -> None:
    """Close the log files of a program's dispatchers.

    supervisord drops a finished process's dispatchers with their log files still open
    and leaves the closing to garbage collection or its own exit; this process lives
    on (the next round, the API's caller), so close them now.
    """
    for dispatcher in dispatchers:
        for name in ("normallog", "capturelog", "childlog"):
            log = getattr(dispatcher, name, None)
            if log is not None:
                log.close()


def due_time(proc: Any, now: float, mood: int) -> float | None:
    """When ``proc.transition()`` will next act, mirroring supervisor's process.py."""
    state = proc.state
    config = proc.config
    if mood > SupervisorStates.RESTARTING:
        if state == ProcessStates.EXITED and config.autorestart:
            unconditional = config.autorestart is RestartUnconditionally
            if unconditional or proc.exitstatus not in config.exitcodes:
                return now
        elif state == ProcessStates.STOPPED and not proc.laststart and config.autostart:
            return now
        elif state == ProcessStates.BACKOFF and proc.backoff <= config.startretries:
            return float(proc.delay)
    if state == ProcessStates.STARTING:
        # supervisord requires *more* than startsecs: come back just after.
        return float(proc.laststart + config.startsecs) + 0.001
    if state == ProcessStates.BACKOFF and proc.backoff > config.startretries:
        return now
    if state == ProcessStates.STOPPING:
        return float(proc.delay)
    return None


class ProjectSupervisor(Supervisor):  # type: ignore[misc]
    """supervisord with an event-driven loop, parallel stop and an orphan watchdog."""

    watchdog: Watchdog | None = None
    family: reaper.Family | None = None
    stop_groups: list[Any] | None

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.orchestrator = Orchestrator(self)
        self.activity = Activity(self, due_time)
        self.spawn_batch = SpawnBatch(options)
        options.spawn_batch = self.spawn_batch

    def add_process_group(self, config: Any) -> bool:
        added: bool = super().add_process_group(config)
        if added:
            group = self.process_groups[config.name]
            self.orchestrator.install(group)
            self.activity.install(group)
            self.spawn_batch.install(group)
        return added

    def runforever(self) -> None:
        # Django, supervisor and the config, loaded by now, live as long as this loop:
        # keep the collector's full passes from scanning them again and again. One such
        # pass took 68 ms in the middle of a 1,000-program start-up.
        gc.freeze()
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        socket_map = self.options.get_socket_map()
        socket_map[read_fd] = WakeupDispatcher(read_fd)
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        events.subscribe(events.ProcessStateEvent, signals.forward_state_event)
        self.activity.subscribe()
        self.options.inherited_fds = InheritedFds()
        self.options.spawner = Spawner()
        httpchannel.install(self.options.httpservers, self.options.forget_fd)
        self.activity.talking = lambda: httpchannel.talking(socket_map)
        self.activity.sending = lambda: httpchannel.sending(socket_map)
        self.activity.settle_spawns = self.spawn_batch.settle
        console = self.options.console
        if console is not None:
            socket_map[console.fd] = ConsoleDispatcher(console)
            console.add_names(
                [p.config.name for g in self.process_groups.values() for p in g.processes.values()]
            )
        runtime_dir = getattr(self.options, "runtime_dir", None)
        watch = instance.RuntimeDirWatch(self, Path(runtime_dir)) if runtime_dir else None
        poller = self.options.poller
        original_poll = poller.poll
        zero_timeouts = 0
        old_logs = getattr(self.options, "old_logs", None)

        def poll(timeout: float) -> Any:
            nonlocal zero_timeouts
            self.activity.new_round()
            self.options.inherited_fds.forget()
            collect_garbage()  # in this thread, not the spawning one's (spawner.py)
            if console is not None:
                console.flush_partials()
            self.orchestrator.tick()
            if watch is not None:
                watch.tick()
            wait = min(timeout, self.next_timeout())
            if self.orchestrator.opened:
                # supervisord registered this round's descriptors before calling poll():
                # go round at once, so the new ones are watched.
                self.orchestrator.opened = False
                wait = 0
            zero_timeouts = zero_timeouts + 1 if wait <= 0 else 0
            if zero_timeouts > _MAX_ZERO_TIMEOUTS:
                wait = _SPIN_GUARD
            if wait > 0 and old_logs:
                wait -= old_logs.remove(min(wait, _CLEANUP_SLICE))
            return original_poll(max(wait, 0))

        poller.poll = poll
        self.family = reaper.Family(self.options.logger.info)
        self.family.enter()
        self.watchdog = Watchdog(self.family.marker)
        self.options.watchdog = self.watchdog
        clean = False
        try:
            rounds.run_forever(self)  # supervisord's loop, each round O(events)
        except asyncore.ExitNow:
            clean = True  # supervisord's own way out, once every program has stopped
            raise
        finally:
            poller.poll = original_poll
            signal.set_wakeup_fd(previous_fd)
            socket_map.pop(read_fd, None)
            os.close(read_fd)
            os.close(write_fd)
            self.orchestrator.close()
            self.options.spawner.close()
            gc.unfreeze()  # a reload's old config must be collectable
            self.options.watchdog = None
            # After a crash the watchdog kills what is left, as if we had been SIGKILLed.
            self.watchdog.close(clean=clean)
            self.family.leave()
            if console is not None:
                socket_map.pop(console.fd, None)
                # Output of the last moments (a traceback at exit) must still show.
                for group in self.process_groups.values():
                    for dispatcher in group.get_dispatchers().values():
                        with contextlib.suppress(Exception):
                            if dispatcher.readable():
                                dispatcher.handle_read_event()
                console.drain()
            for group in self.process_groups.values():
                close_logs(group.get_dispatchers().values())
            if old_logs:
                # Stopped before the loop was ever idle long enough: the rest now.
                old_logs.remove(float("inf"))

    def next_timeout(self) -> float:
        """Seconds until the earliest due transition (the fixed 1 s poll otherwise)."""
        now = time.time()
        mood = self.options.mood
        earliest = now + 1.0
        console = self.options.console
        due = console.due() if console is not None else None
        if due is not None:
            earliest = min(earliest, due)
        due = self.orchestrator.due()
        if due is not None:
            earliest = min(earliest, due)
        due = self.family.due() if self.family is not None else None
        if due is not None:
            earliest = min(earliest, due)
        waiting = self.orchestrator.waiting
        # This runs on every loop round (every request): keep the steady state cheap.
        running = ProcessStates.RUNNING
        for proc in self.activity.pending():
            if proc.state == running:
                continue  # nothing due: it changes only on an event that wakes us
            if waiting and _key(proc) in waiting:
                continue  # started by the orchestrator when its dependencies are met
            due = due_time(proc, now, mood)
            if due is not None and due < earliest:
                earliest = due
        # A deferred XML-RPC answer (start/stop with wait) is re-checked only once its
        # channel's delay has passed (writable() says no until then).
        for dispatcher in self.options.get_socket_map().values():
            delay = getattr(dispatcher, "delay", 0)
            if delay:
                earliest = min(earliest, dispatcher.last_writable_check + delay + 0.001)
        return earliest - now

    def shutdown_report(self) -> list[Any]:
        unstopped: list[Any] = super().shutdown_report()
        if unstopped or self.family is None:
            return unstopped
        # The programs have stopped: now what they left behind (see reaper.Family).
        spare = [self.watchdog.pid] if self.watchdog is not None else []
        grace = max(
            (
                p.config.stopwaitsecs
                for g in self.process_groups.values()
                for p in g.processes.values()
            ),
            default=0,
        )
        return self.family.sweep(spare, grace)

    def get_process_map(self) -> dict[int, Any]:
        # Rebuilt only after a state change, not on every round (see activity.py).
        return self.activity.process_map()

    def ordered_stop_groups_phase_1(self) -> None:
        # Stop every group sharing the highest priority at once, not one at a time,
        # and a program only after every program depending on it.
        if self.stop_groups:
            for group in self.orchestrator.stop_candidates(self.stop_groups):
                group.stop_all()

    def ordered_stop_groups_phase_2(self) -> None:
        # Drop the fully stopped groups; phase 1 picks the next ones among the rest.
        if self.stop_groups:
            self.stop_groups = [g for g in self.stop_groups if g.get_unstopped_processes()]

    def reap(self, once: bool = False, recursionguard: int = 0) -> None:
        # Iterate instead of recursing; tell the watchdog which groups are gone.
        while True:
            pid, status = self.options.waitpid()
            if not pid:
                return
            if self.orchestrator.reaped(pid, status):
                continue
            if self.watchdog is not None:
                self.watchdog.remove(pid)
            process = self.options.pidhistory.pop(pid, None)
            if process is not None:
                dispatchers = list(process.dispatchers.values())
                process.finish(pid, status)
                close_logs(dispatchers)
            elif self.watchdog is not None and pid == self.watchdog.pid:
                # Killed by someone: the programs must not go unguarded.
                self.options.logger.warn("the orphan watchdog died; starting a new one")
                self.watchdog.close()  # its end of the pipe
                marker = self.family.marker if self.family is not None else None
                self.watchdog = self.options.watchdog = Watchdog(marker)
                for live in self.options.pidhistory:
                    self.watchdog.add(live)
            else:
                # An adopted orphan (we are a subreaper): expected, not news.
                self.options.logger.debug(f"reaped unknown pid {pid}")
            if once:
                return
